"""The listener fuzzer shared by tests/e2e/test_fuzz_listeners.py and bench/fuzz_listeners.py.

Every listener of a real `mailyard serve` gets random and mutated input: valid transcripts of
its protocol (pre- and post-authentication) with byte flips, truncations, huge lines and
literals, repeated tokens, invalid UTF-8, NUL, CR without LF, bare LF, deep nesting, shuffled
and random commands. Meanwhile `Probes` time SMTP EHLO, IMAP NOOP and a JMAP call on
connections of their own (less the time the machine kept the server's loop or the probe
waiting for a CPU, read from schedstat: another test run on the same 2 cores is not a stall of
the server), the server's RSS is sampled, and its log is read for tracebacks and
ERROR records (`LogWatch`), each traced back to the inputs sent around its time and replayed
alone to find the one that causes it (`Fuzzer.reproduce`).

Deterministic: case `n` of seed `s` is built by `random.Random(f"{s}:{n}")` alone, whatever
ran before it, so one case is replayed by its key. Every case comes from a source address of
its own in 127.0.0.0/8, so per-IP limits (failed logins, connections) never turn the fuzzer
away from the deeper states, nor the probes (127.0.0.1) away from the server.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import os
import re
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from random import Random
from typing import Any

import httpx

from tests.dnsserver import TestDNS
from tests.e2e.server import Server, wait_port

SEED_ENV, SECONDS_ENV = "MAILYARD_FUZZ_SEED", "MAILYARD_FUZZ_SECONDS"
PASSWORD = "secret-password"
PROBE, FUZZ, OTHER, PRE = ("probe@example.test", "fuzz@example.test", "fuzz2@example.test",
                           "pre@example.test")
"""The probes' account; the post-auth fuzzer's; a local recipient; the pre-auth fuzzer's
(whose logins are mutated, so failed logins never count against the others)."""
CASE_SECONDS = 8.0
"""The longest one case may take, connect to close."""
MAX_HUGE = 4 * 1024 * 1024
"""Bytes of one huge line or literal actually sent (a declared size may be far larger)."""


@dataclass(frozen=True)
class Step:
    """Bytes sent at once; `upgrade`: start TLS after them if the reply is positive."""

    data: bytes
    upgrade: bool = False


@dataclass(frozen=True)
class Target:
    name: str
    port: int
    protocol: str
    """smtp, submission, imap, pop3 or http."""
    implicit_tls: bool = False


@dataclass(frozen=True)
class Context:
    """What the transcripts need from the server: the JMAP ids of FUZZ."""

    account_id: str = "a"
    blob_id: str = "b"


@dataclass
class Case:
    target: Target
    key: str
    how: str
    steps: list[Step]
    interactive: bool = True
    """Wait (briefly) for a reply after each step; else send everything at once."""
    reset: bool = False
    """End with a TCP RST instead of a FIN."""
    source: str = "127.0.0.2"


# --------------------------------------------------------------------------- transcripts


def crlf(*lines: str | bytes) -> bytes:
    return b"".join((x.encode() if isinstance(x, str) else x) + b"\r\n" for x in lines)


def message(rng: Random, sender: str = "sender@remote.test", rcpt: str = FUZZ) -> bytes:
    """A plausible message: one of a few shapes, some with MIME parts and encoded words."""
    subject = rng.choice(["hello", "=?utf-8?q?caf=C3=A9?=", "=?iso-8859-1?Q?Fr\xf6sche?=",
                          "Re: " * rng.randint(1, 5) + "thread", "x" * rng.randint(1, 300)])
    head = [f"From: Sender <{sender}>", f"To: {rcpt}", f"Subject: {subject}",
            "Date: Sun, 29 Nov 2026 07:00:00 +0000",
            f"Message-ID: <{rng.getrandbits(48):x}@remote.test>"]
    if rng.random() < 0.5:
        body = [f"line {n} " + "word " * rng.randint(0, 12) for n in range(rng.randint(1, 30))]
        return crlf(*head, "", *body)
    b = f"b{rng.getrandbits(32):x}"
    return crlf(*head, "MIME-Version: 1.0", f'Content-Type: multipart/mixed; boundary="{b}"',
                "", f"--{b}", "Content-Type: text/plain; charset=utf-8",
                "Content-Transfer-Encoding: quoted-printable", "", "caf=C3=A9 =", "end",
                f"--{b}", 'Content-Type: application/octet-stream; name="a.bin"',
                "Content-Transfer-Encoding: base64", "",
                base64.b64encode(rng.randbytes(rng.randint(0, 300))).decode(), f"--{b}--")


def data_block(rng: Random, sender: str, rcpt: str) -> bytes:
    """The DATA payload, dot-stuffed, with the end-of-data line."""
    raw = message(rng, sender, rcpt).replace(b"\r\n.", b"\r\n..")
    return raw + b".\r\n"


def plain(user: str, password: str = PASSWORD) -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def smtp_steps(rng: Random, target: Target, auth: bool) -> tuple[list[Step], list[Step]]:
    """(an unmutated prefix, the mutable rest) of an SMTP or submission transcript."""
    submission = target.protocol == "submission"
    prefix: list[Step] = []
    rest: list[Step] = [Step(crlf(rng.choice(["EHLO client.remote.test", "HELO client.test"])))]
    if not target.implicit_tls and rng.random() < 0.4:
        rest += [Step(crlf("STARTTLS"), upgrade=True), Step(crlf("EHLO client.remote.test"))]
    sender, rcpt = "sender@remote.test", FUZZ
    if submission:
        user = FUZZ if auth else PRE
        sender, rcpt = user, rng.choice([OTHER, FUZZ, "someone@elsewhere.test"])
        rest.append(Step(crlf(rng.choice([f"AUTH PLAIN {plain(user)}", "AUTH PLAIN"]))))
        if rest[-1].data == b"AUTH PLAIN\r\n":
            rest.append(Step(crlf(plain(user))))
        if auth:
            prefix, rest = rest, []
    params = rng.choice(["", " SIZE=1000", " BODY=8BITMIME", " SMTPUTF8", " RET=HDRS"])
    rest += [Step(crlf(f"MAIL FROM:<{sender}>{params}"))]
    rest += [Step(crlf(f"RCPT TO:<{r}>")) for r in [rcpt, *rng.sample(
        [OTHER, "nobody@example.test", "x@elsewhere.test"], rng.randint(0, 2))]]
    rest += [Step(crlf("DATA")), Step(data_block(rng, sender, rcpt))]
    for _ in range(rng.randint(0, 3)):
        rest.append(Step(crlf(rng.choice(SMTP_WORDS) + rng.choice(["", " x", " <a@b>"]))))
    rest.append(Step(crlf("QUIT")))
    return prefix, rest


SMTP_WORDS = ["EHLO x", "HELO x", "MAIL FROM:<a@remote.test>", f"RCPT TO:<{FUZZ}>", "DATA",
              "RSET", "NOOP", "VRFY fuzz", "EXPN all", "HELP", "BDAT 10 LAST", "STARTTLS",
              "AUTH LOGIN", "AUTH PLAIN", "AUTH CRAM-MD5", "QUIT", "TURN", "ETRN x"]

IMAP_COMMANDS = [
    "CAPABILITY", "NOOP", "SELECT INBOX", "EXAMINE INBOX", "SELECT Trash",
    "FETCH 1:* (FLAGS UID RFC822.SIZE)", "FETCH 1 (BODY.PEEK[HEADER] BODYSTRUCTURE ENVELOPE)",
    "UID FETCH 1:* (BODY[TEXT]<0.100> BINARY.PEEK[1] INTERNALDATE)", "FETCH * BODY[1.2.MIME]",
    "SEARCH ALL", "UID SEARCH OR SUBJECT hello FROM sender SINCE 1-Jan-2020",
    "SEARCH CHARSET UTF-8 TEXT café", 'SEARCH HEADER Message-ID "x" NOT SEEN LARGER 10',
    "STORE 1 +FLAGS (\\Seen)", "UID STORE 1:* -FLAGS.SILENT (\\Flagged $Junk)",
    "STORE 1 (UNCHANGEDSINCE 5) +FLAGS (x)", "COPY 1 Trash", "MOVE 1 Archive",
    "UID MOVE 1:* INBOX", "EXPUNGE", "UID EXPUNGE 1:5", "CLOSE", "UNSELECT", "CHECK",
    "CREATE fz/a", "RENAME fz/a fz/b", "DELETE fz/b", 'LIST "" "*"', 'LIST "" "%/%"',
    'LIST (SUBSCRIBED) "" "*" RETURN (STATUS (MESSAGES UNSEEN))', 'LSUB "" "*"',
    "STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ)", "SUBSCRIBE INBOX",
    "UNSUBSCRIBE Trash", "NAMESPACE", 'ID ("name" "fuzz")', "ENABLE CONDSTORE QRESYNC",
    "ENABLE UTF8=ACCEPT", "GETQUOTAROOT INBOX", "SORT (DATE REVERSE SUBJECT) UTF-8 ALL",
    "THREAD REFERENCES UTF-8 ALL", "UID SORT (ARRIVAL) US-ASCII SEEN", "ESEARCH",
    "NOTIFY SET (SELECTED (MessageNew MessageExpunge))", "NOTIFY NONE",
    "SELECT INBOX (QRESYNC (1 1))", "FETCH 1:* (FLAGS) (CHANGEDSINCE 1)", "STARTTLS",
    "COMPRESS DEFLATE", "AUTHENTICATE PLAIN", "LOGIN a b", "LOGOUT", "IDLE",
]


def imap_append(rng: Random, tag: str) -> list[Step]:
    body = message(rng)
    plus = rng.random() < 0.5
    head = f"{tag} APPEND INBOX (\\Seen) {{{len(body)}{'+' if plus else ''}}}"
    return [Step(crlf(head) + body + b"\r\n")] if plus else [Step(crlf(head)),
                                                            Step(body + b"\r\n")]


def imap_steps(rng: Random, target: Target, auth: bool) -> tuple[list[Step], list[Step]]:
    prefix: list[Step] = []
    rest: list[Step] = []
    if not target.implicit_tls and rng.random() < 0.4:
        (prefix if auth else rest).append(Step(crlf("s STARTTLS"), upgrade=True))
    user = FUZZ if auth else PRE
    login = rng.choice([f'l LOGIN {user} "{PASSWORD}"', f"l AUTHENTICATE PLAIN {plain(user)}",
                        f"l LOGIN {{{len(user)}+}}\r\n{user} {PASSWORD}"])
    (prefix if auth else rest).append(Step(crlf(login)))
    for n in range(rng.randint(1, 12)):
        tag = f"t{n}"
        if rng.random() < 0.15:
            rest += imap_append(rng, tag)
        elif rng.random() < 0.1:
            rest += [Step(crlf(f"{tag} IDLE")), Step(crlf("DONE"))]
        else:
            rest.append(Step(crlf(f"{tag} {rng.choice(IMAP_COMMANDS)}")))
    rest.append(Step(crlf("z LOGOUT")))
    return prefix, rest


POP3_COMMANDS = ["STAT", "LIST", "LIST 1", "UIDL", "UIDL 1", "RETR 1", "TOP 1 0", "TOP 1 5",
                 "DELE 1", "RSET", "NOOP", "CAPA", "STLS", "AUTH", "AUTH PLAIN",
                 "APOP fuzz 0123456789abcdef0123456789abcdef", "LAST", "QUIT", "USER x"]


def pop3_steps(rng: Random, target: Target, auth: bool) -> tuple[list[Step], list[Step]]:
    prefix: list[Step] = []
    rest: list[Step] = []
    if not target.implicit_tls and rng.random() < 0.4:
        (prefix if auth else rest).append(Step(crlf("STLS"), upgrade=True))
    user = FUZZ if auth else PRE
    login = ([Step(crlf(f"USER {user}")), Step(crlf(f"PASS {PASSWORD}"))]
             if rng.random() < 0.5 else [Step(crlf(f"AUTH PLAIN {plain(user)}"))])
    (prefix if auth else rest).extend(login)
    rest += [Step(crlf(rng.choice(POP3_COMMANDS))) for _ in range(rng.randint(1, 10))]
    rest.append(Step(crlf("QUIT")))
    return prefix, rest


CORE, MAIL = "urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"


def jmap_body(rng: Random, ctx: Context) -> bytes:
    acc = ctx.account_id
    calls: list[Any] = rng.choice([
        [["Mailbox/get", {"accountId": acc, "ids": None}, "0"]],
        [["Email/query", {"accountId": acc, "filter": {"text": "hello"}, "limit": 5}, "0"],
         ["Email/get", {"accountId": acc, "#ids": {"resultOf": "0", "name": "Email/query",
                                                    "path": "/ids"},
                        "fetchAllBodyValues": True}, "1"]],
        [["Email/set", {"accountId": acc, "create": {"c": {
            "mailboxIds": {}, "subject": "fz", "from": [{"name": "F", "email": FUZZ}],
            "bodyStructure": {"type": "text/plain", "partId": "1"},
            "bodyValues": {"1": {"value": "hi"}}}}}, "0"]],
        [["Core/echo", {"x": [1, {"y": "z"}]}, "0"]],
        [["Thread/get", {"accountId": acc, "ids": ["x"]}, "0"],
         ["SearchSnippet/get", {"accountId": acc, "emailIds": ["x"], "filter": {}}, "1"]],
        [["Email/import", {"accountId": acc, "emails": {"i": {
            "blobId": ctx.blob_id, "mailboxIds": {}}}}, "0"]],
        [["Email/changes", {"accountId": acc, "sinceState": "0"}, "0"]],
    ])
    return json.dumps({"using": [CORE, MAIL], "methodCalls": calls}).encode()


def http_request(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}")
    return crlf(*lines, "") + body


def ws_frame(payload: bytes, opcode: int = 1, fin: bool = True, mask: bool = True,
             length: int | None = None, rsv: int = 0) -> bytes:
    """One RFC 6455 frame, masked as a client must (`length` may lie)."""
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    m = 0x80 if mask else 0
    if n < 126:
        head += bytes([m | n])
    elif n < 65536:
        head += bytes([m | 126]) + struct.pack("!H", n)
    else:
        head += bytes([m | 127]) + struct.pack("!Q", n & (2**64 - 1))
    if not mask:
        return head + payload
    key = b"\x12\x34\x56\x78"
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def http_steps(rng: Random, target: Target, auth: bool, ctx: Context
               ) -> tuple[list[Step], list[Step]]:
    """Requests on one connection (each its own step); a WebSocket session now and then."""
    basic = base64.b64encode(f"{FUZZ}:{PASSWORD}".encode()).decode()
    creds = {"Authorization": f"Basic {basic}"} if auth else {}
    acc = ctx.account_id
    if rng.random() < 0.2:
        key = base64.b64encode(rng.randbytes(16)).decode()
        steps = [Step(http_request("GET", "/jmap/ws", {
            **creds, "Upgrade": "websocket", "Connection": "Upgrade",
            "Sec-WebSocket-Key": key, "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Protocol": "jmap"}))]
        for n in range(rng.randint(1, 6)):
            request = json.loads(jmap_body(rng, ctx))
            request.update({"@type": "Request", "id": f"r{n}"})
            payload = rng.choice([json.dumps(request).encode(),
                                  b'{"@type":"WebSocketPushEnable","dataTypes":null}',
                                  b'{"@type":"WebSocketPushDisable"}'])
            steps.append(Step(ws_frame(payload)))
        steps.append(Step(rng.choice([ws_frame(b"\x03\xe8", opcode=8), ws_frame(b"p", 9)])))
        return [], steps
    steps = []
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(9)
        if kind <= 2:
            request = http_request("POST", "/jmap/api", {
                **creds, "Content-Type": "application/json"}, jmap_body(rng, ctx))
        elif kind == 3:
            request = http_request("POST", f"/jmap/upload/{acc}/", {
                **creds, "Content-Type": rng.choice(["message/rfc822", "image/png"])},
                message(rng))
        elif kind == 4:
            request = http_request("GET", f"/jmap/download/{acc}/{ctx.blob_id}/m.eml"
                                   "?accept=message/rfc822", creds)
        elif kind == 5:
            request = http_request("GET", rng.choice(["/jmap/session", "/.well-known/jmap"]),
                                   creds)
        elif kind == 6:
            request = http_request("GET", rng.choice(["/metrics", "/healthz", "/readyz"]), {})
        elif kind == 7:
            request = http_request("GET", "/jmap/eventsource?types=*&closeafter=state&ping=0",
                                   {**creds, "Accept": "text/event-stream"})
        else:  # the webmail's paths (and whatever answers there today)
            request = http_request(rng.choice(["GET", "HEAD", "POST", "OPTIONS"]), rng.choice(
                ["/", "/webmail/", "/webmail/index.html", "/static/app.js", "/login",
                 "/favicon.ico", "/jmap/", "/jmap/api"]), creds)
        steps.append(Step(request))
    return [], steps


# --------------------------------------------------------------------------- mutations

BAD_UTF8 = [b"\xff", b"\xfe\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80",
            b"\xe2\x82", b"\x80"]
TOKENS = [b"(", b"[", b"{", b"<", b'"', b"\\", b"*", b"%", b"1,", b"1:*,", b"BODY[] ", b"NOT ",
          b"=?utf-8?q?a?= ", b"\r\n ", b"@a,", b"<>", b" ", b"{1}", b"%00", b"\t", b"."]


def _pick(rng: Random, steps: list[Step]) -> int:
    return rng.randrange(len(steps))


def _replace(steps: list[Step], i: int, data: bytes) -> None:
    steps[i] = Step(data, steps[i].upgrade)


def m_flip(rng: Random, steps: list[Step], protocol: str) -> str:
    i = _pick(rng, steps)
    data = bytearray(steps[i].data)
    for _ in range(rng.randint(1, 8)):
        if data:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    _replace(steps, i, bytes(data))
    return f"flip@{i}"


def m_truncate(rng: Random, steps: list[Step], protocol: str) -> str:
    i = _pick(rng, steps)
    cut = rng.randrange(len(steps[i].data) + 1)
    del steps[i + 1:]
    _replace(steps, i, steps[i].data[:cut])
    return f"truncate@{i}:{cut}"


def m_huge_line(rng: Random, steps: list[Step], protocol: str) -> str:
    size = rng.choice([1001, 8193, 65537, 1 << 20, MAX_HUGE])
    token = rng.choice([*TOKENS, b"A"])
    line = (token * (size // len(token) + 1))[:size]
    i = _pick(rng, steps)
    head = steps[i].data.rstrip(b"\r\n")
    ending = rng.choice([b"\r\n", b"", b"\n"])
    _replace(steps, i, head + b" " + line + ending)
    return f"huge-line@{i}:{size}"


def m_huge_literal(rng: Random, steps: list[Step], protocol: str) -> str:
    """A literal (IMAP), a DATA block (SMTP), a body (HTTP) far larger than what follows."""
    declared = rng.choice([4097, 70000, 36_700_160, 36_700_161, 2**31, 2**63, 10**30])
    sent = min(declared, rng.choice([0, 100, 65536, 1 << 20, MAX_HUGE]))
    filler = rng.choice([b"x", b"\r\n", b"a\r\n", b"\x00"]) * sent
    i = _pick(rng, steps)
    if protocol == "imap":
        data = crlf(f"h APPEND INBOX {{{declared}{rng.choice(['', '+'])}}}") + filler[:sent]
        steps.insert(i, Step(data))
    elif protocol == "http":
        steps.insert(i, Step(crlf("POST /jmap/upload/x/ HTTP/1.1", "Host: 127.0.0.1",
                                  f"Content-Length: {declared}", "") + filler))
    else:
        steps[i:i] = [Step(crlf("DATA")), Step(crlf("Subject: x") + filler + b"\r\n.\r\n")]
    return f"huge-literal@{i}:{declared}/{sent}"


def m_fold(rng: Random, steps: list[Step], protocol: str) -> str:
    """One header folded over many lines (the message parsers' worst case)."""
    lines = rng.choice([100, 2000, 16000])
    header = b"Subject: a" + b"\r\n b" * lines + b"\r\n"
    i = _pick(rng, steps)
    if protocol in ("smtp", "submission"):
        steps[i:i] = [Step(crlf("DATA")), Step(header + b"\r\nbody\r\n.\r\n")]
    elif protocol == "imap":
        body = header + b"\r\nbody\r\n"
        steps.insert(i, Step(crlf(f"f APPEND INBOX {{{len(body)}+}}") + body + b"\r\n"))
    else:
        steps.insert(i, Step(crlf("GET /jmap/session HTTP/1.1", "Host: 127.0.0.1") + header
                             + b"\r\n"))
    return f"fold@{i}:{lines}"


def m_repeat(rng: Random, steps: list[Step], protocol: str) -> str:
    i = _pick(rng, steps)
    data = steps[i].data
    token = rng.choice(TOKENS)
    count = rng.choice([10, 1000, 100_000])
    at = rng.randrange(len(data) + 1)
    _replace(steps, i, data[:at] + token * count + data[at:])
    return f"repeat@{i}:{token!r}x{count}"


def m_insert(rng: Random, steps: list[Step], protocol: str) -> str:
    i = _pick(rng, steps)
    data = steps[i].data
    what = rng.choice([rng.choice(BAD_UTF8), b"\x00", b"\r", b"\n", rng.randbytes(4)])
    at = rng.randrange(len(data) + 1)
    _replace(steps, i, data[:at] + what + data[at:])
    return f"insert@{i}:{what!r}"


def m_line_ends(rng: Random, steps: list[Step], protocol: str) -> str:
    i = _pick(rng, steps)
    ending = rng.choice([b"\r", b"\n", b"\r\r\n", b"\n\r", b""])
    _replace(steps, i, steps[i].data.replace(b"\r\n", ending))
    return f"line-ends@{i}:{ending!r}"


def m_nesting(rng: Random, steps: list[Step], protocol: str) -> str:
    depth = rng.choice([100, 1000, 50_000])
    if protocol == "imap":
        data = crlf(rng.choice(["n SEARCH ", "n FETCH 1 ", "n STORE 1 FLAGS "]).encode()
                    + b"(" * depth + b"ALL" + b")" * depth)
    elif protocol == "http":
        body = (b'{"using":[],"methodCalls":[["Core/echo",' + b"[" * depth + b"]" * depth
                + b',"0"]]}')
        data = http_request("POST", "/jmap/api", {"Content-Type": "application/json"}, body)
    elif protocol == "pop3":
        data = crlf(b"TOP " + b"(" * depth)
    else:
        data = crlf(b"MAIL FROM:<" + b"@a," * depth + b"x@y>")
    i = _pick(rng, steps)
    steps.insert(i, Step(data))
    return f"nesting@{i}:{depth}"


def m_shuffle(rng: Random, steps: list[Step], protocol: str) -> str:
    i, j = _pick(rng, steps), _pick(rng, steps)
    steps[i], steps[j] = steps[j], steps[i]
    return f"swap@{i},{j}"


def m_duplicate(rng: Random, steps: list[Step], protocol: str) -> str:
    i = _pick(rng, steps)
    steps[i:i] = [steps[i]] * rng.choice([2, 10, 100])
    return f"duplicate@{i}"


def m_drop(rng: Random, steps: list[Step], protocol: str) -> str:
    i = _pick(rng, steps)
    if len(steps) > 1:
        del steps[i]
    return f"drop@{i}"


def m_split(rng: Random, steps: list[Step], protocol: str) -> str:
    """One step sent in pieces: the server must reassemble what TCP splits."""
    i = _pick(rng, steps)
    data = steps[i].data
    cuts = sorted(rng.randrange(len(data) + 1) for _ in range(rng.randint(1, 4)))
    parts = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    steps[i:i + 1] = [Step(p) for p in parts if p]
    return f"split@{i}"


def m_http(rng: Random, steps: list[Step], protocol: str) -> str:
    """HTTP's own odd corners: header and framing abuse."""
    i = _pick(rng, steps)
    data = steps[i].data
    head, sep, body = data.partition(b"\r\n\r\n")
    choice = rng.randrange(8)
    if choice == 0:  # non-ASCII and broken Basic credentials
        head += b"\r\nAuthorization: Basic " + rng.choice([
            base64.b64encode("ü\xe9:p".encode("latin-1")), base64.b64encode(b"\xff\xfe:\x00"),
            b"Zm9v", b"\xc3\xa9\xff", b"=" * 50, base64.b64encode(b"nocolon")])
    elif choice == 1:
        head += b"\r\nX-Big: " + b"a" * rng.choice([8000, 70000, 1 << 20])
    elif choice == 2:
        head += b"".join(b"\r\nX-%d: v" % n for n in range(rng.choice([100, 5000])))
    elif choice == 3:
        head += b"\r\nContent-Length: " + rng.choice([b"-1", b"99999999999999999999", b"1 2",
                                                       b"0x10", b"\xd9\xa3"])
    elif choice == 4:
        head += b"\r\nTransfer-Encoding: chunked"
        body = rng.choice([b"fffffffffffffffff\r\nx", b"zz\r\n", b"5\r\nab\r\n0\r\n\r\n",
                           b"1;" + b"x" * 70000 + b"\r\na\r\n0\r\n\r\n"])
    elif choice == 5:
        head = rng.choice([b"PRI * HTTP/2.0\r\n\r\nSM", b"GET /\xff\xfe HTTP/1.1",
                           b"GET " + b"/a" * 40000 + b" HTTP/1.1", b"GET / HTTP/9.9",
                           b"G\x00T / HTTP/1.1", b"GET /jmap/api?" + b"a=1&" * 20000 +
                           b" HTTP/1.1"]) + b"\r\nHost: x"
    elif choice == 6:  # a WebSocket frame with a lying or odd header
        data = ws_frame(rng.randbytes(rng.randint(0, 64)), opcode=rng.choice([0, 1, 2, 3, 8,
                        9, 10, 15]), fin=rng.random() < 0.5, mask=rng.random() < 0.8,
                        length=rng.choice([None, 0, 125, 126, 65535, 2**63 - 1, 2**64 - 1]),
                        rsv=rng.randrange(8))
        steps.insert(i, Step(data))
        return f"ws-frame@{i}"
    else:  # a text frame that is not UTF-8, or not JSON
        steps.insert(i, Step(ws_frame(rng.choice([b"\xff\xfe{", b"{" * 5000, b"[]", b"null",
                                                   b'{"@type":"Request"}']))))
        return f"ws-text@{i}"
    _replace(steps, i, head + sep + body)
    return f"http{choice}@{i}"


MUTATIONS: list[Callable[[Random, list[Step], str], str]] = [
    m_flip, m_flip, m_truncate, m_huge_line, m_huge_literal, m_fold, m_repeat, m_insert,
    m_insert, m_line_ends, m_nesting, m_shuffle, m_duplicate, m_drop, m_split]


def random_words(rng: Random, protocol: str) -> list[Step]:
    """A random command sequence from the protocol's words with random arguments."""
    words = {"smtp": SMTP_WORDS, "submission": SMTP_WORDS, "pop3": POP3_COMMANDS,
             "imap": [f"r {c}" for c in IMAP_COMMANDS],
             "http": ["GET / HTTP/1.1", "POST /jmap/api HTTP/1.1", "GET /jmap/ws HTTP/1.0"]}
    steps = []
    for _ in range(rng.randint(1, 20)):
        word = rng.choice(words[protocol]).encode()
        arg = rng.choice([b"", b" " + rng.randbytes(rng.randint(1, 20)), b" *", b" 0",
                          b" -1", b" 4294967296", b' ""', b" {5}", b" NIL", b" ()"])
        steps.append(Step(word + arg + b"\r\n" + (b"\r\n" if protocol == "http" else b"")))
    return steps


def build_case(target: Target, ctx: Context, seed: str, index: int) -> Case:
    """Case `index` of `seed` against `target`: a function of those alone."""
    rng = Random(f"{seed}:{target.name}:{index}")
    auth = rng.random() < 0.6
    kind = rng.random()
    builders = {"smtp": smtp_steps, "submission": smtp_steps, "imap": imap_steps,
                "pop3": pop3_steps}
    if target.protocol == "http":
        prefix, rest = http_steps(rng, target, auth, ctx)
    else:
        prefix, rest = builders[target.protocol](rng, target, auth)
    hows = [("post-auth" if auth else "pre-auth")]
    if kind < 0.05:
        hows.append("valid")
    elif kind < 0.15:
        rest = [Step(rng.randbytes(rng.choice([1, 16, 512, 65536])))
                for _ in range(rng.randint(1, 5))]
        hows.append("random-bytes")
    elif kind < 0.35:
        rest = random_words(rng, target.protocol)
        hows.append("random-commands")
    else:
        pool = MUTATIONS + ([m_http, m_http, m_http] if target.protocol == "http" else [])
        for _ in range(rng.randint(1, 3)):
            if not rest:
                break
            hows.append(rng.choice(pool)(rng, rest, target.protocol))
    # A source address of its own in 127.0.0.0/8 (127.0.0.1 stays the probes').
    n = index * 131 + sum(target.name.encode())
    source = f"127.{1 + n // 65025 % 250}.{n // 255 % 255}.{1 + n % 254}"
    return Case(target, f"{seed}:{target.name}:{index}", " ".join(hows), prefix + rest,
                interactive=rng.random() < 0.7, reset=rng.random() < 0.2, source=source)


# --------------------------------------------------------------------------- sending

LEAKS = [(re.compile(rb"Traceback \(most recent call"), "traceback in a reply"),
         (re.compile(rb"\n5\d\d[ -](?:\d\.\d\.\d+ )?Error: \("), "exception text in an SMTP reply"),
         (re.compile(rb"^5\d\d[ -](?:\d\.\d\.\d+ )?Error: \("), "exception text in an SMTP reply"),
         (re.compile(rb"HTTP/1\.[01] 500 "), "HTTP 500"),
         (re.compile(rb'"serverFail"'), "JMAP serverFail"),
         (re.compile(rb"\[SERVERBUG\]"), "IMAP SERVERBUG")]
POSITIVE = re.compile(rb"(?m)^(220 |s OK|\+OK)")


def client_tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the server's self-signed certificate
    return ctx


@dataclass
class Outcome:
    case: Case
    started: float
    ended: float = 0.0
    sent: int = 0
    received: int = 0
    error: str = ""
    leaks: list[str] = field(default_factory=list)
    tail: bytes = b""


async def _read(reader: asyncio.StreamReader, out: Outcome, arrived: asyncio.Event) -> None:
    with contextlib.suppress(Exception):
        while True:
            data = await reader.read(65536)
            if not data:
                break
            out.received += len(data)
            out.tail = (out.tail + data)[-2048:]
            for pattern, what in LEAKS:
                if what not in out.leaks and pattern.search(data):
                    out.leaks.append(what)
            arrived.set()


async def _wait_reply(arrived: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(arrived.wait(), seconds)


async def send_case(case: Case, host: str = "127.0.0.1") -> Outcome:
    """Send `case`, reading whatever comes back; never raises for what the server does."""
    out = Outcome(case, time.time())
    tls = client_tls()
    writer: asyncio.StreamWriter | None = None
    reading: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(CASE_SECONDS):
            reader, writer = await asyncio.open_connection(
                host, case.target.port, ssl=tls if case.target.implicit_tls else None,
                local_addr=(case.source, 0))
            arrived = asyncio.Event()
            reading = asyncio.create_task(_read(reader, out, arrived))
            await _wait_reply(arrived, 0.5 if case.target.protocol != "http" else 0)
            for n, step in enumerate(case.steps):
                arrived.clear()
                before = out.received
                writer.write(step.data)
                await writer.drain()
                out.sent += len(step.data)
                if step.upgrade:
                    await _wait_reply(arrived, 1.0)
                    new = out.received - before
                    if not new or not POSITIVE.search(out.tail[-new:]):
                        continue
                    await writer.start_tls(tls)
                elif case.interactive and n < 20:  # then the rest at once
                    await _wait_reply(arrived, 0.1)
            await _wait_reply(arrived, 0.2)
    except TimeoutError:
        out.error = "timeout"
    except (OSError, ssl.SSLError, ConnectionError, EOFError, asyncio.IncompleteReadError) as e:
        out.error = type(e).__name__
    except (RuntimeError, ValueError, AttributeError) as e:  # asyncio's, on a torn transport
        out.error = f"client {type(e).__name__}"
    finally:
        if writer is not None:
            if case.reset:
                sock = writer.get_extra_info("socket")
                with contextlib.suppress(OSError, AttributeError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
            else:
                writer.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(writer.wait_closed(), 1.0)
        if reading is not None:
            reading.cancel()
            with contextlib.suppress(BaseException):
                await reading
        out.ended = time.time()
    return out


@dataclass
class Figures:
    """Per listener: cases, bytes, how the connections ended."""

    cases: int = 0
    sent: int = 0
    received: int = 0
    errors: dict[str, int] = field(default_factory=dict)


class Fuzzer:
    """Cases round-robin over the targets, `concurrency` at a time, until a deadline."""

    def __init__(self, targets: list[Target], ctx: Context, seed: str,
                 concurrency: int = 4) -> None:
        self.targets, self.ctx, self.seed, self.concurrency = targets, ctx, seed, concurrency
        self.outcomes: list[Outcome] = []
        self.figures = {t.name: Figures() for t in targets}
        self.active: dict[str, float] = {}
        self._next = 0
        self.stop = threading.Event()

    def case(self, n: int) -> Case:
        return build_case(self.targets[n % len(self.targets)], self.ctx, self.seed,
                          n // len(self.targets))

    async def _worker(self, deadline: float) -> None:
        while time.monotonic() < deadline and not self.stop.is_set():
            case = self.case(self._next)
            self._next += 1
            self.active[case.key] = time.time()
            out = await send_case(case)
            del self.active[case.key]
            out.tail = out.tail[-300:]
            out.case.steps = [] if not out.leaks else out.case.steps  # keep memory flat
            self.outcomes.append(out)
            f = self.figures[case.target.name]
            f.cases += 1
            f.sent += out.sent
            f.received += out.received
            f.errors[out.error or "ok"] = f.errors.get(out.error or "ok", 0) + 1

    async def run(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(self._worker(deadline) for _ in range(self.concurrency)))

    def run_in_thread(self, seconds: float) -> threading.Thread:
        thread = threading.Thread(target=lambda: asyncio.run(self.run(seconds)), daemon=True)
        thread.start()
        return thread

    def rebuild(self, key: str) -> Case:
        """The case of `key` ("seed:target:index"), built again."""
        seed, name, index = key.rsplit(":", 2)
        target = next(t for t in self.targets if t.name == name)
        return build_case(target, self.ctx, seed, int(index))


# --------------------------------------------------------------------------- the server

def start_server(root: Path, dns: TestDNS) -> tuple[Server, Context, list[Target]]:
    """A server with every listener, limits high enough that the fuzzer is never told to wait
    (the per-IP ones are met by a source address per case), the accounts, some mail and one
    uploaded blob for the transcripts."""
    srv = Server(root, dns={"nameservers": [dns.address], "timeout": 2.0},
                 limits={"messages_per_ip_per_minute": 1_000_000},
                 submission={"messages_per_hour": 1_000_000})
    for user in (PROBE, FUZZ, OTHER, PRE):
        srv.add_user(user, PASSWORD)
    srv.start()
    wait_port(srv.http_port)
    for n in range(3):
        with socket.create_connection(("127.0.0.1", srv.smtp_port), timeout=30) as s:
            f = s.makefile("rwb")
            f.readline()
            for line in (b"EHLO setup.test", b"MAIL FROM:<setup@remote.test>",
                         f"RCPT TO:<{FUZZ}>".encode(), b"DATA"):
                f.write(line + b"\r\n")
                f.flush()
                while f.readline()[3:4] == b"-":
                    pass
            f.write(data_block(Random(n), "setup@remote.test", FUZZ) + b"QUIT\r\n")
            f.flush()
            f.readline()
    with httpx.Client(base_url=f"https://127.0.0.1:{srv.http_port}", verify=False,
                      auth=(FUZZ, PASSWORD), timeout=30) as http:
        account = http.get("/jmap/session").json()["primaryAccounts"][MAIL]
        blob = http.post(f"/jmap/upload/{account}/", content=message(Random(0)),
                         headers={"Content-Type": "message/rfc822"}).json()["blobId"]
    targets = [
        Target("smtp", srv.smtp_port, "smtp"),
        Target("submission", srv.submission_port, "submission"),
        Target("submissions", srv.submissions_port, "submission", implicit_tls=True),
        Target("imap", srv.imap_port, "imap"),
        Target("imaps", srv.imaps_port, "imap", implicit_tls=True),
        Target("pop3", srv.pop3_port, "pop3"),
        Target("pop3s", srv.pop3s_port, "pop3", implicit_tls=True),
        Target("http", srv.http_port, "http", implicit_tls=True),
    ]
    return srv, Context(account, blob), targets


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def runqueue_seconds(pid: int, tid: int) -> float:
    """How long thread `tid` of process `pid` has been runnable but waiting for a CPU (the
    second field of /proc/PID/task/TID/schedstat, in ns); 0 where the kernel keeps none."""
    try:
        return int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def thread_waits(pid: int) -> dict[int, float]:
    """`runqueue_seconds` of every thread of process `pid`."""
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return {}
    return {tid: runqueue_seconds(pid, tid) for tid in tids}


# --------------------------------------------------------------------------- probes

class Probes:
    """SMTP EHLO, IMAP NOOP and a JMAP Mailbox/get, each on its own kept-open connection
    from 127.0.0.1, timed in seconds (a dead connection is opened again, untimed)."""

    NAMES = ("smtp-ehlo", "imap-noop", "jmap-call")

    def __init__(self, srv: Server) -> None:
        self.srv = srv
        self._smtp: Any = None
        self._imap: Any = None
        self.http = httpx.Client(base_url=f"https://127.0.0.1:{srv.http_port}", verify=False,
                                 auth=(PROBE, PASSWORD), timeout=60)
        self.account = self.http.get("/jmap/session").json()["primaryAccounts"][MAIL]
        self.reconnects = 0
        assert srv.process is not None
        self.pid = srv.process.pid

    def _smtp_file(self) -> Any:
        if self._smtp is None:
            sock = socket.create_connection(("127.0.0.1", self.srv.smtp_port), timeout=60)
            self._smtp = sock.makefile("rwb")
            self._smtp.readline()
        return self._smtp

    def ehlo(self) -> float:
        f = self._smtp_file()
        started = time.perf_counter()
        f.write(b"EHLO probe.test\r\n")
        f.flush()
        while True:
            line = f.readline()
            if not line:
                raise ConnectionError("SMTP probe connection closed")
            if line[3:4] == b" ":
                break
        took = time.perf_counter() - started
        if not line.startswith(b"250"):
            raise AssertionError(f"EHLO answered {line!r}")
        return took

    def noop(self) -> float:
        import imaplib

        if self._imap is None:
            self._imap = imaplib.IMAP4("127.0.0.1", self.srv.imap_port, timeout=60)
            self._imap.login(PROBE, PASSWORD)
        started = time.perf_counter()
        typ, _ = self._imap.noop()
        took = time.perf_counter() - started
        if typ != "OK":
            raise AssertionError(f"NOOP answered {typ}")
        return took

    def jmap(self) -> float:
        body = {"using": [CORE, MAIL], "methodCalls": [
            ["Mailbox/get", {"accountId": self.account, "ids": None,
                             "properties": ["name"]}, "0"]]}
        started = time.perf_counter()
        response = self.http.post("/jmap/api", json=body)
        took = time.perf_counter() - started
        if response.status_code != 200 or "Mailbox/get" not in response.text:
            raise AssertionError(f"JMAP probe answered {response.status_code}")
        return took

    def one(self, name: str) -> float:
        """One probe; a broken connection is opened again and the probe retried once."""
        fn = {"smtp-ehlo": self.ehlo, "imap-noop": self.noop, "jmap-call": self.jmap}[name]
        try:
            return fn()
        except (OSError, ConnectionError, EOFError):
            self.reconnects += 1
            self.close_connections()
            return fn()

    def timed(self, name: str) -> tuple[float, float]:
        """One probe's seconds, and how long of them the machine kept one of the server's
        threads (the event loop, or the SQLite reader or TLS thread the request needed) or
        this probing thread runnable but waiting for a CPU: on a machine busy with other work
        (2 cores, other test runs) that wait is the scheduler's, not a stall of the server.
        The largest of those waits counts (they may overlap), never more than the probe."""
        me = threading.get_native_id()
        server0, mine0 = thread_waits(self.pid), runqueue_seconds(os.getpid(), me)
        took = self.one(name)
        server = thread_waits(self.pid)
        stalled = max([runqueue_seconds(os.getpid(), me) - mine0, 0.0]
                      + [w - server0.get(tid, 0.0) for tid, w in server.items()])
        return took, min(stalled, took)

    def close_connections(self) -> None:
        for conn in (self._smtp,):
            with contextlib.suppress(Exception):
                conn.close()
        with contextlib.suppress(Exception):
            self._imap.shutdown()
        self._smtp = self._imap = None

    def close(self) -> None:
        self.close_connections()
        self.http.close()


@dataclass
class Sample:
    at: float
    name: str
    seconds: float
    active: list[str]
    error: str = ""
    waited: float = 0.0
    """Of `seconds`, how long the server's loop or the probe waited for a CPU (Probes.timed)."""

    @property
    def served(self) -> float:
        """The server's own share of the probe's time: what the 250 ms bound is about."""
        return self.seconds - self.waited


def probe_round(probes: Probes, fuzzer: Fuzzer | None) -> list[Sample]:
    """Each probe once; one that fails counts as infinitely slow, with its error."""
    samples = []
    for name in Probes.NAMES:
        active = list(fuzzer.active) if fuzzer else []
        started = time.time()
        try:
            took, waited = probes.timed(name)
            samples.append(Sample(started, name, took, active, waited=waited))
        except Exception as e:  # any failure of a probe is the finding
            probes.close_connections()
            samples.append(Sample(started, name, float("inf"), active, f"{e!r}"[:300]))
    return samples


def baseline(probes: Probes, rounds: int = 20) -> dict[str, float]:
    """The 90th percentile of each probe with nothing else sent to the server."""
    seen: dict[str, list[float]] = {n: [] for n in Probes.NAMES}
    for _ in range(rounds):
        for s in probe_round(probes, None):
            seen[s.name].append(s.served)
        time.sleep(0.05)
    return {n: percentile(v, 0.9) for n, v in seen.items()}


# --------------------------------------------------------------------------- the log

LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) (\w+) (\S+) ?(.*)$")


@dataclass
class LogRecord:
    at: float
    level: str
    logger: str
    text: str

    @property
    def signature(self) -> str:
        """What tells one failure from another: the message and the exception's last line."""
        lines = self.text.splitlines() or [""]
        last = next((x for x in reversed(lines) if x and not x.startswith(" ")), "")
        first = re.sub(r"\('[\d.:a-f]+', \d+\)|\d+", "N", lines[0][:120])
        return f"{self.logger}: {first} | {last[:160]}"


class LogWatch:
    """The server's log from an offset on: the records that are ERROR or worse and every
    traceback (inside a record or printed raw)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size

    def mark(self) -> None:
        self.offset = self.path.stat().st_size

    def bad(self) -> list[LogRecord]:
        with self.path.open("rb") as f:
            f.seek(self.offset)
            text = f.read().decode("utf-8", "replace")
        records: list[LogRecord] = []
        for line in text.splitlines():
            m = LOG_LINE.match(line)
            if m:
                at = time.mktime(time.strptime(m[1], "%Y-%m-%d %H:%M:%S")) + int(m[2]) / 1000
                records.append(LogRecord(at, m[3], m[4], m[5]))
            elif records:
                records[-1].text += "\n" + line
            else:
                records.append(LogRecord(time.time(), "RAW", "stderr", line))
        return [r for r in records
                if r.level in ("ERROR", "CRITICAL") or "Traceback" in r.text]


# --------------------------------------------------------------------------- findings

def show(data: bytes, limit: int = 240) -> str:
    if len(data) <= limit:
        return repr(data)
    return f"{data[:limit * 2 // 3]!r} ...({len(data)} bytes)... {data[-limit // 3:]!r}"


def show_case(case: Case, limit: int = 12) -> str:
    steps = case.steps
    lines = [f"  {'[starttls] ' if s.upgrade else ''}{show(s.data)}" for s in steps[:limit]]
    if len(steps) > limit:
        lines.append(f"  ... {len(steps) - limit} more steps")
    mode = ("interactive" if case.interactive else "all at once") + (", RST" if case.reset
                                                                     else "")
    return (f"{case.target.name} (port {case.target.port}) case {case.key} [{case.how}; "
            f"{mode}; from {case.source}]:\n" + "\n".join(lines))


def suspects(fuzzer: Fuzzer, at: float, before: float = 1.0, after: float = 3.0
             ) -> list[str]:
    """Keys of the cases that were open around `at`, latest first."""
    found = [o.case.key for o in fuzzer.outcomes if o.started - before <= at <= o.ended + after]
    return list(reversed(found))


def reproduce(fuzzer: Fuzzer, watch: LogWatch, keys: list[str], budget: float
              ) -> tuple[Case, list[LogRecord]] | None:
    """The first of `keys` that, sent alone, makes the log report a failure again."""
    deadline = time.monotonic() + budget
    for key in keys:
        if time.monotonic() > deadline:
            break
        case = fuzzer.rebuild(key)
        watch.mark()
        asyncio.run(send_case(case))
        time.sleep(0.5)
        found = watch.bad()
        if found:
            return case, found
    return None


def minimize(case: Case, still_fails: Callable[[Case], bool], budget: float) -> Case:
    """Fewer steps, then shorter ones, while `still_fails`: a smaller reproducer."""
    deadline = time.monotonic() + budget
    i = 0
    while i < len(case.steps) and time.monotonic() < deadline and len(case.steps) > 1:
        smaller = Case(case.target, case.key, case.how, case.steps[:i] + case.steps[i + 1:],
                       case.interactive, case.reset, case.source)
        if still_fails(smaller):
            case = smaller
        else:
            i += 1
    return case


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else 0.0


@contextlib.contextmanager
def fuzz_server(root: Path) -> Iterator[tuple[Server, Context, list[Target]]]:
    with TestDNS() as dns:
        srv, ctx, targets = start_server(root, dns)
        try:
            yield srv, ctx, targets
        finally:
            srv.stop()


def env_seed() -> str:
    return os.environ.get(SEED_ENV) or str(int(time.time()) % 100000)


# --------------------------------------------------------------------------- a campaign

LOGGER_PROTOCOLS = [("uvicorn", "http"), ("jmap", "http"), ("smtp", "s"), ("mail.log", "s"),
                    ("submission", "submission"), ("imap", "imap"), ("pop3", "pop3")]
"""Which listener's cases to replay first for a log record naming these words."""
RSS_MARGIN_KIB = 150 * 1024
"""How far the server's RSS may grow above its baseline while fuzzed."""


@dataclass
class Finding:
    kind: str
    """died, not-ready, slow-probe, rss, log, leak."""
    summary: str
    detail: str = ""

    def __str__(self) -> str:
        return f"[{self.kind}] {self.summary}" + (f"\n{self.detail}" if self.detail else "")


class Campaign:
    """One fuzzing run against a started server: baseline, fuzz with probes, analysis."""

    def __init__(self, srv: Server, ctx: Context, targets: list[Target], seed: str,
                 concurrency: int = 16) -> None:
        assert srv.process is not None
        self.srv, self.pid, self.seed = srv, srv.process.pid, seed
        self.fuzzer = Fuzzer(targets, ctx, seed, concurrency)
        self.probes = Probes(srv)
        self.watch = LogWatch(srv.log_path)
        self.samples: list[Sample] = []
        self.outliers: list[str] = []
        """Lone slow probes no input replays (see `_slow`): reported, not findings."""
        self.rss: list[tuple[float, int]] = []
        self.base: dict[str, float] = {}
        self.limits: dict[str, float] = {}
        self.rss0 = 0
        self.seconds = self.cpu = 0.0

    def limit(self, name: str) -> float:
        return self.limits[name]

    def run(self, seconds: float) -> None:
        self.base = baseline(self.probes)
        self.limits = {n: max(0.25, 5 * b) for n, b in self.base.items()}
        self.rss0 = rss_kib(self.pid)
        self.rss.append((time.time(), self.rss0))
        self.watch.mark()
        started, cpu = time.monotonic(), cpu_seconds(self.pid)
        thread = self.fuzzer.run_in_thread(seconds)
        while thread.is_alive():
            if not self.alive():
                self.fuzzer.stop.set()
                break
            self.samples += probe_round(self.probes, self.fuzzer)
            with contextlib.suppress(OSError, RuntimeError):
                self.rss.append((time.time(), rss_kib(self.pid)))
            time.sleep(0.1)
        thread.join(CASE_SECONDS * 3)
        self.seconds = time.monotonic() - started
        with contextlib.suppress(OSError):
            self.cpu = cpu_seconds(self.pid) - cpu

    def alive(self) -> bool:
        return self.srv.process is not None and self.srv.process.poll() is None

    # ------------------------------------------------------------- analysis

    def analyse(self, replay_budget: float = 60.0) -> list[Finding]:
        """Everything that went wrong, each with the inputs behind it (replayed alone to
        find the one that does it when the log or a reply tells which)."""
        deadline = time.monotonic() + replay_budget
        findings: list[Finding] = []
        if not self.alive():
            assert self.srv.process is not None
            tail = self.srv.log_path.read_text(errors="replace").splitlines()[-30:]
            return [Finding("died", f"the server exited ({self.srv.process.returncode}) "
                            f"while fuzzed; cases open: {sorted(self.fuzzer.active)}",
                            "\n".join(tail))]
        bad_log = self.watch.bad()  # before any replay adds to the log
        findings += self._after()
        findings += self._slow(deadline)
        findings += self._memory()
        findings += self._log(bad_log, deadline)
        findings += self._leaks(deadline)
        return findings

    def _after(self) -> list[Finding]:
        """The server still answers every probe and /readyz once the fuzzing is over."""
        found = []
        for s in probe_round(self.probes, None):
            if s.error:
                found.append(Finding("not-ready", f"{s.name} fails after fuzzing: {s.error}"))
        ready = self.probes.http.get("/readyz")
        if ready.status_code != 200:
            found.append(Finding("not-ready", f"/readyz answers {ready.status_code} after "
                                 f"fuzzing: {ready.text[:300]}"))
        return found

    def _cases(self, keys: list[str], limit: int = 4) -> str:
        return "\n".join(show_case(self.fuzzer.rebuild(k), 4) for k in keys[:limit])

    def _slow(self, deadline: float) -> list[Finding]:
        found = []
        for name in Probes.NAMES:
            over = [s for s in self.samples if s.name == name and s.served > self.limit(name)]
            if not over:
                continue
            worst = max(over, key=lambda s: s.served)
            # What was open then, and what ended shortly before (the pipeline parses a message
            # after its 250): the largest inputs first.
            keys = sorted(set(suspects(self.fuzzer, worst.at, before=0.0, after=5.0))
                          | set(worst.active), key=self._sent, reverse=True)
            culprit = self._pin_slow(name, keys, deadline)
            if culprit is None and len(over) == 1 and not worst.error:
                # One probe over the bound, once, that no input open then makes slow again
                # when sent alone: on a busy machine (the suite's other workers) that is a
                # thread of the server descheduled in a way schedstat does not show. Shown
                # in the figures; a stall an input causes repeats, or replays.
                self.outliers.append(f"{name}: one probe of {worst.seconds * 1000:.0f} ms"
                                     " (not reproduced alone)")
                continue
            what = (f"reproduced alone by:\n{show_case(culprit)}" if culprit else
                    f"not reproduced alone; cases open meanwhile:\n{self._cases(keys)}")
            took = (f"{worst.seconds * 1000:.0f} ms, of which {worst.waited * 1000:.0f} ms"
                    " waiting for a CPU" if not worst.error else worst.error)
            found.append(Finding(
                "slow-probe", f"{name}: {len(over)} of {self.count(name)} probes over "
                f"{self.limit(name) * 1000:.0f} ms (baseline p90 "
                f"{self.base[name] * 1000:.1f} ms); worst {took}", what))
        return found

    def count(self, name: str) -> int:
        return sum(1 for s in self.samples if s.name == name)

    def _pin_slow(self, name: str, keys: list[str], deadline: float) -> Case | None:
        """The first of `keys` that, sent alone, makes the probe `name` slow again, made
        smaller while it still does."""
        for key in keys:
            if time.monotonic() > deadline:
                return None
            case = self.fuzzer.rebuild(key)
            if self._slows(name, case):
                return minimize(case, lambda c: self._slows(name, c),
                                min(20.0, max(0.0, deadline - time.monotonic())))
        return None

    def _slows(self, name: str, case: Case) -> bool:
        """Whether probe `name` goes over its limit each of two times `case` is sent alone:
        a stall an input causes repeats, while on a machine at a load of 15-20 one probe over
        the limit beside a replay can come from the scheduler alone (seed 2417119311, load
        17: a 300 KB EHLO line, which costs the server ~8 ms of CPU and is answered 500, was
        "reproduced alone" by one probe of 324 ms beside it)."""
        return self._slows_once(name, case) and self._slows_once(name, case)

    def _slows_once(self, name: str, case: Case) -> bool:
        """Whether probe `name` goes over its limit while `case` is sent alone or within 2 s
        after (what the case left the server to do once it closed)."""
        thread = threading.Thread(target=lambda: asyncio.run(send_case(case)))
        thread.start()
        until, slow = float("inf"), False
        while not slow and time.monotonic() < until:
            try:
                took, waited = self.probes.timed(name)
                slow = took - waited > self.limit(name)
            except Exception:  # a failing probe is as slow as can be
                self.probes.close_connections()
                slow = True
            if until == float("inf") and not thread.is_alive():
                until = time.monotonic() + 2.0
            time.sleep(0.02)
        thread.join()
        return slow

    def _sent(self, key: str) -> int:
        return next((o.sent for o in self.fuzzer.outcomes if o.case.key == key), 0)

    def _memory(self) -> list[Finding]:
        at, peak = max(self.rss, key=lambda x: x[1])
        if peak - self.rss0 <= RSS_MARGIN_KIB:
            return []
        keys = suspects(self.fuzzer, at, before=5.0, after=0.5)
        return [Finding("rss", f"the server's RSS reached {peak // 1024} MB, "
                        f"{(peak - self.rss0) // 1024} MB above its baseline of "
                        f"{self.rss0 // 1024} MB (bound {RSS_MARGIN_KIB // 1024} MB)",
                        f"cases open before the peak:\n{self._cases(keys)}")]

    def _log(self, records: list[LogRecord], deadline: float) -> list[Finding]:
        groups: dict[str, list[LogRecord]] = {}
        for r in records:
            groups.setdefault(r.signature, []).append(r)
        found = []
        for signature, group in groups.items():
            # The listener the logger names first (uvicorn: HTTP), then the others.
            hint = next((p for w, p in LOGGER_PROTOCOLS if w in group[0].logger + group[0].text),
                        "")
            keys = sorted(suspects(self.fuzzer, group[0].at),
                          key=lambda k: hint not in self.fuzzer.rebuild(k).target.protocol)
            kind = signature.split("|")[-1].split(":")[0].strip()
            hit = reproduce(self.fuzzer, self.watch, keys, max(0.0, deadline - time.monotonic()))
            if hit:
                case = minimize(hit[0], functools.partial(self._logs_again, kind=kind),
                                min(20.0, max(0.0, deadline - time.monotonic())))
                what = f"reproduced alone by:\n{show_case(case)}"
            else:
                what = f"not reproduced alone; cases open then:\n{self._cases(keys)}"
            found.append(Finding("log", f"{len(group)}x {signature}",
                                 f"{group[0].text[:1500]}\n{what}"))
        return found

    def _logs_again(self, case: Case, kind: str) -> bool:
        self.watch.mark()
        asyncio.run(send_case(case))
        time.sleep(0.3)
        return any(kind in r.signature for r in self.watch.bad())

    def _leaks_again(self, case: Case, leak: str) -> bool:
        return leak in asyncio.run(send_case(case)).leaks

    def _leaks(self, deadline: float) -> list[Finding]:
        first: dict[tuple[str, str], Outcome] = {}
        counts: dict[tuple[str, str], int] = {}
        for o in self.fuzzer.outcomes:
            for leak in o.leaks:
                key = (o.case.target.name, leak)
                first.setdefault(key, o)
                counts[key] = counts.get(key, 0) + 1
        found = []
        for (target, leak), o in first.items():
            case = minimize(o.case, functools.partial(self._leaks_again, leak=leak),
                            min(15.0, max(0.0, deadline - time.monotonic())))
            found.append(Finding("leak", f"{target}: {leak} ({counts[(target, leak)]} cases)",
                                 f"reply: {show(o.tail, 400)}\n{show_case(case)}"))
        return found

    # ------------------------------------------------------------- figures

    def figures(self) -> str:
        rows = ["| listener | cases | bytes sent | bytes received | connection ends |",
                "|---|---|---|---|---|"]
        for name, f in self.fuzzer.figures.items():
            ends = ", ".join(f"{k} {v}" for k, v in sorted(f.errors.items()))
            rows.append(f"| {name} | {f.cases:,} | {f.sent:,} | {f.received:,} | {ends} |")
        rows += ["", "| probe | baseline p90 | limit | samples | p50 | p99 | max | over limit |"
                 " over only waiting for a CPU |", "|---|---|---|---|---|---|---|---|---|"]
        for name in Probes.NAMES:
            mine = [s for s in self.samples if s.name == name]
            v = [s.seconds for s in mine]
            over = sum(1 for s in mine if s.served > self.limit(name))
            busy = sum(1 for s in mine if s.seconds > self.limit(name) >= s.served)
            rows.append(f"| {name} | {self.base[name] * 1000:.1f} ms | "
                        f"{self.limit(name) * 1000:.0f} ms | {len(v)} | "
                        f"{percentile(v, 0.5) * 1000:.1f} ms | {percentile(v, 0.99) * 1000:.1f} ms"
                        f" | {max(v, default=0) * 1000:.1f} ms | {over} | {busy} |")
        kib = [r for _, r in self.rss]
        rows += ["", f"RSS: baseline {self.rss0 / 1024:.0f} MB, min {min(kib) / 1024:.0f} MB, "
                 f"max {max(kib) / 1024:.0f} MB over {self.seconds:.0f} s; server CPU "
                 f"{self.cpu:.0f} s; "
                 f"{sum(f.cases for f in self.fuzzer.figures.values()):,} cases, seed "
                 f"{self.seed}"]
        rows += [f"Outlier: {o}" for o in self.outliers]
        return "\n".join(rows)
