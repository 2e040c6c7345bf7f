// panva's certified oidc-provider on 127.0.0.1, as the user's upstream identity provider
// of tests/interop/test_upstream_oidc.py. Configured by a JSON file (argv[2]):
//   {"issuer", "port", "client_id", "redirect_uri", "resource", "jwks": {"keys": [private JWKs]}}
// One public client (authorization code + PKCE), the provider's own development
// interactions (any login name, any password), and one resource server whose access
// tokens are RFC 9068 JWTs (resource indicators). Prints "ready" once listening.
import { readFileSync } from 'node:fs';

import Provider, { errors } from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));

const provider = new Provider(config.issuer, {
  clients: [
    {
      client_id: config.client_id,
      token_endpoint_auth_method: 'none',
      application_type: 'native',
      redirect_uris: [config.redirect_uri],
      grant_types: ['authorization_code'],
      response_types: ['code'],
    },
  ],
  jwks: config.jwks,
  cookies: { keys: ['ajwt-interop-cookie-key-not-a-secret'] },
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async (_ctx, _client, oneOf) => oneOf,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (_ctx, resource) => {
        if (resource !== config.resource) throw new errors.InvalidTarget();
        return {
          scope: 'runs:start',
          audience: config.resource,
          accessTokenFormat: 'jwt',
          accessTokenTTL: 600,
          jwt: { sign: { alg: 'ES256' } },
        };
      },
    },
  },
});

provider.listen(config.port, '127.0.0.1', () => {
  console.log('ready');
});
