"""Request ids: every answer carries one, the caller's own if it sent a sane one."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable

_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")


def request_id_from(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The first X-Request-ID among the (lower-case) request headers if sane, else a new id."""
    for name, value in headers:
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            if _REQUEST_ID_RE.fullmatch(candidate):
                return candidate
            break
    return secrets.token_hex(16)
