"""The RFCs' own examples, parsed and run against sample messages (core/sieve): RFC 5228 (the
base language and its §9 example), 5229 variables, 5230 vacation, 5231 relational, 5232
imap4flags, 5233 subaddress, 5173 body, 5260 date, 5293 editheader, 5429 reject, 5490 mailbox,
7352 duplicate, 3894 copy, and the regex draft."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from mailyard.core.sieve import (
    Budget,
    Discard,
    Envelope,
    Environment,
    FileInto,
    Keep,
    Redirect,
    Reject,
    Result,
    ScriptTooLong,
    SieveMessage,
    SieveRuntimeError,
    SieveSyntaxError,
    Vacation,
    parse,
    run,
)

MESSAGE = (b"Date: Tue, 1 Apr 1997 09:06:31 -0800 (PST)\r\n"
           b"From: coyote@desert.example.org\r\n"
           b"To: roadrunner@acme.example.com\r\n"
           b"Subject: I have a present for you\r\n"
           b"Message-ID: <1234@desert.example.org>\r\n"
           b"X-Caffeine: C8H10N4O2\r\n"
           b"\r\n"
           b"Look, I'm sorry about the whole anvil thing, and I really\r\n"
           b"didn't mean to try and drop it on you from the top of the\r\n"
           b"cliff.  I want to try to make it up to you.  I've got some\r\n"
           b"great birdseed over here at my place--top of the line\r\n"
           b"stuff--and if you come by, I'll have it all wrapped up\r\n"
           b"for you.  I'm really sorry for all the problems I've caused\r\n"
           b"for you over the years, but I know we can work this out.\r\n"
           b"--\r\n"
           b"Wile E. Coyote   \"Super Genius\"   coyote@desert.example.org\r\n")
ENVELOPE = Envelope("coyote@desert.example.org", "roadrunner+birdseed@acme.example.com")


def sieve(script: str, message: bytes = MESSAGE, envelope: Envelope = ENVELOPE,
          env: Environment | None = None) -> Result:
    return run(parse(script), SieveMessage.from_bytes(message), envelope, env)


def stored(result: Result) -> list[str]:
    return ["INBOX" if isinstance(d, Keep) else d.mailbox for d in result.deliveries()]


# ------------------------------------------------------------------------------ RFC 5228


def test_rfc5228_section_9_example() -> None:
    """RFC 5228 §9, the complete example (with the fileinto mailboxes made names)."""
    script = r'''
#
# Example Sieve Filter
# Declare any optional features or extension used by the script
#
require ["fileinto"];

#
# Handle messages from known mailing lists
# Move messages from IETF filter discussion list to filter mailbox
#
if header :is "Sender" "owner-ietf-mta-filters@imc.org"
        {
        fileinto "filter";  # move to "filter" mailbox
        }
#
# Keep all messages to or from people in my company
#
elsif address :DOMAIN :is ["From", "To"] "example.com"
        {
        keep;               # keep in "In" mailbox
        }

#
# Try and catch unsolicited email.  If a message is not to me,
# or it contains a subject known to be spam, file it away.
#
elsif anyof (NOT address :all :contains
               ["To", "Cc", "Bcc"] "me@example.com",
             header :matches "subject"
               ["*make*money*fast*", "*university*dipl*mas*"])
        {
        fileinto "spam";   # move to "spam" mailbox
        }
else
        {
        # Move all other (non-company) mail to "personal"
        # mailbox.
        fileinto "personal";
        }
'''
    assert stored(sieve(script)) == ["spam"]  # not to me@example.com
    to_me = b"Cc: me@example.com\r\n" + MESSAGE
    assert stored(sieve(script, to_me)) == ["personal"]
    company = MESSAGE.replace(b"To: roadrunner@acme.example.com", b"To: boss@example.com")
    assert stored(sieve(script, company)) == ["INBOX"]
    listed = b"Sender: owner-ietf-mta-filters@imc.org\r\n" + MESSAGE
    assert stored(sieve(script, listed)) == ["filter"]
    money = to_me.replace(b"I have a present for you", b"Make lots of MONEY fast")
    assert stored(sieve(script, money)) == ["spam"]


def test_implicit_keep_and_discard() -> None:
    assert stored(sieve("")) == ["INBOX"]
    assert stored(sieve("discard;")) == []
    assert stored(sieve('require "fileinto"; fileinto "a"; fileinto "a"; keep;')) == [
        "a", "INBOX"]
    r = sieve('if size :over 100K { discard; } elsif size :under 1 { stop; } '
              'elsif exists ["X-Caffeine", "From"] { redirect "other@example.net"; }')
    assert r.actions == [Redirect("other@example.net")] and stored(r) == []


def test_header_match_types_and_comparators() -> None:
    """RFC 5228 §2.7: :is, :contains, :matches with ? and * and \\ escapes; i;octet is
    exact, i;ascii-casemap folds ASCII only."""
    def hit(test: str) -> bool:
        return stored(sieve(f'if {test} {{ discard; }}')) == []
    assert hit('header :contains "Subject" "PRESENT"')
    assert not hit('header :contains :comparator "i;octet" "Subject" "PRESENT"')
    assert hit('header :matches "Subject" "I have a ?resent *"')
    assert not hit('header :matches "Subject" "I have a \\\\?resent *"')
    assert hit('header :is "X-Caffeine" "c8h10n4o2"')
    assert hit('address :localpart :is "From" "COYOTE"')
    assert hit('not header :is "X-Nothing" ""')  # a missing field matches nothing
    assert hit('allof (true, not false, anyof (false, true))')


def test_encoded_character() -> None:
    r = sieve('require ["encoded-character", "fileinto"];'
              ' fileinto "${hex: 53 69 65 76 65}${unicode:20 263A}";')
    assert stored(r) == ["Sieve \u263a"]


def test_multiline_strings_and_comments() -> None:
    r = sieve('require "reject";\nreject text: # a comment\nline one\n..dot\n.\n;\n')
    assert r.actions == [Reject("line one\r\n.dot\r\n")]


@pytest.mark.parametrize(("script", "line", "words"), [
    ("keep", 1, "end of the script"),
    ('require "fileinto";\nif true {\nfileinto "x"\n}', 4, "after fileinto"),
    ('fileinto "x";', 1, 'require "fileinto"'),
    ('require "nonsense";', 1, "unsupported extension"),
    ("keep;\nrequire \"fileinto\";", 2, "before any other command"),
    ("elsif true { keep; }", 1, "without a preceding if"),
    ('if header :is :contains "a" "b" { }', 1, "exclude each other"),
    ('if header "a" { }', 1, "takes string-list string-list"),
    ('if size 5 { }', 1, ":over or :under"),
    ('"unterminated', 1, "unterminated string"),
    ("/* open comment\nkeep;", 1, "unterminated /* comment"),
    ("if true {\n\n\n keep;\n", 5, "expected a command"),
    ("redirect :copy \"a@b\";", 1, 'require "copy"'),
    ('if header :comparator "i;ascii-numeric" :is "a" "1" { }', 1, "comparator-"),
])
def test_syntax_errors_name_the_line(script: str, line: int, words: str) -> None:
    with pytest.raises(SieveSyntaxError) as e:
        parse(script)
    assert e.value.line == line, str(e.value)
    assert words in str(e.value)


# ------------------------------------------------------------------------------ extensions


def test_rfc3894_copy_and_rfc5490_mailbox() -> None:
    r = sieve('require ["copy", "fileinto", "mailbox"];'
              ' if mailboxexists "Archive" { fileinto :copy "Archive"; }'
              ' fileinto :create "New";',
              env=Environment(mailbox_exists=lambda n: n in ("INBOX", "Archive")))
    assert r.actions == [FileInto("Archive", copy=True), FileInto("New", create=True)]
    assert stored(r) == ["Archive", "New"]  # the implicit keep cancelled by fileinto


def test_rfc5429_reject_and_its_conflicts() -> None:
    r = sieve('require "reject"; if header :contains "subject" "present"'
              ' { reject "I don\'t want your present."; }')
    assert r.actions == [Reject("I don't want your present.")] and stored(r) == []
    r = sieve('require "ereject"; ereject "no";')
    assert r.actions == [Reject("no", extended=True)]
    with pytest.raises(SieveRuntimeError):
        sieve('require ["reject", "fileinto"]; fileinto "x"; reject "no";')


def test_rfc5230_vacation() -> None:
    """RFC 5230 §4's example, and :seconds (RFC 6131)."""
    r = sieve('''require "vacation";
if header :contains "subject" "cyrus" {
    vacation "I'm out -- send mail to cyrus-bugs";
} else {
    vacation "I'm out -- call me at +1 304 555 0123";
}''')
    assert r.actions == [Vacation("I'm out -- call me at +1 304 555 0123")]
    assert stored(r) == ["INBOX"]  # vacation leaves the implicit keep
    r = sieve('require ["vacation", "vacation-seconds"]; vacation :seconds 1800'
              ' :subject "Away" :from "me@example.com" :addresses ["a@x", "b@x"]'
              ' :handle "h1" :mime "Content-Type: text/plain\r\n\r\nbye";')
    assert r.actions == [Vacation("Content-Type: text/plain\r\n\r\nbye", "Away",
                                  "me@example.com", ("a@x", "b@x"), 1800, True, "h1")]
    with pytest.raises(SieveSyntaxError):
        parse('require "vacation"; vacation :days 0 "x";')
    with pytest.raises(SieveRuntimeError):
        sieve('require "vacation"; vacation "a"; vacation "b";')


def test_rfc5229_variables() -> None:
    """RFC 5229 §3 and §4 examples: match variables, modifiers, string test."""
    r = sieve('''require ["fileinto", "variables"];
if header :matches "List-ID" "*<*@*" {
    fileinto "INBOX.lists.${2}"; stop;
}
# Imagine the header
# Subject: [acme-users] [fwd] version 1.0 is out
if header :matches "Subject" "[*] *" {
    # ${1} will hold "acme-users",
    # ${2} will hold "[fwd] version 1.0 is out"
    fileinto "INBOX.lists.${1}"; stop;
}
set "state" "${state} pending";
if string :is "${state}" " pending" { fileinto "pending"; }''',
               b"List-ID: This is a mailing list <list-name@example.org>\r\n" + MESSAGE)
    assert stored(r) == ["INBOX.lists.list-name"]
    msg = MESSAGE.replace(b"I have a present for you",
                          b"[acme-users] [fwd] version 1.0 is out")
    r = sieve('require ["fileinto", "variables"];'
              ' if header :matches "Subject" "[*] *" { fileinto "INBOX.lists.${1}"; }', msg)
    assert stored(r) == ["INBOX.lists.acme-users"]
    r = sieve('''require ["variables", "fileinto"];
set "honorific"  "Mr";
set "first_name" "Wile";
set "last_name"  "Coyote";
set "vacation" "Dear ${HONORIFIC} ${last_name},";
set :length "length" "${vacation}";
set :upperfirst "b" "hello";
set :lower :upperfirst "c" "hEllO";
set :quotewildcard "d" "a*b?c\\\\";
fileinto "${vacation}|${length}|${b}|${c}|${d}|${unknown}";''')
    assert stored(r) == ["Dear Mr Coyote,|15|Hello|Hello|a\\*b\\?c\\\\|"]


def test_rfc5231_relational() -> None:
    """RFC 5231 §7's examples."""
    msg = (b"Received: ...\r\nReceived: ...\r\nSubject: example\r\nTo: foo@example.com,"
           b" baz@example.com\r\nCC: qux@example.com\r\n\r\nbody\r\n")
    def hit(test: str) -> bool:
        script = f'require ["relational", "comparator-i;ascii-numeric"]; if {test} {{ discard; }}'
        return stored(sieve(script, msg)) == []
    assert hit('header :count "ge" :comparator "i;ascii-numeric" ["received"] ["2"]')
    assert not hit('header :count "ge" :comparator "i;ascii-numeric" ["received"] ["3"]')
    assert hit('address :count "ge" :comparator "i;ascii-numeric" ["to", "cc"] ["3"]')
    assert not hit('header :value "gt" :comparator "i;ascii-casemap" "subject" "M"')
    assert hit('header :value "lt" :comparator "i;ascii-casemap" "subject" "M"')
    # no From: nothing to compare
    assert not hit('address :value "gt" :all :comparator "i;ascii-casemap" ["from"] ["M"]')


def test_rfc5232_imap4flags() -> None:
    r = sieve('''require ["imap4flags", "fileinto"];
if header :contains "From" "coyote" {
    setflag "\\\\Deleted";
    addflag ["\\\\Flagged", "$Work"];
    removeflag "\\\\Deleted";
    fileinto "Coyote";
}
if hasflag :contains "work" { fileinto :flags "\\\\Seen" "Seen"; }''')
    assert r.actions == [FileInto("Coyote", ("\\Flagged", "$Work")), FileInto("Seen", ("\\Seen",))]
    r = sieve('require ["imap4flags", "variables", "relational"]; set "f" "";'
              ' addflag "f" ["a b", "c"];'
              ' if hasflag :count "eq" "f" "3" { keep; } else { discard; }'
              ' addflag "z";')
    assert r.actions == [Keep(())] and r.flags == ("z",)


def test_rfc5233_subaddress() -> None:
    r = sieve('''require ["envelope", "subaddress", "fileinto"];
if envelope :user "to" "roadrunner" {
    if envelope :detail "to" "birdseed" { fileinto "birdseed"; }
}''')
    assert stored(r) == ["birdseed"]
    r = sieve('require ["envelope", "subaddress"];'
              ' if envelope :detail "to" "" { discard; }',
              envelope=Envelope("a@b", "roadrunner@acme.example.com"))
    assert stored(r) == ["INBOX"]  # no separator: :detail matches nothing
    r = sieve('require "envelope"; if envelope :all :is "from" "" { discard; }',
              envelope=Envelope("", "x@y"))
    assert stored(r) == []  # the null reverse-path is ""


def test_rfc5173_body() -> None:
    mime = (b"From: a@b\r\nSubject: mime\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/mixed; boundary="XX"\r\n\r\n'
            b"--XX\r\nContent-Type: text/plain\r\n\r\nthe MAKE MONEY fast part\r\n"
            b"--XX\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            b"PGI+aGlkZGVuIHdvcmQ8L2I+\r\n--XX\r\nContent-Type: application/octet-stream"
            b"\r\n\r\nbinary stuff\r\n--XX--\r\n")
    def hit(test: str) -> bool:
        return stored(sieve(f'require "body"; if {test} {{ discard; }}', mime)) == []
    assert hit('body :text :contains "make money"')
    assert hit('body :content "text/html" :contains "hidden word"')  # base64 decoded
    assert not hit('body :content "text/plain" :contains "hidden word"')
    assert hit('body :raw :contains "PGI+aGlkZGVu"')
    assert not hit('body :text :contains "binary stuff"')
    assert hit('body :content "application" :contains "binary stuff"')
    assert not hit('body :contains "birdseed"')


def test_rfc5260_date_and_currentdate() -> None:
    now = datetime(2026, 12, 6, 23, 30, tzinfo=UTC)
    env = Environment(now=now, zone=timezone(timedelta(hours=1)))
    def hit(test: str) -> bool:
        script = f'require ["date", "relational"]; if {test} {{ discard; }}'
        return stored(sieve(script, env=env)) == []
    assert hit('date :originalzone "date" "zone" "-0800"')
    assert hit('date :zone "+0000" "date" "iso8601" "1997-04-01T17:06:31+00:00"')
    assert hit('date "date" "hour" "18"')  # local zone +0100
    assert hit('date :originalzone "date" "weekday" "2"')  # a Tuesday
    assert hit('date :originalzone "date" "julian" "50539"')
    assert hit('currentdate "date" "2026-12-07"')  # 00:30 local
    assert hit('currentdate :zone "+0000" "date" "2026-12-06"')
    assert hit('currentdate :value "ge" "date" "2026-01-01"')
    assert not hit('date "x-no-such-field" "year" "1997"')


def test_regex() -> None:
    r = sieve('require ["regex", "variables", "fileinto"];'
              ' if header :regex "subject" "^I have a ([a-z]+) for ([[:alpha:]]+)$"'
              ' { fileinto "${1}-${2}"; }')
    assert stored(r) == ["present-you"]
    with pytest.raises(SieveSyntaxError):
        parse('require "regex"; if header :regex "subject" "([a-z]" { }')
    with pytest.raises(SieveSyntaxError):
        parse('require "regex"; if header :regex "subject" "(a)\\\\1" { }')


def test_rfc5293_editheader() -> None:
    msg = MESSAGE.replace(b"X-Caffeine", b"X-Spam: yes\r\nX-Caffeine")
    r = sieve('''require ["editheader", "variables"];
if header :matches "Subject" "*" { set "s" "${1}"; }
addheader "X-Original-Subject" "${s}";
addheader :last "X-Last" "one";
deleteheader :contains "X-Spam" "yes";
deleteheader "Received";
if exists "X-Original-Subject" { addheader "X-Seen" "yes"; }''', msg)
    head = r.edited_head or b""
    assert head.startswith(b"X-Seen: yes\r\nX-Original-Subject: I have a present for you\r\n")
    assert head.endswith(b"X-Last: one\r\n")
    assert b"X-Spam" not in head and b"X-Caffeine: C8H10N4O2" in head
    r = sieve('require "editheader"; deleteheader :index 1 :last "X-A";',
              b"X-A: 1\r\nX-A: 2\r\n\r\nbody")
    assert r.edited_head == b"X-A: 1\r\n"


def test_rfc7352_duplicate() -> None:
    seen: set[str] = set()
    env = Environment(duplicate_seen=lambda key: key in seen)
    script = ('require ["duplicate", "fileinto", "mailbox"];'
              ' if duplicate { discard; stop; }'
              ' if duplicate :header "X-Event-ID" :handle "notifier" :seconds 60'
              ' { fileinto :create "dup"; }')
    r = sieve(script, b"X-Event-ID: 77\r\n" + MESSAGE, env=env)
    assert stored(r) == ["INBOX"]
    assert [(k, s) for k, s, _ in r.duplicates] == [("\x00<1234@desert.example.org>", 604800),
                                                    ("notifier\x0077", 60)]
    seen.update(k for k, _, _ in r.duplicates)
    assert stored(sieve(script, b"X-Event-ID: 77\r\n" + MESSAGE, env=env)) == []


def test_budget_stops_a_long_run() -> None:
    with pytest.raises(ScriptTooLong):
        run(parse('require "body"; if body :matches "*%sb" { }' % ("a" * 30)),
            SieveMessage.from_bytes(b"Subject: x\r\n\r\n" + b"a" * 200_000), ENVELOPE,
            budget=Budget(max_steps=100_000))
    with pytest.raises(ScriptTooLong):
        run(parse('require ["regex", "body"]; if body :regex "(x+x+)+y" { }'),
            SieveMessage.from_bytes(b"Subject: x\r\n\r\n" + b"x" * 2000), ENVELOPE,
            budget=Budget(max_seconds=0.3))
    many = "if false { keep; }\n" * 3000
    with pytest.raises(ScriptTooLong):
        run(parse(many), SieveMessage.from_bytes(MESSAGE), ENVELOPE,
            budget=Budget(max_steps=1000))


def test_discard_type() -> None:
    assert Discard() == Discard()
