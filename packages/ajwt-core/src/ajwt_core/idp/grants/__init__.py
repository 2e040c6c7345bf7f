"""The IdP's grant types (RFC 6749 §4.5 extensions): one module per grant."""

INTENT_TOKEN_TYPE_URI = "urn:ajwt:params:oauth:token-type:intent"
DELEGATION_TOKEN_TYPE_URI = "urn:ajwt:params:oauth:token-type:delegation"
#: RFC 6749 §4.5: an extension grant is named by an absolute URI.
AGENT_CHECKSUM_GRANT = "urn:ajwt:params:oauth:grant-type:agent-checksum"
#: The grant's name before issue 16: refused with a pointer to the URN.
OLD_AGENT_CHECKSUM_GRANT = "agent_checksum"
TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE_URI = "urn:ietf:params:oauth:token-type:access_token"
JWT_TOKEN_TYPE_URI = "urn:ietf:params:oauth:token-type:jwt"
#: RFC 8693 §3: an intent token is an access token of this IdP and a JWT, so the
#: standard types name it as well as the A-JWT one does.
SUBJECT_TOKEN_TYPES = (INTENT_TOKEN_TYPE_URI, ACCESS_TOKEN_TYPE_URI, JWT_TOKEN_TYPE_URI)
#: A delegation assertion is a JWT (not an access token).
ACTOR_TOKEN_TYPES = (DELEGATION_TOKEN_TYPE_URI, JWT_TOKEN_TYPE_URI)
