"""SEARCH as RFC 3501 §6.4.4 / RFC 9051 §6.4.4, RFC 4731 (ESEARCH), RFC 5182 (SEARCHRES),
RFC 7162 §3.1.5 (MODSEQ), RFC 5267 (CONTEXT=SEARCH) and RFC 9394 (PARTIAL) say, in scripted
transcripts: client lines and the exact server lines.

Every message is APPENDed by the script itself, so its octets are known; messages are named by
the UIDs their APPENDUID gave, never by arrival order.
"""

from __future__ import annotations

import re
import time

from tests.e2e.server import Server
from tests.e2e.transcript import LOGIN, TranscriptError, Wire, play

ALICE = LOGIN.format(user="alice@example.test")

JOE = ('From: "Joe Q" (the boss) <joe@x.test>\\nTo: friends: ann@a.test, bob@b.test;\\n'
       "Cc: undisclosed-recipients:;\\nBcc: secret: eve@e.test;\\n"
       "Date: Mon, 1 Jan 2024 23:30:00 -0500\\nSubject: alpha\\nX-Note: zebraword\\n\\n"
       "plain body text\\n")
CAROL = ("From: carol@c.test\\nTo: dave@d.test\\nDate: Tue, 2 Jan 2024 00:30:00 +0200\\n"
         "Subject: beta\\n\\nanother body\\n")
JURGEN = ("From: =?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <jm@x.test>\\nTo: dave@d.test\\n"
          "Subject: gamma\\n\\nno date field here\\n")


def connect(server: Server) -> Wire:
    wire = Wire.connect(server.imap_port)
    greeting = wire.line()
    assert greeting.startswith("* OK"), greeting
    play(wire, ALICE)
    return wire


def append(wire: Wire, tag: str, message: str, flags: str = "", box: str = "INBOX",
           date: str = "") -> str:
    """APPEND `message`; its UID (from APPENDUID). Untagged lines before the tagged OK (EXISTS
    when the session has the mailbox selected) are not this file's subject."""
    extra = (f" ({flags})" if flags else "") + (f' "{date}"' if date else "")
    body = message.replace("\\n", "\r\n").encode()
    wire.send(f"{tag} APPEND {box}{extra} {{{len(body)}+}}\r\n".encode() + body + b"\r\n")
    while not (line := wire.line()).startswith(tag + " "):
        pass
    found = re.fullmatch(rf"{tag} OK \[APPENDUID \d+ (\d+)\] .*", line)
    assert found is not None, line
    return found.group(1)


def do(wire: Wire, command: str) -> list[str]:
    """Run a command of the other session whose untagged lines do not matter; they are
    returned."""
    lines, done = until_tagged(wire, command)
    assert done.startswith(command.split(" ", 1)[0] + " OK"), done
    return lines


def until_tagged(wire: Wire, command: str) -> tuple[list[str], str]:
    """Send `command` and read to its tagged reply: (untagged lines, tagged line). For replies
    whose untagged part is not this file's subject (SELECT, NOOP)."""
    tag = command.split(" ", 1)[0]
    wire.send(command.encode() + b"\r\n")
    lines = []
    while not (line := wire.line()).startswith(tag + " "):
        lines.append(line)
    return lines, line


def select(wire: Wire, box: str = "INBOX") -> None:
    _, done = until_tagged(wire, f"sel SELECT {box}")
    assert done.startswith("sel OK"), done


# --------------------------------------------------------------------------- 1. addresses


def test_address_keys_match_display_names_comments_and_groups(server: Server) -> None:
    """FROM/TO/CC/BCC are substrings of the field's decoded value (RFC 3501 §6.4.4 "contains the
    specified string in the envelope structure's FROM field"; Dovecot matches the decoded
    header): display names, comments and group names are in it."""
    wire = connect(server)
    joe, carol = append(wire, "a1", JOE), append(wire, "a2", CAROL)
    jurgen = append(wire, "a3", JURGEN)
    select(wire)
    play(wire, f"""
C: s1 UID SEARCH FROM "the boss"
S: * SEARCH {joe}
S~ s1 OK .*
C: s2 UID SEARCH FROM "joe q"
S: * SEARCH {joe}
S~ s2 OK .*
C: s3 UID SEARCH FROM joe@x.test
S: * SEARCH {joe}
S~ s3 OK .*
C: s4 UID SEARCH TO friends
S: * SEARCH {joe}
S~ s4 OK .*
C: s5 UID SEARCH TO bob@b.test
S: * SEARCH {joe}
S~ s5 OK .*
C: s6 UID SEARCH CC undisclosed-recipients
S: * SEARCH {joe}
S~ s6 OK .*
C: s7 UID SEARCH BCC secret
S: * SEARCH {joe}
S~ s7 OK .*
C: s8 UID SEARCH NOT TO friends
S: * SEARCH {carol} {jurgen}
S~ s8 OK .*
C: s9 UID SEARCH CHARSET UTF-8 FROM {{{{jürgen m}}}}
S: * SEARCH {jurgen}
S~ s9 OK .*
C: s10 UID SEARCH OR FROM carol TO friends
S: * SEARCH {joe} {carol}
S~ s10 OK .*
C: s11 UID SEARCH FROM nobody-here
S: * SEARCH
S~ s11 OK .*
""")
    wire.close()


# --------------------------------------------------------------------------- 2. TEXT and BODY


def test_text_is_header_and_body_body_is_body(server: Server) -> None:
    """TEXT: "contains the specified string in the header or body"; BODY: "in the body"."""
    wire = connect(server)
    joe, carol = append(wire, "a1", JOE), append(wire, "a2", CAROL)
    select(wire)
    play(wire, f"""
C: t1 UID SEARCH TEXT zebraword
S: * SEARCH {joe}
S~ t1 OK .*
C: t2 UID SEARCH BODY zebraword
S: * SEARCH
S~ t2 OK .*
C: t3 UID SEARCH TEXT "plain body"
S: * SEARCH {joe}
S~ t3 OK .*
C: t4 UID SEARCH BODY "another body"
S: * SEARCH {carol}
S~ t4 OK .*
C: t5 UID SEARCH TEXT beta
S: * SEARCH {carol}
S~ t5 OK .*
C: t6 UID SEARCH TEXT "x-note: zebra"
S: * SEARCH {joe}
S~ t6 OK .*
C: t7 UID SEARCH NOT TEXT zebraword
S: * SEARCH {carol}
S~ t7 OK .*
C: t8 UID SEARCH TEXT zq
S: * SEARCH
S~ t8 OK .*
""")
    wire.close()


# --------------------------------------------------------------------------- 3. dates


def test_sent_dates_are_the_date_fields_own_day(server: Server) -> None:
    """SENTBEFORE/SENTON/SENTSINCE: the Date: field "disregarding time and timezone", i.e. the
    day it names in its own zone: 23:30 -0500 on 1 January is SENTON 1-Jan-2024 (2 January in
    UTC), 00:30 +0200 on 2 January is SENTON 2-Jan-2024 (1 January in UTC). A message without
    a Date: field is sent on no day."""
    wire = connect(server)
    joe, carol = append(wire, "a1", JOE), append(wire, "a2", CAROL)
    append(wire, "a3", JURGEN)
    select(wire)
    play(wire, f"""
C: d1 UID SEARCH SENTON 1-Jan-2024
S: * SEARCH {joe}
S~ d1 OK .*
C: d2 UID SEARCH SENTON 2-Jan-2024
S: * SEARCH {carol}
S~ d2 OK .*
C: d3 UID SEARCH SENTBEFORE 2-Jan-2024
S: * SEARCH {joe}
S~ d3 OK .*
C: d4 UID SEARCH SENTSINCE 2-Jan-2024
S: * SEARCH {carol}
S~ d4 OK .*
C: d5 UID SEARCH SENTSINCE 1-Jan-1970
S: * SEARCH {joe} {carol}
S~ d5 OK .*
C: d6 UID SEARCH NOT SENTSINCE 1-Jan-1970
S~ \\* SEARCH \\d+
S~ d6 OK .*
""")
    wire.close()


def test_internal_dates_are_the_day_internaldate_shows(server: Server) -> None:
    """BEFORE/ON/SINCE: the internal date "disregarding time and timezone". Our INTERNALDATE is
    shown in UTC (+0000), so the day compared is the day FETCH INTERNALDATE shows: an APPEND
    dated 23:30 -0500 on 1 January is ON 2-Jan-2024."""
    wire = connect(server)
    late = append(wire, "a1", CAROL, date="01-Jan-2024 23:30:00 -0500")
    early = append(wire, "a2", JOE, date="01-Jan-2024 10:00:00 +0000")
    select(wire)
    play(wire, f"""
C: f1 UID FETCH {late} INTERNALDATE
S: * 1 FETCH (UID {late} INTERNALDATE "02-Jan-2024 04:30:00 +0000")
S~ f1 OK .*
C: i1 UID SEARCH ON 2-Jan-2024
S: * SEARCH {late}
S~ i1 OK .*
C: i2 UID SEARCH ON 1-Jan-2024
S: * SEARCH {early}
S~ i2 OK .*
C: i3 UID SEARCH BEFORE 2-Jan-2024
S: * SEARCH {early}
S~ i3 OK .*
C: i4 UID SEARCH SINCE 2-Jan-2024
S: * SEARCH {late}
S~ i4 OK .*
""")
    wire.close()


# --------------------------------------------------------------------------- 4. MODSEQ


def test_search_modseq_returns_the_highest_modseq(server: Server) -> None:
    """RFC 7162 §3.1.5: a SEARCH with MODSEQ answers `* SEARCH ... (MODSEQ n)`, n the highest
    mod-sequence of the messages found (none found: no MODSEQ); with ESEARCH, `MODSEQ n` in
    the ESEARCH response, over the messages MIN/MAX return when only those are asked for.
    SEARCH MODSEQ is a CONDSTORE enabling command (§3.1): HIGHESTMODSEQ comes first."""
    wire = connect(server)
    u1, u2 = append(wire, "a1", JOE), append(wire, "a2", CAROL)
    u3 = append(wire, "a3", JURGEN)
    select(wire)
    found = play(wire, f"""
C: m1 UID SEARCH MODSEQ 1
S~ \\* OK \\[HIGHESTMODSEQ (?P<highest>\\d+)\\] .*
S~ \\* SEARCH {u1} {u2} {u3} \\(MODSEQ (?P<all>\\d+)\\)
S~ m1 OK .*
C: f1 UID FETCH {u1}:{u3} (MODSEQ)
S~ \\* 1 FETCH \\(UID {u1} MODSEQ \\((?P<m1>\\d+)\\)\\)
S~ \\* 2 FETCH \\(UID {u2} MODSEQ \\((?P<m2>\\d+)\\)\\)
S~ \\* 3 FETCH \\(UID {u3} MODSEQ \\((?P<m3>\\d+)\\)\\)
S~ f1 OK .*
""")
    m1, m2, m3 = int(found["m1"]), int(found["m2"]), int(found["m3"])
    assert int(found["all"]) == max(m1, m2, m3) <= int(found["highest"])
    # Bump the first message: it alone is now past the others' mod-sequence.
    bumped = play(wire, f"""
C: st UID STORE {u1} +FLAGS (\\Flagged)
S~ \\* 1 FETCH \\(.*MODSEQ \\((?P<m>\\d+)\\).*\\)
S~ st OK .*
""")
    m = int(bumped["m"])
    assert m > max(m2, m3)
    play(wire, f"""
C: m2 UID SEARCH MODSEQ {m}
S: * SEARCH {u1} (MODSEQ {m})
S~ m2 OK .*
C: m3 SEARCH MODSEQ {m + 1}
S: * SEARCH
S~ m3 OK .*
C: e1 SEARCH RETURN (MIN MAX) MODSEQ 1
S: * ESEARCH (TAG "e1") MIN 1 MAX 3 MODSEQ {max(m3, m)}
S~ e1 OK .*
C: e2 UID SEARCH RETURN (MAX) MODSEQ 1
S: * ESEARCH (TAG "e2") UID MAX {u3} MODSEQ {m3}
S~ e2 OK .*
C: e3 UID SEARCH RETURN (COUNT) MODSEQ 1
S: * ESEARCH (TAG "e3") UID COUNT 3 MODSEQ {m}
S~ e3 OK .*
C: e4 UID SEARCH RETURN () MODSEQ {m}
S: * ESEARCH (TAG "e4") UID ALL {u1} MODSEQ {m}
S~ e4 OK .*
C: e5 UID SEARCH RETURN (MIN) MODSEQ {m + 1}
S: * ESEARCH (TAG "e5") UID
S~ e5 OK .*
""")
    wire.close()


def test_search_modseq_after_condstore_sends_no_second_highestmodseq(server: Server) -> None:
    wire = connect(server)
    u1 = append(wire, "a1", JOE)
    play(wire, """
C: en ENABLE CONDSTORE
S: * ENABLED CONDSTORE
S~ en OK .*
""")
    select(wire)
    play(wire, f"""
C: m1 UID SEARCH MODSEQ 1
S~ \\* SEARCH {u1} \\(MODSEQ \\d+\\)
S~ m1 OK .*
""")
    wire.close()


# --------------------------------------------------------------------------- 5. \Recent


def test_new_old_recent(server: Server) -> None:
    """RFC 3501 §6.4.4: RECENT has \\Recent set; NEW is RECENT UNSEEN; OLD is NOT RECENT.
    \\Recent belongs to the first session that sees the message (§2.3.2)."""
    first = connect(server)
    seen = append(first, "a1", JOE, flags="\\Seen")
    unseen = append(first, "a2", CAROL)
    select(first)
    play(first, f"""
C: r1 UID SEARCH RECENT
S: * SEARCH {seen} {unseen}
S~ r1 OK .*
C: r2 UID SEARCH NEW
S: * SEARCH {unseen}
S~ r2 OK .*
C: r3 UID SEARCH OLD
S: * SEARCH
S~ r3 OK .*
C: r4 UID SEARCH NOT NEW
S: * SEARCH {seen}
S~ r4 OK .*
""")
    second = connect(server)
    select(second)
    play(second, f"""
C: r5 UID SEARCH RECENT
S: * SEARCH
S~ r5 OK .*
C: r6 UID SEARCH OLD
S: * SEARCH {seen} {unseen}
S~ r6 OK .*
C: r7 UID SEARCH NEW
S: * SEARCH
S~ r7 OK .*
""")
    first.close()
    second.close()


# --------------------------------------------------------------------------- 6. PARTIAL


def test_partial(server: Server) -> None:
    """RFC 9394 §3.1: RETURN (PARTIAL n:m) returns the n-th to m-th result (-1 being the last),
    as `PARTIAL (range set)` or `PARTIAL (range NIL)`; with MIN/MAX/COUNT, not with ALL."""
    wire = connect(server)
    uids = [int(append(wire, f"a{i}", CAROL.replace("beta", f"beta{i}"))) for i in range(5)]
    select(wire)
    assert uids == list(range(uids[0], uids[0] + 5))
    u = uids
    play(wire, f"""
C: p1 UID SEARCH RETURN (PARTIAL 1:2) ALL
S: * ESEARCH (TAG "p1") UID PARTIAL (1:2 {u[0]}:{u[1]})
S~ p1 OK .*
C: p2 UID SEARCH RETURN (PARTIAL -1:-2) ALL
S: * ESEARCH (TAG "p2") UID PARTIAL (-1:-2 {u[3]}:{u[4]})
S~ p2 OK .*
C: p3 UID SEARCH RETURN (PARTIAL 3:1) ALL
S: * ESEARCH (TAG "p3") UID PARTIAL (1:3 {u[0]}:{u[2]})
S~ p3 OK .*
C: p4 UID SEARCH RETURN (PARTIAL 4:100) ALL
S: * ESEARCH (TAG "p4") UID PARTIAL (4:100 {u[3]}:{u[4]})
S~ p4 OK .*
C: p5 UID SEARCH RETURN (PARTIAL 6:10) ALL
S: * ESEARCH (TAG "p5") UID PARTIAL (6:10 NIL)
S~ p5 OK .*
C: p6 SEARCH RETURN (PARTIAL -2:-1) ALL
S: * ESEARCH (TAG "p6") PARTIAL (-1:-2 4:5)
S~ p6 OK .*
C: p7 UID SEARCH RETURN (MIN COUNT PARTIAL 2:3) NOT UID {u[2]}
S: * ESEARCH (TAG "p7") UID MIN {u[0]} COUNT 4 PARTIAL (2:3 {u[1]},{u[3]})
S~ p7 OK .*
C: p8 UID SEARCH RETURN (PARTIAL -10:-6) ALL
S: * ESEARCH (TAG "p8") UID PARTIAL (-6:-10 NIL)
S~ p8 OK .*
C: b1 UID SEARCH RETURN (PARTIAL 1:2 ALL) ALL
S~ b1 BAD .*
C: b2 UID SEARCH RETURN (PARTIAL 0:5) ALL
S~ b2 BAD .*
C: b3 UID SEARCH RETURN (PARTIAL 1:*) ALL
S~ b3 BAD .*
C: b4 UID SEARCH RETURN (PARTIAL -1:5) ALL
S~ b4 BAD .*
C: b5 UID SEARCH RETURN (PARTIAL) ALL
S~ b5 BAD .*
C: b6 UID SEARCH RETURN (PARTIAL 1:2 PARTIAL 3:4) ALL
S~ b6 BAD .*
""")
    wire.close()


def test_save_keeps_what_min_max_and_partial_return(server: Server) -> None:
    """RFC 5182 §2.1: SAVE with MIN and/or MAX (no ALL, no COUNT) saves only those messages;
    with PARTIAL, the window returned."""
    wire = connect(server)
    u = [int(append(wire, f"a{i}", CAROL.replace("beta", f"beta{i}"))) for i in range(4)]
    select(wire)
    play(wire, f"""
C: s1 UID SEARCH RETURN (SAVE MIN) ALL
S: * ESEARCH (TAG "s1") UID MIN {u[0]}
S~ s1 OK .*
C: s2 UID SEARCH UID $
S: * SEARCH {u[0]}
S~ s2 OK .*
C: s3 UID SEARCH RETURN (SAVE MIN MAX) ALL
S: * ESEARCH (TAG "s3") UID MIN {u[0]} MAX {u[3]}
S~ s3 OK .*
C: s4 UID SEARCH $
S: * SEARCH {u[0]} {u[3]}
S~ s4 OK .*
C: s5 UID SEARCH RETURN (SAVE MIN COUNT) ALL
S: * ESEARCH (TAG "s5") UID MIN {u[0]} COUNT 4
S~ s5 OK .*
C: s6 UID SEARCH $
S: * SEARCH {u[0]} {u[1]} {u[2]} {u[3]}
S~ s6 OK .*
C: s7 UID SEARCH RETURN (SAVE PARTIAL -1:-2) ALL
S: * ESEARCH (TAG "s7") UID PARTIAL (-1:-2 {u[2]}:{u[3]})
S~ s7 OK .*
C: s8 UID SEARCH $
S: * SEARCH {u[2]} {u[3]}
S~ s8 OK .*
C: s9 UID SEARCH RETURN (SAVE) 1
S~ s9 OK .*
C: s10 UID SEARCH $
S: * SEARCH {u[0]}
S~ s10 OK .*
""")
    wire.close()


# --------------------------------------------------------------------------- 6. CONTEXT=SEARCH


def _updates(wire: Wire, want: set[str], timeout: float = 30.0) -> list[str]:
    """NOOP until every line of `want` has come (the other session's change reaches this one
    through the account's events); all the untagged lines seen, in order."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    n = 0
    while not want <= set(seen):
        if time.monotonic() > deadline:
            raise TranscriptError(f"still waiting for {want - set(seen)}; got {seen}")
        n += 1
        lines, done = until_tagged(wire, f"n{n} NOOP")
        assert done.startswith(f"n{n} OK"), done
        seen += lines
        if not lines:
            time.sleep(0.05)
    return seen


def test_context_search_update(server: Server) -> None:
    """RFC 5267 §4: SEARCH RETURN (UPDATE) answers like ESEARCH ALL, then keeps the result up to
    date with `ADDTO` / `REMOVETO` (position 0 for SEARCH) after the EXISTS/FETCH that changed
    it, in UIDs for UID SEARCH and sequence numbers for SEARCH; an expunged message needs no
    REMOVETO; CANCELUPDATE ends it."""
    watcher, other = connect(server), connect(server)
    u1 = append(other, "a1", JOE)
    u2 = append(other, "a2", CAROL, flags="\\Seen")
    select(watcher)
    select(other)
    play(watcher, f"""
C: U1 UID SEARCH RETURN (UPDATE) UNSEEN
S: * ESEARCH (TAG "U1") UID ALL {u1}
S~ U1 OK .*
C: U2 SEARCH RETURN (UPDATE COUNT) FLAGGED
S: * ESEARCH (TAG "U2") COUNT 0
S~ U2 OK .*
C: U3 UID SEARCH RETURN (UPDATE) SUBJECT beta
S: * ESEARCH (TAG "U3") UID ALL {u2}
S~ U3 OK .*
""")
    u3 = append(other, "a3", CAROL.replace("beta", "delta"))
    do(other, f"o1 UID STORE {u1} +FLAGS.SILENT (\\Seen \\Flagged)")
    seen = _updates(watcher, {
        "* 3 EXISTS",
        f'* ESEARCH (TAG "U1") UID REMOVETO (0 {u1})',
        f'* ESEARCH (TAG "U1") UID ADDTO (0 {u3})',
        '* ESEARCH (TAG "U2") ADDTO (0 1)',
    })
    assert seen.index("* 3 EXISTS") < seen.index(f'* ESEARCH (TAG "U1") UID ADDTO (0 {u3})')
    assert not [line for line in seen if 'TAG "U3"' in line]  # its result did not change
    # An expunge removes from every context without a REMOVETO; CANCELUPDATE ends U1.
    play(watcher, """
C: c1 CANCELUPDATE "U1"
S~ c1 OK .*
""")
    do(other, f"o2 UID STORE {u2} +FLAGS.SILENT (\\Deleted)")
    assert "* 2 EXPUNGE" in do(other, "o3 EXPUNGE")
    do(other, f"o4 UID STORE {u3} +FLAGS.SILENT (\\Flagged)")
    seen = _updates(watcher, {"* 2 EXPUNGE", '* ESEARCH (TAG "U2") ADDTO (0 2)'})
    assert not [line for line in seen if "REMOVETO" in line or 'TAG "U1"' in line], seen
    # Deselecting ends every context.
    play(watcher, """
C: x1 UNSELECT
S~ x1 OK .*
""")
    select(watcher)
    append(other, "a4", JOE)
    seen = _updates(watcher, {"* 3 EXISTS"})
    assert not [line for line in seen if "ESEARCH" in line], seen
    watcher.close()
    other.close()


def test_context_search_limits_and_syntax(server: Server) -> None:
    wire = connect(server)
    u1 = append(wire, "a1", JOE)
    select(wire)
    script = "".join(f"""
C: k{i} UID SEARCH RETURN (UPDATE) ALL
S: * ESEARCH (TAG "k{i}") UID ALL {u1}
S~ k{i} OK .*
""" for i in range(16))
    play(wire, script + f"""
C: k16 UID SEARCH RETURN (UPDATE) ALL
S: * NO [NOUPDATE "k16"] Too many search contexts
S: * ESEARCH (TAG "k16") UID ALL {u1}
S~ k16 OK .*
C: c1 CANCELUPDATE "k0" "k1"
S~ c1 OK .*
C: k17 UID SEARCH RETURN (UPDATE CONTEXT) ALL
S: * ESEARCH (TAG "k17") UID ALL {u1}
S~ k17 OK .*
C: c2 CANCELUPDATE
S~ c2 BAD .*
C: c3 CANCELUPDATE k2
S~ c3 BAD .*
C: c4 CAPABILITY
S~ \\* CAPABILITY .* CONTEXT=SEARCH.*
S~ c4 OK .*
""")
    wire.close()
