// A real OpenID Provider for the OAuth tests: oidc-provider with client credentials and resource indicators, issuing
// JWT access tokens for the audience a client names. Test support only.
//
// Usage: node provider.mjs CONFIG_JSON   where CONFIG_JSON is
//   {"port": 0, "clients": [{"client_id", "client_secret", "zoneinfo"?}], "default_resource": "http://…/mcp",
//    "scope": "todo.read todo.write"}
// Prints one line `listening <issuer>` on stdout once it serves. Beside the provider's own endpoints it answers
//   POST /__test/rotate            a new signing key, published first; the old one stays published
//   POST /__test/sign {claims}     a JWT signed with the current key (for claims the provider would not issue)
import http from 'node:http';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import Provider from 'oidc-provider';
import { SignJWT, importJWK } from 'jose';

const config = JSON.parse(process.argv[2]);

function newKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), alg: 'RS256', use: 'sig' };
}

let keys = [newKey()];
let issuer = '';
let provider = null;

function build() {
  const zones = Object.fromEntries(config.clients.map((c) => [c.client_id, c.zoneinfo]));
  const p = new Provider(issuer, {
    clients: config.clients.map((c) => ({
      client_id: c.client_id,
      client_secret: c.client_secret,
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_post',
    })),
    jwks: { keys },
    scopes: ['openid', ...config.scope.split(' ')],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => config.default_resource,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, resourceIndicator) => ({
          scope: config.scope,
          audience: resourceIndicator,
          accessTokenTTL: 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        }),
      },
    },
    extraTokenClaims: (_ctx, token) => (zones[token.clientId] ? { zoneinfo: zones[token.clientId] } : {}),
  });
  return p;
}

async function readJson(req) {
  let body = '';
  for await (const chunk of req) body += chunk;
  return body ? JSON.parse(body) : {};
}

async function control(req, res) {
  if (req.url === '/__test/rotate') {
    keys = [newKey(), ...keys];
    provider = build();
    res.end(JSON.stringify({ kid: keys[0].kid }));
    return;
  }
  if (req.url === '/__test/sign') {
    const { claims } = await readJson(req);
    const key = await importJWK(keys[0], 'RS256');
    const jwt = await new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: keys[0].kid, typ: 'at+jwt' }).sign(key);
    res.end(JSON.stringify({ token: jwt }));
    return;
  }
  res.statusCode = 404;
  res.end();
}

const server = http.createServer((req, res) => {
  if (req.url.startsWith('/__test/')) {
    control(req, res).catch((err) => {
      res.statusCode = 500;
      res.end(String(err));
    });
    return;
  }
  provider.callback()(req, res);
});

server.listen(config.port, '127.0.0.1', () => {
  issuer = `http://127.0.0.1:${server.address().port}`;
  provider = build();
  process.stdout.write(`listening ${issuer}\n`);
});
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => server.close(() => process.exit(0)));
