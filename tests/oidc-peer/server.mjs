// A real OpenID Connect provider for Portcullis's integration tests: panva's
// oidc-provider (OpenID Certified) on plain HTTP on 127.0.0.1, TEST USE ONLY.
//
//   node server.mjs CONFIG.json [PORT]      (PORT also from $OIDC_PEER_PORT; 0 = any free port)
//
// Prints exactly one line `READY http://127.0.0.1:PORT` to stdout once it listens; that URL
// is the issuer. Everything else (warnings, one line per request, errors) goes to stderr.
// Exits 0 on SIGTERM/SIGINT.
//
// CONFIG.json:
//   {
//     "clients":  [{ "client_id", "client_secret", "redirect_uris": [...],
//                    "token_endpoint_auth_method",
//                    "grant_types": [...],                 // optional
//                    "post_logout_redirect_uris": [...] }], // optional (RP-initiated logout)
//     "keys_file": "/path/jwks.json",   // private JWKS; created (fresh RS256 key) when missing,
//                                       // reused when present: delete it to rotate the key
//     "accounts": [{ "sub", "email", "email_verified", "name", "preferred_username",
//                    "picture",
//                    "claims": { ... },               // optional: any further claims, e.g.
//                                                     //   "groups": [...], "realm_access":
//                                                     //   {"roles": [...]}, or Entra ID's
//                                                     //   "_claim_names"/"_claim_sources"
//                    "claims_only_in_userinfo": false // true: those claims in userinfo only,
//                                                     //   never in the ID token
//                  }],
//     "conform_id_token_claims": true,  // optional, oidc-provider's default (true): email and
//                                       // profile claims only from userinfo in the code flow
//     "refresh_tokens": true,           // optional: refresh tokens for every client allowed the
//                                       //   refresh_token grant (no offline_access needed)
//     "access_token_ttl": 8,            // optional: access token lifetime, seconds
//     "resource_server": {              // optional: one API (resource server) whose access
//       "audience": "api://app",        //   tokens are RS256 JWTs with this `aud`, issued by
//       "ttl": 300                      //   the client_credentials grant (clients with
//     }                                 //   "grant_types": ["client_credentials"]) for `ttl` s
//   }
//
// The built-in development login/consent pages (features.devInteractions) are on: the login
// name is an account's preferred_username, any password is accepted; ID tokens and userinfo
// carry the account's sub.

import { createHash, createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import process from 'node:process';

import Provider from 'oidc-provider';

const [configPath, portArg] = process.argv.slice(2);
if (!configPath) {
  console.error('usage: node server.mjs CONFIG.json [PORT]');
  process.exit(2);
}
const config = JSON.parse(readFileSync(configPath, 'utf8'));
const port = Number(portArg ?? process.env.OIDC_PEER_PORT ?? 0);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`oidc-peer: bad port ${portArg ?? process.env.OIDC_PEER_PORT}`);
  process.exit(2);
}

// The signing key: kept in keys_file so that a restart keeps it (same kid) and deleting the
// file rotates it. node:crypto makes the same extractable RSA key as jose's
// generateKeyPair('RS256', { extractable: true }) without a direct dependency on jose.
//
// The key is generated as PKCS#8 PEM and re-imported before the JWK export: on Node 20.20,
// exporting the KeyObject returned by generateKeyPairSync as JWK hung about once in 50 starts
// (8 at once on 2 cores). gdb showed the main thread blocked for good in uv_mutex_lock inside
// KeyGenJob<RsaKeyGenTraits>::~KeyGenJob, run by a garbage collection in ExportJWKRsaKey.
// 240 starts of this version never hung.
function loadOrCreateJwks(path) {
  if (existsSync(path)) {
    return JSON.parse(readFileSync(path, 'utf8'));
  }
  const { privateKey: pem } = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  const jwk = createPrivateKey(pem).export({ format: 'jwk' });
  // RFC 7638 thumbprint as the kid.
  const kid = createHash('sha256')
    .update(JSON.stringify({ e: jwk.e, kty: jwk.kty, n: jwk.n }))
    .digest('base64url');
  const jwks = { keys: [{ ...jwk, kid, alg: 'RS256', use: 'sig' }] };
  writeFileSync(path, `${JSON.stringify(jwks, null, 2)}\n`, { mode: 0o600 });
  return jwks;
}

const jwks = loadOrCreateJwks(config.keys_file);

const accounts = config.accounts ?? [];

// The accounts' further claims, by name. They are tied to the `openid` scope (which every
// request has), so they reach the ID token even with conformIdTokenClaims (which keeps only
// the `openid` scope's claims there) and userinfo. For distributed claims (`_claim_names`),
// the claim they stand for is named: oidc-provider passes `_claim_names`/`_claim_sources` on
// for the claims the scope allows (lib/helpers/claims.js).
const extraClaims = [...new Set(accounts.flatMap((a) => Object.keys(a.claims ?? {})
  .flatMap((k) => (k === '_claim_names' ? Object.keys(a.claims[k]) : [k]))
  .filter((k) => k !== '_claim_sources')))];
const accountsBySub = new Map(accounts.map((a) => [a.sub, a]));
const accountsByLogin = new Map(accounts.map((a) => [a.preferred_username, a]));

// oidc-provider makes the accountId the `sub` of ID tokens and userinfo (lib/helpers/
// account_claims.js), and its dev login form makes the typed login name the accountId. So the
// login POST is rewritten below (login name -> sub) and accounts are found here by sub.
async function findAccount(_ctx, sub) {
  const account = accountsBySub.get(sub);
  if (!account) {
    return undefined;
  }
  return {
    accountId: account.sub,
    // Claims without a value (null or missing in the config) are left out.
    // `use` is 'id_token' or 'userinfo'.
    async claims(use, _scope) {
      const claims = { sub: account.sub };
      for (const claim of ['email', 'email_verified', 'name', 'preferred_username', 'picture']) {
        if (account[claim] !== undefined && account[claim] !== null) {
          claims[claim] = account[claim];
        }
      }
      if (account.claims && (use === 'userinfo' || !account.claims_only_in_userinfo)) {
        Object.assign(claims, account.claims);
      }
      return claims;
    },
  };
}

const BODY_LIMIT = 56 * 1024;

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > BODY_LIMIT) {
      throw new Error('request body too large');
    }
    chunks.push(chunk);
  }
  return Object.fromEntries(new URLSearchParams(Buffer.concat(chunks).toString('utf8')));
}

// A pre-middleware (docs/README.md "Pre- and post-middlewares") on the dev login form's POST:
// the login name is an account's preferred_username; it is replaced by that account's sub
// before devInteractions reads the body (oidc-provider then uses the already parsed
// `req.body`, and says so once on stderr). An unknown login name sends the browser back to
// the same login page, as a real sign-in page does after a wrong login.
async function loginByUsername(ctx, next) {
  if (
    ctx.method === 'POST'
    && /^\/interaction\/[^/]+$/.test(ctx.path)
    && ctx.is('application/x-www-form-urlencoded')
  ) {
    const body = await readForm(ctx.req);
    if (body.prompt === 'login') {
      const account = accountsByLogin.get(body.login);
      if (!account) {
        console.error(`oidc-peer: no account with login ${JSON.stringify(body.login)}`);
        ctx.status = 303;
        ctx.redirect(ctx.path);
        return;
      }
      body.login = account.sub;
    }
    ctx.req.body = body;
  }
  await next();
}

const clients = (config.clients ?? []).map((c) => ({
  client_id: c.client_id,
  ...(c.client_secret !== undefined && c.token_endpoint_auth_method !== 'none'
    ? { client_secret: c.client_secret }
    : {}),
  redirect_uris: c.redirect_uris,
  ...(c.post_logout_redirect_uris ? { post_logout_redirect_uris: c.post_logout_redirect_uris } : {}),
  token_endpoint_auth_method: c.token_endpoint_auth_method ?? 'client_secret_basic',
  // An API client (client credentials only) has no redirect and no response types.
  ...(c.grant_types ? { grant_types: c.grant_types } : {}),
  ...(c.grant_types && !c.grant_types.includes('authorization_code') ? { response_types: [] } : {}),
  // grant_types ['authorization_code'], response_types ['code'] and RS256 ID tokens are
  // oidc-provider's clientDefaults.
}));

// JWT access tokens for one resource server (docs/README.md "features.resourceIndicators"):
// the client_credentials grant issues them for the resource server's audience by default.
function resourceServerFeatures({ audience, ttl }) {
  return {
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => audience,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, resource) => {
        if (resource !== audience) {
          throw new Error(`unknown resource ${resource}`);
        }
        return {
          scope: 'api',
          audience,
          accessTokenTTL: ttl ?? 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  };
}

// Listen first, so that port 0 is resolved before the issuer (which names the port) is set.
const server = createServer();
server.on('error', (err) => {
  console.error(`oidc-peer: ${err.message}`);
  process.exit(1);
});
server.listen(port, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;

  const provider = new Provider(issuer, {
    clients,
    findAccount,
    jwks,
    // Scope -> claims (docs/README.md "claims"); these scopes join scopes_supported.
    claims: {
      openid: ['sub', ...extraClaims],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username', 'picture'],
    },
    features: {
      devInteractions: { enabled: true }, // the default; stated because the tests rely on it
      ...(config.resource_server ? resourceServerFeatures(config.resource_server) : {}),
      // RFC 7009 token revocation, for refresh tokens a test revokes.
      ...(config.refresh_tokens ? { revocation: { enabled: true } } : {}),
    },
    // Static cookie signing keys (Keygrip), TEST ONLY: interaction/session cookies get a
    // `.sig` companion and a forged cookie is refused.
    cookies: {
      keys: ['oidc-peer-test-only-cookie-key-1'],
    },
    ...(config.refresh_tokens
      ? { issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token') }
      : {}),
    ...(config.access_token_ttl ? { ttl: { AccessToken: config.access_token_ttl } } : {}),
    ...(config.conform_id_token_claims === undefined
      ? {}
      : { conformIdTokenClaims: Boolean(config.conform_id_token_claims) }),
    // Left at their defaults: pkce.required (only for token_endpoint_auth_method "none"),
    // S256 the only code_challenge_method, RFC 9207 `iss` on every authorization response,
    // ttl (AuthorizationCode 60 s, Interaction 1 h, Session 14 d), in-memory adapter.
  });

  provider.on('server_error', (_ctx, err) => console.error('oidc-peer: server_error', err));
  for (const event of ['authorization.error', 'grant.error', 'userinfo.error']) {
    provider.on(event, (_ctx, err) => {
      console.error(`oidc-peer: ${event}: ${err.error ?? err.name}: ${err.error_description ?? err.message}`);
    });
  }

  // One line per request on stderr (test logs).
  provider.use(async (ctx, next) => {
    try {
      await next();
    } finally {
      console.error(`oidc-peer: ${ctx.method} ${ctx.path} -> ${ctx.status}`);
    }
  });
  provider.use(loginByUsername);

  server.on('request', provider.callback());
  process.stdout.write(`READY ${issuer}\n`);
});

function shutdown(signal) {
  console.error(`oidc-peer: ${signal}, exiting`);
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
