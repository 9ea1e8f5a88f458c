"""The JMAP request (RFC 8620 §3): parse it, run its method calls in order, build the response.

Methods register themselves with `@method("Foo/bar", capability=...)`, one module per object
type, as IMAP commands do with `@command`. The dispatcher owns the rules every method shares:
the capability must be in `using`, result references are resolved before the method runs, and a
failure (a `MethodError`, or any exception) fails that call alone while the request goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from mailyard import metrics
from mailyard.protocols.jmap.errors import MethodError, RequestError
from mailyard.protocols.jmap.references import Invocation, resolve
from mailyard.store.ports import Account, QueryTimeout

if TYPE_CHECKING:
    from mailyard.protocols.jmap.services import JMAPServices

log = logging.getLogger("mailyard.jmap")

CORE = "urn:ietf:params:jmap:core"


@dataclass(frozen=True)
class Request:
    using: frozenset[str]
    method_calls: list[Invocation]
    created_ids: dict[str, str] | None


def parse_request(body: bytes, *, capabilities: Collection[str], max_calls: int) -> Request:
    """The Request object of §3.3, or the request-level error that refuses it (§3.6.1)."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise RequestError("notJSON", f"the body is not I-JSON: {e}") from None
    if not isinstance(value, dict):
        raise RequestError("notRequest", "a Request is a JSON object")
    using = value.get("using")
    if not isinstance(using, list) or not all(isinstance(u, str) for u in using):
        raise RequestError("notRequest", "using must be an array of strings")
    calls = value.get("methodCalls")
    if not isinstance(calls, list):
        raise RequestError("notRequest", "methodCalls must be an array")
    for n, call in enumerate(calls):
        if not (isinstance(call, list) and len(call) == 3 and isinstance(call[0], str)
                and isinstance(call[1], dict) and isinstance(call[2], str)):
            raise RequestError("notRequest",
                               f"methodCalls[{n}] is not [name, arguments object, call id]")
    created = value.get("createdIds")
    if created is not None and not (
            isinstance(created, dict) and all(isinstance(v, str) for v in created.values())):
        raise RequestError("notRequest", "createdIds must map creation ids to id strings")
    unknown = sorted(set(using) - set(capabilities))
    if unknown:
        raise RequestError("unknownCapability",
                           "unknown capabilities: " + ", ".join(u[:200] for u in unknown[:10]))
    if len(calls) > max_calls:
        raise RequestError("limit", f"at most {max_calls} method calls in a request",
                           limit="maxCallsInRequest")
    return Request(frozenset(using), [(c[0], c[1], c[2]) for c in calls], created)


@dataclass
class Context:
    """What a method knows besides its arguments: one per method call."""

    account: Account
    """The authenticated account (the only one a user reaches until sharing exists)."""
    services: JMAPServices
    """The services of the listener; core reads nothing from it."""
    using: frozenset[str]
    created_ids: dict[str, str]
    """Creation id -> server id, shared by every call of the request (§5.3 "#" references)."""
    name: str
    call_id: str
    follow_ups: list[Invocation] = field(default_factory=list)

    def account_id(self, args: dict[str, Any]) -> str:
        """The `accountId` argument, checked: every standard method takes one (§5)."""
        value = args.get("accountId")
        if not isinstance(value, str):
            raise MethodError("invalidArguments", "accountId must be a string")
        if value != self.account.id:
            raise MethodError("accountNotFound")
        return value

    def resolve_id(self, value: str) -> str | None:
        """An id argument that may be "#creationId" of an object created earlier in the
        request; None when that creation id is unknown (the caller's notFound)."""
        if value.startswith("#"):
            return self.created_ids.get(value[1:])
        return value

    def created(self, creation_id: str, object_id: str) -> None:
        self.created_ids[creation_id] = object_id

    def respond(self, name: str, args: dict[str, Any]) -> None:
        """Add a response after this call's own one, with the same call id (Email/copy's
        implicit Email/set, §5.4 onSuccessDestroyOriginal)."""
        self.follow_ups.append((name, args, self.call_id))


Method = Callable[[Context, dict[str, Any]], Awaitable[dict[str, Any]]]
M = TypeVar("M", bound=Method)


@dataclass(frozen=True)
class MethodSpec:
    name: str
    handler: Method
    capability: str


METHODS: dict[str, MethodSpec] = {}


def method(name: str, *, capability: str = CORE) -> Callable[[M], M]:
    """Register a method; the client must list `capability` in `using` to call it."""
    def register(fn: M) -> M:
        if name in METHODS:
            raise ValueError(f"JMAP method {name} registered twice")
        METHODS[name] = MethodSpec(name, fn, capability)
        return fn
    return register


async def execute(request: Request, *, account: Account, services: JMAPServices,
                  session_state: str) -> dict[str, Any]:
    """Run the calls in order (§3.6): each sees the responses before it, none stops the rest."""
    responses: list[Invocation] = []
    created_ids = dict(request.created_ids or {})
    for name, args, call_id in request.method_calls:
        ctx = Context(account, services, request.using, created_ids, name, call_id)
        try:
            spec = METHODS.get(name)
            if spec is None or spec.capability not in request.using:
                raise MethodError("unknownMethod", None if spec is None
                                  else f"{name} needs {spec.capability} in using")
            started = time.perf_counter()
            result = await spec.handler(ctx, resolve(args, responses))
            metrics.command("jmap", name, time.perf_counter() - started)
            if not isinstance(result, dict):
                raise TypeError(f"{name} returned {type(result).__name__}, not a dict")
        except MethodError as e:
            responses.append(("error", e.to_json(), call_id))
            continue
        except QueryTimeout:
            # RFC 8620 §3.6.2 has no "too expensive"; serverUnavailable is the temporary
            # refusal (serverPartialFail would claim changes, tooLarge is a SetError).
            responses.append(("error", MethodError(
                "serverUnavailable", "the query took longer than the server allows one query;"
                " narrow it down").to_json(), call_id))
            continue
        except Exception:
            log.exception("JMAP %s failed (account %s)", name, account.id)
            responses.append(("error", _server_fail(), call_id))
            continue
        responses.append((name, result, call_id))
        responses.extend(ctx.follow_ups)
    out: dict[str, Any] = {"methodResponses": responses, "sessionState": session_state}
    if request.created_ids is not None:
        out["createdIds"] = created_ids
    return out


def _server_fail() -> dict[str, Any]:
    return MethodError("serverFail", "an internal error; the server log has the details"
                       ).to_json()


def encode(response: dict[str, Any]) -> bytes:
    """The response as JSON; a method result orjson cannot write (nesting deeper than it
    allows, integers beyond 64 bits) becomes that call's serverFail, not a failed request."""
    try:
        return orjson.dumps(response)
    except orjson.JSONEncodeError:
        pass
    fixed: list[Invocation] = []
    for name, result, call_id in response["methodResponses"]:
        try:
            orjson.dumps({"methodResponses": [(name, result, call_id)]})  # the same depth
        except orjson.JSONEncodeError:
            log.warning("JMAP %s returned a result that cannot be written as JSON", name)
            name, result = "error", _server_fail()
        fixed.append((name, result, call_id))
    return orjson.dumps({**response, "methodResponses": fixed})


@method("Core/echo")
async def echo(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """§4.1: returns its arguments, for testing connectivity and references."""
    return args
