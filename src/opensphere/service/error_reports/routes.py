"""Failure reporting over HTTP: device upload endpoints and the tenant's reports.

Devices upload with their credential (`Authorization: Device …`); people read
with their token and role (Reader reads reports and problems; crash dumps, which
may hold app data, need Contributor to download).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import Select, delete, func, select, tuple_
from starlette.concurrency import run_in_threadpool

from opensphere.api import error_reports as wire
from opensphere.api.schemas import Page, Role
from opensphere.formats.error_events import MAX_BATCH_BYTES, MAX_EVENTS_PER_BATCH, parse_batch
from opensphere.formats.errors import FormatError
from opensphere.service.bodies import read_body
from opensphere.service.deps import Context
from opensphere.service.device_auth import DeviceCaller, refuse_device, request_credential
from opensphere.service.error_reports.core import (
    ReportRow,
    daily_trend,
    to_csv,
)
from opensphere.service.error_reports.ingest import (
    IngestResult,
    find_reporter,
    report_columns,
    store_batch,
)
from opensphere.service.error_reports.models import (
    DEFAULT_DUMP_RETENTION_DAYS,
    DEFAULT_EVENT_RETENTION_DAYS,
    CrashDump,
    ErrorEvent,
    ErrorReportSettings,
    Problem,
)
from opensphere.service.errors import (
    InvalidRequestError,
    NotFoundError,
    PayloadTooLargeError,
)
from opensphere.service.paging import DEFAULT_LIMIT, decode_continuation, make_page
from opensphere.service.storage.models import DeviceGroup
from opensphere.service.tenants import Continuation, Limit, TenantId

MAX_CRASH_DUMP_BYTES = 64 * 1024
REPORT_LIMIT = 1000
DEFAULT_REPORT_WINDOW = dt.timedelta(days=14)
TREND_DAYS = 14

device_router = APIRouter(prefix="/v1/device", tags=["device failure reporting"])
router = APIRouter(prefix="/v1/tenants/{tenant_id}", tags=["error reports"])


# --- devices ---------------------------------------------------------------------------


@device_router.get("/reporting-config")
def reporting_config(caller: DeviceCaller) -> wire.ReportingConfig:
    """Whether this device's group collects crash dumps, and the upload limits."""
    return wire.ReportingConfig(
        allow_crash_dumps=_group_allows_dumps(caller),
        max_batch_events=MAX_EVENTS_PER_BATCH,
        max_batch_bytes=MAX_BATCH_BYTES,
        max_crash_dump_bytes=MAX_CRASH_DUMP_BYTES,
    )


def _group_allows_dumps(caller: Any) -> bool:
    group_id = caller.device.device_group_id
    if group_id is None:
        return False
    return bool(
        caller.session.scalar(
            select(DeviceGroup.allow_crash_dumps).where(DeviceGroup.id == group_id)
        )
    )


@device_router.post(
    "/error-reports",
    response_model=wire.IngestAnswer,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
async def upload_error_events(request: Request) -> Response:
    """Store a batch of the device's events; retries are stored once; bad events are named.

    A device hot path (a `ServiceApp` front endpoint): the checks come in a `DeviceCaller`'s order
    (credential, registration, then the batch), the registration read in the batch's own
    write transaction.
    """
    state = request.app.state
    now = state.clock.now()
    request_id = request.state.request_id
    credential = request_credential(request, now)
    body = await read_body(request, MAX_BATCH_BYTES)

    def store() -> IngestResult:
        # Off the event loop: waiting for SQLite's write lock must not stall the requests
        # (in worker threads) that hold it and need the loop to finish.
        with state.storage.write_transaction() as connection:
            device = find_reporter(connection, credential.device_id)
            if device is None or device.tenant_id != credential.tenant_id:
                refuse_device(request_id, f"device {credential.device_id[:16]}… is not claimed")
            if not device.enabled:
                refuse_device(request_id, f"device {credential.device_id[:16]}… is disabled")
            if body is None:
                raise PayloadTooLargeError(
                    f"a batch may be at most {MAX_BATCH_BYTES} bytes; send fewer events per batch",
                    code="batch_too_large",
                )
            try:
                batch = parse_batch(body)
            except FormatError as exc:
                raise InvalidRequestError(str(exc), code="invalid_batch") from exc
            if batch.device_id != device.device_id:
                refuse_device(
                    request_id,
                    f"device {device.device_id[:16]}… sent events of {batch.device_id[:16]}…",
                )
            result = store_batch(connection, device=device, batch=batch, received_at=now)
        return result

    result = await run_in_threadpool(store)
    answer = wire.IngestAnswer(
        stored=result.stored, duplicates=result.duplicates, rejected=result.rejected
    )
    return Response(answer.__pydantic_serializer__.to_json(answer), media_type="application/json")


@device_router.post(
    "/crash-dumps",
    status_code=201,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def upload_crash_dump(
    request: Request,
    caller: DeviceCaller,
    event_id: Annotated[uuid.UUID | None, Query(description="the AppCrash event")] = None,
    component_id: Annotated[uuid.UUID | None, Query()] = None,
    image_id: Annotated[uuid.UUID | None, Query()] = None,
) -> wire.CrashDump:
    """Keep one crash dump, if the device's group allows crash-dump collection."""
    if not _group_allows_dumps(caller):
        refuse_device(
            caller.request_id,
            f"device {caller.device.device_id[:16]}…'s group does not allow crash dumps",
            code="crash_dumps_not_allowed",
        )
    body = await read_body(request, MAX_CRASH_DUMP_BYTES)
    if body is None:
        raise PayloadTooLargeError(
            f"a crash dump may be at most {MAX_CRASH_DUMP_BYTES} bytes", code="crash_dump_too_large"
        )
    if not body:
        raise InvalidRequestError("the crash dump is empty", code="empty_crash_dump")
    dump = CrashDump(
        tenant_id=caller.device.tenant_id,
        device_id=caller.device.device_id,
        event_id=event_id,
        component_id=component_id,
        image_id=image_id,
        size=len(body),
        sha256=hashlib.sha256(body).hexdigest(),
        content=body,
        created_at=caller.now,
    )
    caller.session.add(dump)
    caller.session.commit()
    return _dump_out(dump)


# --- reports -------------------------------------------------------------------------


def _encode_cursor(row: ErrorEvent) -> str:
    payload = {"v": 1, "t": row.start_time.isoformat(), "d": row.device_id, "i": row.id.hex}
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()


def _decode_cursor(token: str) -> tuple[dt.datetime, str, uuid.UUID]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if raw["v"] != 1:
            raise ValueError("version")
        moment = dt.datetime.fromisoformat(raw["t"])
        if moment.tzinfo is None:
            raise ValueError("naive time")
        return moment, str(raw["d"]), uuid.UUID(hex=raw["i"])
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise InvalidRequestError(
            "the continuation token is not one this service issued; start again without it",
            code="invalid_continuation_token",
        ) from exc


def _report_row(event: ErrorEvent) -> wire.ErrorReportRow:
    event_type, event_class, category = report_columns(event.category)
    return wire.ErrorReportRow(
        device_id=event.device_id,
        event_type=event_type,
        event_class=event_class,
        event_category=category,
        event_count=event.event_count,
        description=event.description,
        start_time=event.start_time,
        end_time=event.end_time,
        event_id=event.id,
        problem_id=event.problem_id,
        component_id=event.component_id,
        image_id=event.image_id,
        clock_skewed=event.clock_skewed,
    )


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


@router.get("/error-reports", response_model=Page[wire.ErrorReportRow])
def error_report(
    tenant_id: TenantId,
    context: Context,
    format: Annotated[wire.ReportFormat, Query(description="json or csv")] = wire.ReportFormat.JSON,
    product_id: Annotated[uuid.UUID | None, Query()] = None,
    device_group_id: Annotated[uuid.UUID | None, Query()] = None,
    device_id: Annotated[str | None, Query(pattern=r"^[0-9a-f]{128}$")] = None,
    component_id: Annotated[uuid.UUID | None, Query()] = None,
    since: Annotated[dt.datetime | None, Query(description="default: 14 days ago")] = None,
    until: Annotated[dt.datetime | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=REPORT_LIMIT)] = REPORT_LIMIT,
    continuation_token: Annotated[
        str | None, Query(max_length=400, description="from the previous page's answer")
    ] = None,
) -> Any:
    """The error report, newest first, up to 1,000 events a page (pages go on beyond)."""
    context.authorize(tenant_id, Role.READER)
    start = _aware(since) if since else context.now - DEFAULT_REPORT_WINDOW
    query: Select[ErrorEvent] = select(ErrorEvent).where(
        ErrorEvent.tenant_id == tenant_id, ErrorEvent.start_time >= start
    )
    if until is not None:
        query = query.where(ErrorEvent.start_time < _aware(until))
    if device_id is not None:
        query = query.where(ErrorEvent.device_id == device_id)
    if product_id is not None:
        query = query.where(ErrorEvent.product_id == product_id)
    if device_group_id is not None:
        query = query.where(ErrorEvent.device_group_id == device_group_id)
    if component_id is not None:
        query = query.where(ErrorEvent.component_id == component_id)
    if continuation_token is not None:
        query = query.where(
            tuple_(ErrorEvent.start_time, ErrorEvent.device_id, ErrorEvent.id)
            < tuple_(*_decode_cursor(continuation_token))
        )
    rows = context.session.scalars(
        query.order_by(
            ErrorEvent.start_time.desc(), ErrorEvent.device_id.desc(), ErrorEvent.id.desc()
        ).limit(limit + 1)
    ).all()
    more = len(rows) > limit
    rows = rows[:limit]
    token = _encode_cursor(rows[-1]) if more else None
    items = [_report_row(row) for row in rows]
    if format == wire.ReportFormat.CSV:
        csv_rows = [
            ReportRow(
                item.device_id,
                item.event_type,
                item.event_class,
                item.event_category,
                item.event_count,
                item.description,
                item.start_time,
                item.end_time,
            )
            for item in items
        ]
        headers = {"Content-Disposition": 'attachment; filename="error-report.csv"'}
        if token:
            headers["X-Continuation-Token"] = token
        return Response(to_csv(csv_rows), media_type="text/csv; charset=utf-8", headers=headers)
    return Page[wire.ErrorReportRow](items=items, continuation_token=token)


# --- problems ------------------------------------------------------------------------


def _problem_out(problem: Problem, device_count: int) -> wire.Problem:
    return wire.Problem(
        id=problem.id,
        tenant_id=problem.tenant_id,
        category=problem.category,
        component_id=uuid.UUID(problem.component_key) if problem.component_key else None,
        image_id=uuid.UUID(problem.image_key) if problem.image_key else None,
        outcome=problem.outcome,
        first_seen=problem.first_seen,
        last_seen=problem.last_seen,
        event_count=problem.event_count,
        device_count=device_count,
    )


def _device_counts(context: Context, problem_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    if not problem_ids:
        return {}
    rows = context.session.execute(
        select(ErrorEvent.problem_id, func.count(func.distinct(ErrorEvent.device_id)))
        .where(ErrorEvent.problem_id.in_(problem_ids))
        .group_by(ErrorEvent.problem_id)
    ).all()
    return {problem_id: int(count) for problem_id, count in rows}


@router.get("/problems")
def list_problems(
    tenant_id: TenantId,
    context: Context,
    limit: Limit = DEFAULT_LIMIT,
    continuation_token: Continuation = None,
) -> Page[wire.Problem]:
    """Events grouped by (category, component, image, outcome), with devices affected."""
    context.authorize(tenant_id, Role.READER)
    after = decode_continuation(continuation_token)
    query = select(Problem).where(Problem.tenant_id == tenant_id, Problem.event_count > 0)
    if after is not None:
        query = query.where(Problem.id > after)
    rows = context.session.scalars(query.order_by(Problem.id).limit(limit + 1)).all()
    counts = _device_counts(context, [row.id for row in rows[:limit]])
    return make_page(
        rows, limit, key=lambda p: p.id, out=lambda p: _problem_out(p, counts.get(p.id, 0))
    )


@router.get("/problems/{problem_id}")
def show_problem(
    tenant_id: TenantId, problem_id: uuid.UUID, context: Context
) -> wire.ProblemDetail:
    """One problem with its daily trend over two weeks and its most recent events."""
    context.authorize(tenant_id, Role.READER)
    problem = context.session.get(Problem, problem_id)
    if problem is None or problem.tenant_id != tenant_id:
        raise NotFoundError(
            f"there is no problem {problem_id} in this tenant", code="problem_not_found"
        )
    since = context.now - dt.timedelta(days=TREND_DAYS)
    occurrences = context.session.execute(
        select(ErrorEvent.start_time, ErrorEvent.event_count).where(
            ErrorEvent.problem_id == problem_id, ErrorEvent.start_time >= since
        )
    ).all()
    recent = context.session.scalars(
        select(ErrorEvent)
        .where(ErrorEvent.problem_id == problem_id)
        .order_by(ErrorEvent.start_time.desc())
        .limit(20)
    ).all()
    base = _problem_out(problem, _device_counts(context, [problem_id]).get(problem_id, 0))
    return wire.ProblemDetail(
        **base.model_dump(),
        trend=[
            wire.DailyCount(day=d.day, count=d.count)
            for d in daily_trend([(t, c) for t, c in occurrences], now=context.now, days=TREND_DAYS)
        ],
        recent=[_report_row(event) for event in recent],
    )


# --- crash dumps -----------------------------------------------------------------------


def _dump_out(dump: CrashDump) -> wire.CrashDump:
    return wire.CrashDump(
        id=dump.id,
        device_id=dump.device_id,
        event_id=dump.event_id,
        component_id=dump.component_id,
        image_id=dump.image_id,
        size=dump.size,
        sha256=dump.sha256,
        created_at=dump.created_at,
    )


@router.get("/crash-dumps")
def list_crash_dumps(
    tenant_id: TenantId,
    context: Context,
    device_id: Annotated[str | None, Query(pattern=r"^[0-9a-f]{128}$")] = None,
    limit: Limit = DEFAULT_LIMIT,
    continuation_token: Continuation = None,
) -> Page[wire.CrashDump]:
    context.authorize(tenant_id, Role.READER)
    after = decode_continuation(continuation_token)
    query = select(CrashDump).where(CrashDump.tenant_id == tenant_id)
    if device_id is not None:
        query = query.where(CrashDump.device_id == device_id)
    if after is not None:
        query = query.where(CrashDump.id > after)
    rows = context.session.scalars(query.order_by(CrashDump.id).limit(limit + 1)).all()
    return make_page(rows, limit, key=lambda d: d.id, out=_dump_out)


@router.get(
    "/crash-dumps/{crash_dump_id}",
    responses={200: {"content": {"application/octet-stream": {}}}},
    response_class=Response,
)
def download_crash_dump(
    tenant_id: TenantId, crash_dump_id: uuid.UUID, context: Context
) -> Response:
    """The dump's bytes (Contributor: a dump may hold the app's data)."""
    context.authorize(tenant_id, Role.CONTRIBUTOR)
    dump = context.session.get(CrashDump, crash_dump_id)
    if dump is None or dump.tenant_id != tenant_id:
        raise NotFoundError(
            f"there is no crash dump {crash_dump_id} in this tenant", code="crash_dump_not_found"
        )
    return Response(
        dump.content,
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="crash-dump-{dump.id}.bin"'},
    )


# --- settings --------------------------------------------------------------------------


def settings_for(context: Context, tenant_id: uuid.UUID) -> wire.ErrorReportSettings:
    row = context.session.get(ErrorReportSettings, tenant_id)
    if row is None:
        return wire.ErrorReportSettings(
            event_retention_days=DEFAULT_EVENT_RETENTION_DAYS,
            dump_retention_days=DEFAULT_DUMP_RETENTION_DAYS,
        )
    return wire.ErrorReportSettings(
        event_retention_days=row.event_retention_days, dump_retention_days=row.dump_retention_days
    )


@router.get("/error-report-settings")
def show_error_report_settings(tenant_id: TenantId, context: Context) -> wire.ErrorReportSettings:
    context.authorize(tenant_id, Role.READER)
    return settings_for(context, tenant_id)


@router.put("/error-report-settings")
def set_error_report_settings(
    tenant_id: TenantId, body: wire.ErrorReportSettings, context: Context
) -> wire.ErrorReportSettings:
    """How long events and crash dumps are kept (Administrator)."""
    with context.change(
        "error_report_settings.set",
        tenant_id=tenant_id,
        required=Role.ADMINISTRATOR,
        target_type="tenant",
        target_id=str(tenant_id),
    ) as change:
        context.session.execute(
            delete(ErrorReportSettings).where(ErrorReportSettings.tenant_id == tenant_id)
        )
        context.session.add(
            ErrorReportSettings(
                tenant_id=tenant_id,
                event_retention_days=body.event_retention_days,
                dump_retention_days=body.dump_retention_days,
                updated_at=context.now,
            )
        )
        change.details = body.model_dump()
    return body
