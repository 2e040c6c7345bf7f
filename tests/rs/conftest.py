"""A verifier at the fixed test clock and a signed intent token + agent key for it."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from ajwt_core.dpop import create_proof
from ajwt_core.keys import PopKey, SigningKeySet
from ajwt_core.rs import Verifier
from ajwt_core.tokens import encode_intent_token
from tests.support import AUDIENCE, ISSUER, NOW, ClaimsFactory


@dataclass
class Caller:
    """An agent holding a valid intent token for ``AUDIENCE`` and its PoP key."""

    token: str
    key: PopKey

    def headers(self, method: str, url: str, body: bytes = b"") -> dict[str, str]:
        """``Authorization`` + a fresh proof for ``method url`` with ``body``."""
        proof = create_proof(self.key, method, url, token=self.token, body=body, now=NOW)
        return {"authorization": f"DPoP {self.token}", "dpop": proof}


@pytest.fixture
def caller(idp_keys: SigningKeySet, agent_key: PopKey, make_claims: ClaimsFactory) -> Caller:
    token = encode_intent_token(make_claims(scope="repo:read repo:write"), idp_keys.active)
    return Caller(token=token, key=agent_key)


@pytest.fixture
def verifier(idp_keys: SigningKeySet) -> Verifier:
    return Verifier(
        issuer=ISSUER,
        audience=AUDIENCE,
        keys=idp_keys.verification_keys(),
        clock=lambda: NOW + 1,
    )
