"""Error-event batches: strict envelope, events refused one by one with reasons."""

from __future__ import annotations

import json
import uuid

import pytest

from opensphere.formats.error_events import (
    MAX_BATCH_BYTES,
    EventCategory,
    WireEvent,
    encode_batch,
    event_class,
    event_type,
    parse_batch,
)
from opensphere.formats.errors import FormatError

DEVICE = "ab" * 64


def crash(**changes: object) -> WireEvent:
    base: dict[str, object] = {
        "id": uuid.uuid4(),
        "category": EventCategory.APP_CRASH,
        "component_id": uuid.uuid4(),
        "image_id": uuid.uuid4(),
        "signal_status": 11,
        "count": 3,
        "first_seen": 1_700_000_000,
        "last_seen": 1_700_000_100,
    }
    return WireEvent.model_validate({**base, **changes})


def test_round_trip() -> None:
    events = [crash(), crash(category=EventCategory.OS_UPDATE, signal_status=None)]
    parsed = parse_batch(encode_batch(DEVICE, events, sent_at=1_700_000_200))
    assert parsed.events == events
    assert parsed.rejected == []
    assert (parsed.device_id, parsed.sent_at) == (DEVICE, 1_700_000_200)


def test_malformed_events_are_refused_individually_with_reasons() -> None:
    good = crash()
    raw = json.loads(encode_batch(DEVICE, [good], sent_at=1))
    raw["events"] += [
        {"id": "not-a-uuid", "category": "AppCrash", "count": 1, "first_seen": 1, "last_seen": 1},
        {**raw["events"][0], "id": str(uuid.uuid4()), "category": "Meltdown"},
        {**raw["events"][0], "id": str(uuid.uuid4()), "count": 0},
        {**raw["events"][0], "id": str(uuid.uuid4()), "count": "3"},
        {**raw["events"][0], "id": str(uuid.uuid4()), "first_seen": 10, "last_seen": 5},
        {**raw["events"][0], "id": str(uuid.uuid4()), "detail": "nul\x00byte"},
        {**raw["events"][0], "id": str(uuid.uuid4()), "extra": 1},
        raw["events"][0],
        "not an object",
    ]
    parsed = parse_batch(json.dumps(raw).encode())
    assert parsed.events == [good]
    reasons = {r.index: r.reason for r in parsed.rejected}
    assert sorted(reasons) == list(range(1, 10))
    assert "valid UUID" in reasons[1]
    assert "category" in reasons[2]
    assert "count" in reasons[3]
    assert "count" in reasons[4]
    assert "before first_seen" in reasons[5]
    assert "detail" in reasons[6]
    assert "extra" in reasons[7]
    assert "twice" in reasons[8]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"x" * (MAX_BATCH_BYTES + 1), "at most"),
        (b"{not json", "not JSON"),
        (b"[]", "JSON object"),
        (b'{"version": 2}', "unsupported batch version"),
        (
            json.dumps({"version": 1, "device_id": "AB" * 64, "sent_at": 1, "events": []}).encode(),
            "device_id",
        ),
        (
            json.dumps(
                {"version": 1, "device_id": DEVICE, "sent_at": 1, "events": [{}] * 501}
            ).encode(),
            "events",
        ),
    ],
)
def test_bad_envelopes_are_refused_whole(data: bytes, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        parse_batch(data)


def test_report_columns() -> None:
    assert (event_type(EventCategory.APP_UPDATE), event_class(EventCategory.APP_UPDATE)) == (
        "Planned",
        "Application",
    )
    assert (event_type(EventCategory.BOOT_FAILURE), event_class(EventCategory.BOOT_FAILURE)) == (
        "Unplanned",
        "OS",
    )
    event = crash(exit_status=139, signal_status=11, signal_code=3, detail="")
    assert event.description().startswith(
        "AppCrash (exit_status=139; signal_status=11; signal_code=3;"
    )


def test_problem_key_groups_by_type_component_image_and_outcome() -> None:
    component, image = uuid.uuid4(), uuid.uuid4()
    a = crash(component_id=component, image_id=image, signal_status=11)
    b = crash(component_id=component, image_id=image, signal_status=11, count=9)
    c = crash(component_id=component, image_id=image, signal_status=6)
    assert a.problem_key() == b.problem_key() != c.problem_key()
