"""docs/fail2ban.md's filter, run by fail2ban itself (fail2ban-regex, Debian's fail2ban, which
scripts/test-deps.sh installs) over the log a real server wrote: every failed login on IMAP,
POP3, SMTP AUTH and JMAP is one hit with the client's IP, in the text and the JSON log
formats, and an address made to look like another IP does not move the hit (issue 19)."""

from __future__ import annotations

import base64
import imaplib
import poplib
import re
import smtplib
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import Server

DOC = Path(__file__).resolve().parents[2] / "docs" / "fail2ban.md"
FORGED = "6.6.6.6"


def filter_file(directory: Path) -> Path:
    """The documented /etc/fail2ban/filter.d/mailyard.conf, as a file fail2ban-regex reads."""
    block = DOC.read_text().split("```ini\n", 1)[1].split("```", 1)[0]
    assert block.startswith("[Definition]"), block
    path = directory / "mailyard.conf"
    path.write_text(block)
    return path


def fail_everywhere(srv: Server) -> int:
    """One failed login per protocol, two of them with addresses that try to forge an IP;
    how many were made."""
    imap = imaplib.IMAP4("127.0.0.1", srv.imap_port)
    with pytest.raises(imaplib.IMAP4.error):
        imap.login("guess@example.test", "wrong")
    imap.logout()
    pop = poplib.POP3("127.0.0.1", srv.pop3_port)
    pop.user("guess@example.test")
    with pytest.raises(poplib.error_proto):
        pop.pass_("wrong")
    pop.quit()
    with smtplib.SMTP("127.0.0.1", srv.submission_port, timeout=30) as smtp:
        smtp.ehlo("client.test")
        forged = f'x" ip={FORGED}'
        code, _ = smtp.docmd("AUTH", "PLAIN " + base64.b64encode(
            f"\0{forged}\0wrong".encode()).decode())
        assert code == 535
    r = httpx.get(f"https://127.0.0.1:{srv.http_port}/jmap/session", verify=False,
                  auth=(f"y' ip={FORGED}", "wrong"), timeout=30)
    assert r.status_code == 401
    return 4


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_fail2ban_regex_finds_each_failed_login_with_its_ip(tmp_path: Path, fmt: str) -> None:
    srv = Server(tmp_path / "srv")
    with srv.config_path.open("a") as config:
        config.write(f'[log]\nformat = "{fmt}"\n')
    srv.start()
    try:
        made = fail_everywhere(srv)
    finally:
        srv.stop()  # the log is complete once the server has ended
    result = subprocess.run(["fail2ban-regex", "-v", str(srv.log_path),
                             str(filter_file(tmp_path))],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    lines = re.search(r"^Lines: \d+ lines, \d+ ignored, (\d+) matched", out, re.M)
    assert lines and int(lines.group(1)) == made, out
    # -v lists each hit under its regex as "|      HOST  DATE".
    hosts = re.findall(r"^\|\s{6}(\S+)\s{2}\w{3} \w{3} ", out, re.M)
    assert hosts == ["127.0.0.1"] * made, out
    assert FORGED not in hosts
