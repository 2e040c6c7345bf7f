"""``ajwt inspect``: show what an intent token says (DESIGN §5.1), and whether it holds.

Without ``--jwks`` the token is only decoded (pyjwt, signature not checked) and the
output says so. With ``--jwks`` and ``--issuer`` it is verified exactly as a resource
server verifies it (:func:`ajwt_core.tokens.decode_intent_token`); a refusal names its
reason and exits 1.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ajwt_core.cli._output import (
    console,
    dump_json,
    fail,
    parse_json,
    print_error,
    print_fields,
    print_wrapped,
    printable,
    read_text,
)

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.text import Text

    from ajwt_core.keys import KeyResolver

INTENT_TOKEN_TYPE = "at+jwt"
TIME_CLAIMS = ("iat", "nbf", "exp")
MAX_JWKS_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Verification:
    """The outcome of ``--jwks``: not checked, verified, or refused with a reason."""

    checked: bool
    verified: bool = False
    issuer: str | None = None
    audience: str | None = None
    reason: str | None = None
    description: str | None = None

    def as_json(self) -> dict[str, Any]:
        result: dict[str, Any] = {"checked": self.checked, "verified": self.verified}
        if self.checked:
            result |= {
                "issuer": self.issuer,
                "audience": self.audience,
                "audience_checked": self.audience is not None,
            }
        if self.reason is not None:
            result |= {"reason": self.reason, "description": self.description}
        return result


# --------------------------------------------------------------------------- reading


def _read_token(token: str) -> str:
    from ajwt_core.errors import Reason
    from ajwt_core.tokens import MAX_TOKEN_BYTES

    text = (sys.stdin.read(MAX_TOKEN_BYTES + 2) if token == "-" else token).strip()
    if not text:
        fail("no token given", Reason.MALFORMED_TOKEN)
    if len(text) > MAX_TOKEN_BYTES:
        fail(f"the token is larger than {MAX_TOKEN_BYTES} bytes", Reason.TOKEN_TOO_LARGE)
    return text


def _decode_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims as the token states them; the signature is not checked."""
    import jwt

    from ajwt_core.errors import Reason

    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except (jwt.PyJWTError, ValueError, TypeError, RecursionError) as exc:
        fail(
            f"the input is not a JWT: {str(exc)[:200] or type(exc).__name__}",
            Reason.MALFORMED_TOKEN,
        )
    return header, claims


def _load_jwks(source: str) -> KeyResolver:
    """The verification keys from a JWKS URL (http/https) or file."""
    from ajwt_core.errors import Reason
    from ajwt_core.keys import KeyResolver

    if source.startswith(("https://", "http://")):
        document = _fetch_jwks(source)
    else:
        document = parse_json(read_text(source, "JWKS file"), "JWKS file", Reason.INVALID_KEY)
    if not isinstance(document, Mapping):
        fail(f"the JWKS at {source!r} is not a JSON object", Reason.INVALID_KEY)
    resolver = KeyResolver.from_jwks(document)
    if not len(resolver):
        fail(f"the JWKS at {source!r} holds no usable public signing key", Reason.INVALID_KEY)
    return resolver


def _fetch_jwks(url: str) -> Any:
    import httpx

    from ajwt_core.errors import Reason

    try:
        response = httpx.get(url, timeout=10.0, follow_redirects=False)
    except httpx.HTTPError as exc:
        fail(
            f"cannot fetch the JWKS from {url}: {str(exc) or type(exc).__name__}",
            Reason.SERVICE_UNAVAILABLE,
        )
    if response.status_code != 200:
        fail(
            f"the JWKS request to {url} answered HTTP {response.status_code}",
            Reason.SERVICE_UNAVAILABLE,
        )
    if len(response.content) > MAX_JWKS_BYTES:
        fail(f"the JWKS from {url} is larger than {MAX_JWKS_BYTES} bytes", Reason.INVALID_KEY)
    return parse_json(response.text, f"JWKS from {url}", Reason.INVALID_KEY)


def _verify(token: str, jwks: str, issuer: str, audience: str | None) -> Verification:
    from ajwt_core.errors import AJWTError
    from ajwt_core.tokens import decode_intent_token

    keys = _load_jwks(jwks)
    try:
        decode_intent_token(token, keys, issuer=issuer, audience=audience)
    except AJWTError as exc:
        return Verification(
            checked=True,
            issuer=issuer,
            audience=audience,
            reason=exc.reason.value,
            description=exc.description,
        )
    return Verification(checked=True, verified=True, issuer=issuer, audience=audience)


# ------------------------------------------------------------------------ what it says


def delegation_chain(claims: Mapping[str, Any]) -> list[str] | None:
    """The ``act`` chain, first delegator first; ``None`` if the claim is unusable."""
    from pydantic import ValidationError

    from ajwt_core.tokens import MAX_CHAIN_DEPTH, ActorClaim, act_chain_list

    act = claims.get("act")
    # Walk first (iteratively) so that an absurdly nested claim is never validated.
    node, depth = act, 0
    while isinstance(node, Mapping) and depth <= MAX_CHAIN_DEPTH:
        node, depth = node.get("act"), depth + 1
    if depth > MAX_CHAIN_DEPTH:
        return None
    try:
        return act_chain_list(ActorClaim.model_validate(act))
    except (ValidationError, RecursionError):
        return None


def _time_claim(claims: Mapping[str, Any], name: str) -> int | None:
    value = claims.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def time_status(claims: Mapping[str, Any], now: int) -> dict[str, Any]:
    """``iat`` / ``nbf`` / ``exp`` and whether the token is expired or not yet valid.

    Exact comparisons, without the clock-skew leeway a verifier allows.
    """
    times: dict[str, Any] = {name: _time_claim(claims, name) for name in TIME_CLAIMS}
    exp = times["exp"]
    # A token without nbf is valid from iat (as the verifiers read it).
    nbf = times["nbf"] if times["nbf"] is not None else times["iat"]
    times["now"] = now
    times["expired"] = None if exp is None else now >= exp
    times["not_yet_valid"] = None if nbf is None else now < nbf
    return times


def _duration(seconds: int) -> str:
    """A rough length of time, its two largest units.

    >>> _duration(3725), _duration(-42)
    ('1h 2m', '42s')
    """
    seconds = abs(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    shown = [f"{value}{unit}" for value, unit in parts if value][:2]
    return " ".join(shown) or "0s"


def _timestamp(value: int) -> str:
    try:
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return "out of range"


# ---------------------------------------------------------------------------- output


def _rows(claims: Mapping[str, Any]) -> list[tuple[str, str | Text]]:
    """Claim rows for the table: nested objects one level flattened, ``act`` left out."""
    rows: list[tuple[str, str | Text]] = []
    for name, value in claims.items():
        if name == "act":
            continue
        if isinstance(value, Mapping) and value:
            rows.extend(
                (printable(f"{name}.{key}"), printable(inner)) for key, inner in value.items()
            )
        elif name in TIME_CLAIMS and isinstance(value, int) and not isinstance(value, bool):
            rows.append((name, f"{value}  ({_timestamp(value)})"))
        else:
            rows.append((printable(name), printable(value)))
    return rows


def _signature_line(result: Verification) -> Text:
    from rich.text import Text

    if not result.checked:
        return Text(
            "signature NOT verified: pass --jwks and --issuer to verify it",
            style="bold yellow",
        )
    where = f"issuer {printable(result.issuer)}, " + (
        f"audience {printable(result.audience)}"
        if result.audience is not None
        else "audience not checked (no --audience)"
    )
    if result.verified:
        return Text(f"signature verified ({where})", style="bold green")
    return Text(
        f"REFUSED: {printable(result.description)} ({result.reason}); {where}",
        style="bold red",
    )


def _chain_tree(claims: Mapping[str, Any], chain: list[str] | None) -> RenderableType:
    from rich.text import Text
    from rich.tree import Tree

    intent = claims.get("intent")
    intent = intent if isinstance(intent, Mapping) else {}
    user = intent.get("initiated_by", claims.get("sub"))
    root = Tree(Text.assemble(("Delegation chain", "bold"), "  ", (printable(user), "cyan")))
    if not chain:
        root.add(Text("no valid 'act' claim: the delegation chain cannot be read", style="red"))
        return root
    node = root
    for position, agent in enumerate(chain):
        label = Text.assemble((f"agent:{printable(agent)}", "bold"))
        if position == len(chain) - 1:
            label.append(
                f"  acting · step {printable(intent.get('step'))} · "
                f"tool {printable(intent.get('tool'))} · scope {printable(claims.get('scope'))}",
                style="green",
            )
        else:
            label.append("  delegated", style="dim")
        node = node.add(label)
    return root


def _validity_rows(times: Mapping[str, Any]) -> list[tuple[str, str | Text]]:
    from ajwt_core.tokens import DEFAULT_LEEWAY

    now: int = times["now"]
    rows: list[tuple[str, str | Text]] = []
    for name, label in (("iat", "issued"), ("nbf", "not before"), ("exp", "expires")):
        value = times[name]
        if value is None:
            rows.append((label, "missing or not an integer"))
            continue
        delta = value - now
        relative = f"in {_duration(delta)}" if delta > 0 else f"{_duration(delta)} ago"
        rows.append((label, f"{_timestamp(value)} ({relative})"))
    if times["expired"]:
        state = "EXPIRED"
        if now - times["exp"] < DEFAULT_LEEWAY:
            state += (
                f" (verifiers still accept it within their {DEFAULT_LEEWAY} s clock-skew leeway)"
            )
    elif times["not_yet_valid"]:
        state = "NOT YET VALID"
    elif times["expired"] is None:
        state = "unknown (no valid 'exp')"
    else:
        state = "within its lifetime"
    rows.append(("status", state))
    return rows


def _render(
    header: Mapping[str, Any],
    claims: Mapping[str, Any],
    chain: list[str] | None,
    times: Mapping[str, Any],
    result: Verification,
) -> None:
    from rich.text import Text

    out = console()
    print_wrapped(out, _signature_line(result))
    typ = header.get("typ")
    if not (isinstance(typ, str) and typ.lower().removeprefix("application/") == INTENT_TOKEN_TYPE):
        out.print(
            Text(f"typ is {printable(typ)}, not {INTENT_TOKEN_TYPE}: not an intent token"),
            style="yellow",
        )
    out.print()
    print_fields(
        out, "Header", [(printable(name), printable(value)) for name, value in header.items()]
    )
    out.print()
    print_fields(out, "Claims", _rows(claims))
    out.print()
    out.print(_chain_tree(claims, chain))
    out.print()
    print_fields(out, "Validity", _validity_rows(times))


def inspect(
    token: Annotated[
        str,
        typer.Argument(
            metavar="TOKEN",
            help="The intent token, or - to read it from stdin (which keeps it out of the "
            "process list).",
        ),
    ],
    jwks: Annotated[
        str | None,
        typer.Option(
            metavar="URL_OR_FILE",
            help="The IdP's JWKS (its /.well-known/jwks.json URL, or a file): verify the "
            "signature and claims as a resource server does. Needs --issuer.",
        ),
    ] = None,
    issuer: Annotated[
        str | None, typer.Option(help="The expected issuer ('iss'), with --jwks.")
    ] = None,
    audience: Annotated[
        str | None,
        typer.Option(help="The expected audience ('aud'), with --jwks; unchecked if omitted."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Show what an intent token says, and whether it verifies.

    Prints the header, the claims, the delegation chain from the user to the acting
    agent, and the token's validity period.

    Without --jwks the signature is NOT verified and the output says so: anyone can
    write such a token. With --jwks and --issuer it is verified exactly as a resource
    server verifies it; a refused token exits with status 1 and names the reason.
    """
    if jwks is not None and issuer is None:
        raise typer.BadParameter("--jwks needs --issuer", param_hint="'--issuer'")
    if jwks is None and (issuer is not None or audience is not None):
        raise typer.BadParameter("--issuer and --audience need --jwks", param_hint="'--jwks'")

    text = _read_token(token)
    header, claims = _decode_unverified(text)
    result = Verification(checked=False)
    if jwks is not None and issuer is not None:
        result = _verify(text, jwks, issuer, audience)
    chain = delegation_chain(claims)
    times = time_status(claims, int(time.time()))

    if as_json:
        dump_json(
            {
                "verification": result.as_json(),
                "header": header,
                "claims": claims,
                "chain": chain,
                "times": times,
            }
        )
    else:
        _render(header, claims, chain, times, result)
    if result.checked and not result.verified:
        print_error(f"the token was refused: {result.description}", str(result.reason))
        raise typer.Exit(1)
