"""The trace fields Mailyard writes say their zone (+0000), never -0000 (RFC 5322 §3.3:
unknown zone): the Received field of inbound mail (issue 19)."""

from __future__ import annotations

import re
import smtplib
from pathlib import Path

from tests.e2e.server import Server


def test_received_date_is_plus_0000(tmp_path: Path) -> None:
    srv = Server(tmp_path)
    srv.add_user("dana@example.test")
    srv.start()
    try:
        with smtplib.SMTP("127.0.0.1", srv.smtp_port) as smtp:
            smtp.sendmail("x@remote.test", ["dana@example.test"],
                          b"Subject: zone\r\nMessage-ID: <zone@remote.test>\r\n\r\nhi\r\n")
        [email] = srv.wait_emails("dana@example.test", 1)
        raw = srv.raw("dana@example.test", email["id"])
        received = re.search(rb"^Received:.*?(?=^\S)", raw, re.S | re.M)
        assert received, raw[:500]
        assert re.search(rb";\s*\w{3}, \d{2} \w{3} \d{4} [\d:]{8} \+0000\s*$",
                         received.group()), received.group()
    finally:
        srv.stop()
