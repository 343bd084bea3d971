"""flask-jwt-extended's manager, remembering the tokens it has verified.

Verifying the token was the largest cost of a cached read: flask-jwt-extended decodes a token
four times per request (its claims unverified, its header, then verified), and PyJWT checks each
character of each segment in Python. Clients send the same access token with every request
until it expires, so each process remembers the claims of the tokens it verified, keyed by the
token's exact text: a token's signature and claims cannot change under the same text. Expiry is
still checked on every use; the blocklist and the user's existence too (they are checked after
decoding, by the loaders in ``tokens`` and ``identity``).
"""

import threading
import time
from typing import Any

import flask_jwt_extended
from cachetools import TTLCache
from flask import Flask, current_app

# Tokens a process remembers at once (about 1 kB each), and for how long at most.
VERIFIED_TOKENS_MAX = 10_000
VERIFIED_TOKENS_SECONDS = 300


class JWTManager(flask_jwt_extended.JWTManager):
    def init_app(self, app: Flask, add_context_processor: bool = False) -> None:
        super().init_app(app, add_context_processor)
        # Per app: another app may have another key, under which these tokens are not valid.
        app.extensions["verified_tokens"] = TTLCache(VERIFIED_TOKENS_MAX, ttl=VERIFIED_TOKENS_SECONDS)
        app.extensions["verified_tokens_lock"] = threading.Lock()

    def _decode_jwt_from_config(
        self, encoded_token: str, csrf_value: str | None = None, allow_expired: bool = False
    ) -> dict[str, Any]:
        """Private in flask-jwt-extended, the one place every token is decoded: pinned in
        tests/test_library_contracts.py."""
        if csrf_value is not None or allow_expired:  # not how this service decodes its tokens
            return super()._decode_jwt_from_config(encoded_token, csrf_value, allow_expired)
        verified: TTLCache[str, dict[str, Any]] = current_app.extensions["verified_tokens"]
        lock: threading.Lock = current_app.extensions["verified_tokens_lock"]
        with lock:
            claims = verified.get(encoded_token)
        if claims is not None and claims.get("exp", float("inf")) > time.time():
            return claims
        claims = super()._decode_jwt_from_config(encoded_token)
        with lock:
            verified[encoded_token] = claims
        return claims
