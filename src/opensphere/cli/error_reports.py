"""`sphere tenant download-error-report`, `sphere problem …`, `sphere device crash-dump …`."""

from __future__ import annotations

import datetime as dt
import json
import sys
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer

from opensphere.api import error_reports as wire
from opensphere.cli.common import (
    ProfileOption,
    TenantOption,
    resolve_device_group,
    resolve_product,
    resolve_tenant,
    signed_in_client,
)
from opensphere.cli.output import OutputFormat, OutputOption, console, emit

PROBLEM_COLUMNS = ("id", "category", "outcome", "event_count", "device_count", "last_seen")
DUMP_COLUMNS = ("id", "device_id", "component_id", "size", "created_at")
SETTINGS_COLUMNS = ("event_retention_days", "dump_retention_days")

problem_app = typer.Typer(help="Problems: error events grouped like issues.", no_args_is_help=True)
crash_dump_app = typer.Typer(help="Crash dumps of a device's apps.", no_args_is_help=True)


def download_error_report(
    output_file: Annotated[
        Path | None, typer.Option("--output", help="file to write (default: standard output)")
    ] = None,
    report_format: Annotated[
        wire.ReportFormat, typer.Option("--format", help="csv (the original's columns) or json")
    ] = wire.ReportFormat.CSV,
    product: Annotated[str | None, typer.Option(help="only this product's devices")] = None,
    device_group: Annotated[
        str | None, typer.Option(help="only this device group ('Product/Group' or GUID)")
    ] = None,
    device: Annotated[str | None, typer.Option(help="only this device ID")] = None,
    component: Annotated[uuid.UUID | None, typer.Option(help="only this component ID")] = None,
    since: Annotated[dt.datetime | None, typer.Option(help="from (default: 14 days ago)")] = None,
    until: Annotated[dt.datetime | None, typer.Option(help="before this time")] = None,
    max_events: Annotated[
        int, typer.Option("--max", help="at most this many events (pages beyond 1,000)")
    ] = 100_000,
    tenant: TenantOption = None,
    profile: ProfileOption = None,
) -> None:
    """Download the tenant's error report, newest events first."""
    with signed_in_client(profile) as client:
        tenant_id = resolve_tenant(client, tenant, profile)
        filters: dict[str, Any] = {
            "product_id": resolve_product(client, tenant_id, product) if product else None,
            "device_group_id": (
                resolve_device_group(client, tenant_id, device_group) if device_group else None
            ),
            "device_id": device,
            "component_id": component,
            "since": _utc(since),
            "until": _utc(until),
        }
        if report_format == wire.ReportFormat.JSON:
            rows = [
                row.model_dump(mode="json")
                for row in client.error_report(tenant_id, limit=max_events, **filters)
            ]
            text = json.dumps(rows, indent=2) + "\n"
            count = len(rows)
        else:
            text, count = _csv_pages(client, tenant_id, filters, max_events)
    if output_file is None:
        sys.stdout.write(text)
        return
    output_file.write_text(text)
    console.print(f"{count} event(s) written to {output_file}", highlight=False)


def _utc(moment: dt.datetime | None) -> str | None:
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).isoformat()


def _csv_pages(
    client: Any, tenant_id: uuid.UUID, filters: dict[str, Any], max_events: int
) -> tuple[str, int]:
    """The service's CSV, page after page, with the header once."""
    parts: list[str] = []
    count = 0
    token: str | None = None
    while count < max_events:
        params = {
            **filters,
            "format": "csv",
            "limit": min(1000, max_events - count),
            "continuation_token": token,
        }
        response = client.raw("GET", f"/v1/tenants/{tenant_id}/error-reports", params=params)
        lines = response.text.splitlines(keepends=True)
        parts.extend(lines if not parts else lines[1:])
        count += max(0, len(lines) - 1)
        token = response.headers.get("x-continuation-token")
        if token is None:
            break
    return "".join(parts), count


@problem_app.command("list")
def problem_list(
    tenant: TenantOption = None,
    profile: ProfileOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Problems with their counts and how many devices they hit."""
    with signed_in_client(profile) as client:
        problems = list(client.problems(resolve_tenant(client, tenant, profile)))
    emit(sorted(problems, key=lambda p: p.last_seen, reverse=True), output, PROBLEM_COLUMNS)


@problem_app.command("show")
def problem_show(
    problem_id: Annotated[uuid.UUID, typer.Argument(help="the problem's id")],
    tenant: TenantOption = None,
    profile: ProfileOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """A problem with its two-week trend and recent events."""
    with signed_in_client(profile) as client:
        detail = client.problem(resolve_tenant(client, tenant, profile), problem_id)
    if output == OutputFormat.JSON:
        emit(detail, output, ())
        return
    emit(wire.Problem(**detail.model_dump(exclude={"trend", "recent"})), output, PROBLEM_COLUMNS)
    peak = max((d.count for d in detail.trend), default=0) or 1
    for day in detail.trend:
        bar = "#" * round(30 * day.count / peak)
        console.print(f"{day.day.isoformat()}  {day.count:>6}  {bar}", highlight=False)
    emit(detail.recent, output, ("device_id", "event_count", "description", "start_time"))


@crash_dump_app.command("list")
def crash_dump_list(
    device: Annotated[str | None, typer.Option(help="only this device ID")] = None,
    tenant: TenantOption = None,
    profile: ProfileOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Crash dumps kept by the service (29 days by default)."""
    with signed_in_client(profile) as client:
        dumps = list(client.crash_dumps(resolve_tenant(client, tenant, profile), device))
    emit(dumps, output, DUMP_COLUMNS)


@crash_dump_app.command("download")
def crash_dump_download(
    dump_id: Annotated[uuid.UUID, typer.Argument(help="the crash dump's id")],
    output_file: Annotated[Path, typer.Option("--output", help="file to write")],
    tenant: TenantOption = None,
    profile: ProfileOption = None,
) -> None:
    """Save one crash dump (Contributor)."""
    with signed_in_client(profile) as client:
        data = client.download_crash_dump(resolve_tenant(client, tenant, profile), dump_id)
    output_file.write_bytes(data)
    console.print(f"{len(data)} bytes written to {output_file}", highlight=False)


def error_report_settings(
    event_days: Annotated[int | None, typer.Option(help="keep events this many days")] = None,
    dump_days: Annotated[int | None, typer.Option(help="keep crash dumps this many days")] = None,
    tenant: TenantOption = None,
    profile: ProfileOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Show, or with options change (Administrator), how long reports are kept."""
    with signed_in_client(profile) as client:
        tenant_id = resolve_tenant(client, tenant, profile)
        current = client.error_report_settings(tenant_id)
        if event_days is not None or dump_days is not None:
            current = client.set_error_report_settings(
                tenant_id,
                wire.ErrorReportSettings(
                    event_retention_days=event_days or current.event_retention_days,
                    dump_retention_days=dump_days or current.dump_retention_days,
                ),
            )
    emit(current, output, SETTINGS_COLUMNS)
