"""core.emailsort: the base-subject shortcut agrees with RFC 5256's algorithm on any text."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mailyard.core.emailsort import base
from mailyard.core.imapthread import base_subject

PIECES = st.sampled_from(["Re:", "re :", "Fwd:", "FW:", "[list]", "[fwd: ", "]", "(fwd)",
                          "(FWD)", " ", "  ", "\t", "\r\n ", ":", "[", "(", "x", "Réunion",
                          "meeting", "re", "fwd"])


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.one_of(PIECES, st.text(max_size=3)), max_size=8).map("".join))
def test_shortcut_is_the_algorithm(subject: str) -> None:
    assert base(subject) == base_subject(subject).text


def test_examples() -> None:
    assert base("Lunch") == "Lunch"
    assert base("Re: lunch") == "lunch"
    assert base(" padded ") == "padded"
    assert base("[list] Fwd: budget (fwd)") == "budget"
