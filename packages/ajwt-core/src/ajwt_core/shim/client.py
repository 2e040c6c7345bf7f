"""The shim: the A-JWT client inside the agent process (DESIGN §2, §4, §6).

It registers agents (checksums and derived PoP keys), starts runs, knows which agent is
acting, mints and caches intent tokens, signs delegation assertions and step
completions, and gives an ``httpx.Auth`` that attaches token + proof to every call.

Each protocol operation is written once, as a generator that yields the HTTP requests
it needs and receives their responses (the style of ``httpx.Auth.auth_flow``); a sync
and an async driver send them. So every public method has an ``a``-prefixed async twin
with no second copy of the logic.

>>> shim = Shim("http://127.0.0.1:9", "patcher-app", client_secret="s")
>>> shim.current() is None
True
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeAlias, TypeVar
from urllib.parse import quote

import httpx
from pydantic_core import PydanticSerializationError

from ajwt_core import telemetry
from ajwt_core._http import AsyncClients, shared_ssl_context
from ajwt_core.checksum import AgentManifest
from ajwt_core.dpop import create_proof
from ajwt_core.errors import (
    AgentContextError,
    AJWTError,
    InvalidGrant,
    InvalidRequest,
    LedgerError,
    Reason,
    ServerError,
    UnauthorizedClient,
    error_from_oauth,
)
from ajwt_core.integrity import HEADER as SHIM_HEADER
from ajwt_core.integrity import header_value as shim_header_value
from ajwt_core.keys import (
    DEFAULT_KEY_LIFETIME,
    Alg,
    KeyResolver,
    PopKey,
    derive_pop_key,
    key_epoch,
)
from ajwt_core.ledger import Anchor, load_json, verify_chain
from ajwt_core.shim.context import (
    ActingBlock,
    AgentContext,
    ContextResolver,
    Run,
    current_acting,
    current_run,
    origin_of,
    reset_acting,
    reset_run,
    set_acting,
    set_run,
)
from ajwt_core.shim.known_revoked import KnownRevoked
from ajwt_core.shim.token_cache import IssuedToken, TokenCache
from ajwt_core.tokens import (
    CLIENT_ASSERTION_TYPE_URI,
    DelegationClaims,
    checkpoint_seq_unverified,
    decode_checkpoint,
    encode_client_assertion,
    encode_delegation_assertion,
    format_scope,
    token_hash,
)
from ajwt_core.workflow import RunState, Workflow

T = TypeVar("T")
log = logging.getLogger(__name__)
Operation: TypeAlias = Generator[httpx.Request, httpx.Response, T]
ManifestSource: TypeAlias = AgentManifest | Mapping[str, Any] | Callable[[], AgentManifest]

MASTER_SECRET_ENV = "AJWT_SHIM_SECRET"
#: Runs whose position the shim remembers (least recently used forgotten first).
_COMPLETED_RUNS_MAX = 4096
AGENT_CHECKSUM_GRANT = "urn:ajwt:params:oauth:grant-type:agent-checksum"
TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
INTENT_TOKEN_TYPE_URI = "urn:ajwt:params:oauth:token-type:intent"
DELEGATION_TOKEN_TYPE_URI = "urn:ajwt:params:oauth:token-type:delegation"
#: Where an operation's request says what it is, for its span (name and attributes).
_TRACE = "ajwt.trace"
#: The failures after which the request certainly never reached the IdP (no connection
#: was made, or none was free): the only ones worth sending again (DESIGN §12).
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
#: A registration held by the shim is registered again when it expires within this many
#: seconds (``ensure_registered``).
_REGISTRATION_MARGIN = 60
#: Tool spans still open (prepared, not finished) per shim, the oldest ended first.
_OPEN_TOOL_SPANS_MAX = 4096
#: At most this many deferred completions ride on one token request (the IdP's limit).
_CARRIED_MAX = 8


def _unreachable(request: httpx.Request, exc: Exception, tries: int) -> ServerError:
    return ServerError(
        Reason.IDP_UNREACHABLE,
        f"the IdP at {origin_of(str(request.url))} cannot be reached "
        f"({type(exc).__name__}, {tries} tries); nothing was sent, so retrying later is safe",
    )


def _no_answer(request: httpx.Request, exc: Exception) -> ServerError:
    # Not retried: the IdP may have acted on the request (a mint recorded in the ledger,
    # its proof's jti used), and the same request again would be refused or done twice.
    return ServerError(
        Reason.IDP_UNREACHABLE,
        f"the IdP at {origin_of(str(request.url))} did not answer "
        f"({type(exc).__name__}); the request may have been processed",
    )


def _request_span(request: httpx.Request) -> contextlib.AbstractContextManager[Any]:
    """The span of one IdP request an operation marked (a mint, an exchange, a
    completion), carrying the trace to the IdP in ``traceparent``."""
    traced = request.extensions.get(_TRACE)
    if traced is None or not telemetry.enabled():
        return contextlib.nullcontext(telemetry.NO_SPAN)
    name, attributes = traced
    return _traced(request, name, attributes)


@contextlib.contextmanager
def _traced(
    request: httpx.Request, name: str, attributes: dict[str, str | None]
) -> Iterator[telemetry.SpanLike]:
    with telemetry.span(name, **attributes) as span:
        telemetry.inject(request.headers)
        yield span


def _note_answer(span: telemetry.SpanLike, response: httpx.Response) -> None:
    """An IdP refusal on the request's span: its reason and error code."""
    if response.is_error and span.is_recording():
        try:
            body = response.json()
        except ValueError:
            body = None
        telemetry.refused(span, error_from_oauth(body, response.status_code))


@dataclass
class RegisteredAgent:
    """An agent known to the shim: where its manifest comes from, its key, its registration."""

    agent_id: str
    source: ManifestSource
    checksum: str
    key: PopKey
    registration_id: str
    version: int
    expires_at: int
    _last_manifest: str = field(default="", repr=False, compare=False)
    _last_checksum: str = field(default="", repr=False, compare=False)
    _last_tools: frozenset[str] = field(default=frozenset(), repr=False, compare=False)
    _last_read: AgentManifest | None = field(default=None, repr=False, compare=False)

    def live_checksum(self) -> str:
        """Recompute the checksum from the live agent (DESIGN §3: before every mint).

        The manifest is extracted every time; the canonical hash is reused while the
        extracted manifest's JSON is unchanged (a few µs instead of ~100 µs of JCS).
        """
        manifest = _manifest_of(self.source)
        try:
            text = manifest.model_dump_json()
        except PydanticSerializationError:
            # A dict of a tool spec changed in place after it was built: nothing a
            # checksum can be taken of (the message could quote a value: not kept).
            raise InvalidRequest(
                Reason.INVALID_MANIFEST,
                f"agent {self.agent_id!r}'s manifest holds a value JSON cannot carry",
            ) from None
        if text != self._last_manifest:
            self._last_checksum = manifest.checksum()
            self._last_tools = frozenset(tool.name for tool in manifest.tools)
            self._last_manifest = text
        self._last_read = manifest
        return self._last_checksum

    def verified_manifest(self) -> AgentManifest | None:
        """The live manifest as last read, if it had the registered checksum (else
        ``None``): what an adapter may compare a running tool with before the shim
        reads the live agent again."""
        if self._last_read is None or self._last_checksum != self.checksum:
            return None
        return self._last_read

    def live_tools(self) -> frozenset[str]:
        """The tool names of the live agent's manifest (as of its last checksum)."""
        if not self._last_manifest:
            self.live_checksum()
        return self._last_tools


@dataclass(frozen=True)
class _Checked:
    """A live agent just checked for ``tool`` (:meth:`Shim._live_agent`) and its live
    checksum, handed to the mint that follows in the same operation."""

    agent: RegisteredAgent
    live: str
    tool: str | None


@dataclass(frozen=True)
class _Deferred:
    """A step completion checked and recorded in the shim's copy of the run, sent to the
    IdP with the run's next token request or by :meth:`Shim.flush`."""

    agent: str
    step: str
    run: Run
    checksum: str


@dataclass(frozen=True)
class ShimEvent:
    """One thing the shim did, for observers (audit logs, the demo's report)."""

    kind: str
    agent: str
    run_id: str
    step: str | None
    tool: str | None
    detail: dict[str, Any]


@dataclass(frozen=True)
class Binding:
    """What the auth flow attaches to one request: token and the key for its proof."""

    token: str
    key: PopKey
    context: AgentContext

    def headers(
        self, method: str, url: str, body: bytes = b"", nonce: str | None = None
    ) -> dict[str, str]:
        """``Authorization: DPoP <token>``, a fresh ``DPoP`` proof for ``method url`` and
        ``body`` (with ``ath`` and ``bh``), and ``X-Shim-Checksum``."""
        proof = create_proof(self.key, method, url, token=self.token, body=body, nonce=nonce)
        return {
            "Authorization": f"DPoP {self.token}",
            "DPoP": proof,
            SHIM_HEADER: shim_header_value(),
        }


def _check_body(body: object) -> None:
    if not isinstance(body, bytes | bytearray | memoryview):
        raise TypeError(
            f"body must be the bytes the request sends, not {type(body).__name__} "
            "(encode text first: body=text.encode())"
        )


# ``name="value"`` parameters of a WWW-Authenticate challenge (values have no quotes:
# the resource server writes descriptions with ``'``).
_CHALLENGE_PARAM = re.compile(r'([A-Za-z_]+)="([^"]*)"')
#: Refusals that end a run for good: the shim refuses its later operations at once.
_RUN_ENDED = frozenset({Reason.RUN_REVOKED.value, Reason.INTENT_REVOKED.value})


def _manifest_of(source: ManifestSource) -> AgentManifest:
    if isinstance(source, AgentManifest):
        return source
    if callable(source):
        return source()
    return AgentManifest.model_validate(source)


def _load_master_secret(secret: bytes | str | None) -> bytes:
    if isinstance(secret, bytes):
        return secret
    value = secret if secret is not None else os.environ.get(MASTER_SECRET_ENV)
    if value is None:
        # Random per process: keys live as long as the process (DESIGN §4).
        return secrets.token_bytes(32)
    if value.startswith("file:"):
        with open(value[5:], "rb") as handle:
            return handle.read().strip()
    return bytes.fromhex(value)


class Shim:
    """The A-JWT client for one OAuth client application hosting many agents.

    ``idp_url`` is the IdP's issuer URL. Authenticate with ``client_secret``
    (``client_secret_basic``) or ``client_key`` (``private_key_jwt``). ``audience``
    maps a request URL to the resource identifier tokens are minted for (default: the
    URL's origin, ``scheme://host:port``); ``default_audience`` lets :meth:`prepare`
    mint before a tool runs, so a refusal stops the tool before it starts.
    """

    #: Pauses before the second and third try of a request that could not connect.
    connect_backoff: tuple[float, ...] = (0.1, 0.5)

    def __init__(
        self,
        idp_url: str,
        client_id: str,
        *,
        client_secret: str | None = None,
        client_key: PopKey | None = None,
        client_key_id: str | None = None,
        master_secret: bytes | str | None = None,
        alg: Alg = "ES256",
        key_lifetime: int = DEFAULT_KEY_LIFETIME,
        audience: str | Callable[[str], str] | None = None,
        default_audience: str | None = None,
        local_checks: bool = True,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if client_secret is None and client_key is None:
            raise InvalidRequest(
                Reason.MISSING_PARAMETER, "give client_secret or client_key to authenticate"
            )
        self.idp_url = idp_url.rstrip("/")
        self.client_id = client_id
        self._client_secret = client_secret
        self._client_key = client_key
        self._client_key_id = client_key_id
        self._master = _load_master_secret(master_secret)
        self._alg: Alg = alg
        self._key_lifetime = key_lifetime
        self._audience = audience
        self.default_audience = default_audience
        self._subscribers: list[Callable[[ShimEvent], None]] = []
        self.local_checks = local_checks
        self._timeout = timeout
        self._transport = transport
        self._async_transport = async_transport
        self._clock = clock
        # agent id -> registration checksum -> registration: several versions of one agent
        # id may be live at once (two teams whose agents share a name).
        self._agents: dict[str, dict[str, RegisteredAgent]] = {}
        self._tokens = TokenCache(clock=clock)
        # run id -> the run's position in its workflow (DESIGN §6.3), the shim's copy of
        # what the IdP recorded: moved by the events its answers list.
        self._states: OrderedDict[str, RunState] = OrderedDict()
        # run id -> (seq, checkpoint): the latest ledger checkpoint the IdP returned.
        self._checkpoints: OrderedDict[str, tuple[int, str]] = OrderedDict()
        self._resolvers: list[ContextResolver] = []
        self._lock = threading.Lock()
        # run id -> completions deferred to the run's next token request (DESIGN §6.7),
        # and how many ``shim.run(run)`` blocks are open (only they defer: they flush).
        self._deferred: dict[str, list[_Deferred]] = {}
        self._running: dict[str, int] = {}
        #: Runs the IdP or a resource server answered as revoked (a revocation is final),
        #: and the intents and agent registrations this shim revoked (the newest kept).
        self._revoked = KnownRevoked()
        #: (run id, step): a completion of the step sent, its outcome not known (on its
        #: way, cancelled, or no answer came): see _completing_step. The oldest beyond
        #: ``_COMPLETED_RUNS_MAX`` are forgotten with their steps' cached tokens.
        self._completing: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._tool_spans: OrderedDict[
            tuple[str, str, str | None, str | None], list[telemetry.SpanLike]
        ] = OrderedDict()
        self._sync_client: httpx.Client | None = None
        # One client per event loop (a client cannot move between loops); all of them
        # share one TLS context, so a new loop's client costs ~1 ms, not ~45 ms.
        self._async_clients = AsyncClients(
            lambda: httpx.AsyncClient(
                timeout=self._timeout,
                transport=self._async_transport,
                verify=shared_ssl_context(),
            )
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **options: Any) -> Shim:
        """A shim configured by the environment, so the app's code holds no secret:
        ``AJWT_IDP_URL``, ``AJWT_CLIENT_ID``, ``AJWT_CLIENT_SECRET`` (or ``…_FILE``, or
        ``AJWT_CLIENT_KEY_FILE``), ``AJWT_AUDIENCE``, ``AJWT_SHIM_SECRET``
        (:mod:`ajwt_core.shim.env` lists them). ``options`` are passed on and win.

        >>> shim = Shim.from_env({"AJWT_IDP_URL": "http://127.0.0.1:9",
        ...                       "AJWT_CLIENT_ID": "app", "AJWT_CLIENT_SECRET": "s"})
        >>> shim.client_id, shim.default_audience
        ('app', None)
        """
        from ajwt_core.shim.env import shim_options

        merged = shim_options(environ) | options
        return cls(merged.pop("idp_url"), merged.pop("client_id"), **merged)

    # ----------------------------------------------------------- I/O drivers

    def _send_sync(self, operation: Operation[T]) -> T:
        if self._sync_client is None:
            self._sync_client = httpx.Client(
                timeout=self._timeout, transport=self._transport, verify=shared_ssl_context()
            )
        client = self._sync_client
        try:
            request = next(operation)
            while True:
                try:
                    with _request_span(request) as span:
                        response = self._roundtrip_sync(client, request)
                        _note_answer(span, response)
                except AJWTError as exc:
                    # Into the operation, so its own handlers (a tool refusal, a span)
                    # see the failure, in the context that opened them.
                    request = operation.throw(exc)
                    continue
                request = operation.send(response)
        except StopIteration as done:
            result: T = done.value
            return result
        finally:
            operation.close()

    async def _send_async(self, operation: Operation[T]) -> T:
        client = self._async_clients.get()
        try:
            request = next(operation)
            while True:
                try:
                    with _request_span(request) as span:
                        response = await self._roundtrip_async(client, request)
                        _note_answer(span, response)
                except AJWTError as exc:
                    request = operation.throw(exc)
                    continue
                request = operation.send(response)
        except StopIteration as done:
            result: T = done.value
            return result
        finally:
            operation.close()

    def _roundtrip_sync(self, client: httpx.Client, request: httpx.Request) -> httpx.Response:
        """One request to the IdP, retried only while no connection could be made."""
        for attempt, pause in enumerate((*self.connect_backoff, None), start=1):
            try:
                response = client.send(request)
                response.read()
                return response
            except _NOT_SENT as exc:
                if pause is None:
                    raise _unreachable(request, exc, attempt) from None
                time.sleep(pause)
            except httpx.TransportError as exc:
                raise _no_answer(request, exc) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _roundtrip_async(
        self, client: httpx.AsyncClient, request: httpx.Request
    ) -> httpx.Response:
        for attempt, pause in enumerate((*self.connect_backoff, None), start=1):
            try:
                response = await client.send(request)
                await response.aread()
                return response
            except _NOT_SENT as exc:
                if pause is None:
                    raise _unreachable(request, exc, attempt) from None
                await asyncio.sleep(pause)
            except httpx.TransportError as exc:
                raise _no_answer(request, exc) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Send the completions still deferred (:meth:`flush`; refusals are told to the
        observers), then close the blocking HTTP client. The connections an event loop
        opened are closed by :meth:`aclose` in that loop, before it ends. A closed shim
        stays usable: a later call opens new connections."""
        if self.deferred():
            self._send_sync(self._op_flush_quietly(None))
        self._close_sync_client()

    def _close_sync_client(self) -> None:
        if self._sync_client is not None:
            self._sync_client.close()
            self._sync_client = None

    async def aclose(self) -> None:
        """:meth:`close`, and the connections of the running event loop: call it before
        the loop ends (``asyncio.run`` returns, a web service's lifespan shuts down)."""
        if self.deferred():
            await self._send_async(self._op_flush_quietly(None))
        self._close_sync_client()
        await self._async_clients.aclose()

    # ------------------------------------------------------- request helpers

    def _client_auth_header(self) -> str:
        if self._client_secret is not None:
            raw = f"{quote(self.client_id, safe='')}:{quote(self._client_secret, safe='')}"
            return "Basic " + base64.b64encode(raw.encode()).decode()
        return "Client-Assertion " + self._client_assertion()

    def _client_assertion(self) -> str:
        assert self._client_key is not None
        token = encode_client_assertion(
            self.client_id,
            self._client_key,
            audience=self.idp_url,
            jti=secrets.token_urlsafe(16),
            now=int(self._clock()),
            kid=self._client_key_id,
        )
        return token

    def _json_request(self, method: str, path: str, body: Any = None) -> httpx.Request:
        headers = {"Authorization": self._client_auth_header(), SHIM_HEADER: shim_header_value()}
        return httpx.Request(method, self.idp_url + path, json=body, headers=headers)

    def _token_request(self, form: dict[str, str], key: PopKey) -> httpx.Request:
        headers = {SHIM_HEADER: shim_header_value()}
        if self._client_secret is not None:
            headers["Authorization"] = self._client_auth_header()
        else:
            form = form | {
                "client_assertion_type": CLIENT_ASSERTION_TYPE_URI,
                "client_assertion": self._client_assertion(),
                "client_id": self.client_id,
            }
        request = httpx.Request("POST", self.idp_url + "/token", data=form, headers=headers)
        exchange = form["grant_type"] == TOKEN_EXCHANGE_GRANT
        request.extensions[_TRACE] = (
            telemetry.EXCHANGE if exchange else telemetry.MINT,
            {
                "agent": form["agent_id"],
                "run": form["run_id"],
                "step": form.get("step"),
                "tool": form.get("tool"),
            },
        )
        request.headers["DPoP"] = create_proof(
            key, "POST", str(request.url), body=request.read(), now=self._clock()
        )
        return request

    @staticmethod
    def _check(response: httpx.Response) -> Any:
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.is_success:
            return body
        raise error_from_oauth(body, response.status_code)

    # ------------------------------------------------------ agent registration

    def _derive_key(self, agent_id: str, checksum: str) -> tuple[PopKey, int]:
        now = self._clock()
        epoch = key_epoch(now, self._key_lifetime)
        expires_in = max(60, int((epoch + 1) * self._key_lifetime - now))
        return derive_pop_key(self._master, checksum, agent_id, epoch, self._alg), expires_in

    def _op_register(self, sources: list[ManifestSource]) -> Operation[list[RegisteredAgent]]:
        items, pending = [], []
        batch = len(sources) > 1
        url = self.idp_url + ("/agents/batch" if batch else "/agents")
        for source in sources:
            manifest = _manifest_of(source)
            checksum = manifest.checksum()
            key, expires_in = self._derive_key(manifest.agent_id, checksum)
            proof = create_proof(key, "POST", url, now=self._clock())
            items.append(
                {
                    "manifest": manifest.model_dump(mode="json"),
                    "proof": proof,
                    "expires_in": expires_in,
                }
            )
            pending.append((manifest.agent_id, source, checksum, key))
        body: Any = {"agents": items} if batch else items[0]
        response = yield self._json_request("POST", "/agents/batch" if batch else "/agents", body)
        result = self._check(response)
        registrations = result if batch else [result]
        agents = []
        for (agent_id, source, checksum, key), reg in zip(pending, registrations, strict=True):
            if reg["checksum"] != checksum:
                raise InvalidGrant(
                    Reason.CHECKSUM_MISMATCH, "the IdP computed another checksum for the manifest"
                )
            agent = RegisteredAgent(
                agent_id=agent_id,
                source=source,
                checksum=checksum,
                key=key,
                registration_id=reg["registration_id"],
                version=reg["version"],
                expires_at=reg["expires_at"],
            )
            with self._lock:
                self._agents.setdefault(agent_id, {})[checksum] = agent
            agents.append(agent)
        return agents

    def register(self, source: ManifestSource) -> RegisteredAgent:
        """Register one agent. ``source`` is a manifest, or a callable that extracts the
        manifest from the live agent (then the checksum is recomputed before each mint)."""
        return self._send_sync(self._op_register([source]))[0]

    async def aregister(self, source: ManifestSource) -> RegisteredAgent:
        return (await self._send_async(self._op_register([source])))[0]

    def register_many(self, sources: Iterable[ManifestSource]) -> list[RegisteredAgent]:
        """Batch registration (one request, e.g. from CI/CD)."""
        return self._send_sync(self._op_register(list(sources)))

    async def aregister_many(self, sources: Iterable[ManifestSource]) -> list[RegisteredAgent]:
        return await self._send_async(self._op_register(list(sources)))

    def _op_ensure_registered(
        self, sources: list[ManifestSource]
    ) -> Operation[list[RegisteredAgent]]:
        held: list[RegisteredAgent | None] = []
        missing: list[ManifestSource] = []
        horizon = self._clock() + _REGISTRATION_MARGIN
        for source in sources:
            manifest = _manifest_of(source)
            with self._lock:
                found = self._agents.get(manifest.agent_id, {}).get(manifest.checksum())
            if found is not None and found.expires_at > horizon:
                found.source = source  # the object the framework runs now is checked
                held.append(found)
            else:
                held.append(None)
                missing.append(source)
        fresh = iter((yield from self._op_register(missing)) if missing else [])
        return [agent if agent is not None else next(fresh) for agent in held]

    def ensure_registered(self, sources: Iterable[ManifestSource]) -> list[RegisteredAgent]:
        """Register, in one request, the agents this shim does not already hold with the
        same checksum (and a registration not about to expire); no request when it holds
        them all. Held ones keep their registration and take ``source`` as their live
        manifest: what an app that builds its agents afresh for every run calls each run.

        >>> shim = Shim("http://127.0.0.1:9", "app", client_secret="s")
        >>> shim.ensure_registered([])
        []
        """
        return self._send_sync(self._op_ensure_registered(list(sources)))

    async def aensure_registered(self, sources: Iterable[ManifestSource]) -> list[RegisteredAgent]:
        return await self._send_async(self._op_ensure_registered(list(sources)))

    def agent(self, agent_id: str, checksum: str | None = None) -> RegisteredAgent:
        """The registration of ``agent_id`` (the one with ``checksum`` when this shim holds
        several versions of the agent id, as two teams whose agents share a name do)."""
        versions = self._agents.get(agent_id)
        if not versions:
            raise InvalidGrant(
                Reason.AGENT_NOT_REGISTERED, f"agent {agent_id!r} is not registered with this shim"
            )
        if checksum is not None:
            found = versions.get(checksum)
            if found is None:
                raise InvalidGrant(
                    Reason.AGENT_NOT_REGISTERED,
                    f"no registration of agent {agent_id!r} with checksum {checksum} in this "
                    "shim (register the agent as it is now)",
                )
            return found
        if len(versions) == 1:
            return next(iter(versions.values()))
        raise AgentContextError(
            Reason.AMBIGUOUS_AGENT,
            f"{len(versions)} versions of agent {agent_id!r} are registered with this shim "
            f"(checksums {', '.join(sorted(versions))}); say which one acts: checksum= "
            "(complete, handoff, consult: from_checksum=, to_checksum=) or "
            "acting(..., checksum=registered.checksum)",
        )

    # -------------------------------------------------------------------- runs

    def _op_start_run(
        self,
        user_token: str,
        workflow_id: str,
        version: int | None,
        intent: str,
        subject_token_type: str | None,
    ) -> Operation[Run]:
        body: dict[str, Any] = {
            "workflow_id": workflow_id,
            "subject_token": user_token,
            "intent": intent,
        }
        if version is not None:
            body["workflow_version"] = version
        if subject_token_type is not None:
            body["subject_token_type"] = subject_token_type
        result = self._check((yield self._json_request("POST", "/runs", body)))
        workflow = Workflow.from_mapping(result["workflow"])
        if workflow.workflow_hash != result["workflow_hash"]:
            raise InvalidGrant(Reason.INVALID_WORKFLOW, "the workflow does not match its hash")
        run = Run(
            run_id=result["run_id"],
            intent_id=result["intent_id"],
            initiated_by=result["initiated_by"],
            workflow=workflow,
            workflow_hash=result["workflow_hash"],
        )
        self.run_state(run)
        self._keep_checkpoint(run.run_id, result)
        return run

    def start_run(
        self,
        user_token: str,
        workflow_id: str,
        *,
        version: int | None = None,
        intent: str = "",
        subject_token_type: str | None = None,
    ) -> Run:
        """Start a run for the user whose token is ``user_token`` (DESIGN §6.4).

        ``user_token`` is the user's access token (local or from the IdP's upstream
        provider); an OpenID Connect ID token from the upstream provider is sent with
        ``subject_token_type=ajwt_core.tokens.ID_TOKEN_TYPE_URI``
        (``urn:ietf:params:oauth:token-type:id_token``, RFC 8693 §3).
        """
        return self._send_sync(
            self._op_start_run(user_token, workflow_id, version, intent, subject_token_type)
        )

    async def astart_run(
        self,
        user_token: str,
        workflow_id: str,
        *,
        version: int | None = None,
        intent: str = "",
        subject_token_type: str | None = None,
    ) -> Run:
        return await self._send_async(
            self._op_start_run(user_token, workflow_id, version, intent, subject_token_type)
        )

    @contextlib.contextmanager
    def run(self, run: Run) -> Iterator[Run]:
        """Make ``run`` the current run for the code inside (sync or async).

        Completions deferred inside (``complete(..., defer=True)``, which the LangGraph
        adapter uses when a node returns) are sent when the block ends, if no token
        request of the run carried them before: a refusal of one is raised then (told
        to the observers only, when the block raised already). In async code,
        ``await shim.aflush(run)`` as the block's last statement sends them without
        blocking the event loop."""
        token = set_run(run)
        with self._lock:
            self._running[run.run_id] = self._running.get(run.run_id, 0) + 1
        failed = True
        try:
            yield run
            failed = False
        finally:
            with self._lock:
                left = self._running[run.run_id] - 1
                if left:
                    self._running[run.run_id] = left
                else:
                    del self._running[run.run_id]
            reset_run(token)
            if left or not self.deferred(run):
                pass  # the outer block flushes; nothing to send
            elif failed:
                self._send_sync(self._op_flush_quietly(run))
            else:
                self.flush(run)

    def _op_resume(self, run_id: str, checkpoint: str | None) -> Operation[Run]:
        text = yield self._json_request("GET", f"/runs/{run_id}/ledger")
        if not text.is_success:
            self._check(text)
        entries = load_json(text.content)
        anchors = []
        if checkpoint is not None:
            # A checkpoint kept outside the IdP proves the ledger was not cut or rewritten
            # before it: verified with the IdP's published keys.
            jwks = self._check(
                (yield httpx.Request("GET", self.idp_url + "/.well-known/jwks.json"))
            )
            kept = decode_checkpoint(
                checkpoint, KeyResolver.from_jwks(jwks), issuer=self.idp_url, run_id=run_id
            )
            anchors.append(Anchor(source="the checkpoint kept", seq=kept.seq, entry_hash=kept.head))
        report = verify_chain(entries, run_id=run_id, anchors=anchors)
        if not report.ok:
            raise LedgerError(
                Reason.LEDGER_BROKEN, f"run {run_id!r}'s ledger does not verify: {report.problem}"
            )
        started = entries[0]["data"]
        workflow_id, version = started["workflow_id"], int(started["workflow_version"])
        result = self._check(
            (yield self._json_request("GET", f"/workflows/{workflow_id}/{version}"))
        )
        workflow = Workflow.from_mapping(result["workflow"])
        if workflow.workflow_hash != started["workflow_hash"]:
            raise InvalidGrant(
                Reason.INVALID_WORKFLOW,
                "the run's workflow does not match the hash it started with",
            )
        run = Run(
            run_id=run_id,
            intent_id=str(started["intent_id"]),
            initiated_by=str(started["initiated_by"]),
            workflow=workflow,
            workflow_hash=workflow.workflow_hash,
        )
        state = RunState.replay(workflow, ((e["kind"], e["data"]) for e in entries))
        with self._lock:
            self._states[run_id] = state
            self._states.move_to_end(run_id)
        if checkpoint is not None:
            self._keep_checkpoint(run_id, {"ledger_checkpoint": checkpoint})
        return run

    def resume(self, run_id: str, *, checkpoint: str | None = None) -> Run:
        """Pick up a run started elsewhere (another process, before a restart): its
        workflow, and where it stands (completed, entered and skipped steps, hand-offs
        and consultations, visits), from the IdP's ledger of it, which is verified first
        (against ``checkpoint`` too, when one was kept: :meth:`checkpoint`).

        Tokens are not carried over: each agent's next call mints its own, and a hand-off
        or completion with no live token uses a step token. The agents must be registered
        with this shim (``register_many``) as for a new run.
        """
        return self._send_sync(self._op_resume(run_id, checkpoint))

    async def aresume(self, run_id: str, *, checkpoint: str | None = None) -> Run:
        return await self._send_async(self._op_resume(run_id, checkpoint))

    def completed_steps(self, run: Run) -> frozenset[str]:
        """The steps of ``run`` completed (as far as this shim has seen)."""
        return frozenset(self.run_state(run).completed)

    def run_state(self, run: Run) -> RunState:
        """Where ``run`` stands in its workflow, as this shim has seen it (DESIGN §6.3).

        The IdP decides; this copy lets the shim resolve steps and refuse early. It is
        moved by the events the IdP's answers list. Bounded: a run untouched while
        ``_COMPLETED_RUNS_MAX`` others were used is forgotten (and starts again empty).
        """
        with self._lock:
            state = self._states.get(run.run_id)
            if state is None:
                state = self._states[run.run_id] = RunState(run.workflow)
                if len(self._states) > _COMPLETED_RUNS_MAX:
                    self._states.popitem(last=False)
            else:
                self._states.move_to_end(run.run_id)
            return state

    def _apply(self, run: Run, result: Any, agent: str) -> None:
        """Move the shim's copy of the run by the events an IdP answer lists."""
        events = result.get("ajwt_run_events") if isinstance(result, dict) else None
        if not isinstance(events, list):
            return
        state = self.run_state(run)
        for event in events:
            if not isinstance(event, dict):
                continue
            entry, data = event.get("entry"), event.get("data")
            if not isinstance(entry, str) or not isinstance(data, dict):
                continue
            with self._lock:
                state.apply(entry, data)
            if entry == "step_reopened":
                reset = data.get("reset")
                steps = [str(s) for s in reset] if isinstance(reset, list) else []
                self._tokens.forget(run.run_id, {str(data.get("step")), *steps})
            if entry == "step_completed":
                self._emit(
                    "step_completed",
                    AgentContext(str(data.get("agent", agent)), run, str(data["step"])),
                    {"implicit": bool(data.get("implicit"))},
                )

    def checkpoint(self, run: Run | str) -> str | None:
        """The latest ledger checkpoint the IdP returned for ``run`` (None before any).

        The IdP signs one on every append this shim asks for (run start, each token,
        each completion): a JWS (``typ: ledger-checkpoint+jwt``) of the run's ledger
        length and head. Keep it outside the IdP; ``ajwt audit verify RUN --checkpoint
        <it> --jwks <IdP JWKS>`` later proves the IdP's ledger was not cut or rewritten
        before that point (DESIGN §12).

        >>> Shim("http://127.0.0.1:9", "app", client_secret="s").checkpoint("run-1") is None
        True
        """
        run_id = run if isinstance(run, str) else run.run_id
        with self._lock:
            kept = self._checkpoints.get(run_id)
        return kept[1] if kept else None

    def _keep_checkpoint(self, run_id: str, result: Any) -> None:
        # Responses to concurrent calls may arrive out of order: keep the longest ledger.
        checkpoint = result.get("ledger_checkpoint") if isinstance(result, dict) else None
        seq = checkpoint_seq_unverified(checkpoint) if isinstance(checkpoint, str) else None
        if seq is None:
            return
        with self._lock:
            kept = self._checkpoints.get(run_id)
            if kept is None or seq > kept[0]:
                self._checkpoints[run_id] = (seq, str(checkpoint))
            self._checkpoints.move_to_end(run_id)
            if len(self._checkpoints) > _COMPLETED_RUNS_MAX:
                self._checkpoints.popitem(last=False)

    # ----------------------------------------------------------------- context

    def add_context_resolver(self, resolver: ContextResolver) -> None:
        """Let an adapter answer "who is acting now" from its framework's own state."""
        self._resolvers.append(resolver)

    def remove_context_resolver(self, resolver: ContextResolver) -> None:
        with contextlib.suppress(ValueError):
            self._resolvers.remove(resolver)

    def current(self) -> AgentContext | None:
        """The acting agent: the innermost of the context variable (``shim.acting``) and
        the first resolver that knows. A resolver's answer wins over the variable when
        its scope was entered inside the block: a sub-agent's tool call, seen by an
        adapter's callbacks, run from another agent's tool."""
        context = current_acting()
        for resolver in list(self._resolvers):
            resolved = resolver()
            if resolved is not None:
                return resolved if context is None or resolved.inside(context) else context
        return context

    def context(
        self,
        agent: str,
        *,
        step: str | None = None,
        tool: str | None = None,
        run: Run | None = None,
        input_digest: str | None = None,
        checksum: str | None = None,
    ) -> AgentContext:
        """Build an acting context (for adapters that keep it outside context variables)."""
        the_run = run or current_run()
        if the_run is None:
            raise AgentContextError(
                Reason.NO_AGENT_CONTEXT, "no current run: start one and use shim.run(run)"
            )
        self.agent(agent, checksum)
        return AgentContext(
            agent=agent,
            run=the_run,
            step=step,
            tool=tool,
            input_digest=input_digest,
            checksum=checksum,
        )

    @contextlib.contextmanager
    def acting(
        self,
        agent: str,
        *,
        step: str | None = None,
        tool: str | None = None,
        run: Run | None = None,
        input_digest: str | None = None,
        checksum: str | None = None,
    ) -> Iterator[AgentContext]:
        """Run the code inside as ``agent`` (at ``step``, calling ``tool``); ``checksum``
        picks the registration when several versions of the agent id are registered.

        The context ends with the block: a task or thread started inside that outlives
        it (it copied the context variable) has its HTTP requests refused,
        ``no_agent_context``, as the tool call it acted for is over."""
        block = ActingBlock()
        context = replace(
            self.context(
                agent, step=step, tool=tool, run=run, input_digest=input_digest, checksum=checksum
            ),
            acting_block=block,
        )
        token = set_acting(context)
        try:
            yield context
        finally:
            block.ended = True
            reset_acting(token)

    @contextlib.asynccontextmanager
    async def aacting(
        self,
        agent: str,
        *,
        step: str | None = None,
        tool: str | None = None,
        run: Run | None = None,
        input_digest: str | None = None,
        checksum: str | None = None,
    ) -> AsyncIterator[AgentContext]:
        with self.acting(
            agent, step=step, tool=tool, run=run, input_digest=input_digest, checksum=checksum
        ) as c:
            yield c

    def resolve_step(self, context: AgentContext) -> str:
        """The workflow step of an acting context: explicit, or resolved from the agent
        and its tool on the run's position (DESIGN §6.3: its current step, a
        consultation, a due step, its next step, a completed step it re-enters)."""
        if context.step is not None:
            return context.step
        state = self.run_state(context.run)
        with self._lock:
            if context.tool is None:
                return state.check_mint(context.agent, None, None, approvals=False).step
            return state.step_for(context.agent, context.tool, approvals=False)

    def _resolve_tool(self, context: AgentContext, step: str) -> str:
        """The tool of a call to an API (which needs a tool's token, never a step token)."""
        if context.tool is not None:
            return context.tool
        definition = context.run.workflow.step(step)
        if context.agent != definition.agent and definition.consult.get(context.agent):
            tools = definition.consult[context.agent].tools
        else:
            tools = definition.tools
        if len(tools) == 1:
            return tools[0]
        if not tools:
            raise AgentContextError(
                Reason.TOOL_NOT_ALLOWED,
                f"agent {context.agent!r} calls an API in step {step!r}, which allows it no "
                "tool (a routing step hands work on; list the tool in the step's 'tools')",
            )
        raise AgentContextError(
            Reason.NO_AGENT_CONTEXT,
            f"step {step!r} has several tools ({', '.join(sorted(tools))}); say which one is "
            "being called (shim.acting(agent, tool=...), or the adapter's tool wrapper)",
        )

    def audience_for(self, url: str) -> str:
        if callable(self._audience):
            return self._audience(url)
        return self._audience or origin_of(url)

    # -------------------------------------------------------------------- mint

    def _remember(self, issued: IssuedToken) -> IssuedToken:
        self._tokens.put(issued)
        return issued

    def _checked_agent(
        self, agent_id: str, checksum: str | None = None
    ) -> tuple[RegisteredAgent, str]:
        agent = self.agent(agent_id, checksum)
        live = agent.live_checksum()
        if self.local_checks and live != agent.checksum:
            raise InvalidGrant(
                Reason.CHECKSUM_MISMATCH,
                f"agent {agent_id!r} changed since it was registered (checksum mismatch)",
            )
        return agent, live

    def _op_token(
        self, context: AgentContext, audience: str, checked: _Checked | None = None
    ) -> Operation[IssuedToken]:
        """A tool's intent token for an API call (cached until near expiry).
        ``checked``: the live agent was checked for this tool just before (nothing ran
        since), so the mint need not read its manifest again."""
        step = self.resolve_step(context)
        tool = self._resolve_tool(context, step)
        if checked is not None and checked.tool != tool:
            checked = None
        issued = yield from self._op_mint(context, step, tool, audience, checked)
        return issued

    def _op_step_token(
        self, agent: str, run: Run, step: str, checksum: str | None = None
    ) -> Operation[IssuedToken]:
        """A step token (DESIGN §6.3): proves to the IdP that ``agent`` acts in ``step``,
        for a hand-off or a completion when it holds no live token of the step."""
        cached = self._latest_token(agent, run, step, checksum)
        if cached is not None:
            return cached
        context = AgentContext(agent, run, step, checksum=checksum)
        issued = yield from self._op_mint(context, step, None, None)
        return issued

    def _live_agent(
        self, agent_id: str, checksum: str | None, tool: str | None = None
    ) -> tuple[RegisteredAgent, str]:
        """The registration, and the live checksum of the agent the framework runs now:
        refused if the agent changed since it was registered (T4), or if ``tool`` is not
        one of the live agent's tools (a tool the workflow allows but the agent was not
        registered with)."""
        agent, live = self._checked_agent(agent_id, checksum)
        if self.local_checks and tool is not None and tool not in agent.live_tools():
            raise UnauthorizedClient(
                Reason.TOOL_NOT_ALLOWED,
                f"agent {agent_id!r} as it runs now has no tool {tool!r} (its tools: "
                f"{', '.join(sorted(agent.live_tools())) or 'none'}): give the agent that "
                "tool, or take the tool out of the workflow step that names it",
            )
        return agent, live

    def _op_mint(
        self,
        context: AgentContext,
        step: str,
        tool: str | None,
        audience: str | None,
        checked: _Checked | None = None,
        carry: bool = True,
    ) -> Operation[IssuedToken]:
        """``carry=False``: no deferred completion rides on this request, and the run's
        position is not checked locally (a step token for sending a deferred completion:
        the shim's copy of the run already has the step completed, the IdP not yet)."""
        the_audience = audience if tool is not None and audience is not None else self.idp_url
        registered = self.agent(context.agent, context.checksum)
        # What this shim knows revoked is never served from the cache, whether or not
        # the local checks are on: a cached token reaches no IdP that could refuse it.
        self._check_not_revoked(context.run, registered)
        request = (context.agent, registered.checksum, context.run.run_id, step, tool)
        # A token states the inputs it was minted for, or none (a delegate's first
        # token, from the hand-off): never another call's inputs.
        cached = self._tokens.get((*request, the_audience, context.input_digest or ""))
        if cached is None and context.input_digest:
            cached = self._tokens.get((*request, the_audience, ""))
        if cached is not None and self._re_entry(context.run, step, tool):
            # A tool call in a step already completed re-enters it (DESIGN §6): asked of
            # the IdP, which checks it and records it, never served from the cache.
            cached = None
        if cached is not None:
            # A live agent may have changed since its token was minted (T4): reuse the
            # token only while the agent still has its registered checksum and the tool.
            if callable(registered.source) and checked is None:
                self._live_agent(context.agent, registered.checksum, tool)
            return cached
        if self.local_checks and carry:
            state = self.run_state(context.run)
            with self._lock:
                state.check_mint(context.agent, step, tool, approvals=False)
        if checked is not None and checked.agent is registered:
            agent, live = checked.agent, checked.live
        else:
            agent, live = self._live_agent(context.agent, registered.checksum, tool)
        form = {
            "grant_type": AGENT_CHECKSUM_GRANT,
            "agent_id": context.agent,
            "agent_checksum": live,
            "run_id": context.run.run_id,
            "step": step,
        }
        if tool is not None:
            form["tool"] = tool
            form["resource"] = the_audience
        if context.input_digest:
            form["input_digest"] = context.input_digest
        result = yield from self._op_grant(context.run, form, agent.key, carry)
        self._apply(context.run, result, context.agent)
        issued = self._issued(
            result,
            context.agent,
            context.run,
            step,
            tool,
            the_audience,
            agent.checksum,
            context.input_digest or "",
        )
        self._emit(
            "token_minted",
            AgentContext(context.agent, context.run, step, tool),
            {"audience": the_audience, "scope": issued.scope},
        )
        return self._remember(issued)

    def _issued(
        self,
        result: Any,
        agent: str,
        run: Run,
        step: str,
        tool: str | None,
        audience: str,
        checksum: str,
        input_digest: str = "",
    ) -> IssuedToken:
        self._keep_checkpoint(run.run_id, result)
        return IssuedToken(
            token=result["access_token"],
            expires_at=int(self._clock()) + int(result["expires_in"]),
            agent=agent,
            run_id=run.run_id,
            step=step,
            tool=tool,
            audience=audience,
            scope=result.get("scope", ""),
            checksum=checksum,
            input_digest=input_digest,
        )

    def token(self, context: AgentContext, audience: str) -> IssuedToken:
        """An intent token for this context and audience (cached until near expiry)."""
        return self._send_sync(self._op_token(context, audience))

    async def atoken(self, context: AgentContext, audience: str) -> IssuedToken:
        return await self._send_async(self._op_token(context, audience))

    def _op_prepare(self, context: AgentContext) -> Operation[AgentContext]:
        resolved = context
        # The tool call's span: open from here to tool_finished, the parent of its mint.
        span = telemetry.start(
            telemetry.TOOL_CALL,
            agent=context.agent,
            run=context.run.run_id,
            step=context.step,
            tool=context.tool,
        )
        try:
            with telemetry.use(span):
                step = self.resolve_step(context)
                span.set_attribute(telemetry.STEP, step)
                resolved = AgentContext(
                    agent=context.agent,
                    run=context.run,
                    step=step,
                    tool=self._resolve_tool(context, step),
                    input_digest=context.input_digest,
                    checksum=context.checksum,
                )
                if resolved.tool is not None:
                    span.set_attribute(telemetry.TOOL, resolved.tool)
                checked = None
                if self.local_checks:
                    self._check_not_revoked(resolved.run)
                    agent, live = self._live_agent(resolved.agent, resolved.checksum, resolved.tool)
                    checked = _Checked(agent, live, resolved.tool)
                    state = self.run_state(resolved.run)
                    with self._lock:
                        state.check_mint(resolved.agent, step, resolved.tool, approvals=False)
                if self.default_audience is not None and not self._re_entry(
                    resolved.run, step, resolved.tool
                ):
                    yield from self._op_token(resolved, self.default_audience, checked)
        except AJWTError as refusal:
            telemetry.finish(span, refusal)
            detail = {"error": refusal.error, "reason": refusal.reason.value}
            self._emit("tool_refused", resolved, detail)
            raise
        except BaseException as exc:
            telemetry.finish(span, exc)
            raise
        self._hold_tool_span(resolved, span)
        self._emit("tool_started", resolved)
        return resolved

    def _run_revoked(self, run_id: str) -> None:
        """Remember that ``run_id`` was revoked and drop its cached tokens: once the
        shim knows, none of them goes out, even after the bounded memory forgets the
        run (the IdP then refuses the next mint as revoked)."""
        if not self._revoked.has("run", run_id):
            self._tokens.forget(run_id)
        self._revoked.add("run", run_id)

    def _check_not_revoked(self, run: Run, agent: RegisteredAgent | None = None) -> None:
        """A local check: a run the IdP or a resource server answered as revoked, or
        one whose intent or acting agent registration this shim revoked, is refused as
        such at once, before any other check could give another reason (and before a
        cached token could be sent)."""
        if self._revoked.has("run", run.run_id):
            raise InvalidGrant(
                Reason.RUN_REVOKED,
                f"run {run.run_id!r} has been revoked (the IdP or a resource server said "
                "so): start a new run",
            )
        if self._revoked.has("intent", run.intent_id):
            raise InvalidGrant(
                Reason.INTENT_REVOKED,
                f"the intent of run {run.run_id!r} has been revoked: start a new run",
            )
        if agent is not None and self._revoked.has("agent", agent.registration_id):
            raise InvalidGrant(
                Reason.AGENT_REVOKED,
                f"agent {agent.agent_id!r}'s registration has been revoked: register the "
                "agent again",
            )

    def _re_entry(self, run: Run, step: str, tool: str | None) -> bool:
        """A tool call in a step the run has completed (DESIGN §6), or may have (a
        completion of it sent, its outcome not known): each of its requests is asked of
        the IdP (``_op_mint`` serves it no cached token), so the tool gate mints nothing
        for it up front, which its first request would mint again."""
        if tool is None:
            return False
        return step in self.run_state(run).completed or (run.run_id, step) in self._completing

    @contextlib.contextmanager
    def _completing_step(self, run: Run, step: str) -> Iterator[None]:
        """Around the request that completes ``step``. The shim's copy of the run
        moves only when the IdP's answer arrives; until then, and for good when no
        answer comes (the request cancelled, the connection lost after the IdP acted),
        calls in the step are asked of the IdP, never served from the cache: the IdP
        may have completed the step, and a call after a completion is a recorded
        re-entry (DESIGN §6). A refusal means nothing was recorded."""
        key = (run.run_id, step)
        with self._lock:
            self._completing[key] = None
            self._completing.move_to_end(key)
            forgotten = (
                self._completing.popitem(last=False)[0]
                if len(self._completing) > _COMPLETED_RUNS_MAX
                else None
            )
        if forgotten is not None:
            # Nothing of that step may be served from the cache any more: without the
            # entry, its tokens would be.
            self._tokens.forget(forgotten[0], {forgotten[1]})
        try:
            yield
        except AJWTError as exc:
            if not isinstance(exc, ServerError):
                with self._lock:
                    self._completing.pop(key, None)
            raise
        with self._lock:
            self._completing.pop(key, None)

    def prepare(self, context: AgentContext) -> AgentContext:
        """Before a tool runs: resolve its step, run the local checks, and (with a
        ``default_audience``) mint its token, so a refusal blocks the tool up front; in a
        step the run has completed, each request of the tool is minted instead.
        Returns the context with ``step`` and ``tool`` filled in.

        With OpenTelemetry (extra ``otel``), the tool call's span ``ajwt.tool_call``
        starts here, as a child of the framework's current span, and ends at
        :meth:`tool_finished`."""
        return self._send_sync(self._op_prepare(context))

    async def aprepare(self, context: AgentContext) -> AgentContext:
        return await self._send_async(self._op_prepare(context))

    def tool_finished(
        self, context: AgentContext, error: BaseException | str | None = None
    ) -> None:
        """Record the end of a tool call (success, or failure with its error)."""
        detail = {} if error is None else {"error": str(error)[:500]}
        telemetry.finish(self._release_tool_span(context), error)
        self._emit("tool_failed" if error is not None else "tool_finished", context, detail)

    def tool_paused(self, context: AgentContext) -> None:
        """Record that a tool call paused before its end, for a person to answer (a
        framework's human-in-the-loop interrupt): not a failure. Its span ends marked
        ``ajwt.paused``, observers get ``tool_paused``; the resumed call starts again
        (``prepare``, ``tool_started``)."""
        span = self._release_tool_span(context)
        span.set_attribute("ajwt.paused", True)
        telemetry.finish(span)
        self._emit("tool_paused", context)

    @staticmethod
    def _tool_key(context: AgentContext) -> tuple[str, str, str | None, str | None]:
        return (context.agent, context.run.run_id, context.step, context.tool)

    def _hold_tool_span(self, context: AgentContext, span: telemetry.SpanLike) -> None:
        if span is telemetry.NO_SPAN:
            return
        with self._lock:
            self._tool_spans.setdefault(self._tool_key(context), []).append(span)
            if len(self._tool_spans) > _OPEN_TOOL_SPANS_MAX:
                # A framework that never reported the end: close the oldest, unfinished.
                _, forgotten = self._tool_spans.popitem(last=False)
                for stale in forgotten:
                    stale.set_attribute("ajwt.unfinished", True)
                    stale.end()

    def _release_tool_span(self, context: AgentContext) -> telemetry.SpanLike:
        """The open span of the tool call ``context`` ends (the latest such call)."""
        with self._lock:
            key = self._tool_key(context)
            if key not in self._tool_spans:
                # An adapter that reports the context it prepared with, before the step
                # and tool were resolved: the agent's latest open call in the run.
                key = next(
                    (
                        k
                        for k in reversed(self._tool_spans)
                        if k[:2] == key[:2] and context.tool in (None, k[3])
                    ),
                    key,
                )
            spans = self._tool_spans.get(key)
            if not spans:
                return telemetry.NO_SPAN
            span = spans.pop()
            if not spans:
                del self._tool_spans[key]
            return span

    def subscribe(self, callback: Callable[[ShimEvent], None]) -> None:
        """Observe what the shim does: ``callback(event)`` for each :class:`ShimEvent`.

        Kinds: ``tool_started``, ``tool_finished``, ``tool_failed``, ``tool_paused``,
        ``token_minted``, ``handoff``, ``consultation``, ``step_completed``,
        ``api_accepted``; and every
        refusal, whatever the caller does with its exception (an agent framework often
        turns it into a message for the model): ``tool_refused`` (before a tool runs),
        ``request_refused`` (no token for an HTTP request), ``api_refused`` (the
        resource server's 401/403), ``handoff_refused``, ``consultation_refused``,
        ``completion_refused``; their ``detail`` has ``error``, ``reason`` and
        ``description``."""
        self._subscribers.append(callback)

    def _emit(
        self, kind: str, context: AgentContext, detail: Mapping[str, Any] | None = None
    ) -> None:
        if detail and detail.get("reason") in _RUN_ENDED:
            self._run_revoked(context.run.run_id)
        if not self._subscribers:
            return  # the auth flow emits per request: nothing to build for nobody
        event = ShimEvent(
            kind=kind,
            agent=context.agent,
            run_id=context.run.run_id,
            step=context.step,
            tool=context.tool,
            detail=dict(detail or {}),
        )
        for callback in list(self._subscribers):
            callback(event)

    def _reported(
        self, kind: str, context: AgentContext, detail: Mapping[str, Any], operation: Operation[T]
    ) -> Operation[T]:
        """``operation``, its refusal told to the observers (event ``kind``, with ``error``,
        ``reason`` and ``description``) before it is raised."""
        try:
            result = yield from operation
        except AJWTError as refusal:
            self.refused(kind, context, refusal, detail)
            raise
        return result

    def refused(
        self,
        kind: str,
        context: AgentContext,
        error: AJWTError,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """Tell the observers of a refusal an adapter made before any shim operation
        could (a hand-off whose agent has no step in the workflow, say): the event
        ``kind`` (one of the refusal kinds :meth:`subscribe` lists), its ``detail``
        with the error's ``error``, ``reason`` and ``description``."""
        told = {"error": error.error, "reason": error.reason.value}
        self._emit(kind, context, {**(detail or {}), **told, "description": error.description})

    def _op_bind(self, url: str) -> Operation[Binding]:
        context = self.current()
        if context is None:
            raise AgentContextError(
                Reason.NO_AGENT_CONTEXT,
                "an HTTP request was made outside any agent context; refusing to send it "
                "without A-JWT credentials (no secured tool is running: secure the app's "
                "agents with their framework's adapter, such as secure_graph, secure_team "
                "or secure_crew, run them inside `with shim.run(run):`, or make the call "
                "inside shim.acting(agent, tool=...))",
            )
        if context.ended:
            ended = AgentContextError(
                Reason.NO_AGENT_CONTEXT,
                f"an HTTP request was made as agent {context.agent!r} after the shim.acting "
                "block it belongs to had ended (a task or thread started inside the tool "
                "call outlived it); refusing to send it: make the call before the tool "
                "call returns",
            )
            self.refused("request_refused", context, ended)
            raise ended
        try:
            issued = yield from self._op_token(context, self.audience_for(url))
        except AJWTError as refusal:
            # Observers (an adapter's refusal list) learn of it even when the tool that
            # made the request swallows the exception.
            detail = {"error": refusal.error, "reason": refusal.reason.value}
            self._emit("request_refused", context, {**detail, "description": refusal.description})
            raise
        key = self.agent(context.agent, context.checksum).key
        # The context as resolved for the token (its step), for the observers of the
        # request's answer (``api_accepted`` / ``api_refused``).
        bound = replace(context, step=issued.step, tool=issued.tool or context.tool)
        return Binding(token=issued.token, key=key, context=bound)

    def bind(self, request: httpx.Request) -> Binding:
        return self._send_sync(self._op_bind(str(request.url)))

    async def abind(self, request: httpx.Request) -> Binding:
        return await self._send_async(self._op_bind(str(request.url)))

    def headers_for(
        self, method: str, url: str, *, body: bytes = b"", nonce: str | None = None
    ) -> dict[str, str]:
        """The A-JWT headers of one request by the acting agent, for an HTTP client other
        than httpx (``requests``, ``urllib``, ``aiohttp``): its intent token for ``url``'s
        audience (minted if need be, refused as :meth:`auth` refuses) and a fresh proof
        for ``method``, ``url`` and ``body``, the exact bytes sent. A proof is single
        use: ask again for each request, a retry included (``nonce``: the server's
        ``DPoP-Nonce``, when it asked for one). Prefer ``httpx`` with :meth:`auth`,
        which also retries on a nonce challenge and tells the observers each answer;
        with another client, tell the shim each answer with :meth:`answered` (an
        adapter counts a step's work done by a tool it does not wrap from it).
        ``docs/langchain.md`` (*Tools on another HTTP client*) has a tool on ``urllib``.
        """
        _check_body(body)
        binding = self._send_sync(self._op_bind(url))
        return binding.headers(method, url, body, nonce)

    async def aheaders_for(
        self, method: str, url: str, *, body: bytes = b"", nonce: str | None = None
    ) -> dict[str, str]:
        """:meth:`headers_for` in a coroutine (a token it must mint does not block the
        event loop)."""
        _check_body(body)
        binding = await self._send_async(self._op_bind(url))
        return binding.headers(method, url, body, nonce)

    def answered(self, status: int, challenge: str | None = None) -> None:
        """Tell the shim the resource server's answer to a request the acting agent just
        made with :meth:`headers_for`: its ``status`` and ``WWW-Authenticate``
        ``challenge``. A 2xx is ``api_accepted``, a 401/403 with an error is
        ``api_refused``, as for a request through :meth:`auth`. Nothing is sent to the
        IdP (a call in a completed step is not minted again to be reported)."""
        context = self.current()
        if context is None:
            raise AgentContextError(
                Reason.NO_AGENT_CONTEXT,
                "shim.answered() tells the answer to a request of the tool that is running; "
                "call it inside that tool, after the request",
            )
        step = self.resolve_step(context)
        resolved = replace(context, step=step, tool=self._resolve_tool(context, step))
        self._tell_answer(resolved, status, challenge or "")

    def _tell_answer(self, context: AgentContext, status: int, challenge: str) -> None:
        if status in (401, 403) and "error=" in challenge:
            self.api_refused(context, status, challenge)
        elif 200 <= status < 300:
            self.api_accepted(context, status)

    def api_refused(self, context: AgentContext, status: int, challenge: str) -> None:
        """The resource server refused a request made with ``context``'s token (its
        ``WWW-Authenticate`` ``challenge``): tell the observers (event ``api_refused``,
        detail ``status``, ``error``, ``reason``, ``description``), so that a tool that
        returns the refusal as text instead of raising is still seen as refused."""
        params = dict(_CHALLENGE_PARAM.findall(challenge))
        detail = {
            "status": status,
            "error": params.get("error", ""),
            "reason": params.get("ajwt_reason", ""),
            "description": params.get("error_description", ""),
        }
        self._emit("api_refused", context, detail)

    def api_accepted(self, context: AgentContext, status: int) -> None:
        """The resource server answered a request made with ``context``'s token with a
        success (2xx): tell the observers (event ``api_accepted``, detail ``status``), so
        that an adapter can count a step's work done by a tool it does not wrap."""
        self._emit("api_accepted", context, {"status": status})

    def auth(self) -> httpx.Auth:
        """The ``httpx.Auth`` for agent tool calls (sync and async clients alike)."""
        from ajwt_core.shim.auth import AgentAuth

        return AgentAuth(self)

    # --------------------------------------------------------------- delegation

    def _latest_token(
        self, agent: str, run: Run, step: str | None, checksum: str | None = None
    ) -> IssuedToken | None:
        registered = self.agent(agent, checksum)
        return self._tokens.latest(agent, run.run_id, step, registered.checksum)

    def _delegator_step(self, agent: str, run: Run, checksum: str | None = None) -> str:
        """The step ``agent`` acts in now: the acting context's, else its one current
        (entered, not completed) step, else its step of its latest token, else its one
        due step; several candidates: the caller must name it."""
        acting = self.current()
        if (
            acting is not None
            and acting.agent == agent
            and acting.run.run_id == run.run_id
            and (acting.step is not None or acting.tool is not None)
        ):
            return self.resolve_step(acting)
        state = self.run_state(run)
        with self._lock:
            active = state.active_steps(agent)
            consulted = state.consulting(agent)
            due = [s for s in state.due() if run.workflow.steps[s].agent == agent]
        if len(active) == 1:
            return active[0]
        latest = self._latest_token(agent, run, None, checksum)
        if not active and latest is not None:
            return latest.step
        if not active and len(due) == 1:
            return due[0]
        candidates = active or due or consulted or run.workflow.steps_of(agent)
        if len(candidates) == 1:
            return candidates[0]
        if not candidates:
            raise AgentContextError(
                Reason.WRONG_AGENT_FOR_STEP,
                f"agent {agent!r} has no step in workflow {run.workflow.id!r}",
            )
        raise AgentContextError(
            Reason.AMBIGUOUS_STEP,
            f"agent {agent!r} may act in steps {', '.join(repr(c) for c in candidates)}; name "
            "the step it hands off from (from_step=...) or complete (step=...)",
        )

    def _op_handoff(
        self,
        from_agent: str,
        to_agent: str,
        to_step: str | None,
        run: Run,
        tool: str | None,
        scope: str | None,
        audience: str | None,
        from_step: str | None,
        from_checksum: str | None = None,
        to_checksum: str | None = None,
        complete: bool = False,
    ) -> Operation[IssuedToken]:
        step_from = from_step or self._delegator_step(from_agent, run, from_checksum)
        the_step = to_step or step_from  # no step: a consultation inside the delegator's step
        state = self.run_state(run)
        if self.local_checks:
            self._check_not_revoked(run)
            # The delegator signs as the agent it is now: a changed agent hands nothing on.
            self._checked_agent(from_agent, from_checksum)
            with self._lock:
                # Not entered yet is the IdP's to refuse: the step token minted below for
                # a delegator holding none enters the step first.
                decision = state.check_delegation(
                    from_agent, step_from, to_agent, the_step, require_entry=False
                )
                if complete and decision.kind != "handoff":
                    raise InvalidGrant(
                        Reason.INVALID_DELEGATION,
                        f"only a hand-off to a later step completes step {step_from!r}",
                    )
                if complete and step_from not in decision.complete_first:
                    state.check_completion(from_agent, step_from, require_entry=False)
            kind = decision.kind
        else:
            kind = "consult" if the_step == step_from else "handoff"
        # The delegator's token in its step proves it acts there; a step token will do
        # (a routing step, or no tool called since its tokens expired).
        parent = self._latest_token(from_agent, run, step_from, from_checksum)
        if parent is None:
            # A deferred completion of that same step (a router that finished) would need
            # a proof token of its own first: this step token is minted carrying nothing,
            # and proves the completion the exchange below carries.
            if (from_agent, step_from) in self.deferred(run):
                context = AgentContext(from_agent, run, step_from, checksum=from_checksum)
                parent = yield from self._op_mint(context, step_from, None, None, carry=False)
            else:
                parent = yield from self._op_step_token(from_agent, run, step_from, from_checksum)
        target = run.workflow.step(the_step)
        if kind == "consult":
            grant = target.consult.get(to_agent)
            delegated_scope = (
                scope if scope is not None else format_scope(grant.scopes if grant else [])
            )
            tools = grant.tools if grant else []
        else:
            delegated_scope = scope if scope is not None else format_scope(target.scopes)
            tools = target.tools
        # The delegate's first token: for ``tool``, or the step's only tool when an API
        # audience is known; otherwise a step token, and its tool tokens come later.
        the_audience = (
            audience
            or self.default_audience
            or (parent.audience if parent.tool is not None else None)
        )
        the_tool = tool or (tools[0] if len(tools) == 1 and the_audience else None)
        if the_tool is not None and the_audience is None:
            raise AgentContextError(
                Reason.MISSING_PARAMETER,
                f"the delegate's token for tool {the_tool!r} needs the API's audience: pass "
                "audience=... (or give the Shim a default_audience)",
            )
        delegator = self.agent(from_agent, from_checksum)
        now = int(self._clock())
        assertion = encode_delegation_assertion(
            DelegationClaims(
                iss=f"agent:{from_agent}",
                sub=f"agent:{to_agent}",
                aud=self.idp_url,
                intent_id=run.intent_id,
                run_id=run.run_id,
                from_step=step_from,
                to_step=the_step,
                scope=delegated_scope,
                parent=token_hash(parent.token),
                iat=now,
                exp=now + 60,
                jti=secrets.token_urlsafe(16),
                complete=complete,
            ),
            delegator.key,
        )
        delegate, live = self._live_agent(to_agent, to_checksum, the_tool)
        form = {
            "grant_type": TOKEN_EXCHANGE_GRANT,
            "subject_token": parent.token,
            "subject_token_type": INTENT_TOKEN_TYPE_URI,
            "actor_token": assertion,
            "actor_token_type": DELEGATION_TOKEN_TYPE_URI,
            "agent_id": to_agent,
            "agent_checksum": live,
            "run_id": run.run_id,
            "step": the_step,
        }
        token_audience = self.idp_url
        if the_tool is not None and the_audience is not None:
            token_audience = the_audience
            form["tool"] = the_tool
            form["resource"] = token_audience
        if scope is not None:
            form["scope"] = scope
        with self._completing_step(run, step_from) if complete else contextlib.nullcontext():
            result = yield from self._op_grant(run, form, delegate.key)
            self._apply(run, result, from_agent)
        issued = self._issued(
            result, to_agent, run, the_step, the_tool, token_audience, delegate.checksum
        )
        self._emit(
            "consultation" if kind == "consult" else "handoff",
            AgentContext(to_agent, run, the_step, the_tool),
            {"from_agent": from_agent, "from_step": step_from, "scope": issued.scope},
        )
        self._remember(issued)
        if complete:
            with self._lock:
                done = step_from in state.completed
            if not done:
                # An IdP that predates the ``complete`` claim ignored it: the step is
                # completed on its own, as before (never left open silently).
                yield from self._op_complete(from_agent, step_from, run, from_checksum)
        return issued

    def handoff(
        self,
        from_agent: str,
        to_agent: str,
        to_step: str,
        *,
        run: Run | None = None,
        tool: str | None = None,
        scope: str | None = None,
        audience: str | None = None,
        from_step: str | None = None,
        from_checksum: str | None = None,
        to_checksum: str | None = None,
        complete: bool = False,
    ) -> IssuedToken:
        """Hand ``to_step`` from ``from_agent`` to ``to_agent`` (DESIGN §5.2, §6.3).

        Signs a delegation assertion with the delegator's key and exchanges it, with the
        delegator's token in its step (a step token if it holds none), for the delegate's
        first token: for ``tool``, else for the step's only tool when an API audience is
        known (``audience``, the shim's ``default_audience``, or the delegator's token's),
        else a step token. The delegate's later tokens in that step carry the same chain.
        ``from_step`` defaults to the step the delegator acts in; ``to_step`` may be a
        later step, or an earlier one the workflow lets ``from_step`` send work back to.
        ``from_checksum`` / ``to_checksum`` pick registrations when several versions of
        an agent id are registered. ``complete=True`` also completes ``from_step`` (as
        :meth:`complete` would, with its checks) in the same request: the IdP records both
        or neither (DESIGN §6.7), one round trip instead of two.
        """
        the_run = self._run_or_current(run)
        operation = self._op_handoff(
            from_agent,
            to_agent,
            to_step,
            the_run,
            tool,
            scope,
            audience,
            from_step,
            from_checksum,
            to_checksum,
            complete,
        )
        told = AgentContext(to_agent, the_run, to_step)
        detail = {"from_agent": from_agent, "from_step": from_step}
        return self._send_sync(self._reported("handoff_refused", told, detail, operation))

    async def ahandoff(
        self,
        from_agent: str,
        to_agent: str,
        to_step: str,
        *,
        run: Run | None = None,
        tool: str | None = None,
        scope: str | None = None,
        audience: str | None = None,
        from_step: str | None = None,
        from_checksum: str | None = None,
        to_checksum: str | None = None,
        complete: bool = False,
    ) -> IssuedToken:
        the_run = self._run_or_current(run)
        operation = self._op_handoff(
            from_agent,
            to_agent,
            to_step,
            the_run,
            tool,
            scope,
            audience,
            from_step,
            from_checksum,
            to_checksum,
            complete,
        )
        told = AgentContext(to_agent, the_run, to_step)
        detail = {"from_agent": from_agent, "from_step": from_step}
        return await self._send_async(self._reported("handoff_refused", told, detail, operation))

    def consult(
        self,
        from_agent: str,
        to_agent: str,
        *,
        run: Run | None = None,
        tool: str | None = None,
        scope: str | None = None,
        audience: str | None = None,
        from_step: str | None = None,
        from_checksum: str | None = None,
        to_checksum: str | None = None,
    ) -> IssuedToken:
        """Let ``from_agent`` consult ``to_agent`` inside its own step (DESIGN §6.3).

        The step must list ``to_agent`` in its ``consult``. The consulted agent then acts
        in that step (``shim.acting(to_agent, tool=...)``) with only the tools and scopes
        its consultation grants, under a chain ending ``from_agent, to_agent``; it cannot
        complete the step or hand on, and the run's position does not move. Returns the
        consulted agent's first token (a step token unless ``tool`` is given).
        """
        the_run = self._run_or_current(run)
        operation = self._op_handoff(
            from_agent,
            to_agent,
            None,
            the_run,
            tool,
            scope,
            audience,
            from_step,
            from_checksum,
            to_checksum,
        )
        told = AgentContext(to_agent, the_run, None)
        detail = {"from_agent": from_agent, "from_step": from_step}
        return self._send_sync(self._reported("consultation_refused", told, detail, operation))

    async def aconsult(
        self,
        from_agent: str,
        to_agent: str,
        *,
        run: Run | None = None,
        tool: str | None = None,
        scope: str | None = None,
        audience: str | None = None,
        from_step: str | None = None,
        from_checksum: str | None = None,
        to_checksum: str | None = None,
    ) -> IssuedToken:
        the_run = self._run_or_current(run)
        operation = self._op_handoff(
            from_agent,
            to_agent,
            None,
            the_run,
            tool,
            scope,
            audience,
            from_step,
            from_checksum,
            to_checksum,
        )
        told = AgentContext(to_agent, the_run, None)
        detail = {"from_agent": from_agent, "from_step": from_step}
        reported = self._reported("consultation_refused", told, detail, operation)
        return await self._send_async(reported)

    def _run_or_current(self, run: Run | None) -> Run:
        the_run = run or current_run()
        if the_run is None:
            acting = self.current()
            the_run = acting.run if acting is not None else None
        if the_run is None:
            raise AgentContextError(Reason.NO_AGENT_CONTEXT, "no current run")
        return the_run

    # --------------------------------------------------------------- completion

    def _op_complete(
        self, agent: str, step: str | None, run: Run, checksum: str | None, defer: bool = False
    ) -> Operation[dict[str, Any]]:
        checksum = checksum or self._version_in_run(agent, run)
        the_step = step or self._delegator_step(agent, run, checksum)
        # Completed by the agent as it is now: a changed agent completes nothing (T4).
        registered, _ = self._checked_agent(agent, checksum)
        state = self.run_state(run)
        fresh = True
        if self.local_checks:
            self._check_not_revoked(run)
            with self._lock:
                # A step not entered yet is entered by the step token that proves the
                # completion; the IdP checks the entry.
                fresh = state.check_completion(agent, the_step, require_entry=False)
        with self._lock:
            pending = self._deferred.get(run.run_id, [])
            waiting = any(d.agent == agent and d.step == the_step for d in pending)
            defer = defer and (fresh or waiting) and run.run_id in self._running
            if defer and not waiting:
                item = _Deferred(agent, the_step, run, registered.checksum)
                self._deferred.setdefault(run.run_id, []).append(item)
            if defer:
                # The shim's copy moves now (the next hand-off is checked against it);
                # the step_completed event is told when the IdP has recorded it.
                state.apply("step_completed", {"step": the_step, "agent": agent})
        if defer:
            # Its proof token is picked when it is sent (_op_proof_token).
            return {"run_id": run.run_id, "step": the_step, "deferred": True}
        # Any live token of the agent in the step proves it; else a step token.
        issued = self._latest_token(agent, run, the_step, registered.checksum)
        if issued is None:
            issued = yield from self._op_step_token(agent, run, the_step, registered.checksum)
        result = yield from self._op_send_completion(run, the_step, registered, issued)
        return result

    def _version_in_run(self, agent: str, run: Run) -> str | None:
        """The checksum of the version of ``agent`` that holds a live token in ``run``,
        when this shim holds several versions of the agent id and exactly one of them
        does (``None`` otherwise: the caller's choice stands, or is asked for)."""
        with self._lock:
            versions = list(self._agents.get(agent) or {})
        if len(versions) < 2:
            return None
        acted = [c for c in versions if self._tokens.latest(agent, run.run_id, None, c)]
        return acted[0] if len(acted) == 1 else None

    def _op_send_completion(
        self, run: Run, step: str, registered: RegisteredAgent, issued: IssuedToken
    ) -> Operation[dict[str, Any]]:
        path = f"/runs/{run.run_id}/steps/{step}/complete"
        request = self._json_request("POST", path)
        request.extensions[_TRACE] = (
            telemetry.COMPLETE,
            {"agent": registered.agent_id, "run": run.run_id, "step": step},
        )
        request.headers["X-AJWT-Token"] = f"DPoP {issued.token}"
        request.headers["DPoP"] = create_proof(
            registered.key,
            "POST",
            str(request.url),
            token=issued.token,
            body=request.read(),
            now=self._clock(),
        )
        with self._completing_step(run, step):
            result: dict[str, Any] = self._check((yield request))
            self._keep_checkpoint(run.run_id, result)
            self._apply(run, result, registered.agent_id)
        return result

    def complete(
        self,
        agent: str,
        step: str | None = None,
        *,
        run: Run | None = None,
        audience: str | None = None,
        checksum: str | None = None,
        defer: bool = False,
    ) -> dict[str, Any]:
        """Report ``step`` (default: the step ``agent`` acts in) done, proven with the
        agent's key and its token in the step, or a step token (DESIGN §6.7).
        ``audience`` is accepted for compatibility and not needed.

        ``defer=True``, inside ``with shim.run(run):``: checked now and recorded in the
        shim's copy of the run, sent to the IdP with the run's next token request (no
        round trip of its own) or when the ``shim.run`` block ends (:meth:`flush`),
        whichever comes first. Answers ``{"run_id", "step", "deferred": True}``; a
        refusal by the IdP then is told to the observers (``completion_refused``) and
        takes the step out of the shim's copy again. Outside a ``shim.run`` block, or
        for a step already completed, it completes now.

        ``checksum`` says which registered version of ``agent`` completes when this shim
        holds several (two teams or tenants whose agents share an id); by default the
        version that holds a token in the run, when only one does."""
        del audience
        return self._send_sync(self._op_reported_complete(agent, step, run, checksum, defer))

    async def acomplete(
        self,
        agent: str,
        step: str | None = None,
        *,
        run: Run | None = None,
        audience: str | None = None,
        checksum: str | None = None,
        defer: bool = False,
    ) -> dict[str, Any]:
        """The async twin of :meth:`complete`."""
        del audience
        operation = self._op_reported_complete(agent, step, run, checksum, defer)
        return await self._send_async(operation)

    def _op_reported_complete(
        self, agent: str, step: str | None, run: Run | None, checksum: str | None, defer: bool
    ) -> Operation[dict[str, Any]]:
        the_run = self._run_or_current(run)
        operation = self._op_complete(agent, step, the_run, checksum, defer)
        told = AgentContext(agent, the_run, step)
        return self._reported("completion_refused", told, {}, operation)

    # ---------------------------------------------------- deferred completions

    def deferred(self, run: Run | None = None) -> list[tuple[str, str]]:
        """The completions deferred and not yet sent, as ``(agent, step)``, for ``run``
        (default: every run)."""
        with self._lock:
            runs = [self._deferred.get(run.run_id, [])] if run else list(self._deferred.values())
            return [(d.agent, d.step) for pending in runs for d in pending]

    def _take_deferred(self, run_id: str, most: int) -> list[_Deferred]:
        with self._lock:
            pending = self._deferred.pop(run_id, [])
            if len(pending) > most:
                self._deferred[run_id] = pending[most:]
            return pending[:most]

    def _put_back(self, items: list[_Deferred]) -> None:
        """Deferred completions that were not recorded (no answer, or a refused request
        that carried them): sent again with the next request or flush, first in line (an
        IdP that did record them answers ``already_completed``)."""
        with self._lock:
            for item in reversed(items):
                pending = self._deferred.setdefault(item.run.run_id, [])
                if item not in pending:
                    pending.insert(0, item)

    def _undo(self, item: _Deferred, error: str, reason: str, description: str) -> None:
        """A deferred completion was refused: the step is open again in the shim's copy
        of the run, and the observers are told."""
        state = self.run_state(item.run)
        with self._lock:
            state.completed.discard(item.step)
        told = {"error": error, "reason": reason, "description": description, "deferred": True}
        self._emit("completion_refused", AgentContext(item.agent, item.run, item.step), told)

    def _op_proof_token(self, item: _Deferred) -> Operation[IssuedToken]:
        """The deferred completion's proof token: the agent's live token in the step, or
        a fresh step token (its earlier ones may have expired while it waited)."""
        issued = self._latest_token(item.agent, item.run, item.step, item.checksum)
        if issued is None:
            context = AgentContext(item.agent, item.run, item.step, checksum=item.checksum)
            issued = yield from self._op_mint(context, item.step, None, None, carry=False)
        return issued

    def _op_grant(
        self, run: Run, form: dict[str, str], key: PopKey, carry: bool = True
    ) -> Operation[Any]:
        """A token request, carrying the run's deferred completions (DESIGN §6.7)."""
        left = self._take_deferred(run.run_id, _CARRIED_MAX) if carry else []
        items: list[_Deferred] = []
        carried: list[dict[str, str]] = []
        try:
            while left:
                item = left[0]
                try:
                    issued = yield from self._op_proof_token(item)
                    registered = self.agent(item.agent, item.checksum)
                except ServerError:
                    raise
                except AJWTError as refusal:
                    # Its agent cannot prove it now (changed since, revoked…): that
                    # completion is refused, not the request of another agent.
                    left.pop(0)
                    self._undo(item, refusal.error, refusal.reason.value, refusal.description)
                    continue
                items.append(left.pop(0))
                url = f"{self.idp_url}/runs/{run.run_id}/steps/{item.step}/complete"
                proof = create_proof(
                    registered.key, "POST", url, token=issued.token, body=b"", now=self._clock()
                )
                carried.append({"step": item.step, "token": issued.token, "proof": proof})
            if carried:
                form = form | {"completions": json.dumps(carried, separators=(",", ":"))}
            response = yield self._token_request(form, key)
        except BaseException:
            self._put_back(items + left)
            raise
        if not response.is_success:
            self._put_back(items)
        try:
            result = self._check(response)
        except AJWTError as refusal:
            if refusal.reason.value in _RUN_ENDED:
                self._run_revoked(run.run_id)  # told to observers or not: it is final
            raise
        outcomes = result.get("ajwt_completions") if isinstance(result, dict) else None
        if items and (not isinstance(outcomes, list) or len(outcomes) != len(items)):
            # An IdP from before carried completions ignored them: sent on their own.
            self._put_back(items)
        elif items:
            for item, outcome in zip(items, outcomes or [], strict=True):
                if isinstance(outcome, dict) and outcome.get("outcome") == "refused":
                    error, reason, description = (
                        str(outcome.get(k, "")) for k in ("error", "reason", "error_description")
                    )
                    self._undo(item, error, reason, description)
        return result

    def _op_flush(self, run: Run | None) -> Operation[list[dict[str, Any]]]:
        results: list[dict[str, Any]] = []
        with self._lock:
            run_ids = [run.run_id] if run is not None else list(self._deferred)
        for run_id in run_ids:
            while items := self._take_deferred(run_id, 1):
                item = items[0]
                try:
                    issued = yield from self._op_proof_token(item)
                    registered = self.agent(item.agent, item.checksum)
                    result = yield from self._op_send_completion(
                        item.run, item.step, registered, issued
                    )
                except AJWTError as refusal:
                    if isinstance(refusal, ServerError):
                        self._put_back(items)
                    else:
                        reason = refusal.reason.value
                        self._undo(item, refusal.error, reason, refusal.description)
                    raise
                except BaseException:
                    self._put_back(items)
                    raise
                results.append(result)
        return results

    def flush(self, run: Run | None = None) -> list[dict[str, Any]]:
        """Send the completions deferred for ``run`` (default: every run) that no token
        request has carried yet, one request each; the IdP's answers, in order. A
        refusal is raised (and told to the observers); an outage leaves the rest
        deferred. ``shim.run(run)`` calls it when its block ends."""
        return self._send_sync(self._op_flush(run))

    async def aflush(self, run: Run | None = None) -> list[dict[str, Any]]:
        return await self._send_async(self._op_flush(run))

    def _op_flush_quietly(self, run: Run | None) -> Operation[None]:
        """:meth:`flush`, its refusals only told to the observers (the block it ends
        already raised, or the shim is closing); an outage leaves the rest deferred."""
        while self.deferred(run):
            try:
                yield from self._op_flush(run)
            except ServerError:
                log.warning("deferred step completions not sent: the IdP is unavailable")
                return
            except AJWTError:
                continue  # told to the observers; the rest are sent

    # --------------------------------------------------------------- revocation

    def _op_revoke(self, kind: str, ident: str) -> Operation[dict[str, Any]]:
        request = self._json_request("POST", "/revocations", {"kind": kind, "id": ident})
        result: dict[str, Any] = self._check((yield request))
        if result.get("revoked"):
            if kind == "run":
                self._run_revoked(ident)
            else:
                self._revoked.add(kind, ident)
        return result

    def revoke(self, kind: str, ident: str) -> dict[str, Any]:
        """Revoke one of this client's runs, intents or agent registrations (``kind``
        ``run``, ``intent``, ``agent``; ``ident`` the ``run_id``, ``intent_id`` or
        ``registration_id``) at the IdP: no more tokens are minted for it and resource
        servers refuse the ones it has.

        Answers ``{"revoked": True}``; ``{"revoked": False}`` when the IdP knows no such
        id of this client (nothing revoked, no error). An IdP that publishes revocations
        to Redis (``redis_url``) adds ``"published"``: ``False`` when Redis could not be
        reached (the revocation is recorded and announced as soon as it answers)."""
        return self._send_sync(self._op_revoke(kind, ident))

    async def arevoke(self, kind: str, ident: str) -> dict[str, Any]:
        """:meth:`revoke`, without blocking the event loop."""
        return await self._send_async(self._op_revoke(kind, ident))


__all__ = ["AJWTError", "Binding", "IssuedToken", "RegisteredAgent", "Shim", "ShimEvent"]
