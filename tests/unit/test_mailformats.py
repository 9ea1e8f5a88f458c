"""mbox and Maildir formats (core/mailformats.py): byte-exact round trips, fuzzed."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mailyard.core import mailformats as mf

LINE = st.one_of(
    st.sampled_from([b"From me", b">From you", b">>From x", b"From", b"From ", b"", b">",
                     b"\r", b"Content-Length: 3", b"From: a@b", b">>>>From deep"]),
    st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")),
)


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    eol = draw(st.sampled_from([b"\n", b"\r\n"]))
    head = [b"Subject: " + draw(st.binary(max_size=20)).replace(b"\n", b"").replace(b"\r", b"")]
    body = draw(st.lists(LINE, max_size=12))
    return eol.join([*head, b"", *body]) + eol


@settings(max_examples=300, deadline=None)
@given(st.lists(messages(), min_size=1, max_size=6))
def test_mboxrd_write_read_is_byte_exact(raws: list[bytes]) -> None:
    data = mf.write_mbox((raw, "sender@example.test", 1_700_000_000_000 + i * 1000)
                         for i, raw in enumerate(raws))
    back = list(mf.iter_mbox(data))
    assert [m.raw for m in back] == raws
    assert [m.received_at for m in back] == [1_700_000_000_000 + i * 1000
                                             for i in range(len(raws))]
    assert {m.sender for m in back} == {"sender@example.test"}


@given(st.binary(max_size=200))
def test_quoting_is_reversible(raw: bytes) -> None:
    assert mf.unquote_from(mf.quote_from(raw)) == raw
    assert not any(line.startswith(b"From ") for line in mf.quote_from(raw).split(b"\n"))


def test_mboxcl2_content_length_is_honoured_and_nothing_unquoted() -> None:
    data = (b"From a@b Mon Jan  1 00:00:00 2024\nContent-Length: 25\n\n"
            b"From the body\n>From kept\n\n"
            b"From c@d Mon Jan  1 00:00:01 2024\nSubject: two\n\n>From quoted\n\n")
    first, second = mf.iter_mbox(data)
    assert first.raw == b"Content-Length: 25\n\nFrom the body\n>From kept\n"
    assert second.raw == b"Subject: two\n\nFrom quoted\n"  # no valid length: mboxrd
    assert second.sender == "c@d"


def test_content_length_that_misses_the_boundary_is_ignored() -> None:
    data = b"From a Mon Jan  1 00:00:00 2024\nContent-Length: 2\n\n>From x\nend\n\n"
    [only] = mf.iter_mbox(data)
    assert only.raw == b"Content-Length: 2\n\nFrom x\nend\n"


def test_not_an_mbox() -> None:
    try:
        list(mf.iter_mbox(b"Subject: x\n\nbody\n"))
    except mf.MboxError:
        return
    raise AssertionError("accepted a file that is no mbox")


def test_maildir_flags_both_ways() -> None:
    custom = mf.parse_dovecot_keywords("0 work\n1 $Label2\n")
    assert mf.maildir_keywords("1.x.host:2,FRSTab", custom) == [
        "$flagged", "$answered", "$seen", "$deleted", "work", "$label2"]
    assert mf.maildir_keywords("1.x.host", custom) == []
    letters = mf.dovecot_keywords(["$seen", "work", "$junk"])
    assert letters == {"$junk": "a", "work": "b"}
    assert mf.maildir_info(["$seen", "$draft", "work", "$junk"], letters) == ":2,DSab"


@given(st.lists(st.text(min_size=1, max_size=8).filter(lambda t: "/" not in t), min_size=1,
                max_size=3))
def test_folder_names_round_trip(parts: list[str]) -> None:
    label = "/".join(parts)
    assert mf.folder_to_label(mf.label_to_folder(label)[:]) == label or "&" in label


@given(st.text(max_size=20))
def test_modified_utf7_round_trip(name: str) -> None:
    assert mf.mutf7_decode(mf.mutf7_encode(name)) == name


def test_imap_dates_and_flags() -> None:
    assert mf.parse_internaldate(" 7-Jul-1996 02:44:25 -0700") == 836732665000
    assert mf.parse_internaldate("garbage") is None
    assert mf.imap_keywords(["\\Seen", "\\Recent", "$Forwarded", "\\Deleted"]) == [
        "$seen", "$forwarded", "$deleted"]
