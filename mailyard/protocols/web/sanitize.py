"""A message's HTML made safe to show: nh3 (ammonia) keeps an allow-list of tags, attributes,
URL schemes and CSS properties, and drops everything else, content included for script and
style elements.

This is the first of three walls. The page puts the result in an iframe whose `sandbox` has no
`allow-scripts` and no `allow-same-origin`, and the document is served with its own
Content-Security-Policy (`default-src 'none'`), so a gap in the allow-list still runs nothing
and loads nothing from elsewhere.

Remote images tell the sender when and where the mail was read, so their `src` is dropped
unless the reader asked to see them for this message (and the policy then allows them); images
the message carries itself (`cid:` parts) become `data:` URLs, which load from nowhere.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field

import nh3

TAGS = frozenset({
    "a", "abbr", "address", "b", "bdi", "bdo", "big", "blockquote", "br", "caption", "center",
    "cite", "code", "col", "colgroup", "dd", "del", "details", "dfn", "div", "dl", "dt", "em",
    "figcaption", "figure", "font", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins",
    "kbd", "li", "mark", "ol", "p", "pre", "q", "s", "samp", "small", "span", "strike",
    "strong", "sub", "summary", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "time",
    "tr", "tt", "u", "ul", "var", "wbr",
})
_GENERIC = {"align", "valign", "width", "height", "bgcolor", "color", "dir", "lang", "title",
            "style", "border"}
ATTRIBUTES: dict[str, set[str]] = {
    "*": _GENERIC,
    "a": {"href", "name"},
    "img": {"src", "alt"},
    "font": {"face", "size"},
    "table": {"cellpadding", "cellspacing", "summary"},
    "td": {"colspan", "rowspan", "nowrap", "abbr", "headers", "scope"},
    "th": {"colspan", "rowspan", "nowrap", "abbr", "headers", "scope"},
    "col": {"span"}, "colgroup": {"span"},
    "ol": {"start", "type", "reversed"}, "li": {"value"},
    "blockquote": {"cite"}, "q": {"cite"}, "del": {"cite"}, "ins": {"cite"},
    "time": {"datetime"},
}
STYLE_PROPERTIES = frozenset({
    "background-color", "border", "border-bottom", "border-collapse", "border-color",
    "border-left", "border-radius", "border-right", "border-spacing", "border-style",
    "border-top", "border-width", "color", "direction", "display", "font", "font-family",
    "font-size", "font-style", "font-variant", "font-weight", "height", "letter-spacing",
    "line-height", "list-style-type", "margin", "margin-bottom", "margin-left", "margin-right",
    "margin-top", "max-height", "max-width", "min-height", "min-width", "padding",
    "padding-bottom", "padding-left", "padding-right", "padding-top", "table-layout",
    "text-align", "text-decoration", "text-indent", "text-transform", "vertical-align",
    "white-space", "width", "word-break", "word-spacing", "word-wrap", "overflow-wrap",
})
"""No property that takes a URL, positions over the page (position, z-index) or hides text
(visibility, opacity): a mail cannot draw a fake login box over its own frame's content."""
LINK_SCHEMES = ("http:", "https:", "mailto:")
_INLINE_IMAGE = re.compile(r"data:image/(png|gif|jpeg|webp);base64,[A-Za-z0-9+/=\s]*\Z",
                           re.IGNORECASE)
_IMAGE_TYPES = frozenset({"image/png", "image/gif", "image/jpeg", "image/webp"})
MAX_INLINE = 5 * 1024 * 1024
"""Bytes of cid: images turned into data: URLs per message; past it they are left out."""


@dataclass
class Sanitized:
    html: str
    remote_images: int
    """Remote images dropped (0 when they were allowed)."""


@dataclass
class _Filter:
    allow_remote: bool
    inline: dict[str, str]
    blocked: int = field(default=0)

    def __call__(self, tag: str, attr: str, value: str) -> str | None:
        url = value.strip()
        lower = url.lower()
        if attr == "href":
            return url if lower.startswith(LINK_SCHEMES) else None
        if attr == "src":
            if lower.startswith("cid:"):
                return self.inline.get(_cid(url[4:]))
            if _INLINE_IMAGE.match(url):
                return url
            if lower.startswith(("http:", "https:")):
                if self.allow_remote:
                    return url
                self.blocked += 1
            return None
        if attr == "cite":
            return None  # a URL no one needs, and a request some readers make
        if attr == "style":
            return safe_style(value)
        return value


_CSS_HAZARD = re.compile(r"expression|url|image|javascript|behavior|binding|@import|\\|/\*",
                         re.IGNORECASE)


def safe_style(value: str) -> str | None:
    """The declarations of a style attribute that name nothing to fetch or run: none with a
    URL, an image function, IE's expression() or behaviors, an escape or a comment that
    could hide one. The allowed properties alone would let `width: expression(...)` through."""
    kept = [d.strip() for d in value.split(";") if d.strip() and not _CSS_HAZARD.search(d)]
    return "; ".join(kept) or None


def _cid(value: str) -> str:
    return value.strip().strip("<>").strip().lower()


def inline_images(parts: list[tuple[str | None, str, bytes]]) -> dict[str, str]:
    """cid -> data: URL for the image parts of a message (content-id, type, decoded bytes),
    up to MAX_INLINE bytes in all."""
    out: dict[str, str] = {}
    total = 0
    for content_id, kind, data in parts:
        if not content_id or kind.lower() not in _IMAGE_TYPES:
            continue
        total += len(data)
        if total > MAX_INLINE:
            break
        out[_cid(content_id)] = f"data:{kind.lower()};base64,{base64.b64encode(data).decode()}"
    return out


def sanitize(fragment: str, *, allow_remote: bool = False,
             inline: dict[str, str] | None = None) -> Sanitized:
    """The body of a message's HTML, with only what TAGS, ATTRIBUTES and STYLE_PROPERTIES
    allow; links open outside the frame."""
    check = _Filter(allow_remote, inline or {})
    cleaned = nh3.clean(
        fragment, tags=set(TAGS), attributes={k: set(v) for k, v in ATTRIBUTES.items()},
        url_schemes={"http", "https", "mailto", "cid", "data"},
        clean_content_tags={"script", "style", "title", "template", "noscript", "xmp",
                            "iframe", "object", "embed", "svg", "math", "select", "textarea"},
        strip_comments=True, link_rel="noopener noreferrer",
        set_tag_attribute_values={"a": {"target": "_blank"}},
        attribute_filter=check, filter_style_properties=set(STYLE_PROPERTIES))
    return Sanitized(cleaned, check.blocked)


def plain_text(text: str) -> str:
    """A text/plain part shown among HTML parts: escaped, lines kept."""
    return f'<pre style="white-space:pre-wrap;font:inherit">{html.escape(text)}</pre>'


FRAME_STYLE = ("body{margin:0;padding:8px 4px;font:14px/1.45 system-ui,sans-serif;color:#1f1f1f;"
               "overflow-wrap:anywhere}img{max-width:100%;height:auto}"
               "blockquote{margin:0 0 0 .8ex;border-left:2px solid #ccc;padding-left:1ex}")


def document(body: str) -> str:
    """A whole document for the frame: its charset, no referrer sent by a followed link."""
    return ('<!DOCTYPE html><html><head><meta charset="utf-8">'
            '<meta name="referrer" content="no-referrer">'
            f"<style>{FRAME_STYLE}</style></head><body>{body}</body></html>")
