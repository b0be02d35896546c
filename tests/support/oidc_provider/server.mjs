// panva's oidc-provider (a certified OpenID provider) configured as the tests need it: the
// client credentials grant with JWT access tokens, dynamic client registration (RFC 7591)
// behind an initial access token, and registration management (RFC 7592).
//
//   NODE_TOOLS=DIR node server.mjs HOST PORT ISSUER INITIAL_ACCESS_TOKEN
//
// DIR is where .ci/node-tools.sh installed oidc-provider (an ES module, so it is imported
// by path rather than found through NODE_PATH).
//
// Access tokens are JWTs for the resource "urn:swarm-oauth:test" (RFC 8707), signed with a
// key generated at start and published at ISSUER/jwks.
import { generateKeyPairSync } from 'node:crypto';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const entry = join(process.env.NODE_TOOLS, 'node_modules', 'oidc-provider', 'lib', 'index.js');
const { default: Provider } = await import(pathToFileURL(entry).href);

const [host, port, issuer, initialAccessToken] = process.argv.slice(2);
const RESOURCE = 'urn:swarm-oauth:test';

const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const jwk = { ...privateKey.export({ format: 'jwk' }), use: 'sig', alg: 'ES256', kid: 'test-key' };

const provider = new Provider(issuer, {
  jwks: { keys: [jwk] },
  clients: [],
  scopes: ['read', 'write'],
  features: {
    clientCredentials: { enabled: true },
    devInteractions: { enabled: false },
    registration: { enabled: true, initialAccessToken },
    registrationManagement: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => RESOURCE,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'read write',
        audience: RESOURCE,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'ES256' } },
      }),
    },
  },
  clientDefaults: {
    grant_types: ['client_credentials'],
    response_types: [],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'ES256',
  },
});
provider.proxy = true;
provider.listen(Number(port), host, () => {
  console.log(`oidc-provider listening on ${host}:${port} as ${issuer}`);
});
