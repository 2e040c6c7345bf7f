"""The reference scenario of DESIGN §11: a code host + advisory database resource server."""
