"""What each command and test takes, and which extension it needs: the checks RFC 5228 §2.10.5
and each extension's RFC ask of a script before it runs, so that CHECKSCRIPT and PUTSCRIPT
refuse what the interpreter could not run (an unknown command, a tag used twice, two match
types, an extension used without `require`, a regular expression that does not compile).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from mailyard.core.sieve import regex
from mailyard.core.sieve.grammar import (
    Argument,
    Command,
    Number,
    Script,
    SieveSyntaxError,
    StringList,
    Tag,
    Test,
)

EXTENSIONS = (
    "fileinto", "reject", "ereject", "envelope", "body", "relational", "variables",
    "imap4flags", "date", "index", "regex", "subaddress", "duplicate", "editheader", "mailbox",
    "copy", "vacation", "vacation-seconds", "encoded-character",
    "comparator-i;octet", "comparator-i;ascii-casemap", "comparator-i;ascii-numeric",
)
"""What `require` accepts, in the order ManageSieve's SIEVE capability lists them."""
COMPARATORS = ("i;octet", "i;ascii-casemap", "i;ascii-numeric")
RELATIONS = ("gt", "ge", "lt", "le", "eq", "ne")


@dataclass(frozen=True, slots=True)
class TagSpec:
    ext: str | None = None
    value: str | None = None
    """None (a flag), "string", "strings" or "number"."""
    group: str | None = None
    """Tags of one group exclude each other (match types, address parts...)."""


@dataclass(frozen=True, slots=True)
class Spec:
    ext: str | None = None
    tags: Mapping[str, TagSpec] = field(default_factory=dict)
    forms: tuple[tuple[str, ...], ...] = ((),)
    """Allowed positional argument shapes: "string", "strings", "number"."""
    tests: str = ""
    """"", "test" (exactly one) or "tests" (a test-list)."""
    block: bool = False


def _tags(*groups: Mapping[str, TagSpec], **more: TagSpec) -> dict[str, TagSpec]:
    out: dict[str, TagSpec] = {}
    for g in groups:
        out.update(g)
    out.update(more)
    return out


COMPARATOR = {"comparator": TagSpec(value="string", group="comparator")}
MATCH = {"is": TagSpec(group="match"), "contains": TagSpec(group="match"),
         "matches": TagSpec(group="match"), "regex": TagSpec("regex", group="match"),
         "count": TagSpec("relational", "string", "match"),
         "value": TagSpec("relational", "string", "match")}
ADDRESS_PART = {"all": TagSpec(group="part"), "localpart": TagSpec(group="part"),
                "domain": TagSpec(group="part"), "user": TagSpec("subaddress", group="part"),
                "detail": TagSpec("subaddress", group="part")}
INDEX = {"index": TagSpec("index", "number"), "last": TagSpec("index")}
ZONE = {"zone": TagSpec("date", "string", "zone"), "originalzone": TagSpec("date", group="zone")}
FLAGS = {"flags": TagSpec("imap4flags", "strings")}
_MATCHING = _tags(COMPARATOR, MATCH)

TESTS: dict[str, Spec] = {
    "address": Spec(tags=_tags(_MATCHING, ADDRESS_PART, INDEX), forms=(("strings", "strings"),)),
    "envelope": Spec("envelope", _tags(_MATCHING, ADDRESS_PART), (("strings", "strings"),)),
    "header": Spec(tags=_tags(_MATCHING, INDEX), forms=(("strings", "strings"),)),
    "exists": Spec(forms=(("strings",),)),
    "size": Spec(tags={"over": TagSpec(group="size"), "under": TagSpec(group="size")},
                 forms=(("number",),)),
    "true": Spec(), "false": Spec(),
    "not": Spec(tests="test"),
    "allof": Spec(tests="tests"), "anyof": Spec(tests="tests"),
    "body": Spec("body", _tags(_MATCHING, raw=TagSpec(group="transform"),
                               content=TagSpec(value="strings", group="transform"),
                               text=TagSpec(group="transform")), (("strings",),)),
    "date": Spec("date", _tags(_MATCHING, INDEX, ZONE), (("string", "string", "strings"),)),
    "currentdate": Spec("date", _tags(_MATCHING, zone=ZONE["zone"]), (("string", "strings"),)),
    "string": Spec("variables", _MATCHING, (("strings", "strings"),)),
    "hasflag": Spec("imap4flags", _MATCHING, (("strings",), ("strings", "strings"))),
    "mailboxexists": Spec("mailbox", forms=(("strings",),)),
    "duplicate": Spec("duplicate", {
        "handle": TagSpec(value="string"), "header": TagSpec(value="string", group="id"),
        "uniqueid": TagSpec(value="string", group="id"), "seconds": TagSpec(value="number"),
        "last": TagSpec()}),
}

COMMANDS: dict[str, Spec] = {
    "require": Spec(forms=(("strings",),)),
    "if": Spec(tests="test", block=True),
    "elsif": Spec(tests="test", block=True),
    "else": Spec(block=True),
    "stop": Spec(),
    "keep": Spec(tags=FLAGS),
    "discard": Spec(),
    "fileinto": Spec("fileinto", _tags(FLAGS, copy=TagSpec("copy"),
                                       create=TagSpec("mailbox")), (("string",),)),
    "redirect": Spec(tags={"copy": TagSpec("copy")}, forms=(("string",),)),
    "reject": Spec("reject", forms=(("string",),)),
    "ereject": Spec("ereject", forms=(("string",),)),
    "vacation": Spec("vacation", {
        "days": TagSpec(value="number", group="period"),
        "seconds": TagSpec("vacation-seconds", "number", "period"),
        "subject": TagSpec(value="string"), "from": TagSpec(value="string"),
        "addresses": TagSpec(value="strings"), "mime": TagSpec(),
        "handle": TagSpec(value="string")}, (("string",),)),
    "setflag": Spec("imap4flags", forms=(("strings",), ("string", "strings"))),
    "addflag": Spec("imap4flags", forms=(("strings",), ("string", "strings"))),
    "removeflag": Spec("imap4flags", forms=(("strings",), ("string", "strings"))),
    "set": Spec("variables", {
        "lower": TagSpec(group="case"), "upper": TagSpec(group="case"),
        "lowerfirst": TagSpec(group="first"), "upperfirst": TagSpec(group="first"),
        "quotewildcard": TagSpec(), "quoteregex": TagSpec("regex"),
        "length": TagSpec()}, (("string", "string"),)),
    "addheader": Spec("editheader", {"last": TagSpec()}, (("string", "string"),)),
    "deleteheader": Spec("editheader",
                         _tags(_MATCHING, index=TagSpec(value="number"), last=TagSpec()),
                         (("string",), ("string", "strings"))),
}


@dataclass(frozen=True, slots=True)
class Parsed:
    """A command's or test's arguments sorted out: tags with their values, positionals."""

    tags: dict[str, Argument | None]
    positional: list[Argument]


def split_args(name: str, args: tuple[Argument, ...], spec: Spec, requires: frozenset[str],
               line: int) -> Parsed:
    tags: dict[str, Argument | None] = {}
    groups: dict[str, str] = {}
    positional: list[Argument] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if not isinstance(arg, Tag):
            positional.append(arg)
            continue
        if positional:
            raise SieveSyntaxError(arg.line, f"{name}: tag :{arg.name} after the positional"
                                             " arguments")
        tag = spec.tags.get(arg.name)
        if tag is None:
            raise SieveSyntaxError(arg.line, f"{name}: unknown tag :{arg.name}")
        if tag.ext is not None and tag.ext not in requires:
            raise SieveSyntaxError(arg.line, f'{name} :{arg.name} needs require "{tag.ext}"')
        if arg.name in tags:
            raise SieveSyntaxError(arg.line, f"{name}: tag :{arg.name} given twice")
        if tag.group is not None:
            if tag.group in groups:
                raise SieveSyntaxError(arg.line, f"{name}: :{arg.name} and"
                                                 f" :{groups[tag.group]} exclude each other")
            groups[tag.group] = arg.name
        value: Argument | None = None
        if tag.value is not None:
            value = args[i] if i < len(args) else None
            if not _fits(value, tag.value):
                raise SieveSyntaxError(arg.line, f"{name} :{arg.name} takes a"
                                                 f" {_KIND_NAMES[tag.value]}")
            i += 1
        tags[arg.name] = value
    shape = tuple(_kind(a) for a in positional)
    if not any(_shape_fits(positional, form) for form in spec.forms):
        wanted = " or ".join(" ".join(_KIND_NAMES[k] for k in form) or "no arguments"
                             for form in spec.forms)
        got = " ".join(shape) or "none"
        raise SieveSyntaxError(line, f"{name} takes {wanted} (got {got})")
    return Parsed(tags, positional)


_KIND_NAMES = {"string": "string", "strings": "string-list", "number": "number"}


def _kind(arg: Argument) -> str:
    if isinstance(arg, Number):
        return "number"
    if isinstance(arg, StringList):
        return "string" if arg.single else "string-list"
    return "tag"


def _fits(arg: Argument | None, kind: str) -> bool:
    if kind == "number":
        return isinstance(arg, Number)
    if kind == "string":
        return isinstance(arg, StringList) and len(arg.values) == 1
    return isinstance(arg, StringList)


def _shape_fits(args: list[Argument], form: tuple[str, ...]) -> bool:
    return len(args) == len(form) and all(_fits(a, k) for a, k in zip(args, form, strict=True))


def check(commands: tuple[Command, ...]) -> Script:
    """The script's `require`s (all first), then every command and test against its Spec."""
    requires: set[str] = set()
    body_started = False
    for cmd in commands:
        if cmd.name != "require":
            body_started = True
            continue
        if body_started:
            raise SieveSyntaxError(cmd.line, "require must come before any other command")
        if cmd.block is not None or cmd.tests:
            raise SieveSyntaxError(cmd.line, "require takes a string-list and ends with ;")
        parsed = split_args("require", cmd.args, COMMANDS["require"], frozenset(), cmd.line)
        names = parsed.positional[0]
        assert isinstance(names, StringList)
        for ext in names.values:
            if ext.lower() not in EXTENSIONS:
                raise SieveSyntaxError(cmd.line, f"unsupported extension {ext!r}")
            requires.add(ext.lower())
    if "ereject" in requires:
        requires.add("reject")  # RFC 5429 §2.1: ereject implies reject's semantics
    if "vacation-seconds" in requires:
        requires.add("vacation")
    frozen = frozenset(requires)
    by_node: dict[int, Parsed] = {}
    _check_block(commands, frozen, by_node, top=True)
    return Script(commands, frozen, by_node)


def _check_block(commands: tuple[Command, ...], requires: frozenset[str],
                 parsed_args: dict[int, Parsed], *, top: bool) -> None:
    previous = ""
    for cmd in commands:
        if cmd.name == "require":
            if not top:
                raise SieveSyntaxError(cmd.line, "require is allowed only at the top")
            previous = cmd.name
            continue
        spec = COMMANDS.get(cmd.name)
        if spec is None:
            raise SieveSyntaxError(cmd.line, f"unknown command {cmd.name}")
        if spec.ext is not None and spec.ext not in requires:
            raise SieveSyntaxError(cmd.line, f'{cmd.name} needs require "{spec.ext}"')
        if cmd.name in ("elsif", "else") and previous not in ("if", "elsif"):
            raise SieveSyntaxError(cmd.line, f"{cmd.name} without a preceding if")
        if spec.block and cmd.block is None:
            raise SieveSyntaxError(cmd.line, f"{cmd.name} needs a block {{ ... }}")
        if not spec.block and cmd.block is not None:
            raise SieveSyntaxError(cmd.line, f"{cmd.name} takes no block")
        _check_tests(cmd.name, cmd.tests, cmd.listed, spec, cmd.line)
        parsed = split_args(cmd.name, cmd.args, spec, requires, cmd.line)
        _check_values(cmd.name, parsed, requires, cmd.line)
        parsed_args[id(cmd)] = parsed
        for test in cmd.tests:
            _check_test(test, requires, parsed_args)
        if cmd.block is not None:
            _check_block(cmd.block, requires, parsed_args, top=False)
        previous = cmd.name


def _check_tests(name: str, tests: tuple[Test, ...], listed: bool, spec: Spec,
                 line: int) -> None:
    if spec.tests == "test" and (len(tests) != 1 or listed):
        raise SieveSyntaxError(line, f"{name} takes one test")
    if spec.tests == "tests" and not listed:
        raise SieveSyntaxError(line, f"{name} takes a test-list ( ... )")
    if not spec.tests and tests:
        raise SieveSyntaxError(line, f"{name} takes no test")


def _check_test(test: Test, requires: frozenset[str], parsed_args: dict[int, Parsed]
                ) -> None:
    spec = TESTS.get(test.name)
    if spec is None:
        raise SieveSyntaxError(test.line, f"unknown test {test.name}")
    if spec.ext is not None and spec.ext not in requires:
        raise SieveSyntaxError(test.line, f'{test.name} needs require "{spec.ext}"')
    _check_tests(test.name, test.tests, test.listed, spec, test.line)
    parsed = split_args(test.name, test.args, spec, requires, test.line)
    _check_values(test.name, parsed, requires, test.line)
    if test.name == "size" and not parsed.tags:
        raise SieveSyntaxError(test.line, "size needs :over or :under")
    parsed_args[id(test)] = parsed
    for sub in test.tests:
        _check_test(sub, requires, parsed_args)


def _strings(arg: Argument | None) -> tuple[str, ...]:
    return arg.values if isinstance(arg, StringList) else ()


def _check_values(name: str, parsed: Parsed, requires: frozenset[str], line: int) -> None:
    """Values fixed by the RFCs: comparator names, relational operators, regexes, envelope
    parts, variable names; strings with ${...} are left to run time."""
    tags = parsed.tags
    if "comparator" in tags:
        [comp] = _strings(tags["comparator"])
        if comp.lower() not in COMPARATORS:
            raise SieveSyntaxError(line, f"{name}: unknown comparator {comp!r}")
        if f"comparator-{comp.lower()}" not in requires and comp.lower() == "i;ascii-numeric":
            raise SieveSyntaxError(line, f'{name}: comparator {comp} needs require'
                                         f' "comparator-{comp}"')
        if comp.lower() == "i;ascii-numeric" and ("contains" in tags or "matches" in tags
                                                 or "regex" in tags):
            raise SieveSyntaxError(line, f"{name}: i;ascii-numeric only compares whole values")
    for rel in ("count", "value"):
        if rel in tags:
            [op] = _strings(tags[rel])
            if op.lower() not in RELATIONS:
                raise SieveSyntaxError(line, f"{name} :{rel}: unknown relation {op!r}"
                                             f" (one of {', '.join(RELATIONS)})")
    if "regex" in tags and parsed.positional:
        keys = parsed.positional[-1]
        if name == "deleteheader" and len(parsed.positional) < 2:
            keys = StringList((), line, False)
        for pattern in _strings(keys):
            if "variables" in requires and "${" in pattern:
                continue
            try:
                regex.compile_pattern(pattern, casefold=False)
            except regex.BadRegex as e:
                raise SieveSyntaxError(line, f"{name}: {e}") from None
    if name == "envelope":
        for part in _strings(parsed.positional[0]):
            if part.lower() not in ("from", "to"):
                raise SieveSyntaxError(line, f"envelope: unknown envelope part {part!r}")
    if name == "set":
        var = _strings(parsed.positional[0])[0]
        if not _IDENT.fullmatch(var):
            raise SieveSyntaxError(line, f"set: {var!r} is no variable name")
    if name == "vacation" and "days" in tags:
        days = tags["days"]
        if isinstance(days, Number) and days.value < 1:
            raise SieveSyntaxError(line, "vacation :days must be at least 1")


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def walk(commands: tuple[Command, ...]) -> Iterator[Command]:
    for cmd in commands:
        yield cmd
        if cmd.block is not None:
            yield from walk(cmd.block)
