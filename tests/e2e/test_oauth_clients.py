"""A standard OAuth client and a standard RFC 9068 resource server against the live IdP
(issue 16): authlib's client for ``client_secret_basic``, ``private_key_jwt`` with its
defaults, the RFC 8693 exchange, RFC 7009 revocation and RFC 7662 introspection, and
RFC 8414 metadata validated by authlib. The only glue is a DPoP hook that adds a plain
RFC 9449 proof (joserfc, no A-JWT claims); A-JWT's own API (agent registration, run
start) is called over plain HTTP, and the delegation assertion is written from DESIGN
§5.2 with joserfc.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from authlib.integrations.httpx_client import OAuth2Client
from authlib.oauth2.rfc6750.errors import InvalidTokenError
from authlib.oauth2.rfc7523 import PrivateKeyJWT, private_key_jwt_sign
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from authlib.oauth2.rfc9068 import JWTBearerTokenValidator
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from ajwt_demo.agents import reference_manifest
from ajwt_demo.stack import Stack

GRANT = "urn:ajwt:params:oauth:grant-type:agent-checksum"
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"
JWT = "urn:ietf:params:oauth:token-type:jwt"

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def b64url_sha256(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def plain_proof(key: ECKey, method: str, url: str, token: str | None = None) -> str:
    """An RFC 9449 §4.2 proof and nothing more (no ``bh``)."""
    claims: dict[str, Any] = {
        "jti": secrets.token_urlsafe(16),
        "htm": method,
        "htu": str(httpx.URL(url).copy_with(query=None, fragment=None)),
        "iat": int(time.time()),
    }
    if token is not None:
        claims["ath"] = b64url_sha256(token.encode("ascii"))
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": key.as_dict(private=False)}
    return jwt.encode(header, claims, key, algorithms=["ES256"])


class DPoPHook:
    """httpx request hook: a plain proof by ``key`` on every request it sees."""

    def __init__(self, key: ECKey) -> None:
        self.key = key

    def __call__(self, request: httpx.Request) -> None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        bound = token if scheme.lower() == "dpop" else None
        request.headers["DPoP"] = plain_proof(self.key, request.method, str(request.url), bound)


class App:
    """An A-JWT client app: registered, with two agents and a run, all over plain HTTP."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.keys = {name: ECKey.generate_key("P-256") for name in ("supervisor", "planner")}
        self.checksums: dict[str, str] = {}

    def register(self, client_auth: httpx.Auth | Callable[[httpx.Request], httpx.Request]) -> None:
        with httpx.Client(base_url=self.stack.idp_url, auth=client_auth) as http:
            for name, key in self.keys.items():
                manifest = reference_manifest(name).model_dump(mode="json")
                proof = plain_proof(key, "POST", self.stack.idp_url + "/agents")
                answer = http.post("/agents", json={"manifest": manifest, "proof": proof})
                assert answer.status_code == 201, answer.text
                self.checksums[name] = answer.json()["checksum"]
            user = self.stack.admin.user_token("user:alice")
            run = http.post("/runs", json={"workflow_id": "vuln-patch", "subject_token": user})
            assert run.status_code == 201, run.text
            self.run_id: str = run.json()["run_id"]
            self.intent_id: str = run.json()["intent_id"]

    def mint_params(self, agent: str, tool: str | None, **extra: str) -> dict[str, str]:
        """The ``agent_checksum`` grant's parameters; no ``tool``: a step token."""
        params = {
            "grant_type": GRANT,
            "agent_id": agent,
            "agent_checksum": self.checksums[agent],
            "run_id": self.run_id,
        }
        if tool is not None:
            params |= {"tool": tool, "resource": self.stack.rs_url}
        return params | extra

    def delegation(self, parent: str) -> str:
        """DESIGN §5.2, written out: the supervisor hands step plan to the planner."""
        now = int(time.time())
        claims = {
            "iss": "agent:supervisor",
            "sub": "agent:planner",
            "aud": self.stack.idp_url,
            "intent_id": self.intent_id,
            "run_id": self.run_id,
            "from_step": "triage",
            "to_step": "plan",
            "scope": "repo:read",
            "parent": "sha256:" + hashlib.sha256(parent.encode("ascii")).hexdigest(),
            "iat": now,
            "exp": now + 60,
            "jti": secrets.token_urlsafe(12),
        }
        header = {"typ": "delegation+jwt", "alg": "ES256"}
        return jwt.encode(header, claims, self.keys["supervisor"], algorithms=["ES256"])

    def call_api(self, path: str, token: str, agent: str) -> httpx.Response:
        with httpx.Client(event_hooks={"request": [DPoPHook(self.keys[agent])]}) as http:
            return http.get(self.stack.rs_url + path, headers={"Authorization": f"DPoP {token}"})


@pytest.fixture(scope="module")
def metadata(stack: Stack) -> dict[str, Any]:
    document: dict[str, Any] = httpx.get(
        stack.idp_url + "/.well-known/oauth-authorization-server"
    ).json()
    return document


def test_metadata_validates_with_authlib(metadata: dict[str, Any]) -> None:
    AuthorizationServerMetadata(metadata).validate()
    assert metadata["response_types_supported"] == ["none"]
    assert GRANT in metadata["grant_types_supported"]


def test_authlib_client_secret_basic_mints_exchanges_revokes(
    stack: Stack, metadata: dict[str, Any]
) -> None:
    app = App(stack)
    registered = stack.new_client()
    app.register(httpx.BasicAuth(registered["client_id"], registered["client_secret"]))
    hook = DPoPHook(app.keys["supervisor"])
    with OAuth2Client(
        registered["client_id"],
        registered["client_secret"],
        token_endpoint_auth_method="client_secret_basic",
        event_hooks={"request": [hook]},
    ) as oauth:
        # agent_checksum grant, a plain proof by the supervisor's key
        supervisor = oauth.fetch_token(
            metadata["token_endpoint"], **app.mint_params("supervisor", "list_repos")
        )
        assert supervisor["token_type"] == "DPoP"
        listed = app.call_api("/repos", supervisor["access_token"], "supervisor")
        assert listed.status_code == 200, listed.text  # a plain RFC 9449 call, no bh

        # RFC 8693: the supervisor's token and its hand-off, for the planner's token
        hook.key = app.keys["planner"]
        planner = oauth.fetch_token(
            metadata["token_endpoint"],
            grant_type=EXCHANGE,
            subject_token=supervisor["access_token"],
            subject_token_type=ACCESS_TOKEN,
            actor_token=app.delegation(supervisor["access_token"]),
            actor_token_type=JWT,
            requested_token_type=ACCESS_TOKEN,
            **{k: v for k, v in app.mint_params("planner", "read_file", step="plan").items()
               if k != "grant_type"},
        )  # fmt: skip
        assert planner["issued_token_type"] == ACCESS_TOKEN
        read = app.call_api(
            "/repos/acme/storefront/files/package.json", planner["access_token"], "planner"
        )
        assert read.status_code == 200, read.text

        # RFC 7662, then RFC 7009: the token (and its run) revoked
        info = oauth.introspect_token(
            metadata["introspection_endpoint"], token=planner["access_token"]
        ).json()
        assert info["active"] is True and info["intent"]["step"] == "plan"
        revoked = oauth.revoke_token(
            metadata["revocation_endpoint"],
            token=planner["access_token"],
            token_type_hint="access_token",
        )
        assert revoked.status_code == 200, revoked.text
        info = oauth.introspect_token(
            metadata["introspection_endpoint"], token=planner["access_token"]
        ).json()
        assert info == {"active": False}
    refused = app.call_api(
        "/repos/acme/storefront/files/package.json", planner["access_token"], "planner"
    )
    assert refused.status_code == 401 and refused.json()["ajwt_reason"] == "run_revoked"


def test_authlib_private_key_jwt_with_its_defaults(stack: Stack, metadata: dict[str, Any]) -> None:
    key = RSAKey.generate_key(2048)
    registered = stack.new_client(
        auth_method="private_key_jwt",
        jwks={"keys": [key.as_dict(private=False) | {"kid": "app-key"}]},
    )
    client_id = registered["client_id"]
    app = App(stack)

    def assertion_auth(request: httpx.Request) -> httpx.Request:
        # A-JWT's JSON API takes the assertion in a header (DESIGN §12 Token endpoint).
        assertion = private_key_jwt_sign(key, client_id, stack.idp_url)
        request.headers["Authorization"] = f"Client-Assertion {assertion}"
        return request

    app.register(assertion_auth)
    hook = DPoPHook(app.keys["supervisor"])
    with OAuth2Client(
        client_id,
        key,
        token_endpoint_auth_method="private_key_jwt",
        revocation_endpoint_auth_method="private_key_jwt",
        event_hooks={"request": [hook]},
    ) as oauth:
        # PrivateKeyJWT's defaults: RS256, aud the endpoint URL, an hour of lifetime.
        oauth.register_client_auth_method(PrivateKeyJWT())
        token = oauth.fetch_token(
            metadata["token_endpoint"], **app.mint_params("supervisor", "list_repos")
        )
        assert app.call_api("/repos", token["access_token"], "supervisor").status_code == 200
        info = oauth.introspect_token(
            metadata["introspection_endpoint"], token=token["access_token"]
        ).json()
        assert info["active"] is True and info["client_id"] == client_id
        answer = oauth.revoke_token(metadata["revocation_endpoint"], token=token["access_token"])
        assert answer.status_code == 200, answer.text


class IdPJWKS(JWTBearerTokenValidator):  # type: ignore[misc]
    """authlib's RFC 9068 resource-server validator; all it is told is where keys are."""

    def __init__(self, stack: Stack) -> None:
        super().__init__(issuer=stack.idp_url, resource_server=stack.rs_url)
        self.jwks = httpx.get(stack.idp_url + "/.well-known/jwks.json").json()

    def get_jwks(self) -> dict[str, Any]:
        return dict(self.jwks)


def test_an_rfc9068_verifier_that_knows_nothing_of_ajwt_accepts_intent_tokens(
    stack: Stack,
) -> None:
    shim = stack.shim()
    run = stack.start_run(shim)
    with shim.acting("supervisor", tool="list_repos", run=run) as context:
        issued = shim.token(context, stack.rs_url)
    validator = IdPJWKS(stack)
    claims = validator.authenticate_token(issued.token)
    validator.validate_token(claims, ["repo:read"], request=None)
    assert claims["client_id"] == shim.client_id and claims["sub"] == "user:alice"


def test_an_rfc9068_verifier_refuses_the_idps_other_tokens(
    stack: Stack, metadata: dict[str, Any]
) -> None:
    app = App(stack)
    registered = stack.new_client()
    app.register(httpx.BasicAuth(registered["client_id"], registered["client_secret"]))
    with OAuth2Client(
        registered["client_id"],
        registered["client_secret"],
        event_hooks={"request": [DPoPHook(app.keys["supervisor"])]},
    ) as oauth:
        step = oauth.fetch_token(metadata["token_endpoint"], **app.mint_params("supervisor", None))
    others = {
        "step token (aud: the IdP)": step["access_token"],
        "user token (aud: the IdP, no client_id)": stack.admin.user_token("user:alice"),
        "ledger checkpoint (typ)": step["ledger_checkpoint"],
        "delegation assertion (typ, key)": app.delegation(step["access_token"]),
    }
    validator = IdPJWKS(stack)

    def validate(token: str) -> None:
        validator.validate_token(validator.authenticate_token(token), [], request=None)

    for token in others.values():
        with pytest.raises(InvalidTokenError):
            validate(token)
