"""What the listing commands say to an admin reading them (issue 19): sizes a person can read
beside the exact bytes, and an empty listing that says it is empty (on stderr, so that stdout
stays the listing)."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.test_cli_errors import ALICE, mailyard, mbox, ok


def test_user_list_and_quota_show_readable_sizes(tmp_path: Path) -> None:
    (tmp_path / "two.mbox").write_text(mbox(2))
    ok(mailyard(tmp_path, "domain", "add", "example.test"))
    ok(mailyard(tmp_path, "user", "add", ALICE, "--password-stdin", input=b"secret\n"))
    assert ok(mailyard(tmp_path, "user", "quota", ALICE, "1536K")) \
        == f"quota of {ALICE} set to 1572864 bytes (1.5 MiB)\n"
    assert ok(mailyard(tmp_path, "user", "list")) \
        == f"{ALICE}\t0/1572864 bytes\t0 B of 1.5 MiB (0%)\n"
    ok(mailyard(tmp_path, "import", ALICE, "two.mbox"))
    address, exact, readable = ok(mailyard(tmp_path, "user", "list")).rstrip("\n").split("\t")
    used = int(exact.split("/")[0])
    assert (address, exact) == (ALICE, f"{used}/1572864 bytes")
    assert 0 < used < 1024
    assert readable == f"{used} B of 1.5 MiB (0%)"


def test_an_empty_mail_list_says_so(tmp_path: Path) -> None:
    ok(mailyard(tmp_path, "domain", "add", "example.test"))
    ok(mailyard(tmp_path, "user", "add", ALICE, "--password-stdin", input=b"secret\n"))
    result = mailyard(tmp_path, "mail", "list", ALICE, "--label", "Sent")
    assert (result.returncode, result.stdout) == (0, b"")
    assert result.stderr.decode() == f"{ALICE} has no emails in Sent\n"
    result = mailyard(tmp_path, "mail", "list", ALICE, "--json")
    assert result.stdout.decode().strip() == "[]"
