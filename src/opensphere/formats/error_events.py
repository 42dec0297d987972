"""Error events on the wire: what a device uploads and what the service answers.

A batch is JSON: an envelope that must be well-formed, and events that are
checked one by one, so one malformed event is refused with its reason while the
rest are stored. Every event carries a stable id chosen by the device: a retry
of the same batch is stored once.
"""

from __future__ import annotations

import json
import uuid
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, Strict, StringConstraints, ValidationError

from opensphere.formats.errors import FormatError

BATCH_VERSION = 1
MAX_BATCH_BYTES = 256 * 1024
MAX_EVENTS_PER_BATCH = 500
MAX_EVENT_COUNT = 1_000_000


class EventCategory(StrEnum):
    """What happened; the original's Event Category column."""

    APP_CRASH = "AppCrash"
    APP_EXIT = "AppExit"
    APP_UPDATE = "AppUpdate"
    OS_UPDATE = "OsUpdate"
    UPDATE_FAILURE = "UpdateFailure"
    BOOT_FAILURE = "BootFailure"
    VERIFICATION_FAILURE = "VerificationFailure"
    FIREWALL_DENIAL = "FirewallDenial"
    EVENTS_DROPPED = "EventsDropped"


PLANNED = frozenset({EventCategory.APP_UPDATE, EventCategory.OS_UPDATE})
APPLICATION = frozenset(
    {
        EventCategory.APP_CRASH,
        EventCategory.APP_EXIT,
        EventCategory.APP_UPDATE,
        EventCategory.FIREWALL_DENIAL,
    }
)


def event_type(category: EventCategory) -> str:
    """Planned (updates) or Unplanned (errors), as in the original's reports."""
    return "Planned" if category in PLANNED else "Unplanned"


def event_class(category: EventCategory) -> str:
    return "Application" if category in APPLICATION else "OS"


Whole = Annotated[int, Strict()]
DetailText = Annotated[
    str, StringConstraints(max_length=256, pattern=r"^[^\x00-\x08\x0b-\x1f\x7f]*$")
]


class WireEvent(BaseModel):
    """One aggregated event: `count` occurrences between `first_seen` and `last_seen`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: uuid.UUID
    category: EventCategory
    component_id: uuid.UUID | None = None
    image_id: uuid.UUID | None = None
    exit_status: Whole | None = Field(default=None, ge=-(2**31), lt=2**31)
    signal_status: Whole | None = Field(default=None, ge=0, le=255)
    signal_code: Whole | None = Field(default=None, ge=-(2**31), lt=2**31)
    detail: DetailText = ""
    count: Whole = Field(ge=1, le=MAX_EVENT_COUNT)
    first_seen: Whole = Field(ge=0, lt=2**40, description="device clock, Unix seconds")
    last_seen: Whole = Field(ge=0, lt=2**40)

    def problem_key(self) -> tuple[str, str, str, str]:
        """Events with the same key are one problem (Memfault-style issue grouping)."""
        if self.signal_status is not None:
            outcome = f"signal {self.signal_status}"
        elif self.exit_status is not None:
            outcome = f"exit {self.exit_status}"
        else:
            outcome = ""
        return (
            self.category.value,
            str(self.component_id or ""),
            str(self.image_id or ""),
            outcome,
        )

    def description(self) -> str:
        """The report's Description column, in the original's style."""
        parts = []
        if self.exit_status is not None:
            parts.append(f"exit_status={self.exit_status}")
        if self.signal_status is not None:
            parts.append(f"signal_status={self.signal_status}")
        if self.signal_code is not None:
            parts.append(f"signal_code={self.signal_code}")
        if self.component_id is not None:
            parts.append(f"component_id={self.component_id}")
        if self.image_id is not None:
            parts.append(f"image_id={self.image_id}")
        if self.detail:
            parts.append(self.detail)
        return f"{self.category.value} ({'; '.join(parts)})" if parts else self.category.value


class RejectedEvent(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    index: int
    id: str | None
    reason: str


class ParsedBatch(BaseModel):
    model_config = ConfigDict(frozen=True)

    device_id: str
    sent_at: int
    events: list[WireEvent]
    rejected: list[RejectedEvent]


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int
    device_id: str = Field(min_length=128, max_length=128, pattern=r"^[0-9a-f]{128}$")
    sent_at: Whole = Field(ge=0, lt=2**40)
    events: list[Any] = Field(max_length=MAX_EVENTS_PER_BATCH)


def encode_batch(device_id: str, events: list[WireEvent], *, sent_at: int) -> bytes:
    body = {
        "version": BATCH_VERSION,
        "device_id": device_id,
        "sent_at": sent_at,
        "events": [event.model_dump(mode="json") for event in events],
    }
    return json.dumps(body, separators=(",", ":")).encode()


def parse_batch(data: bytes) -> ParsedBatch:
    """Check the envelope strictly; check each event alone and collect the refusals."""
    if len(data) > MAX_BATCH_BYTES:
        raise FormatError(
            f"the batch is {len(data)} bytes; at most {MAX_BATCH_BYTES} are accepted — "
            "send fewer events per batch"
        )
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise FormatError(f"the batch is not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise FormatError("the batch must be a JSON object")
    if raw.get("version") != BATCH_VERSION:
        raise FormatError(
            f"unsupported batch version {raw.get('version')!r}; this service speaks "
            f"version {BATCH_VERSION}"
        )
    try:
        envelope = _Envelope.model_validate(raw)
    except ValidationError as exc:
        raise FormatError(f"the batch envelope is not valid: {_summary(exc)}") from exc
    events: list[WireEvent] = []
    rejected: list[RejectedEvent] = []
    seen: set[uuid.UUID] = set()
    for index, item in enumerate(envelope.events):
        event_id = str(item.get("id"))[:64] if isinstance(item, dict) and "id" in item else None
        try:
            event = WireEvent.model_validate(item)
        except ValidationError as exc:
            rejected.append(RejectedEvent(index=index, id=event_id, reason=_summary(exc)))
            continue
        if event.last_seen < event.first_seen:
            rejected.append(
                RejectedEvent(index=index, id=event_id, reason="last_seen is before first_seen")
            )
            continue
        if event.id in seen:
            rejected.append(
                RejectedEvent(index=index, id=event_id, reason="the same id twice in one batch")
            )
            continue
        seen.add(event.id)
        events.append(event)
    return ParsedBatch(
        device_id=envelope.device_id,
        sent_at=envelope.sent_at,
        events=events,
        rejected=rejected,
    )


def _summary(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in error['loc']) or 'value'}: {error['msg']}"
        for error in exc.errors()[:5]
    )
