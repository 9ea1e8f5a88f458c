"""References to previous method results (RFC 8620 §3.7).

An argument named "#foo" holds a ResultReference instead of a value: the client chains calls in
one round trip (ids from Foo/query fed to Foo/get). The reference is replaced by the value found
at `path` in the arguments of the earlier response, before the method sees its arguments.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from typing import Any

from mailyard.protocols.jmap.errors import MethodError

Invocation = tuple[str, dict[str, Any], str]
"""[name, arguments, method call id], the shape of calls and responses alike (§3.2)."""

_INDEX = re.compile(r"0|[1-9][0-9]*")
_BAD_ESCAPE = re.compile(r"~(?![01])")


def resolve(args: dict[str, Any], responses: Sequence[Invocation]) -> dict[str, Any]:
    """`args` with every "#name" replaced by "name" and its referenced value."""
    if not any(key.startswith("#") for key in args):
        return args
    resolved: dict[str, Any] = {}
    for key, value in args.items():
        if not key.startswith("#"):
            resolved[key] = value
            continue
        name = key[1:]
        if name in args:
            raise MethodError("invalidArguments", f"both {key!r} and {name!r} are given")
        resolved[name] = _follow(value, responses)
    return resolved


def _follow(ref: Any, responses: Sequence[Invocation]) -> Any:
    if not (isinstance(ref, dict) and isinstance(ref.get("resultOf"), str)
            and isinstance(ref.get("name"), str) and isinstance(ref.get("path"), str)):
        raise MethodError("invalidResultReference",
                          "a ResultReference needs resultOf, name and path strings")
    for name, result, call_id in responses:
        if call_id == ref["resultOf"]:
            if name != ref["name"]:
                raise MethodError("invalidResultReference",
                                  f"call {call_id!r} answered {name!r}, not {ref['name']!r}")
            # A copy: a method that edits its arguments must not edit an earlier response.
            return copy.deepcopy(evaluate(result, ref["path"]))
    raise MethodError("invalidResultReference", f"no earlier response to {ref['resultOf']!r}")


def evaluate(document: Any, pointer: str) -> Any:
    """RFC 6901 JSON Pointer, plus §3.7's "*": map the rest of the path over an array."""
    if pointer == "":
        return document
    if not pointer.startswith("/") or _BAD_ESCAPE.search(pointer):
        raise MethodError("invalidResultReference", f"{pointer!r} is not a JSON Pointer")
    tokens = [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]
    return _walk(document, tokens)


def _walk(value: Any, tokens: list[str]) -> Any:
    for i, token in enumerate(tokens):
        if isinstance(value, list):
            if token == "*":
                mapped: list[Any] = []
                for item in value:
                    found = _walk(item, tokens[i + 1:])
                    if isinstance(found, list):
                        mapped.extend(found)
                    else:
                        mapped.append(found)
                return mapped
            if (not _INDEX.fullmatch(token) or len(token) > 18
                    or int(token) >= len(value)):
                raise MethodError("invalidResultReference", f"no item {token!r} in an array")
            value = value[int(token)]
        elif isinstance(value, dict):
            if token not in value:
                raise MethodError("invalidResultReference", f"no property {token!r}")
            value = value[token]
        else:
            raise MethodError("invalidResultReference", f"cannot look up {token!r} in a value")
    return value
