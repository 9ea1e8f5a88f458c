"""Global options in either position, --version, help texts, `config check|sample`,
internationalised domains, `mail list --limit`, and X-GM-RAW's answer to an operator value
it cannot read. Real `mailyard` processes (and one real server for IMAP)."""

from __future__ import annotations

import argparse
import imaplib
import re
import socket
import subprocess
import tomllib
from importlib.metadata import version
from pathlib import Path

import orjson
import pytest

from mailyard.cli import build_parser
from mailyard.configdoc import sample
from tests.e2e.server import Server
from tests.e2e.test_cli_errors import ALICE, mailyard, mbox, ok

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("before", [True, False], ids=["before", "after"])
def test_data_dir_in_either_position(tmp_path: Path, before: bool) -> None:
    def run(*args: str, option: list[str]) -> str:
        words = [*option, *args] if before else [*args, *option]
        return ok(mailyard(tmp_path, *words))

    option = ["--data-dir", str(tmp_path / "d")]
    assert run("domain", "add", "example.test", option=option) == "domain example.test added\n"
    assert run("domain", "list", option=option) == "example.test\n"
    assert run("user", "list", option=option) == ""
    assert (tmp_path / "d").is_dir()
    assert not (tmp_path / "mailyard-data").exists(), "the option was ignored"
    assert ok(mailyard(tmp_path, "domain", "list", "--data-dir=" + str(tmp_path / "d"))) \
        == "example.test\n"


@pytest.mark.parametrize("before", [True, False], ids=["before", "after"])
def test_config_in_either_position(tmp_path: Path, before: bool) -> None:
    config = tmp_path / "conf" / "mailyard.toml"
    config.parent.mkdir()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config.write_text(f'data_dir = "data"\n[listen]\nsmtp = "127.0.0.1:{port}"\n')

        def run(*args: str) -> subprocess.CompletedProcess[bytes]:
            words = ["--config", str(config)]
            return mailyard(tmp_path, *(words + list(args) if before else list(args) + words))

        served = run("serve")
        assert served.returncode == 2
        assert f'[listen] smtp = "127.0.0.1:{port}"' in served.stderr.decode(), \
            "serve ran on the default ports, not the config's"
    assert ok(run("domain", "add", "example.test")) == "domain example.test added\n"
    assert (tmp_path / "conf" / "data").is_dir()
    assert not (tmp_path / "mailyard-data").exists()
    checked = ok(run("config", "check"))
    assert tomllib.loads(checked)["listen"]["smtp"] == f"127.0.0.1:{port}"


def test_both_positions_the_later_wins(tmp_path: Path) -> None:
    ok(mailyard(tmp_path, "--data-dir", "one", "domain", "add", "example.test",
                "--data-dir", "two"))
    assert (tmp_path / "two").is_dir() and not (tmp_path / "one").exists()


def test_version(tmp_path: Path) -> None:
    result = mailyard(tmp_path, "--version")
    assert result.returncode == 0
    assert result.stdout.decode() == f"mailyard {version('mailyard')}\n"


def _parsers(parser: argparse.ArgumentParser, path: str) -> list[tuple[str,
                                                                        argparse.ArgumentParser]]:
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helped = {a.dest for a in action._choices_actions}
            for name, sub in action.choices.items():
                assert name in helped, f"`{path} {name}` has no help text"
                found += _parsers(sub, f"{path} {name}")
    return found


def test_every_command_and_option_has_help() -> None:
    parsers = _parsers(build_parser(admin=True), "mailyard")
    assert len(parsers) >= 50
    for path, parser in parsers:
        assert parser.description, f"`{path}` has no description"
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help, f"`{path}`: {action.option_strings or action.dest} has no help"


def test_help_names_every_command(tmp_path: Path) -> None:
    text = ok(mailyard(tmp_path, "--help"))
    for command in ("serve", "config", "domain", "user", "queue", "dlq", "mail", "search",
                    "reindex", "token", "policy", "import", "export", "fsck", "gc",
                    "account"):
        assert f"    {command} " in text, command
    assert "--version" in text and "--data-dir" in text


def test_config_sample_and_check(tmp_path: Path) -> None:
    assert ok(mailyard(tmp_path, "config", "sample")) == sample() \
        == (ROOT / "mailyard.example.toml").read_text()
    result = mailyard(tmp_path, "config", "check", str(ROOT / "mailyard.example.toml"))
    assert result.returncode == 0, result.stderr
    assert result.stderr.decode().endswith("mailyard.example.toml: valid\n")
    assert tomllib.loads(result.stdout.decode())["limits"]["message_size"] == 36_700_160
    defaults = mailyard(tmp_path, "config", "check")
    assert defaults.returncode == 0 and b"built-in defaults" in defaults.stderr
    assert tomllib.loads(defaults.stdout.decode())["hostname"] == "localhost"
    (tmp_path / "tls.toml").write_text('[tls]\ncertificate = "nope.pem"\n')
    missing = mailyard(tmp_path, "config", "check", "tls.toml")
    assert missing.returncode == 2 and b"tls.certificate: nope.pem" in missing.stderr


def test_internationalised_domains_are_stored_as_a_labels(tmp_path: Path) -> None:
    assert ok(mailyard(tmp_path, "domain", "add", "Bücher.Example")) == \
        "domain xn--bcher-kva.example (bücher.example) added\n"
    again = mailyard(tmp_path, "domain", "add", "xn--bcher-kva.example")
    assert again.returncode == 2, "the same domain in its other form"
    assert ok(mailyard(tmp_path, "domain", "list")) == "xn--bcher-kva.example (bücher.example)\n"
    ok(mailyard(tmp_path, "user", "add", "anna@xn--bcher-kva.example", "--password-stdin",
                input=b"pw\n"))
    assert ok(mailyard(tmp_path, "domain", "remove", "bücher.example.")) == \
        "domain xn--bcher-kva.example (bücher.example) removed\n"


def test_mail_list_says_when_it_stopped_at_the_limit(tmp_path: Path) -> None:
    (tmp_path / "three.mbox").write_text(mbox(3))
    ok(mailyard(tmp_path, "domain", "add", "example.test"))
    ok(mailyard(tmp_path, "user", "add", ALICE, "--password-stdin", input=b"pw\n"))
    ok(mailyard(tmp_path, "import", ALICE, "three.mbox"))
    cut = mailyard(tmp_path, "mail", "list", ALICE, "--limit", "2")
    assert cut.returncode == 0
    assert [line.split("\t")[3] for line in cut.stdout.decode().splitlines()] == \
        ["note 2", "note 1"]
    assert cut.stderr.decode() == \
        "mailyard: stopped at --limit 2: there are more emails (raise --limit)\n"
    whole = mailyard(tmp_path, "mail", "list", ALICE, "--limit", "3")
    assert whole.returncode == 0 and whole.stderr == b""
    assert len(whole.stdout.splitlines()) == 3
    as_json = mailyard(tmp_path, "mail", "list", ALICE, "--limit", "1", "--json")
    assert [e["subject"] for e in orjson.loads(as_json.stdout)] == ["note 2"]
    assert b"stopped at --limit 1" in as_json.stderr
    found = mailyard(tmp_path, "search", ALICE, "larger:1 before:2026/1/3")
    assert found.returncode == 0 and len(found.stdout.splitlines()) == 2, found.stderr


def test_x_gm_raw_answers_bad_for_a_value_it_cannot_read(tmp_path: Path) -> None:
    srv = Server(tmp_path)
    srv.start()
    try:
        srv.add_user(ALICE)
        imap = imaplib.IMAP4("127.0.0.1", srv.imap_port)
        imap.login(ALICE, "secret-password")
        imap.select("INBOX")
        for query, operator in (("larger:huge", "larger:"), ("is:bogus", "is:"),
                                ("before:notadate", "before:")):
            with pytest.raises(imaplib.IMAP4.error, match=operator):
                imap.uid("SEARCH", "X-GM-RAW", f'"{query}"')
        status, data = imap.uid("SEARCH", "X-GM-RAW", '"larger:1M"')
        assert status == "OK" and data == [b""]
        imap.logout()
    finally:
        srv.stop()


def test_an_idn_user_is_one_account_in_either_form(tmp_path: Path) -> None:
    """`user add` with the U-label domain finds the domain stored as its A-label, and mail
    to either form reaches the one account (issue 19)."""
    srv = Server(tmp_path)
    srv.cli("domain", "add", "bücher.example")
    added = srv.cli("user", "add", "anna@bücher.example", "--password-stdin", input=b"pw\n")
    assert added.stdout.decode() == \
        "user anna@xn--bcher-kva.example (anna@bücher.example) added\n"  # both forms
    listed = srv.cli("user", "list").stdout.decode()
    assert "anna@xn--bcher-kva.example" in listed, listed
    srv.start()
    try:
        import smtplib

        with smtplib.SMTP("127.0.0.1", srv.smtp_port) as smtp:
            smtp.sendmail("x@remote.test", ["anna@xn--bcher-kva.example"],
                          b"Subject: a-label\r\n\r\nhi\r\n")
            smtp.sendmail("x@remote.test", ["anna@b\xfccher.example"],
                          b"Subject: u-label\r\n\r\nhi\r\n", mail_options=["SMTPUTF8"])
        found = srv.wait_emails("anna@xn--bcher-kva.example", 2)
        assert sorted(e["subject"] for e in found) == ["a-label", "u-label"]
    finally:
        srv.stop()


def test_dkim_generate_prints_a_zone_line_and_says_whether_it_signs(tmp_path: Path) -> None:
    """The TXT record is cut into strings of at most 255 octets (RFC 1035 §3.3), ready for a
    zone file; for a domain that is not local (a typo, or not added yet) the command says
    that nothing is signed with the key until it is."""
    ok(mailyard(tmp_path, "domain", "add", "example.test"))
    generated = mailyard(tmp_path, "domain", "dkim", "generate", "example.test")
    [line] = ok(generated).splitlines()
    name, _, value = line.partition(" IN TXT ")
    assert name.endswith("._domainkey.example.test."), line
    strings = re.findall(r'"([^"]*)"', value)
    assert len(strings) == 2 and len(strings[0]) == 255, strings
    assert all(len(s) <= 255 for s in strings) and "".join(strings).startswith("v=DKIM1;")
    assert generated.stderr.decode().endswith("mail is signed from now on\n")
    typo = mailyard(tmp_path, "domain", "dkim", "generate", "exmaple.test")
    assert typo.returncode == 0 and typo.stdout.startswith(b"my")
    assert "mail is signed once exmaple.test is a local domain" in typo.stderr.decode()


def test_global_options_between_a_command_and_its_action(tmp_path: Path) -> None:
    """`mailyard domain --data-dir D add x`: the third place an option may stand (every
    level of subcommand takes --config and --data-dir)."""
    data = str(tmp_path / "d")
    assert ok(mailyard(tmp_path, "domain", "--data-dir", data, "add", "example.test")) \
        == "domain example.test added\n"
    config = tmp_path / "c.toml"
    config.write_text(f'data_dir = "{data}"\n')
    assert ok(mailyard(tmp_path, "domain", "--config", str(config), "list")) == "example.test\n"
    assert ok(mailyard(tmp_path, "domain", "dkim", "--data-dir", data, "show",
                       "example.test")) == ""
    assert not (tmp_path / "mailyard-data").exists(), "an option was ignored"
