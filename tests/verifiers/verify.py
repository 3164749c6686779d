"""Verifies Portcullis identity assertions the way a Python app would: PyJWT
fetches the JWK Set from /oauth2/jwks.json and checks the ES256 signature,
iss, aud and exp (tests/it/assertion.rs runs it).

    python3 verify.py JWKS_URL ISSUER AUDIENCE < cases

Each input line is "SECONDS TOKEN": verify TOKEN as if the clock were
SECONDS ahead (0: now). Each output line is JSON: {"ok": true, "claims":
{...}} or {"ok": false, "error": "<PyJWT exception class>"}.
"""
import json
import os
import sys
from datetime import datetime, timedelta

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "pydeps"))

import jwt  # noqa: E402  (PyJWT, from ./pydeps when installed there)
import jwt.api_jwt  # noqa: E402

jwks_url, issuer, audience = sys.argv[1:4]
client = jwt.PyJWKClient(jwks_url, cache_keys=True)
shift = timedelta(0)


class ShiftedClock(datetime):
    """PyJWT reads the time through datetime.now: the clock moved by `shift`."""

    @classmethod
    def now(cls, tz=None):
        return datetime.now(tz) + shift


jwt.api_jwt.datetime = ShiftedClock

for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    seconds, token = line.split(" ", 1)
    shift = timedelta(seconds=int(seconds))
    try:
        key = client.get_signing_key_from_jwt(token)
        claims = jwt.decode(
            token,
            key.key,
            algorithms=["ES256"],
            audience=audience,
            issuer=issuer,
            options={"require": ["iss", "aud", "sub", "iat", "exp"]},
        )
        print(json.dumps({"ok": True, "claims": claims}), flush=True)
    except jwt.PyJWTError as e:
        print(json.dumps({"ok": False, "error": type(e).__name__}), flush=True)
