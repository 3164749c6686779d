// Verifies Portcullis identity assertions the way a Node app would: `jose`
// fetches the JWK Set from /oauth2/jwks.json and checks the ES256 signature,
// iss, aud and exp (tests/it/assertion.rs runs it).
//
//     node verify.mjs JWKS_URL ISSUER AUDIENCE < cases
//
// Each input line is "SECONDS TOKEN": verify TOKEN as if the clock were
// SECONDS ahead (0: now). Each output line is JSON: {"ok": true, "claims":
// {...}} or {"ok": false, "error": "<jose error code>"}.
import { createInterface } from 'node:readline';
import { createRemoteJWKSet, jwtVerify } from 'jose';

const [jwksUrl, issuer, audience] = process.argv.slice(2);
const jwks = createRemoteJWKSet(new URL(jwksUrl));

for await (const line of createInterface({ input: process.stdin })) {
  const trimmed = line.trim();
  if (!trimmed) continue;
  const space = trimmed.indexOf(' ');
  const seconds = Number(trimmed.slice(0, space));
  const token = trimmed.slice(space + 1);
  try {
    const { payload } = await jwtVerify(token, jwks, {
      issuer,
      audience,
      algorithms: ['ES256'],
      requiredClaims: ['iss', 'aud', 'sub', 'iat', 'exp'],
      currentDate: new Date(Date.now() + seconds * 1000),
    });
    console.log(JSON.stringify({ ok: true, claims: payload }));
  } catch (e) {
    console.log(JSON.stringify({ ok: false, error: e.code ?? e.name }));
  }
}
