"""A session's own EXPUNGE moves the shared mailbox view on without reading it back (issue 16's
speed: views.MailboxView.advance_own), and every session still hears exactly what happened.

The sessions of one process share one view of a mailbox. When an EXPUNGE's write took the
MODSEQ right after the view's, the view takes the UIDs it removed as they are; otherwise (another
write came between) the next session reads the change log as before. These tests watch the
wire: the expunging session, another one that asks (NOOP), one in IDLE, and a session opened
afterwards must all end with the same messages, and sequence numbers must be right in every
EXPUNGE response (highest first, RFC 3501 §7.4.1).
"""

from __future__ import annotations

import re
import threading

from tests.e2e.server import Server
from tests.e2e.transcript import Wire

USER = "alice@example.test"
PASSWORD = "secret-password"


def _command(wire: Wire, tag: str, text: str) -> list[str]:
    """Send one command; the untagged lines up to its tagged OK (anything else fails)."""
    wire.send(f"{tag} {text}\r\n".encode())
    lines: list[str] = []
    while True:
        line = wire.line()
        if line.startswith(f"{tag} "):
            assert line.startswith(f"{tag} OK"), (text, line, lines)
            return lines
        lines.append(line)


def _session(server: Server, *, select: bool = True) -> Wire:
    """Logged in, IMAP4rev2 (no \\Recent to account for), INBOX selected."""
    wire = Wire.connect(server.imap_port)
    assert wire.line().startswith("* OK")
    _command(wire, "l", f"LOGIN {USER} {PASSWORD}")
    _command(wire, "e", "ENABLE IMAP4rev2")
    if select:
        _command(wire, "s", "SELECT INBOX")
    return wire


def _append(wire: Wire, tag: str, subject: str) -> int:
    body = f"Subject: {subject}\r\n\r\n{subject}\r\n"
    wire.send(f"{tag} APPEND INBOX {{{len(body)}+}}\r\n{body}\r\n".encode())
    while True:
        line = wire.line()
        if line.startswith(f"{tag} "):
            found = re.search(r"\[APPENDUID \d+ (\d+)\]", line)
            assert line.startswith(f"{tag} OK") and found, line
            return int(found.group(1))


def _uids(wire: Wire, tag: str, *, uid: bool = False) -> list[int]:
    """The UIDs this session's view holds, in sequence order (after its pending updates;
    with `uid`, as UID FETCH, expunges included)."""
    lines = _command(wire, tag, ("UID " if uid else "") + "FETCH 1:* (UID)")
    found = [re.fullmatch(r"\* (\d+) FETCH \(UID (\d+)\)", line) for line in lines]
    pairs = sorted((int(m.group(1)), int(m.group(2))) for m in found if m)
    assert [seq for seq, _ in pairs] == list(range(1, len(pairs) + 1)), lines
    return [uid for _, uid in pairs]


def _expunged(lines: list[str]) -> list[int]:
    return [int(m.group(1)) for line in lines if (m := re.fullmatch(r"\* (\d+) EXPUNGE", line))]


def test_an_expunge_reaches_every_session_with_the_right_numbers(server: Server) -> None:
    a, b = _session(server, select=False), _session(server, select=False)
    idle = _session(server, select=False)
    try:
        uids = [_append(a, f"p{n}", f"own {n}") for n in range(5)]
        for wire in (a, b, idle):
            _command(wire, "s", "SELECT INBOX")
        idle.send(b"i IDLE\r\n")
        assert idle.line().startswith("+ ")

        _command(a, "d", "STORE 2,4 +FLAGS.SILENT (\\Deleted)")
        # Highest first: each number is right when the client reads it.
        assert _expunged(_command(a, "x", "EXPUNGE")) == [4, 2]
        assert _uids(a, "f") == [uids[0], uids[2], uids[4]]

        heard: list[str] = []
        while len(_expunged(heard)) < 2:
            heard.append(idle.line())
        assert _expunged(heard) == [4, 2], heard
        assert all("FETCH" in line or "EXPUNGE" in line for line in heard), heard

        assert _expunged(_command(b, "n", "NOOP")) == [4, 2]
        assert _uids(b, "f") == [uids[0], uids[2], uids[4]]

        new = _append(a, "q", "after")
        assert "* 4 EXISTS" in _command(b, "m", "NOOP")
        assert _uids(b, "g") == [uids[0], uids[2], uids[4], new]
        idle.send(b"DONE\r\n")
        while not idle.line().startswith("i "):
            pass
        _command(idle, "n", "NOOP")
        assert _uids(idle, "h") == [uids[0], uids[2], uids[4], new]
        fresh = _session(server)
        try:
            assert _uids(fresh, "f") == [uids[0], uids[2], uids[4], new]
        finally:
            fresh.close()
    finally:
        for wire in (a, b, idle):
            wire.close()


def test_sessions_expunging_at_once_agree_with_the_store(server: Server) -> None:
    """Three sessions each APPEND, mark their new message \\Deleted and EXPUNGE, at the same
    time: some EXPUNGEs find the view right before them, others find another write between
    (then the view is read). After each EXPUNGE the session no longer holds its message; at
    the end every session holds what a session opened afterwards holds (the one message
    that was there before)."""
    rounds = 30
    setup = _session(server, select=False)
    try:
        anchor = _append(setup, "a", "stays")  # (FETCH 1:* in an empty mailbox is BAD)
    finally:
        setup.close()
    wires = [_session(server) for _ in range(3)]
    failures: list[str] = []

    def client(n: int, wire: Wire) -> None:
        try:
            for r in range(rounds):
                uid = _append(wire, f"a{r}", f"c{n} r{r}")
                _command(wire, f"d{r}", f"UID STORE {uid} +FLAGS.SILENT (\\Deleted)")
                _command(wire, f"x{r}", "EXPUNGE")
                held = _uids(wire, f"u{r}", uid=True)
                if uid in held:
                    failures.append(f"session {n}: its expunged UID {uid} is still there")
        except Exception as e:  # reported below, with the other sessions' findings
            failures.append(f"session {n}: {e!r}")

    threads = [threading.Thread(target=client, args=(n, w)) for n, w in enumerate(wires)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        assert not any(t.is_alive() for t in threads), "a session hung"
        assert not failures, failures
        fresh = _session(server)
        try:
            truth = _uids(fresh, "f")
        finally:
            fresh.close()
        assert truth == [anchor], truth  # every other one was expunged by its session
        for n, wire in enumerate(wires):
            _command(wire, "n", "NOOP")
            assert _uids(wire, "z") == truth, n
    finally:
        for wire in wires:
            wire.close()
