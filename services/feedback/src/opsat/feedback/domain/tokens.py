"""One-time survey tokens: 256 bits derived from a server key and the survey id, stored only as a hash.

Deriving the token (HMAC-SHA256 of the survey id under `token_key`) lets the mail sender put it into the
email when it sends, so neither the outbox nor any event or table ever holds it; the API needs only its
hash to find the survey. Rotating the key makes the links not yet answered unusable.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

TOKEN_BYTES = 32  # 256 bits (at least 128 required)


def token_for(key: bytes, survey_id: str) -> str:
    digest = hmac.new(key, f"survey-token:{survey_id}".encode(), hashlib.sha256).digest()[:TOKEN_BYTES]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
