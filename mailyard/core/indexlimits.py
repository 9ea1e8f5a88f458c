"""The caps on what one message's indexing reads (`[search]` in the config), apart from the
indexer so that reading the configuration does not load the MIME parser and the extractors."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    """Caps that keep one message's indexing cost and index size bounded whatever it carries."""

    body: int = 256 * 1024
    """Characters of body text indexed per message."""
    attachment_text: int = 256 * 1024
    """Characters of text taken from all attachments of one message together."""
    attachment_bytes: int = 10 * 1024 * 1024
    """Attachments bigger than this (decoded) are not opened: their text is rarely what a user
    searches for, and opening them is what costs."""
    pdf: bool = False
    """PDF extraction is off by default: it needs the optional `pdf` extra and is slow."""
    unpacked_bytes: int = 16 * 1024 * 1024
    """Decompressed XML read from one Office/OpenDocument attachment: a zip bomb stops here."""
