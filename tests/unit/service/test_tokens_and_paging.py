"""API token format and keyset continuation tokens."""

from __future__ import annotations

import time
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opensphere.service.auth.tokens import issue_secret, parse_token
from opensphere.service.errors import AuthenticationError, InvalidRequestError
from opensphere.service.paging import decode_continuation, encode_continuation
from opensphere.service.storage.types import new_id


def test_issued_token_parses_and_matches_only_its_hash() -> None:
    token_id = uuid.uuid4()
    issued = issue_secret(token_id)
    presented = parse_token(issued.token)
    assert presented.token_id == token_id
    assert presented.matches(issued.secret_hash)
    assert not presented.matches(issue_secret(token_id).secret_hash)
    assert issued.secret_hash not in issued.token.encode()


def test_secrets_differ_every_time() -> None:
    token_id = uuid.uuid4()
    assert issue_secret(token_id).token != issue_secret(token_id).token


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "osk_",
        "osk_" + "0" * 32,
        "Bearer osk_x",
        "osk_" + "g" * 32 + "_" + "a" * 43,
        "osk_" + "0" * 32 + "_" + "a" * 42,
        "osk_" + "0" * 32 + "_" + "a" * 43 + "\n",
    ],
)
def test_malformed_tokens_are_refused(raw: str) -> None:
    with pytest.raises(AuthenticationError) as caught:
        parse_token(raw)
    assert caught.value.code == "invalid_token"


@given(st.uuids())
def test_continuation_round_trip(value: uuid.UUID) -> None:
    assert decode_continuation(encode_continuation(value)) == value


@pytest.mark.parametrize("raw", ["x", "e30", "eyJ2IjoyLCJhZnRlciI6IjAwIn0", "!!!!", "a" * 201])
def test_foreign_continuation_tokens_are_refused(raw: str) -> None:
    with pytest.raises(InvalidRequestError):
        decode_continuation(raw)


def test_new_ids_are_version_7_and_ordered_across_milliseconds() -> None:
    first = new_id()
    time.sleep(0.002)
    second = new_id()
    assert first.version == 7
    assert first.variant == uuid.RFC_4122
    assert first < second
