"""Attachments out of the raw message, byte-exact back in.

The same attachment mailed to many people (or forwarded again and again) arrives each time
with other headers and boundaries; storing its decoded content once, named by its SHA-256, and
keeping only a small skeleton per message is what makes that cheap. A part is only replaced
when re-encoding its content provably gives back the original octets, so re-assembly is exact.

Format (all integers are unsigned LEB128 varints unless noted)::

    b"MYSK1" | raw length | CRC-32 of raw (4 bytes, big-endian) | segment count | segments
    segment = 0x00 LIT  length bytes
            | 0x01 B64  sha256 (32 bytes) line-length flags(1 byte: 1=CRLF, 2=no "=" padding)
            | 0x02 QP   sha256 (32 bytes) flags(1 byte: 1=CRLF)
            | 0x03 RAW  sha256 (32 bytes)          (7bit / 8bit / binary: content as is)
"""

from __future__ import annotations

import binascii
import hashlib
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from mailyard.core.mime import ParsedMessage, Part, decode_body, is_attachment, iter_parts

MAGIC = b"MYSK1"
LIT, B64, QP, RAW = 0, 1, 2, 3
CRLF_FLAG, NOPAD_FLAG = 1, 2
_WHITESPACE = b" \t\r\n"


@dataclass(frozen=True, slots=True)
class Split:
    skeleton: bytes
    blobs: dict[str, bytes]


@dataclass(frozen=True, slots=True)
class _Ref:
    start: int
    end: int
    kind: int
    digest: bytes
    line_length: int = 0
    flags: int = 0

    def encode(self) -> bytes:
        out = bytes([self.kind]) + self.digest
        if self.kind == B64:
            out += _varint(self.line_length) + bytes([self.flags])
        elif self.kind == QP:
            out += bytes([self.flags])
        return out


# --------------------------------------------------------------------------------------------
# Encoders: the exact inverse of a transfer decoding, for given layout parameters


def _lines(data: bytes, width: int) -> list[bytes]:
    """Cut into fixed-width lines; struct slices a thousand lines per call, which is several
    times faster than a Python loop on a 25 MB attachment."""
    block = 1024
    full = len(data) - len(data) % width
    cutter = struct.Struct(f"{width}s" * block)
    lines: list[bytes] = []
    pos = 0
    while pos + cutter.size <= full:
        lines.extend(cutter.unpack_from(data, pos))
        pos += cutter.size
    lines.extend(data[i : i + width] for i in range(pos, len(data), width))
    return lines


def _b64(data: bytes, line_length: int, flags: int) -> bytes:
    encoded = binascii.b2a_base64(data, newline=False)
    if flags & NOPAD_FLAG:
        encoded = encoded.rstrip(b"=")
    if line_length <= 0 or line_length >= len(encoded):
        return encoded
    eol = b"\r\n" if flags & CRLF_FLAG else b"\n"
    return eol.join(_lines(encoded, line_length))


def _qp(data: bytes, flags: int) -> bytes:
    encoded = binascii.b2a_qp(data)
    if flags & CRLF_FLAG:
        encoded = encoded.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return encoded


def _reencode(kind: int, data: bytes, line_length: int, flags: int) -> bytes:
    if kind == B64:
        return _b64(data, line_length, flags)
    if kind == QP:
        return _qp(data, flags)
    return data


# --------------------------------------------------------------------------------------------
# Split


def _trim(raw: bytes, start: int, end: int) -> tuple[int, int]:
    """Base64 ignores surrounding blank lines; they stay literal so the layout is exact."""
    while start < end and raw[start] in _WHITESPACE:
        start += 1
    while end > start and raw[end - 1] in _WHITESPACE:
        end -= 1
    return start, end


_Cache = dict[tuple[int, int], tuple[bytes, str]]


def _decoded(original: bytes, part: Part, encoding: str, cache: _Cache) -> tuple[bytes, bytes]:
    """The parser already decoded and hashed attachments; a stale entry cannot do harm, since
    every replacement is verified by re-encoding against the original octets."""
    hit = cache.get((part.body_start, part.body_end))
    if hit is not None:
        return hit[0], bytes.fromhex(hit[1])
    data = decode_body(original, encoding)
    return data, hashlib.sha256(data).digest()


def _b64_ref(raw: bytes, part: Part, min_size: int, cache: _Cache) -> tuple[_Ref, bytes] | None:
    start, end = _trim(raw, part.body_start, part.body_end)
    original = raw[start:end]
    data, digest = _decoded(original, part, "base64", cache)
    if len(data) < min_size:
        return None
    nl = raw.find(b"\n", start, end)
    line_length = end - start if nl < 0 else nl - start
    crlf = nl > start and raw[nl - 1] == 0x0D
    if crlf:
        line_length -= 1
    for flags in (CRLF_FLAG if crlf else 0, (CRLF_FLAG if crlf else 0) | NOPAD_FLAG):
        if _b64(data, line_length, flags) == original:
            return _Ref(start, end, B64, digest, line_length, flags), data
    return None


def _plain_ref(
    raw: bytes, part: Part, min_size: int, kind: int, cache: _Cache
) -> tuple[_Ref, bytes] | None:
    original = raw[part.body_start : part.body_end]
    data, digest = _decoded(original, part, "quoted-printable" if kind == QP else "7bit", cache)
    if len(data) < min_size:
        return None
    for flags in (0, CRLF_FLAG) if kind == QP else (0,):
        if _reencode(kind, data, 0, flags) == original:
            return _Ref(part.body_start, part.body_end, kind, digest, 0, flags), data
    return None


def _ref_for(raw: bytes, part: Part, min_size: int, cache: _Cache) -> tuple[_Ref, bytes] | None:
    if part.body_end - part.body_start < min_size // 2 or not is_attachment(part):
        return None
    if part.encoding == "base64":
        return _b64_ref(raw, part, min_size, cache)
    if part.encoding == "quoted-printable":
        return _plain_ref(raw, part, min_size, QP, cache)
    if part.encoding in ("7bit", "8bit", "binary"):
        return _plain_ref(raw, part, min_size, RAW, cache)
    return None


def split(raw: bytes, parsed: ParsedMessage, *, min_size: int = 2048) -> Split:
    refs: list[_Ref] = []
    blobs: dict[str, bytes] = {}
    last_end = 0
    for _section, part in iter_parts(parsed.root):
        if part.children or part.body_end > len(raw) or part.body_start < last_end:
            continue
        found = _ref_for(raw, part, min_size, parsed.decoded_cache)
        if found is not None:
            ref, data = found
            refs.append(ref)
            blobs[ref.digest.hex()] = data
            last_end = ref.end
    return Split(_serialize(raw, refs), blobs)


def _serialize(raw: bytes, refs: list[_Ref]) -> bytes:
    segments: list[bytes] = []
    pos = 0
    for ref in refs:
        if ref.start > pos:
            segments.append(_literal(raw[pos : ref.start]))
        segments.append(ref.encode())
        pos = ref.end
    if pos < len(raw):
        segments.append(_literal(raw[pos:]))
    header = MAGIC + _varint(len(raw)) + zlib.crc32(raw).to_bytes(4, "big")
    return b"".join([header, _varint(len(segments)), *segments])


def _literal(data: bytes) -> bytes:
    return bytes([LIT]) + _varint(len(data)) + data


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


# --------------------------------------------------------------------------------------------
# Read back


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ValueError("truncated skeleton")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def byte(self) -> int:
        return self.take(1)[0]

    def varint(self) -> int:
        value, shift = 0, 0
        while True:
            byte = self.byte()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift > 63:
                raise ValueError("bad varint in skeleton")


_Segment = tuple[int, bytes, int, int]  # kind, literal bytes or digest, line length, flags


def _segments(skeleton: bytes) -> tuple[int, int, Iterator[_Segment]]:
    reader = _Reader(skeleton)
    if reader.take(len(MAGIC)) != MAGIC:
        raise ValueError("not a MYSK1 skeleton")
    length, crc, count = reader.varint(), int.from_bytes(reader.take(4), "big"), reader.varint()

    def segments() -> Iterator[_Segment]:
        for _ in range(count):
            kind = reader.byte()
            if kind == LIT:
                yield kind, reader.take(reader.varint()), 0, 0
            elif kind == B64:
                digest = reader.take(32)
                yield kind, digest, reader.varint(), reader.byte()
            elif kind == QP:
                yield kind, reader.take(32), 0, reader.byte()
            elif kind == RAW:
                yield kind, reader.take(32), 0, 0
            else:
                raise ValueError(f"unknown skeleton segment {kind}")

    return length, crc, segments()


def blob_refs(skeleton: bytes) -> list[str]:
    _length, _crc, segments = _segments(skeleton)
    refs = [value.hex() for kind, value, _, _ in segments if kind != LIT]
    return list(dict.fromkeys(refs))


def assemble(skeleton: bytes, fetch: Callable[[str], bytes]) -> bytes:
    """Raises ValueError when the result is not the original (a blob or skeleton is damaged)."""
    length, crc, segments = _segments(skeleton)
    contents: dict[bytes, bytes] = {}
    out: list[bytes] = []
    for kind, value, line_length, flags in segments:
        if kind == LIT:
            out.append(value)
            continue
        if value not in contents:
            contents[value] = fetch(value.hex())
        out.append(_reencode(kind, contents[value], line_length, flags))
    raw = b"".join(out)
    if len(raw) != length or zlib.crc32(raw) != crc:
        raise ValueError("re-assembled message does not match the original")
    return raw


def prefix(skeleton: bytes, size: int) -> bytes | None:
    """The first `size` octets of the message when the skeleton holds them literally (headers
    always are), without fetching any attachment; None when an attachment comes first."""
    _length, _crc, segments = _segments(skeleton)
    out: list[bytes] = []
    have = 0
    for kind, value, _, _ in segments:
        if have >= size:
            break
        if kind != LIT:
            return None
        out.append(value)
        have += len(value)
    return b"".join(out)[:size]
