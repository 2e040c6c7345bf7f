"""Issue 12 §1: the proof's ``htu`` is checked against this server's own origin and the
path the client actually sent, never against a URL built from the client's ``Host``.

Each attack is refused with its reason; the legitimate request next to it passes.
"""

from __future__ import annotations

import pytest

from ajwt_core.dpop import access_token_hash, body_hash
from ajwt_core.errors import Reason
from ajwt_core.rs import AJWTMiddleware, Verifier
from tests.rs.asgi import Reply, call, echo
from tests.rs.conftest import Caller
from tests.support import AUDIENCE, ISSUER, NOW

PULLS = "/repos/acme/storefront/pulls"
OTHER_PULLS = "/repos/acme/billing/pulls"
BODY = b'{"title": "Bump lodash", "head": "fix/lodash"}'


@pytest.fixture
def app(verifier: Verifier) -> AJWTMiddleware:
    # No base_url: the verifier's audience (https://api.example) is the origin.
    return AJWTMiddleware(echo, verifier=verifier)


async def post(app: AJWTMiddleware, caller: Caller, proof_url: str, **kw: object) -> Reply:
    headers = caller.headers("POST", proof_url, BODY)
    return await call(app, method="POST", headers=headers.items(), body=BODY, **kw)  # type: ignore[arg-type]


def accepted(reply: Reply, path: str) -> None:
    assert reply.status == 200, reply.body
    assert reply.json()["path"] == path
    assert reply.json()["agent"] == "planner"


def refused(reply: Reply, status: int, reason: Reason) -> None:
    assert (reply.status, reply.reason) == (status, reason.value), reply.body


# --------------------------------------------------------------------- forged Host


@pytest.mark.parametrize("trick", ["?", "#", "?x=", "/?"])
async def test_host_that_moves_the_path_into_a_query_is_refused(
    trick: str, app: AJWTMiddleware, caller: Caller
) -> None:
    # The captured token + proof for storefront, replayed on billing (same policy): with
    # Host "api.example/repos/acme/storefront/pulls?" the old URL was
    # https://api.example/repos/acme/storefront/pulls?/repos/acme/billing/pulls.
    forged = "api.example" + PULLS + trick
    reply = await post(app, caller, AUDIENCE + PULLS, raw_path=OTHER_PULLS.encode(), host=forged)
    refused(reply, 400, Reason.HOST_NOT_ALLOWED)
    # Without the forged Host, the same swap is a proof for another URL.
    reply = await post(app, caller, AUDIENCE + PULLS, raw_path=OTHER_PULLS.encode())
    refused(reply, 401, Reason.URL_MISMATCH)


async def test_proof_for_another_origin_with_a_forged_host_is_refused(
    app: AJWTMiddleware, caller: Caller
) -> None:
    leaked = "https://other.example" + PULLS  # a token + proof leaked to another origin
    reply = await post(app, caller, leaked, raw_path=PULLS.encode(), host="other.example")
    refused(reply, 400, Reason.HOST_NOT_ALLOWED)
    refused(await post(app, caller, leaked, raw_path=PULLS.encode()), 401, Reason.URL_MISMATCH)


@pytest.mark.parametrize(
    "host",
    [
        "other.example",
        "api.example:8443",
        "api.example:80",  # https's origin is :443
        "user@api.example",
        "api.example@other.example",
        "api.example/",
        "api.example x",
        "[::1",
        "api.example:99999",
        "api.example:+443",
        "",
        "apí.example",
    ],
)
async def test_host_that_is_not_an_allowed_plain_authority_is_refused(
    host: str, app: AJWTMiddleware, caller: Caller
) -> None:
    reply = await post(app, caller, AUDIENCE + PULLS, raw_path=PULLS.encode(), host=host)
    refused(reply, 400, Reason.HOST_NOT_ALLOWED)


async def test_host_is_compared_case_insensitively_with_the_default_port(
    app: AJWTMiddleware, caller: Caller
) -> None:
    for host in ("API.Example", "api.example:443", "api.example:", " api.example\t"):
        reply = await post(app, caller, AUDIENCE + PULLS, raw_path=PULLS.encode(), host=host)
        accepted(reply, PULLS)
    reply = await post(
        app, caller, AUDIENCE + PULLS, raw_path=PULLS.encode(), host="api.example:80"
    )
    refused(reply, 400, Reason.HOST_NOT_ALLOWED)


async def test_missing_or_doubled_host_is_refused(app: AJWTMiddleware, caller: Caller) -> None:
    reply = await post(app, caller, AUDIENCE + PULLS, raw_path=PULLS.encode(), host=None)
    refused(reply, 400, Reason.HOST_NOT_ALLOWED)
    headers = [*caller.headers("POST", AUDIENCE + PULLS, BODY).items(), ("host", "api.example")]
    reply = await call(app, method="POST", raw_path=PULLS.encode(), headers=headers, body=BODY)
    refused(reply, 400, Reason.HOST_NOT_ALLOWED)


async def test_the_host_check_comes_before_the_token(app: AJWTMiddleware) -> None:
    refused(await call(app, host="evil.example"), 400, Reason.HOST_NOT_ALLOWED)
    refused(await call(app), 401, Reason.MISSING_TOKEN)


async def test_every_listed_origin_is_served_with_its_own_scheme(
    verifier: Verifier, caller: Caller
) -> None:
    app = AJWTMiddleware(
        echo, verifier=verifier, base_url=["https://api.example", "http://api.internal:8000"]
    )
    internal = "http://api.internal:8000" + PULLS
    reply = await post(app, caller, internal, raw_path=PULLS.encode(), host="api.internal:8000")
    accepted(reply, PULLS)  # TLS may end at a proxy: the origin's scheme, not the socket's
    reply = await post(app, caller, AUDIENCE + PULLS, raw_path=PULLS.encode(), host="api.internal")
    refused(reply, 400, Reason.HOST_NOT_ALLOWED)


async def test_http_and_https_on_one_host_follow_the_connection(
    verifier: Verifier, caller: Caller
) -> None:
    app = AJWTMiddleware(echo, verifier=verifier, base_url=["http://api.example", AUDIENCE])
    plain = "http://api.example" + PULLS
    accepted(await post(app, caller, plain, raw_path=PULLS.encode(), scheme="http"), PULLS)
    accepted(await post(app, caller, AUDIENCE + PULLS, raw_path=PULLS.encode()), PULLS)
    reply = await post(app, caller, plain, raw_path=PULLS.encode(), scheme="https")
    refused(reply, 401, Reason.URL_MISMATCH)


# ------------------------------------------------------------------ configuration


def test_an_audience_that_is_not_an_origin_needs_base_url(idp_keys_verifier: Verifier) -> None:
    with pytest.raises(ValueError, match="base_url"):
        AJWTMiddleware(echo, verifier=idp_keys_verifier)
    AJWTMiddleware(echo, verifier=idp_keys_verifier, base_url="https://api.example")


@pytest.mark.parametrize(
    "base_url",
    ["https://api.example/v1", "https://api.example/?x", "ftp://api.example", "api.example", []],
)
def test_base_url_must_be_origins(base_url: str | list[str], verifier: Verifier) -> None:
    with pytest.raises(ValueError, match="base_url"):
        AJWTMiddleware(echo, verifier=verifier, base_url=base_url)


def test_trusted_proxies_must_be_addresses_or_networks(verifier: Verifier) -> None:
    with pytest.raises(ValueError, match="trusted_proxies"):
        AJWTMiddleware(echo, verifier=verifier, trusted_proxies=["proxy.internal"])
    AJWTMiddleware(echo, verifier=verifier, trusted_proxies=["10.0.0.0/8", "::1"])


@pytest.fixture
def idp_keys_verifier(verifier: Verifier) -> Verifier:
    """The same keys, with an audience that is a name, not a URL."""
    return Verifier(issuer=ISSUER, audience="urn:api:code-host", keys=verifier._resolver())


# ------------------------------------------------------------------ the raw path

FILES = "/repos/acme/storefront/files/"


@pytest.mark.parametrize(
    ("sent", "app_sees"),
    [
        ("READ%20ME.md", "READ ME.md"),
        ("caf%C3%A9.md", "café.md"),
        ("caf%c3%a9.md", "café.md"),
        ("a%2Bb.md", "a+b.md"),
    ],
)
async def test_percent_encoded_paths_as_the_shim_signs_them_pass(
    sent: str, app_sees: str, app: AJWTMiddleware, caller: Caller
) -> None:
    # The shim signs the URL as httpx sends it (encoded); the app sees it decoded. Some
    # servers (hypercorn, httpx's ASGI transport) keep the query in raw_path: it is cut.
    headers = caller.headers("GET", AUDIENCE + FILES + sent + "?ref=main").items()
    reply = await call(app, raw_path=(FILES + sent + "?ref=main").encode(), headers=headers)
    accepted(reply, FILES + app_sees)


async def test_proof_with_a_literal_space_is_not_a_proof_for_percent_20(
    app: AJWTMiddleware, caller: Caller
) -> None:
    proof = caller.key.sign(
        {
            "jti": "literal-space",
            "htm": "GET",
            "htu": AUDIENCE + FILES + "READ ME.md",
            "iat": NOW,
            "ath": access_token_hash(caller.token),
            "bh": body_hash(b""),
        },
        {"typ": "dpop+jwt", "jwk": caller.key.public_jwk},
    )
    headers = [("authorization", f"DPoP {caller.token}"), ("dpop", proof)]
    reply = await call(app, raw_path=(FILES + "READ%20ME.md").encode(), headers=headers)
    refused(reply, 401, Reason.MALFORMED_PROOF)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("/repos", "/repo%73"),  # %73 is "s": an unreserved character, decoded
        ("/repos/~acme", "/repos/%7Eacme"),
        (FILES + "caf%C3%A9.md", FILES + "caf%c3%a9.md"),
    ],
)
async def test_equivalent_paths_pass_either_way(
    a: str, b: str, app: AJWTMiddleware, caller: Caller
) -> None:
    for signed, sent in ((a, b), (b, a)):
        headers = caller.headers("GET", AUDIENCE + signed).items()
        reply = await call(app, raw_path=sent.encode(), headers=headers)
        assert reply.status == 200, (signed, sent, reply.body)


async def test_proof_with_dot_segments_is_for_the_path_without_them(
    app: AJWTMiddleware, caller: Caller
) -> None:
    for signed in ("/repos/acme/./storefront/pulls", "/repos/acme/x/../storefront/pulls"):
        headers = caller.headers("GET", AUDIENCE + signed).items()
        accepted(await call(app, raw_path=PULLS.encode(), headers=headers), PULLS)


@pytest.mark.parametrize(("a", "b"), [(FILES + "a/b.md", FILES + "a%2Fb.md"), ("/a/b", "/a%2fb")])
async def test_percent_2f_is_not_a_slash_either_way(
    a: str, b: str, app: AJWTMiddleware, caller: Caller
) -> None:
    # uvicorn decodes both to the same scope["path"]; the client sent different URLs.
    for signed, sent in ((a, b), (b, a)):
        headers = caller.headers("GET", AUDIENCE + signed).items()
        reply = await call(app, raw_path=sent.encode(), headers=headers)
        refused(reply, 401, Reason.URL_MISMATCH)
    headers = caller.headers("GET", AUDIENCE + b).items()
    assert (await call(app, raw_path=b.encode(), headers=headers)).status == 200


@pytest.mark.parametrize(
    "sent",
    [b"/repos/acme/../billing/pulls", b"/repos/%2e%2E/pulls", b"/repos/./pulls", b"*", b"/a b"],
)
async def test_request_path_that_is_not_in_normal_form_is_refused(
    sent: bytes, app: AJWTMiddleware, caller: Caller
) -> None:
    # The app would see the dot segments literally, while htu compares without them.
    reply = await call(app, raw_path=sent, headers=caller.headers("GET", AUDIENCE + "/").items())
    refused(reply, 400, Reason.MALFORMED_REQUEST)


@pytest.mark.parametrize("raw_path", [b"/api/repos", b"/repos"])
async def test_root_path_is_part_of_the_url(
    raw_path: bytes, app: AJWTMiddleware, caller: Caller
) -> None:
    # uvicorn --root-path /api puts the prefix in raw_path; a server that does not is
    # given it. Either way the client called https://api.example/api/repos.
    headers = caller.headers("GET", AUDIENCE + "/api/repos").items()
    reply = await call(app, raw_path=raw_path, path="/api/repos", root_path="/api", headers=headers)
    assert reply.status == 200, reply.body
    headers = caller.headers("GET", AUDIENCE + "/repos").items()
    reply = await call(app, raw_path=raw_path, path="/api/repos", root_path="/api", headers=headers)
    refused(reply, 401, Reason.URL_MISMATCH)


async def test_without_raw_path_the_decoded_path_is_re_encoded(
    app: AJWTMiddleware, caller: Caller
) -> None:
    async def no_raw_path(scope: dict[str, object], receive: object, send: object) -> None:
        del scope["raw_path"]
        await app(scope, receive, send)  # type: ignore[arg-type]

    headers = caller.headers("GET", AUDIENCE + FILES + "READ%20ME.md").items()
    reply = await call(no_raw_path, raw_path=(FILES + "READ%20ME.md").encode(), headers=headers)
    accepted(reply, FILES + "READ ME.md")


# ------------------------------------------------------------- forwarded headers

PROXY = ("10.0.0.5", 41000)


@pytest.fixture
def proxied(verifier: Verifier) -> AJWTMiddleware:
    return AJWTMiddleware(echo, verifier=verifier, trusted_proxies=["10.0.0.0/24"])


@pytest.mark.parametrize(
    "forwarded",
    [
        {"x-forwarded-host": "api.example", "x-forwarded-proto": "https"},
        {"x-forwarded-host": "evil.example, api.example"},  # the nearest proxy's is last
        {"forwarded": "for=198.51.100.1;host=api.example;proto=https"},
        {"forwarded": 'for=192.0.2.1;host="evil.example", for=198.51.100.1;host="api.example"'},
    ],
)
async def test_trusted_proxy_names_the_public_origin(
    forwarded: dict[str, str], proxied: AJWTMiddleware, caller: Caller
) -> None:
    headers = [*caller.headers("POST", AUDIENCE + PULLS, BODY).items(), *forwarded.items()]
    reply = await call(
        proxied,
        method="POST",
        raw_path=PULLS.encode(),
        headers=headers,
        body=BODY,
        host="backend:8000",  # the upstream name the proxy connected to
        scheme="http",  # TLS ended at the proxy
        client=PROXY,
    )
    accepted(reply, PULLS)


async def test_forwarded_headers_from_an_untrusted_peer_are_ignored(
    proxied: AJWTMiddleware, caller: Caller
) -> None:
    forwarded = {"x-forwarded-host": "api.example", "forwarded": "host=api.example"}
    headers = [*caller.headers("POST", AUDIENCE + PULLS, BODY).items(), *forwarded.items()]
    reply = await call(
        proxied,
        method="POST",
        raw_path=PULLS.encode(),
        headers=headers,
        body=BODY,
        host="backend:8000",
    )
    refused(reply, 400, Reason.HOST_NOT_ALLOWED)
    # ... and cannot steer an allowed Host elsewhere either.
    forwarded = {"x-forwarded-host": "other.example"}
    headers = [*caller.headers("POST", AUDIENCE + PULLS, BODY).items(), *forwarded.items()]
    reply = await call(proxied, method="POST", raw_path=PULLS.encode(), headers=headers, body=BODY)
    accepted(reply, PULLS)


@pytest.mark.parametrize(
    "forwarded",
    [
        {"x-forwarded-host": "other.example"},
        {"x-forwarded-host": "api.example/repos?"},
        {"x-forwarded-host": "api.example", "x-forwarded-proto": "http"},  # not an origin
        {"x-forwarded-host": "api.example", "x-forwarded-proto": "gopher"},
        {"forwarded": "for=198.51.100.1;host=other.example"},
    ],
)
async def test_a_trusted_proxy_can_only_name_an_allowed_origin(
    forwarded: dict[str, str], proxied: AJWTMiddleware, caller: Caller
) -> None:
    headers = [*caller.headers("POST", AUDIENCE + PULLS, BODY).items(), *forwarded.items()]
    reply = await call(
        proxied, method="POST", raw_path=PULLS.encode(), headers=headers, body=BODY, client=PROXY
    )
    refused(reply, 400, Reason.HOST_NOT_ALLOWED)


async def test_peers_without_an_ip_address_are_not_trusted(
    proxied: AJWTMiddleware, caller: Caller
) -> None:
    for client in (None, ("/run/app.sock", 0), ("testclient", 50000)):
        headers = [*caller.headers("GET", AUDIENCE + "/repos").items(), ("x-forwarded-host", "x")]
        reply = await call(proxied, headers=headers, client=client)
        assert reply.status == 200, (client, reply.body)


# ------------------------------------------------------------- header whitespace


async def test_header_values_with_surrounding_whitespace_pass(
    app: AJWTMiddleware, caller: Caller
) -> None:
    # OWS is not part of a field value (RFC 9110 §5.5); a server may hand it over as is.
    signed = caller.headers("GET", AUDIENCE + "/repos")
    headers = {name: f" \t{value} " for name, value in signed.items()}
    accepted(await call(app, headers=headers.items()), "/repos")
    replayed = await call(app, headers=headers.items())
    refused(replayed, 401, Reason.REPLAYED)  # the same proof, whitespace or not
