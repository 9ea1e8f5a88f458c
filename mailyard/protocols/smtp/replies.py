"""SMTP replies with enhanced status codes (RFC 2034, RFC 3463).

aiosmtpd answers some errors itself without an enhanced code. Once ENHANCEDSTATUSCODES is
advertised every reply after EHLO should carry one, so its stock texts are rewritten here, in one
place, rather than by overriding each of its command handlers.
"""

from __future__ import annotations

import re

_HAS_ENHANCED = re.compile(r"^\d{3}[ -][245]\.\d{1,3}\.\d{1,3}\b")

# Stock aiosmtpd texts that need a more precise code than their reply class alone gives.
_STOCK = {
    "500 Command line too long": "500 5.5.2 Command line too long",
    "552 Error: Too much mail data": "552 5.3.4 Message too big for this system",
    "552 Error: message size exceeds fixed maximum message size":
        "552 5.3.4 Message size exceeds fixed maximum message size",
    "530 Must issue a STARTTLS command first": "530 5.7.0 Must issue a STARTTLS command first",
    "503 Error: need RCPT command": "503 5.5.1 Error: need RCPT command",
    "503 Error: need MAIL command": "503 5.5.1 Error: need MAIL command",
    "503 Error: nested MAIL command": "503 5.5.1 Error: nested MAIL command",
    "503 Error: send HELO first": "503 5.5.1 Error: send HELO first",
    "554 Command refused due to lack of security": "554 5.7.0 Command refused: TLS required",
}

_BY_CODE = {
    "221": "2.0.0", "250": "2.0.0", "251": "2.1.5", "252": "2.1.5",
    "421": "4.3.0", "451": "4.3.0", "452": "4.3.1",
    "500": "5.5.2", "501": "5.5.4", "502": "5.5.1", "503": "5.5.1", "504": "5.5.4",
    "530": "5.7.0", "535": "5.7.8", "550": "5.0.0", "552": "5.3.4", "553": "5.1.3",
    "554": "5.0.0", "555": "5.5.4",
}


def enhance(reply: str) -> str:
    """The reply with an enhanced status code, added where it lacks one."""
    if reply in _STOCK:
        return _STOCK[reply]
    if len(reply) < 4 or _HAS_ENHANCED.match(reply):
        return reply
    code, sep, text = reply[:3], reply[3], reply[4:]
    enhanced = _BY_CODE.get(code)
    if enhanced is None:
        return reply
    return f"{code}{sep}{enhanced} {text}"
