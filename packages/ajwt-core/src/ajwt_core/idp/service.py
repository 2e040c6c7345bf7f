"""The IdP's behaviour (DESIGN §6), independent of HTTP: the FastAPI layer parses requests,
authenticates the client and verifies the DPoP proof, then calls one method here.

:class:`IdP` is assembled from one part per concern, each in its own module:
:mod:`~ajwt_core.idp.clients`, :mod:`~ajwt_core.idp.registration` (over
:mod:`~ajwt_core.idp.governance`), :mod:`~ajwt_core.idp.runs`, the grants
(:mod:`~ajwt_core.idp.grants.agent_checksum`,
:mod:`~ajwt_core.idp.grants.token_exchange`), :mod:`~ajwt_core.idp.revocation`,
:mod:`~ajwt_core.idp.introspection` and :mod:`~ajwt_core.idp.inventory` (the
administrator's lists), over
the shared :mod:`~ajwt_core.idp.base`. Every refusal is an
:class:`~ajwt_core.errors.AJWTError`; mint refusals for a run the client owns are also
appended to that run's ledger (``mint_refused``).
"""

from __future__ import annotations

from ajwt_core.idp.base import IdPBase, RevocationPublisher
from ajwt_core.idp.clients import ClientCredential, Clients
from ajwt_core.idp.grants import (
    ACCESS_TOKEN_TYPE_URI,
    AGENT_CHECKSUM_GRANT,
    DELEGATION_TOKEN_TYPE_URI,
    INTENT_TOKEN_TYPE_URI,
    TOKEN_EXCHANGE_GRANT,
)
from ajwt_core.idp.grants.agent_checksum import MintParams
from ajwt_core.idp.grants.token_exchange import ExchangeParams, TokenExchangeGrant
from ajwt_core.idp.introspection import Introspection
from ajwt_core.idp.inventory import Inventory
from ajwt_core.idp.registration import Registration
from ajwt_core.idp.revocation import Revocations
from ajwt_core.idp.runs import Runs


class IdP(Clients, Registration, Runs, TokenExchangeGrant, Revocations, Introspection, Inventory):
    """The A-JWT authorisation server (DESIGN §6)."""


__all__ = [
    "ACCESS_TOKEN_TYPE_URI",
    "AGENT_CHECKSUM_GRANT",
    "DELEGATION_TOKEN_TYPE_URI",
    "INTENT_TOKEN_TYPE_URI",
    "TOKEN_EXCHANGE_GRANT",
    "ClientCredential",
    "ExchangeParams",
    "IdP",
    "IdPBase",
    "MintParams",
    "RevocationPublisher",
]
