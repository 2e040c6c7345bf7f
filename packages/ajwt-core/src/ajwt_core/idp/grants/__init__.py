"""The IdP's grant types (RFC 6749 §4.5 extensions): one module per grant."""

INTENT_TOKEN_TYPE_URI = "urn:ajwt:params:oauth:token-type:intent"
DELEGATION_TOKEN_TYPE_URI = "urn:ajwt:params:oauth:token-type:delegation"
AGENT_CHECKSUM_GRANT = "agent_checksum"
TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE_URI = "urn:ietf:params:oauth:token-type:access_token"
