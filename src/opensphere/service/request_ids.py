"""Request ids: every answer carries one, the caller's own if it sent a sane one.

A new id is this process's random prefix and a counter (32 hex characters): unique across
processes and restarts without asking the kernel for randomness on every request. An id only
ties a request to its log lines; it grants nothing.
"""

from __future__ import annotations

import itertools
import re
import secrets
from collections.abc import Iterable

_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_PREFIX = secrets.token_hex(8)
_COUNTER = itertools.count(1)


def request_id_from(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The first X-Request-ID among the (lower-case) request headers if sane, else a new id."""
    for name, value in headers:
        if name == b"x-request-id":
            return request_id_for(value)
    return request_id_for(None)


def request_id_for(sent: bytes | None) -> str:
    """The X-Request-ID the caller sent if it is sane, else a new id."""
    if sent is not None:
        candidate = sent.decode("latin-1")
        if _REQUEST_ID_RE.fullmatch(candidate):
            return candidate
    return f"{_PREFIX}{next(_COUNTER):016x}"
