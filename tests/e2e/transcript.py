"""Scripted IMAP transcripts: client lines and the exact server lines the RFC calls for.

The way Dovecot's imaptest scripts and pymap's own test suite check a server: a script is the
conversation, not a call into our code, so what it proves is what goes over the wire. A test
writes a script such as

    C: a SELECT INBOX
    S: * FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)
    S~ \\* OK \\[PERMANENTFLAGS \\(.*\\)\\] .*
    S: * 2 EXISTS
    S~ \\* OK \\[UIDVALIDITY (?P<uidvalidity>\\d+)\\] .*
    ...
    S~ a OK \\[READ-WRITE\\] .*
    C: b FETCH 1 FLAGS
    S: * 1 FETCH (FLAGS ())
    S: b OK FETCH completed

and runs it with `run(port, script)`. Line kinds:

- `C: text`  sent with CRLF. `${name}` is replaced by a value captured earlier, and
  `{{text}}` by a synchronising-free literal of `text` (`{n+}` CRLF text), where `\\n` in the
  text stands for CRLF: `C: a APPEND INBOX {{Subject: x\\n\\nbody\\n}}`.
- `S: text`  the next server line must equal `text` exactly (after `${name}` replacement).
- `S~ regex` the next server line must match the regular expression; named groups are
  captured for later lines.
- `S? text` / `S?~ regex`  a group of consecutive such lines: the server sends all of them,
  in any order (RFC 3501 §7: untagged responses in one reply have no fixed order).
- `S-~ regex`  an optional line: taken if the next server line matches, else left for the
  next step (a response the RFC lets the server send or not, such as `OK [UNSEEN n]`).
- `# ...` and blank lines are comments.

A server line that ends with a literal (`{n}`, `~{n}`) is read with its octets and the rest of
its line and compared as one line, the literal's CR LF written as the two characters `\\r\\n`
and other control octets as `\\xNN`, so a script can spell every octet.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass, field

_LITERAL_END = re.compile(rb"~?\{(\d+)\}\r\n\Z")
_VAR = re.compile(r"\$\{(\w+)\}")
_INLINE_LITERAL = re.compile(r"\{\{(.*?)\}\}")


class TranscriptError(AssertionError):
    pass


def _show(data: bytes) -> str:
    out = []
    for byte in data:
        if byte == 0x0D:
            out.append("\\r")
        elif byte == 0x0A:
            out.append("\\n")
        elif byte < 0x20 or byte >= 0x7F:
            out.append(f"\\x{byte:02x}")
        else:
            out.append(chr(byte))
    return "".join(out)


@dataclass
class Wire:
    """One IMAP connection that reads whole logical lines (literals included)."""

    sock: socket.socket
    buffer: bytes = b""
    seen: list[str] = field(default_factory=list)
    pushed: list[str] = field(default_factory=list)
    """Lines read ahead and given back (an optional step that did not match)."""

    @classmethod
    def connect(cls, port: int, host: str = "127.0.0.1", timeout: float = 120.0) -> Wire:
        sock = socket.create_connection((host, port), timeout=timeout)
        return cls(sock)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise TranscriptError(f"connection closed; lines so far: {self.seen[-20:]}")
            self.buffer += chunk
        at = self.buffer.index(marker) + len(marker)
        data, self.buffer = self.buffer[:at], self.buffer[at:]
        return data

    def _read_exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise TranscriptError("connection closed inside a literal")
            self.buffer += chunk
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def line(self) -> str:
        """The next logical server line (without its final CRLF)."""
        if self.pushed:
            return self.pushed.pop()
        parts: list[str] = []
        while True:
            raw = self._read_until(b"\r\n")
            found = _LITERAL_END.search(raw)
            if found is None:
                parts.append(raw[:-2].decode("utf-8", "surrogateescape"))
                break
            parts.append(raw[:-2].decode("utf-8", "surrogateescape"))
            parts.append(_show(self._read_exactly(int(found.group(1)))))
        text = "".join(parts)
        self.seen.append(text)
        return text

    def close(self) -> None:
        self.sock.close()


def _expand(text: str, values: dict[str, str]) -> str:
    def var(m: re.Match[str]) -> str:
        if m.group(1) not in values:
            raise TranscriptError(f"${{{m.group(1)}}} was never captured")
        return values[m.group(1)]
    return _VAR.sub(var, text)


def _client_bytes(text: str) -> bytes:
    def literal(m: re.Match[str]) -> str:
        body = m.group(1).replace("\\n", "\r\n")
        return "{" + str(len(body.encode())) + "+}\r\n" + body
    return _INLINE_LITERAL.sub(literal, text).encode() + b"\r\n"


def _matches(kind: str, pattern: str, got: str, values: dict[str, str]) -> bool:
    if kind in ("S:", "S?"):
        return got == _expand(pattern, values)
    found = re.fullmatch(_expand(pattern, values), got)
    if found is None:
        return False
    values.update({k: v for k, v in found.groupdict().items() if v is not None})
    return True


def _parse(script: str) -> list[tuple[str, str]]:
    steps: list[tuple[str, str]] = []
    for number, raw in enumerate(script.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        for kind in ("S?~", "S-~", "C:", "S:", "S~", "S?"):
            if line.startswith(kind + " ") or line == kind:
                steps.append((kind, line[len(kind) + 1:]))
                break
        else:
            raise TranscriptError(f"script line {number}: unknown kind: {raw!r}")
    return steps


def play(wire: Wire, script: str, values: dict[str, str] | None = None) -> dict[str, str]:
    """Play `script` on an open connection; returns the captured values."""
    values = {} if values is None else values
    steps = _parse(script)
    i = 0
    while i < len(steps):
        kind, text = steps[i]
        if kind == "C:":
            wire.send(_client_bytes(_expand(text, values)))
            i += 1
            continue
        if kind in ("S?", "S?~"):
            group = []
            while i < len(steps) and steps[i][0] in ("S?", "S?~"):
                group.append(steps[i])
                i += 1
            while group:
                got = wire.line()
                for n, (k, pattern) in enumerate(group):
                    if _matches(k, pattern, got, values):
                        del group[n]
                        break
                else:
                    raise TranscriptError(
                        f"unexpected line {got!r}; still expected (any order): "
                        f"{[p for _, p in group]}; lines so far: {wire.seen[-20:]}")
            continue
        got = wire.line()
        if kind == "S-~":
            if not _matches("S~", text, got, values):
                wire.pushed.append(got)
            i += 1
            continue
        if not _matches(kind, text, got, values):
            raise TranscriptError(f"expected {kind} {_expand(text, values)!r}\n"
                                  f"     got {got!r}\nlines so far: {wire.seen[-20:]}")
        i += 1
    return values


def run(port: int, script: str, *, greeting: bool = True) -> dict[str, str]:
    """Connect, read the greeting, play `script`, close."""
    wire = Wire.connect(port)
    try:
        if greeting:
            first = wire.line()
            if not first.startswith("* OK"):
                raise TranscriptError(f"greeting {first!r}")
        return play(wire, script)
    finally:
        wire.close()


LOGIN = "C: L LOGIN {user} secret-password\nS~ L OK .*\n"
"""Prepend `LOGIN.format(user=...)` to a script to log in first (the e2e server's password)."""
