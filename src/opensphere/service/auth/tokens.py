"""API tokens: `osk_<token id hex>_<secret>`; only SHA-256 of the secret is stored.

The secret is 32 random bytes, so a fast hash is enough: there is nothing to
brute-force that a slow hash would protect.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass

from opensphere.service.errors import AuthenticationError

PREFIX = "osk_"
_TOKEN_RE = re.compile(r"^osk_([0-9a-f]{32})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True, slots=True)
class IssuedSecret:
    token_id: uuid.UUID
    token: str
    secret_hash: bytes


def issue_secret(token_id: uuid.UUID) -> IssuedSecret:
    secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    return IssuedSecret(
        token_id=token_id,
        token=f"{PREFIX}{token_id.hex}_{secret}",
        secret_hash=hashlib.sha256(secret.encode()).digest(),
    )


@dataclass(frozen=True, slots=True)
class PresentedToken:
    token_id: uuid.UUID
    secret: str

    def matches(self, secret_hash: bytes) -> bool:
        return hmac.compare_digest(hashlib.sha256(self.secret.encode()).digest(), secret_hash)


def parse_token(raw: str) -> PresentedToken:
    match = _TOKEN_RE.fullmatch(raw)
    if match is None:
        raise AuthenticationError(
            "the API token is malformed: expected 'osk_<id>_<secret>' as issued by "
            "'sphere token create'",
            code="invalid_token",
        )
    return PresentedToken(token_id=uuid.UUID(hex=match.group(1)), secret=match.group(2))
