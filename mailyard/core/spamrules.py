"""Content rules: facts about a message that spam has and mail between people rarely has.

Each rule that fires is a symbol with a score (SpamAssassin's way), so a verdict says why. The
scores are small next to the classifier's (see `bayes_score`): a rule alone moves a message
towards Junk but, apart from GTUBE and dangerous attachments, never puts it there by itself.
Pure: the parsed message and a `Content` view in, symbols out.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from mailyard.core.mime import ParsedMessage
from mailyard.core.spam import Content, site, url_host

REJECT_THRESHOLD = 15.0
BAYES_WEIGHT = 7.0
"""`bayes_score` of a certain spam; a certain ham scores minus this."""
GTUBE_SCORE = 1000.0

EXECUTABLE = frozenset({
    "exe", "scr", "pif", "com", "bat", "cmd", "cpl", "msi", "msp", "jar", "js", "jse", "vbs",
    "vbe", "wsf", "wsh", "hta", "lnk", "ps1", "psm1", "reg", "scf", "inf", "dll", "gadget",
    "application", "appref-ms", "msc", "iso", "img", "vhd", "xll", "sct",
})
"""File types that run when opened (Windows' and Office's), as mail filters commonly block."""
DOCUMENT = frozenset({"pdf", "doc", "docx", "xls", "xlsx", "txt", "jpg", "jpeg", "png", "gif",
                      "zip", "rtf", "htm", "html", "ppt", "pptx"})
MACRO = frozenset({"docm", "xlsm", "pptm", "dotm", "xltm"})
SHORTENERS = frozenset({"bit.ly", "tinyurl.com", "goo.gl", "t.co", "ow.ly", "is.gd",
                        "buff.ly", "cutt.ly", "rebrand.ly", "shorturl.at", "tiny.cc"})

_HIDDEN_STYLE = re.compile(
    r"display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*[01](?:\.\d+)?(?:px|pt)?\s*[;\"']"
    r"|<font\b[^<>]*\bsize\s*=\s*[\"']?[01][\"'\s>]|opacity\s*:\s*0(?:\.0+)?\s*[;\"']",
    re.I)
"""Each alternative's scan ends at the next `<` at the latest, so the search is linear."""
_WHITE_TEXT = re.compile(r"color\s*:\s*(?:#fff(?:fff)?|white)\b", re.I)
_WHITE_BACKGROUND = re.compile(r"background(?:-color)?\s*:\s*(?:#fff(?:fff)?|white)", re.I)
_VISIBLE_URL = re.compile(r"(?:https?://|www\.)\S+|\b[\w-]+(?:\.[\w-]+)*\.(?:com|net|org|"
                          r"info|biz|io|co|us|uk|de|ru|cn)\b", re.I)


def bayes_score(probability: float) -> float:
    """The classifier's probability as a score: 0.5 (unknown) adds nothing; a sure spam adds
    `BAYES_WEIGHT`, a sure ham takes it away."""
    return round((probability - 0.5) * 2.0 * BAYES_WEIGHT, 3)


def _extension(filename: str) -> tuple[str, str]:
    """The last and the one before the last extension of a file name."""
    parts = filename.lower().strip().rstrip(". ").split(".")
    last = parts[-1] if len(parts) > 1 else ""
    before = parts[-2] if len(parts) > 2 else ""
    return last, before


def _attachments(c: Content, found: dict[str, float]) -> None:
    for filename in c.filenames:
        last, before = _extension(filename)
        if last in EXECUTABLE:
            if before in DOCUMENT:
                found["ATTACH_DOUBLE_EXTENSION"] = 6.0
            else:
                found["ATTACH_EXECUTABLE"] = 4.0
        elif last in MACRO:
            found["ATTACH_MACRO_OFFICE"] = 1.5
    if any(ct in ("application/x-msdownload", "application/x-msdos-program",
                  "application/x-dosexec") for ct in c.content_types):
        found["ATTACH_EXECUTABLE"] = 4.0


def _links(c: Content, found: dict[str, float]) -> None:
    hosts = [h for h in (url_host(u) for u in c.urls) if h]
    if any(re.match(r"^\d{1,3}(\.\d{1,3}){3}$", h) for h in hosts):
        found["URL_NUMERIC_IP"] = 1.5
    if any("@" in u.split("//", 1)[-1].split("/", 1)[0] for u in c.urls):
        found["URL_USERINFO"] = 2.5  # http://bank.example@evil.example/
    if any(h in SHORTENERS for h in hosts):
        found["URL_SHORTENER"] = 0.5
    for href, visible in c.links:
        shown = _VISIBLE_URL.search(visible)
        target = url_host(href)
        if shown is None or not target or href.lower().startswith("mailto:"):
            continue
        shown_host = url_host(shown.group())
        if shown_host and site(shown_host) != site(target):
            found["HTML_LINK_MISMATCH"] = 2.5
            break


def _white_on_white(html: str) -> bool:
    """White text on a white background before the same `>`. One regex with `[^>]*` between
    the two rescans to the next `>` from every "color:white", quadratic on a long run of
    them; here each stretch between two `>` is searched once, from its first "color:white"."""
    pos = 0
    while (m := _WHITE_TEXT.search(html, pos)) is not None:
        close = html.find(">", m.end())
        limit = len(html) if close < 0 else close
        if _WHITE_BACKGROUND.search(html, m.end(), limit):
            return True
        if close < 0:
            return False
        pos = close + 1
    return False


def _html(c: Content, parsed: ParsedMessage, found: dict[str, float]) -> None:
    if not c.html:
        return
    if "text/plain" not in c.content_types:
        found["HTML_ONLY"] = 0.3
        if len(parsed.text) < 40 and c.html.lower().count("<img") >= 1:
            found["HTML_IMAGE_ONLY"] = 1.5
    if _HIDDEN_STYLE.search(c.html) or _white_on_white(c.html):
        found["HTML_HIDDEN_TEXT"] = 1.5


def _headers(c: Content, parsed: ParsedMessage, now: datetime, found: dict[str, float]) -> None:
    if c.header("from") is None:
        found["MISSING_FROM"] = 1.5
    if c.header("date") is None:
        found["MISSING_DATE"] = 1.0
    elif parsed.date is not None and parsed.date > now + timedelta(days=1):
        found["DATE_IN_FUTURE"] = 1.5
    if c.header("message-id") is None:
        found["MISSING_MID"] = 0.5
    if c.header("to") is None and c.header("cc") is None:
        found["MISSING_TO"] = 0.5
    subject = parsed.subject
    letters = [ch for ch in subject if ch.isalpha()]
    if len(letters) >= 10 and all(ch.isupper() for ch in letters):
        found["SUBJ_ALL_CAPS"] = 1.0
    if subject.count("!") >= 3 or "$$$" in subject:
        found["SUBJ_EXCESS_PUNCT"] = 0.5
    if parsed.from_ and parsed.reply_to:
        from_domain = parsed.from_[0].domain.lower()
        reply_domain = parsed.reply_to[0].domain.lower()
        if from_domain and reply_domain and site(from_domain) != site(reply_domain) \
                and reply_domain.endswith(("gmail.com", "yahoo.com", "hotmail.com",
                                           "outlook.com", "aol.com", "mail.ru")):
            found["REPLYTO_FREEMAIL_DIFFERS"] = 1.0


def rules(c: Content, parsed: ParsedMessage, now: datetime) -> dict[str, float]:
    """The symbols that fire for a message, with their scores."""
    found: dict[str, float] = {}
    if c.gtube:
        found["GTUBE"] = GTUBE_SCORE
    _headers(c, parsed, now, found)
    _attachments(c, found)
    _links(c, found)
    _html(c, parsed, found)
    return found
