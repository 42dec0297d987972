"""Keyset paging: the continuation token names the last id seen, so no page scans an offset."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable, Sequence
from typing import TypeVar

from pydantic import BaseModel

from opensphere.api.schemas import Page
from opensphere.service.errors import InvalidRequestError

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

RowT = TypeVar("RowT")
ItemT = TypeVar("ItemT", bound=BaseModel)


def encode_continuation(last_id: uuid.UUID) -> str:
    payload = json.dumps({"v": 1, "after": last_id.hex}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(payload).rstrip(b"=").decode()


def decode_continuation(token: str | None) -> uuid.UUID | None:
    if token is None:
        return None
    invalid = InvalidRequestError(
        "the continuation token is not one this service issued; start again without it",
        code="invalid_continuation_token",
    )
    if len(token) > 200:
        raise invalid
    try:
        payload = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if not isinstance(payload, dict) or payload.get("v") != 1:
            raise invalid
        return uuid.UUID(hex=str(payload["after"]))
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise invalid from exc


def make_page(
    rows: Sequence[RowT],
    limit: int,
    *,
    key: Callable[[RowT], uuid.UUID],
    out: Callable[[RowT], ItemT],
) -> Page[ItemT]:
    """Turn `limit + 1` fetched rows into a page, with a token when there is more."""
    more = len(rows) > limit
    rows = rows[:limit]
    token = encode_continuation(key(rows[-1])) if more else None
    return Page[ItemT](items=[out(row) for row in rows], continuation_token=token)
