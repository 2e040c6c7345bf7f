"""The peers of ``benchmarks.peers`` do the checks they are timed for: each accepts a
valid DPoP request and refuses the attacks its checks stop, stock and fair alike."""

from __future__ import annotations

import time

import jwt
import pytest

from ajwt_core.dpop import create_proof
from ajwt_core.keys import PopKey, SigningKeySet
from benchmarks.bench_compare import AUDIENCE, ISSUER, LIST_REPOS, intent_token
from benchmarks.peers import DPoPPeer, PeerRefused, fair_pyjwt, htu_of, thumbprint

URL = LIST_REPOS.url


@pytest.fixture(params=[False, True], ids=["stock", "fair"])
def fair(request: pytest.FixtureRequest) -> bool:
    flag: bool = request.param
    return flag


@pytest.fixture
def keys() -> SigningKeySet:
    return SigningKeySet.generate()


@pytest.fixture
def agent() -> PopKey:
    return PopKey.generate()


@pytest.fixture
def token(keys: SigningKeySet, agent: PopKey) -> str:
    return intent_token(keys, agent, ["supervisor"], LIST_REPOS, int(time.time()))


@pytest.fixture
def peer(keys: SigningKeySet, fair: bool) -> DPoPPeer:
    return DPoPPeer(issuer=ISSUER, audience=AUDIENCE, key=keys.active.public_key, fair=fair)


def _verify(
    peer: DPoPPeer, token: str, proof: str, *, url: str = URL, scope: str = "repo:read"
) -> dict[str, object]:
    return peer.verify(
        method="GET", url=url, authorization=f"DPoP {token}", proof=proof, scope=scope
    )


def test_peer_accepts_a_valid_dpop_request(peer: DPoPPeer, agent: PopKey, token: str) -> None:
    claims = _verify(peer, token, create_proof(agent, "GET", URL, token=token))
    assert claims["sub"] == "user:alice"


def test_peer_accepts_a_url_with_a_query(peer: DPoPPeer, agent: PopKey, token: str) -> None:
    proof = create_proof(agent, "GET", URL + "?page=2", token=token)
    assert _verify(peer, token, proof, url=URL + "?page=2")


def test_peer_refuses_a_replayed_proof(peer: DPoPPeer, agent: PopKey, token: str) -> None:
    proof = create_proof(agent, "GET", URL, token=token)
    _verify(peer, token, proof)
    with pytest.raises(PeerRefused, match="used before"):
        _verify(peer, token, proof)


def test_peer_refuses_a_proof_for_another_token(
    peer: DPoPPeer, keys: SigningKeySet, agent: PopKey, token: str
) -> None:
    other = intent_token(keys, agent, ["supervisor"], LIST_REPOS, int(time.time()))
    with pytest.raises(PeerRefused, match="access token"):
        _verify(peer, token, create_proof(agent, "GET", URL, token=other))


def test_peer_refuses_a_proof_for_another_url(peer: DPoPPeer, agent: PopKey, token: str) -> None:
    proof = create_proof(agent, "GET", AUDIENCE + "/advisories", token=token)
    with pytest.raises(PeerRefused, match="another request"):
        _verify(peer, token, proof)


def test_peer_refuses_a_proof_signed_by_another_key(peer: DPoPPeer, token: str) -> None:
    thief = PopKey.generate()
    with pytest.raises(PeerRefused, match="token's key"):
        _verify(peer, token, create_proof(thief, "GET", URL, token=token))


def test_peer_refuses_an_old_proof(peer: DPoPPeer, agent: PopKey, token: str) -> None:
    proof = create_proof(agent, "GET", URL, token=token, now=time.time() - 600)
    with pytest.raises(PeerRefused, match="too old"):
        _verify(peer, token, proof)


def test_peer_refuses_a_token_from_another_issuer(
    keys: SigningKeySet, agent: PopKey, token: str, fair: bool
) -> None:
    stranger = DPoPPeer(
        issuer="https://other.example", audience=AUDIENCE, key=keys.active.public_key, fair=fair
    )
    with pytest.raises(PeerRefused, match="issuer"):
        _verify(stranger, token, create_proof(agent, "GET", URL, token=token))


def test_peer_refuses_a_bearer_token(peer: DPoPPeer, agent: PopKey, token: str) -> None:
    proof = create_proof(agent, "GET", URL, token=token)
    with pytest.raises(PeerRefused, match="DPoP"):
        peer.verify(
            method="GET", url=URL, authorization=f"Bearer {token}", proof=proof, scope="repo:read"
        )


def test_peer_refuses_a_missing_scope(peer: DPoPPeer, agent: PopKey, token: str) -> None:
    with pytest.raises(PeerRefused, match="scope"):
        _verify(peer, token, create_proof(agent, "GET", URL, token=token), scope="repo:write")


def test_peer_refuses_a_proof_with_a_private_jwk(peer: DPoPPeer, agent: PopKey, token: str) -> None:
    claims = {"jti": "j", "htm": "GET", "htu": URL, "iat": int(time.time())}
    leaked = {**agent.public_jwk, "d": "AAAA"}
    proof = agent.sign(claims, {"typ": "dpop+jwt", "jwk": leaked})
    with pytest.raises(PeerRefused, match="public jwk"):
        _verify(peer, token, proof)


def test_thumbprint_and_htu_match_ajwt(agent: PopKey) -> None:
    assert thumbprint(agent.public_jwk) == agent.thumbprint
    assert htu_of("HTTPS://Api.Example/repos?page=1#x") == "https://api.example/repos"


@pytest.mark.parametrize(
    "segment",
    ["eyJhbGciOiJFUzI1NiJ9", "eyJhbGciOiJFUzI1NiJ9=", "eyJhbGciOiJFUzI1NiJ9!", "eyJhbGc"],
)
def test_fair_pyjwt_accepts_and_refuses_what_pyjwt_does(segment: str) -> None:
    token = segment + ".e30.c2ln"

    def outcome(decoder: jwt.PyJWT) -> str:
        try:
            decoder.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            return type(exc).__name__
        return "ok"

    assert outcome(fair_pyjwt()) == outcome(jwt.PyJWT())


def test_peer_checks_the_signature_of_a_proof_from_a_known_key(
    peer: DPoPPeer, agent: PopKey, token: str
) -> None:
    _verify(peer, token, create_proof(agent, "GET", URL, token=token))  # the key is now known
    header, payload, _ = create_proof(agent, "GET", URL, token=token).split(".")
    other = create_proof(agent, "GET", URL, token=token).split(".")[2]
    with pytest.raises(PeerRefused, match=r"[Ss]ignature"):
        _verify(peer, token, ".".join([header, payload, other]))
