"""BINARY (RFC 3516, RFC 9051 §6.4.5 / §7.5.2) as scripted transcripts.

BINARY undoes the Content-Transfer-Encoding exactly as RFC 2045 §6.7/§6.8 define it, so
BINARY.SIZE is the size BINARY then sends: quoted-printable loses the white space that transit
added and its soft line breaks (also `=` followed by white space), base64 ignores what is not
in its alphabet. Decoded data with NUL goes as literal8 (`~{n}`), other data as a literal; a
plain literal never carries NUL, so BODY[] of a message appended with NUL sends 0x80 for it, as
Dovecot does. An encoding we cannot undo answers NO [UNKNOWN-CTE].
"""

from __future__ import annotations

from tests.e2e.server import Server
from tests.e2e.transcript import LOGIN, Wire, play, run

ALICE = LOGIN.format(user="alice@example.test")

PARTS = (
    "From: a@example.test\\nSubject: binary\\nMIME-Version: 1.0\\n"
    "Content-Type: multipart/mixed; boundary=b\\n\\n"
    "--b\\nContent-Type: text/plain\\nContent-Transfer-Encoding: quoted-printable\\n\\n"
    "line one \t \\nsoft=  \\nbreak=3D=\\nend\\n"
    "--b\\nContent-Type: application/octet-stream\\nContent-Transfer-Encoding: base64\\n\\n"
    "SGVs bG8s\\nIHdv!cmxk\\n"
    "--b\\nContent-Type: application/octet-stream\\nContent-Transfer-Encoding: BASE64\\n\\n"
    "AAEC/w==\\n"
    "--b\\nContent-Type: text/plain\\nContent-Transfer-Encoding: x-rot13\\n\\nuryyb\\n"
    "--b\\nContent-Type: message/rfc822\\n\\nSubject: inner\\n\\ninner body\\n"
    "--b--\\n"
)

SELECT = r"""
C: s SELECT INBOX
S~ \* FLAGS .*
S~ \* OK \[PERMANENTFLAGS .*
S~ \* \d+ EXISTS
S~ \* \d+ RECENT
S-~ \* OK \[UNSEEN \d+\].*
S~ \* OK \[UIDVALIDITY \d+\].*
S~ \* OK \[UIDNEXT \d+\].*
S~ \* OK \[HIGHESTMODSEQ \d+\].*
S~ \* OK \[MAILBOXID .*
S~ s OK \[READ-WRITE\] .*
"""


def test_binary_decodes_exactly_and_sizes_match(server: Server) -> None:
    run(server.imap_port, ALICE + f"""
C: a APPEND INBOX {{{{{PARTS}}}}}
S~ a OK \\[APPENDUID \\d+ 1\\] .*
""" + SELECT + r"""
# quoted-printable: transit white space deleted, soft breaks (with white space after "=")
C: b FETCH 1 (BINARY.SIZE[1] BINARY.PEEK[1])
S: * 1 FETCH (BINARY.SIZE[1] 23 BINARY[1] {23}line one\r\nsoftbreak=end)
S: b OK FETCH done
# base64 with white space and an octet outside its alphabet
C: c FETCH 1 (BINARY.SIZE[2] BINARY.PEEK[2] BINARY.PEEK[2]<7.5>)
S: * 1 FETCH (BINARY.SIZE[2] 12 BINARY[2] {12}Hello, world BINARY[2]<7> {5}world)
S: c OK FETCH done
# decoded NUL: literal8; the encoded part itself stays a literal
C: d FETCH 1 (BINARY.SIZE[3] BINARY.PEEK[3] BODY.PEEK[3])
S: * 1 FETCH (BINARY.SIZE[3] 4 BINARY[3] ~{4}\x00\x01\x02\xff BODY[3] {8}AAEC/w==)
S: d OK FETCH done
C: e FETCH 1 BINARY.PEEK[4]
S: e NO [UNKNOWN-CTE] Unknown Content-Transfer-Encoding
C: f FETCH 1 BINARY.SIZE[4]
S: f NO [UNKNOWN-CTE] Unknown Content-Transfer-Encoding
C: g FETCH 1 BODY.PEEK[4]
S: * 1 FETCH (BODY[4] {5}uryyb)
S: g OK FETCH done
# message/rfc822 (identity encoding by RFC 2045 §6.4): its octets
C: h FETCH 1 (BINARY.PEEK[5] BINARY.SIZE[5])
S: * 1 FETCH (BINARY[5] {28}Subject: inner\r\n\r\ninner body BINARY.SIZE[5] 28)
S: h OK FETCH done
# no such part: NIL, as BODY[] of it
C: h2 FETCH 1 (BINARY.PEEK[9] BINARY.SIZE[9])
S: * 1 FETCH (BINARY[9] NIL BINARY.SIZE[9] 0)
S: h2 OK FETCH done
# the whole message: BINARY.SIZE[] is RFC822.SIZE
C: i FETCH 1 (RFC822.SIZE BINARY.SIZE[])
S~ \* 1 FETCH \(RFC822.SIZE (?P<n>\d+) BINARY.SIZE\[\] (?P=n)\)
S: i OK FETCH done
# BINARY.SIZE and BINARY.PEEK left \Seen alone; BINARY sets it
C: j FETCH 1 FLAGS
S~ \* 1 FETCH \(FLAGS \((\\Recent)?\)\)
S: j OK FETCH done
C: k FETCH 1 BINARY[2]
S~ \* 1 FETCH \(BINARY\[2\] \{12\}Hello, world FLAGS \(\\Seen( \\Recent)?\)\)
S: k OK FETCH done
""")


NUL_MESSAGE = (b"From: a@example.test\r\nSubject: nul\r\nContent-Type: application/octet-stream"
               b"\r\nContent-Transfer-Encoding: binary\r\n\r\nab\x00cd\r\n")


def test_nul_goes_as_literal8_in_binary_and_never_in_a_literal(server: Server) -> None:
    wire = Wire.connect(server.imap_port)
    try:
        wire.line()  # greeting
        play(wire, ALICE)
        # RFC 3516 §4.4: NUL octets come in a literal8; a literal with NUL is BAD
        wire.send(b"a APPEND INBOX {%d+}\r\n" % len(NUL_MESSAGE) + NUL_MESSAGE + b"\r\n")
        play(wire, "S~ a BAD .*")
        wire.send(b"b APPEND INBOX ~{%d+}\r\n" % len(NUL_MESSAGE) + NUL_MESSAGE + b"\r\n")
        play(wire, r"S~ b OK \[APPENDUID \d+ 1\] .*" + SELECT + r"""
C: c FETCH 1 (BINARY.SIZE[1] BINARY.PEEK[1] BINARY.SIZE[])
S: * 1 FETCH (BINARY.SIZE[1] 7 BINARY[1] ~{7}ab\x00cd\r\n BINARY.SIZE[] 120)
S: c OK FETCH done
C: c2 FETCH 1 BINARY.PEEK[]<100.50>
S: * 1 FETCH (BINARY[]<100> ~{20}g: binary\r\n\r\nab\x00cd\r\n)
S: c2 OK FETCH done
# a literal cannot carry NUL (RFC 9051 §4.3): 0x80 takes its place, the size stays
C: d FETCH 1 (RFC822.SIZE BODY.PEEK[TEXT] BODY.PEEK[1])
S: * 1 FETCH (RFC822.SIZE 120 BODY[TEXT] {7}ab\x80cd\r\n BODY[1] {7}ab\x80cd\r\n)
S: d OK FETCH done
C: e FETCH 1 RFC822
S~ \* 1 FETCH \(RFC822 \{120\}From: .*\\r\\n\\r\\nab\\x80cd\\r\\n FLAGS \(\\Seen( \\Recent)?\)\)
S: e OK FETCH done
""")
    finally:
        wire.close()
