"""Running a checked Script against one message for one recipient (RFC 5228 §2.10, §4, §5 and
the extensions' semantics), within a budget.

Sieve has no loops, but a short script can still do a lot of work: a :matches pattern with
many wildcards or a regex over a megabyte of body, a `set` that doubles a variable again and
again. Every command and test costs a step, every comparison its length (match.py), and the
whole run is bounded by `Budget` (steps and wall-clock seconds); past it the run stops with
`ScriptTooLong`, which the pipeline treats like any run-time error: the message goes to the
Inbox, and the error is logged for the user's script.

Effects on the world outside the message (mailboxes that exist, the duplicate tracking) are
read through `Environment` callbacks; the interpreter itself does no I/O.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime, parsedate_to_datetime

from mailyard.core.sieve import match, regex
from mailyard.core.sieve.actions import (
    Discard,
    FileInto,
    Keep,
    Redirect,
    Reject,
    Result,
    Vacation,
)
from mailyard.core.sieve.grammar import Argument, Command, Number, Script, StringList, Test
from mailyard.core.sieve.message import Envelope, SieveMessage
from mailyard.core.sieve.spec import COMMANDS, TESTS, Parsed, split_args

MAX_VARIABLE = 65536
"""Characters one variable may hold (RFC 5229 §6 asks for at least 4000)."""
MAX_ACTIONS = 64
MAX_REDIRECTS = 5
DUPLICATE_SECONDS = 7 * 86400
DUPLICATE_MAX_SECONDS = 90 * 86400
_PROTECTED = ("received", "auto-submitted")
"""deleteheader may not remove these (RFC 5293 §6: trace and loop-prevention fields)."""
_FIELD_NAME = re.compile(r"[!-9;-~]+")
_VARIABLE = re.compile(r"\$\{([^{}]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class SieveRuntimeError(Exception):
    """The script failed while running: the message gets the implicit keep (RFC 5228 §2.10.6)."""


class ScriptTooLong(SieveRuntimeError):
    """The script used up its budget of steps or seconds."""


@dataclass(slots=True)
class Budget:
    max_steps: int = 1_000_000
    """Units of work: one per command or test, about one per character compared."""
    max_seconds: float = 2.0
    used: int = 0
    _deadline: float = 0.0
    _next_clock: int = 0

    def start(self) -> None:
        self.used = 0
        self._deadline = time.monotonic() + self.max_seconds
        self._next_clock = 10_000

    def remaining(self) -> float:
        return self._deadline - time.monotonic()

    def spend(self, units: int) -> None:
        self.used += units
        if self.used > self.max_steps:
            raise ScriptTooLong(f"script stopped after {self.max_steps} steps of work")
        if self.used >= self._next_clock:
            self._next_clock = self.used + 10_000
            if time.monotonic() > self._deadline:
                raise ScriptTooLong(f"script stopped after {self.max_seconds:g} seconds")


@dataclass(slots=True)
class Environment:
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    zone: timezone = UTC
    """The local zone that date tests convert to without :zone."""
    mailbox_exists: Callable[[str], bool] = lambda name: name.upper() == "INBOX"
    duplicate_seen: Callable[[str], bool] = lambda key: False
    """Whether this duplicate id (handle NUL value) was recorded and has not expired."""


class _Stop(Exception):
    pass


def run(script: Script, message: SieveMessage, envelope: Envelope,
        env: Environment | None = None, budget: Budget | None = None) -> Result:
    """Run `script`; raises SieveRuntimeError (ScriptTooLong) when it fails."""
    runner = _Run(script, message, envelope, env or Environment(), budget or Budget())
    return runner.run()


class _Run:
    def __init__(self, script: Script, message: SieveMessage, envelope: Envelope,
                 env: Environment, budget: Budget) -> None:
        self.script = script
        self.requires = script.requires
        self.message = message
        self.envelope = envelope
        self.env = env
        self.budget = budget
        self.result = Result()
        self.variables: dict[str, str] = {}
        self.match_vars: list[str] = []
        self.flags: list[str] = []

    def run(self) -> Result:
        self.budget.start()
        try:
            self.block(self.script.commands)
        except _Stop:
            pass
        except RecursionError:
            raise SieveRuntimeError("script nested too deeply") from None
        except match.MatchError as e:
            raise SieveRuntimeError(str(e)) from None
        except match.TooSlow as e:
            raise ScriptTooLong(f"script stopped after {self.budget.max_seconds:g} seconds"
                                f" ({e})") from None
        result = self.result
        rejects = [a for a in result.actions if isinstance(a, Reject)]
        if rejects and any(isinstance(a, Keep | FileInto | Vacation) for a in result.actions):
            raise SieveRuntimeError("reject cannot be combined with keep, fileinto or vacation"
                                    " (RFC 5429 §2.2)")
        result.flags = tuple(self.flags)
        result.steps = self.budget.used
        if self.message.edited:
            result.edited_head = self.message.head()
        return result

    # ----------------------------------------------------------------------------------------
    # Strings

    def expand(self, text: str) -> str:
        if "${" not in text:
            return text
        variables = "variables" in self.requires
        encoded = "encoded-character" in self.requires
        if not variables and not encoded:
            return text

        def one(m: re.Match[str]) -> str:
            name = m.group(1)
            low = name.lower()
            if encoded and low.startswith(("hex:", "unicode:")):
                return _encoded(low, m.group())
            if not variables:
                return m.group()
            if name.isdigit():
                i = int(name)
                return self.match_vars[i] if i < len(self.match_vars) else ""
            if _NAME.fullmatch(name):
                return self.variables.get(low, "")
            return m.group()
        out = _VARIABLE.sub(one, text)
        self.budget.spend(len(out) // 64)
        return out[:MAX_VARIABLE]

    def strings(self, arg: Argument | None) -> list[str]:
        if not isinstance(arg, StringList):
            return []
        return [self.expand(v) for v in arg.values]

    def string(self, arg: Argument | None) -> str:
        values = self.strings(arg)
        return values[0] if values else ""

    # ----------------------------------------------------------------------------------------
    # Commands

    def block(self, commands: tuple[Command, ...]) -> None:
        taken = False
        for cmd in commands:
            self.budget.spend(1)
            name = cmd.name
            if name == "require":
                continue
            if name == "if":
                taken = self.test(cmd.tests[0])
                if taken:
                    self.block(cmd.block or ())
                continue
            if name == "elsif":
                if not taken:
                    taken = self.test(cmd.tests[0])
                    if taken:
                        self.block(cmd.block or ())
                continue
            if name == "else":
                if not taken:
                    self.block(cmd.block or ())
                taken = True
                continue
            parsed = self.script.parsed.get(id(cmd)) or split_args(
                name, cmd.args, COMMANDS[name], self.requires, cmd.line)
            self.command(cmd, parsed)

    def add(self, action: Keep | FileInto | Redirect | Reject | Discard | Vacation) -> None:
        if len(self.result.actions) >= MAX_ACTIONS:
            raise SieveRuntimeError(f"more than {MAX_ACTIONS} actions")
        self.result.actions.append(action)

    def action_flags(self, p: Parsed) -> tuple[str, ...]:
        if "flags" in p.tags:
            return tuple(_flag_list(self.strings(p.tags["flags"])))
        return tuple(self.flags)

    def command(self, cmd: Command, p: Parsed) -> None:
        name = cmd.name
        pos = p.positional
        if name == "stop":
            raise _Stop
        if name == "keep":
            self.add(Keep(self.action_flags(p)))
            self.result.implicit_keep = False
        elif name == "discard":
            self.result.implicit_keep = False
        elif name == "fileinto":
            mailbox = self.string(pos[0])
            if not mailbox or "\x00" in mailbox:
                raise SieveRuntimeError(f"line {cmd.line}: fileinto: bad mailbox name")
            copy = "copy" in p.tags
            self.add(FileInto(mailbox, self.action_flags(p), copy, "create" in p.tags))
            if not copy:
                self.result.implicit_keep = False
        elif name == "redirect":
            address = self.string(pos[0]).strip()
            if not re.fullmatch(r"[^@\s<>]+@[^@\s<>]+", address):
                raise SieveRuntimeError(f"line {cmd.line}: redirect: {address!r} is not an"
                                        " address")
            if sum(isinstance(a, Redirect) for a in self.result.actions) >= MAX_REDIRECTS:
                raise SieveRuntimeError(f"line {cmd.line}: more than {MAX_REDIRECTS} redirects")
            copy = "copy" in p.tags
            self.add(Redirect(address, copy))
            if not copy:
                self.result.implicit_keep = False
        elif name in ("reject", "ereject"):
            self.add(Reject(self.string(pos[0]), extended=name == "ereject"))
            self.result.implicit_keep = False
        elif name == "vacation":
            self.vacation(p)
        elif name in ("setflag", "addflag", "removeflag"):
            self.edit_flags(name, p)
        elif name == "set":
            self.set_variable(p)
        elif name == "addheader":
            self.addheader(cmd, p)
        elif name == "deleteheader":
            self.deleteheader(p)

    def vacation(self, p: Parsed) -> None:
        if any(isinstance(a, Vacation) for a in self.result.actions):
            raise SieveRuntimeError("vacation used twice (RFC 5230 §4.8)")
        seconds = DUPLICATE_SECONDS
        if isinstance(days := p.tags.get("days"), Number):
            seconds = days.value * 86400
        elif isinstance(secs := p.tags.get("seconds"), Number):
            seconds = secs.value
        subject = self.string(p.tags["subject"]) if "subject" in p.tags else None
        from_ = self.string(p.tags["from"]) if "from" in p.tags else None
        handle = self.string(p.tags["handle"]) if "handle" in p.tags else ""
        self.add(Vacation(self.string(p.positional[0]), subject, from_,
                          tuple(self.strings(p.tags.get("addresses"))), seconds,
                          "mime" in p.tags, handle))

    def edit_flags(self, name: str, p: Parsed) -> None:
        pos = p.positional
        target = self.string(pos[0]).lower() if len(pos) == 2 else None
        given = _flag_list(self.strings(pos[-1]))
        current = self.flags if target is None else \
            _flag_list([self.variables.get(target, "")])
        if name == "setflag":
            new = given
        elif name == "addflag":
            new = _flag_list([*current, *given])
        else:
            drop = {f.lower() for f in given}
            new = [f for f in current if f.lower() not in drop]
        if target is None:
            self.flags = new
        else:
            self.variables[target] = " ".join(new)

    def set_variable(self, p: Parsed) -> None:
        name = self.string(p.positional[0]).lower()
        value = self.string(p.positional[1])
        tags = p.tags
        if "lower" in tags:
            value = value.lower()
        if "upper" in tags:
            value = value.upper()
        if "lowerfirst" in tags:
            value = value[:1].lower() + value[1:]
        if "upperfirst" in tags:
            value = value[:1].upper() + value[1:]
        if "quotewildcard" in tags:
            value = re.sub(r"([*?\\])", r"\\\1", value)
        if "quoteregex" in tags:
            value = regex.quote(value)
        if "length" in tags:
            value = str(len(value))
        self.budget.spend(len(value) // 64)
        self.variables[name] = value[:MAX_VARIABLE]

    def addheader(self, cmd: Command, p: Parsed) -> None:
        name = self.string(p.positional[0])
        value = self.string(p.positional[1])
        if not _FIELD_NAME.fullmatch(name):
            raise SieveRuntimeError(f"line {cmd.line}: addheader: {name!r} is no field name")
        value = re.sub(r"\r?\n(?![ \t])", "\r\n ", value).replace("\x00", "")
        self.message.add_field(name, value[:998], last="last" in p.tags)

    def deleteheader(self, p: Parsed) -> None:
        name = self.string(p.positional[0])
        if name.lower() in _PROTECTED:
            return
        patterns = self.strings(p.positional[1]) if len(p.positional) == 2 else None
        index = p.tags.get("index")
        last = "last" in p.tags

        def keep(position: int, count: int, f: object) -> bool:
            if isinstance(index, Number):
                wanted = count - index.value + 1 if last else index.value
                if position != wanted:
                    return True
            if patterns is None:
                return False
            value = getattr(f, "value", "")
            return not self.compare([value], patterns, p)
        self.message.delete_fields(name, keep)

    # ----------------------------------------------------------------------------------------
    # Tests

    def test(self, t: Test) -> bool:
        self.budget.spend(1)
        name = t.name
        if name == "true":
            return True
        if name == "false":
            return False
        if name == "not":
            return not self.test(t.tests[0])
        if name == "allof":
            return all(self.test(sub) for sub in t.tests)
        if name == "anyof":
            return any(self.test(sub) for sub in t.tests)
        p = self.script.parsed.get(id(t)) or split_args(name, t.args, TESTS[name],
                                                         self.requires, t.line)
        return bool(getattr(self, f"t_{name}")(p))

    def compare(self, values: list[str], keys: list[str], p: Parsed) -> bool:
        tags = p.tags
        comparator = self.string(tags["comparator"]).lower() if "comparator" in tags \
            else "i;ascii-casemap"
        if "count" in tags:
            return match.count(comparator, values, self.string(tags["count"]), keys)
        kind = "is"
        for candidate in ("contains", "matches", "regex", "value"):
            if candidate in tags:
                kind = candidate
        relational = self.string(tags["value"]) if kind == "value" else ""
        for value in values:
            for key in keys:
                ok, groups = match.matches(kind, comparator, value, key, self.budget.spend,
                                           relational, self.budget.remaining())
                if ok:
                    if groups is not None and "variables" in self.requires:
                        self.match_vars = [g[:MAX_VARIABLE] for g in groups]
                    return True
        return False

    def _indexed(self, values: list[list[str]] | list[str], p: Parsed) -> list:  # type: ignore[type-arg]
        index = p.tags.get("index")
        if not isinstance(index, Number):
            return list(values)
        i = len(values) - index.value if "last" in p.tags else index.value - 1
        return [values[i]] if 0 <= i < len(values) else []

    def t_header(self, p: Parsed) -> bool:
        values: list[str] = []
        for name in self.strings(p.positional[0]):
            values += self._indexed(self.message.header_values(name), p)
        return self.compare(values, self.strings(p.positional[1]), p)

    def _part(self, address: str, p: Parsed) -> str | None:
        local, at, domain = address.rpartition("@")
        if not at:
            local, domain = address, ""
        if "localpart" in p.tags:
            return local
        if "domain" in p.tags:
            return domain
        if "user" in p.tags or "detail" in p.tags:
            user, plus, detail = local.partition("+")
            if "user" in p.tags:
                return user
            return detail if plus else None
        return address

    def t_address(self, p: Parsed) -> bool:
        values: list[str] = []
        for name in self.strings(p.positional[0]):
            for occurrence in self._indexed(self.message.addresses(name), p):
                for address in occurrence:
                    part = self._part(address, p)
                    if part is not None:
                        values.append(part)
        return self.compare(values, self.strings(p.positional[1]), p)

    def t_envelope(self, p: Parsed) -> bool:
        values: list[str] = []
        for name in self.strings(p.positional[0]):
            address = self.envelope.mail_from if name.lower() == "from" else self.envelope.to
            part = self._part(address, p) if address else ""
            if part is not None:
                values.append(part)
        return self.compare(values, self.strings(p.positional[1]), p)

    def t_exists(self, p: Parsed) -> bool:
        return all(self.message.header_values(n) for n in self.strings(p.positional[0]))

    def t_size(self, p: Parsed) -> bool:
        limit = p.positional[0]
        assert isinstance(limit, Number)
        if "over" in p.tags:
            return self.message.size > limit.value
        return self.message.size < limit.value

    def t_body(self, p: Parsed) -> bool:
        transform = "text"
        types: tuple[str, ...] = ()
        if "raw" in p.tags:
            transform = "raw"
        elif "content" in p.tags:
            transform, types = "content", tuple(self.strings(p.tags["content"]))
        texts = self.message.body(transform, types)
        self.budget.spend(sum(len(t) for t in texts) // 64)
        return self.compare(texts, self.strings(p.positional[0]), p)

    def _zone(self, p: Parsed) -> timezone | None:
        """The zone to show dates in: :zone's, None for :originalzone, else the local."""
        if "originalzone" in p.tags:
            return None
        if "zone" in p.tags:
            return _parse_zone(self.string(p.tags["zone"])) or self.env.zone
        return self.env.zone

    def t_date(self, p: Parsed) -> bool:
        header, part = self.string(p.positional[0]), self.string(p.positional[1]).lower()
        values: list[str] = []
        for raw in self._indexed(self.message.header_values(header), p):
            when = _parse_date(raw.rpartition(";")[2] if header.lower() == "received" else raw)
            if when is None:
                continue
            zone = self._zone(p)
            value = _date_part(when if zone is None else when.astimezone(zone), part)
            if value is not None:
                values.append(value)
        return bool(values) and self.compare(values, self.strings(p.positional[2]), p)

    def t_currentdate(self, p: Parsed) -> bool:
        part = self.string(p.positional[0]).lower()
        zone = self._zone(p) or self.env.zone
        value = _date_part(self.env.now.astimezone(zone), part)
        return value is not None and self.compare([value], self.strings(p.positional[1]), p)

    def t_string(self, p: Parsed) -> bool:
        sources = self.strings(p.positional[0])
        if "count" in p.tags:
            sources = [s for s in sources if s]
        return self.compare(sources, self.strings(p.positional[1]), p)

    def t_hasflag(self, p: Parsed) -> bool:
        if len(p.positional) == 2:
            flags = _flag_list([self.variables.get(v.lower(), "")
                                for v in self.strings(p.positional[0])])
        else:
            flags = self.flags
        return self.compare(list(flags), self.strings(p.positional[-1]), p)

    def t_mailboxexists(self, p: Parsed) -> bool:
        return all(self.env.mailbox_exists(n) for n in self.strings(p.positional[0]))

    def t_duplicate(self, p: Parsed) -> bool:
        tags = p.tags
        if "uniqueid" in tags:
            value = self.string(tags["uniqueid"])
        else:
            found = self.message.header_values(self.string(tags["header"]) if "header" in tags
                                               else "message-id")
            if not found:
                return False
            value = found[0].strip()
        seconds = DUPLICATE_SECONDS
        if isinstance(secs := tags.get("seconds"), Number):
            seconds = min(secs.value, DUPLICATE_MAX_SECONDS)
        handle = self.string(tags["handle"]) if "handle" in tags else ""
        key = f"{handle}\x00{value}"
        self.result.duplicates.append((key, seconds, "last" in tags))
        return self.env.duplicate_seen(key)


# --------------------------------------------------------------------------------------------


def _flag_list(strings: list[str]) -> list[str]:
    """Flags from space-separated strings, each once (flags compare without case)."""
    out: list[str] = []
    seen: set[str] = set()
    for s in strings:
        for flag in s.split():
            if flag.lower() not in seen:
                seen.add(flag.lower())
                out.append(flag)
    return out


def _encoded(low: str, whole: str) -> str:
    """${hex:...} / ${unicode:...} (RFC 5228 §2.4.2.4); a malformed one stays as written."""
    kind, _, body = low.partition(":")
    try:
        values = [int(v, 16) for v in body.split()]
        if kind == "hex":
            return bytes(values).decode("utf-8")
        return "".join(chr(v) for v in values)
    except (ValueError, OverflowError, UnicodeDecodeError):
        return whole


def _parse_zone(text: str) -> timezone | None:
    m = re.fullmatch(r"([+-])(\d\d)(\d\d)", text.strip())
    if m is None:
        return None
    minutes = int(m.group(2)) * 60 + int(m.group(3))
    if minutes >= 24 * 60:
        return None
    return timezone(timedelta(minutes=minutes if m.group(1) == "+" else -minutes))


def _parse_date(text: str) -> datetime | None:
    try:
        when = parsedate_to_datetime(text.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


_MJD_EPOCH = datetime(1858, 11, 17).date()


def _date_part(when: datetime, part: str) -> str | None:
    """RFC 5260 §4.2's date-parts."""
    offset = when.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    zone = f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
    parts = {
        "year": f"{when.year:04d}", "month": f"{when.month:02d}", "day": f"{when.day:02d}",
        "date": f"{when.year:04d}-{when.month:02d}-{when.day:02d}",
        "hour": f"{when.hour:02d}", "minute": f"{when.minute:02d}",
        "second": f"{when.second:02d}",
        "time": f"{when.hour:02d}:{when.minute:02d}:{when.second:02d}",
        "zone": zone, "weekday": str((when.weekday() + 1) % 7),
    }
    if part in parts:
        return parts[part]
    if part == "julian":
        return str((when.date() - _MJD_EPOCH).days)
    if part == "iso8601":
        return when.isoformat(timespec="seconds")
    if part == "std11":
        return format_datetime(when)
    return None
