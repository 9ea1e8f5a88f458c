"""The security headers of the webmail's responses.

The page runs only our own scripts and talks only to our own origin; a message's HTML runs
nothing and loads nothing but the images it carries (or, when the reader asks, its remote
ones). No response may be framed by another site.
"""

from __future__ import annotations

PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; frame-src 'self'; form-action 'self'; base-uri 'none'; "
            "frame-ancestors 'none'")
MESSAGE_CSP = ("default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; "
               "base-uri 'none'; form-action 'none'; frame-ancestors 'self'; "
               "sandbox allow-popups allow-popups-to-escape-sandbox")
"""Also a `sandbox` of its own: the document opened outside its frame runs nothing either."""
MESSAGE_CSP_REMOTE_IMAGES = MESSAGE_CSP.replace("img-src 'self' data:",
                                                "img-src 'self' data: https: http:")

COMMON = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}
PAGE = {**COMMON, "Content-Security-Policy": PAGE_CSP, "X-Frame-Options": "DENY",
        "Cross-Origin-Opener-Policy": "same-origin", "Cache-Control": "no-store"}
