"""Failure reporting in the service: ingest, exactly once, problems, reports, dumps, retention.

Each attack of the issue is its own test; both database engines.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import uuid
from pathlib import Path

import pytest
from helpers import assert_problem, member
from reporting_helpers import ReportingDevice, reporting_devices

from conftest import Api, FixedClock
from opensphere.formats.error_events import MAX_BATCH_BYTES, EventCategory, WireEvent, encode_batch
from opensphere.service.error_reports.retention import apply_retention

COMPONENT = uuid.uuid4()
IMAGE = uuid.uuid4()


def crash(now: dt.datetime, *, count: int = 1, signal: int = 11, **changes: object) -> WireEvent:
    t = int(now.timestamp())
    return WireEvent.model_validate(
        {
            "id": uuid.uuid4(),
            "category": EventCategory.APP_CRASH,
            "component_id": COMPONENT,
            "image_id": IMAGE,
            "signal_status": signal,
            "count": count,
            "first_seen": t - 60,
            "last_seen": t - 10,
            **changes,
        }
    )


def upload(
    api: Api,
    device: ReportingDevice,
    events: list[WireEvent],
    now: dt.datetime,
    *,
    sent_at: int | None = None,
    as_device: ReportingDevice | None = None,
) -> object:
    body = encode_batch(device.device_id, events, sent_at=sent_at or int(now.timestamp()))
    return api.client.post(
        "/v1/device/error-reports",
        content=body,
        headers={**(as_device or device).headers, "Content-Type": "application/json"},
    )


def report(api: Api, device: ReportingDevice, **params: object) -> list[dict[str, object]]:
    answer = api.client.get(
        f"/v1/tenants/{device.tenant_id}/error-reports", params=params, headers=api.operator
    )
    assert answer.status_code == 200, answer.text
    return list(answer.json()["items"])


@pytest.fixture
def device(api: Api, tmp_path: Path, clock: FixedClock) -> ReportingDevice:
    return reporting_devices(api, tmp_path, clock.now())[0]


def test_batch_is_stored_and_appears_in_the_report(
    api: Api, device: ReportingDevice, clock: FixedClock
) -> None:
    events = [crash(clock.now(), count=3), crash(clock.now(), signal=6)]
    answer = upload(api, device, events, clock.now())
    assert answer.status_code == 200, answer.text
    assert sorted(answer.json()["stored"]) == sorted(str(e.id) for e in events)
    rows = report(api, device)
    assert {(r["event_category"], r["event_count"]) for r in rows} == {
        ("AppCrash", 3),
        ("AppCrash", 1),
    }
    row = next(r for r in rows if r["event_count"] == 3)
    assert row["device_id"] == device.device_id
    assert (row["event_type"], row["event_class"]) == ("Unplanned", "Application")
    assert "signal_status=11" in row["description"]
    assert f"component_id={COMPONENT}" in row["description"]


def test_duplicated_batch_is_stored_once(
    api: Api, device: ReportingDevice, clock: FixedClock
) -> None:
    events = [crash(clock.now(), count=2)]
    first = upload(api, device, events, clock.now()).json()
    again = upload(api, device, events, clock.now()).json()
    assert first["stored"] == [str(events[0].id)]
    assert (again["stored"], again["duplicates"]) == ([], [str(events[0].id)])
    rows = report(api, device)
    assert [r["event_count"] for r in rows] == [2]
    problems = api.client.get(f"/v1/tenants/{device.tenant_id}/problems", headers=api.operator)
    assert [p["event_count"] for p in problems.json()["items"]] == [2]


def test_a_held_event_sent_again_differently_makes_no_empty_problem(
    api: Api, device: ReportingDevice, clock: FixedClock
) -> None:
    held = crash(clock.now(), count=2)
    assert upload(api, device, [held], clock.now()).json()["stored"] == [str(held.id)]
    changed = held.model_copy(update={"signal_status": 6})  # another problem's key, same id
    new = crash(clock.now(), signal=4)
    again = upload(api, device, [changed, new], clock.now()).json()
    assert (again["stored"], again["duplicates"]) == ([str(new.id)], [str(held.id)])
    problems = api.client.get(f"/v1/tenants/{device.tenant_id}/problems", headers=api.operator)
    assert sorted(p["event_count"] for p in problems.json()["items"]) == [1, 2]


def test_upload_without_a_credential_is_refused(
    api: Api, device: ReportingDevice, clock: FixedClock
) -> None:
    body = encode_batch(device.device_id, [crash(clock.now())], sent_at=0)
    assert_problem(api.client.post("/v1/device/error-reports", content=body), 403, "device_refused")
    forged = {"Authorization": "Device osd2.eyJzdWIiOiJ4In0.AAAA"}
    assert_problem(
        api.client.post("/v1/device/error-reports", content=body, headers=forged),
        403,
        "device_refused",
    )
    assert report(api, device) == []


def test_upload_with_another_devices_credential_is_refused(
    api: Api, tmp_path: Path, clock: FixedClock
) -> None:
    mine, other = reporting_devices(api, tmp_path, clock.now(), count=2)
    answer = upload(api, mine, [crash(clock.now())], clock.now(), as_device=other)
    assert_problem(answer, 403, "device_refused")
    assert report(api, mine) == []


def test_events_claiming_another_device_id_are_refused(
    api: Api, tmp_path: Path, clock: FixedClock
) -> None:
    mine, other = reporting_devices(api, tmp_path, clock.now(), count=2)
    body = encode_batch(other.device_id, [crash(clock.now())], sent_at=int(clock.now().timestamp()))
    answer = api.client.post("/v1/device/error-reports", content=body, headers=mine.headers)
    assert_problem(answer, 403, "device_refused")
    assert report(api, other) == []


def test_batch_over_the_size_limit_is_refused(api: Api, device: ReportingDevice) -> None:
    answer = api.client.post(
        "/v1/device/error-reports", content=b" " * (MAX_BATCH_BYTES + 1), headers=device.headers
    )
    assert_problem(answer, 413, "batch_too_large")


def test_malformed_events_are_refused_individually_and_the_rest_stored(
    api: Api, device: ReportingDevice, clock: FixedClock
) -> None:
    good = crash(clock.now())
    raw = json.loads(encode_batch(device.device_id, [good], sent_at=int(clock.now().timestamp())))
    raw["events"].append({"id": "nope", "category": "AppCrash"})
    raw["events"].append({**raw["events"][0], "id": str(uuid.uuid4()), "count": -5})
    answer = api.client.post(
        "/v1/device/error-reports", content=json.dumps(raw).encode(), headers=device.headers
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["stored"] == [str(good.id)]
    assert [r["index"] for r in body["rejected"]] == [1, 2]
    assert all(r["reason"] for r in body["rejected"])
    assert len(report(api, device)) == 1


def test_malformed_batch_is_refused_whole(api: Api, device: ReportingDevice) -> None:
    for body in (b"{not json", b'{"version": 7}', b"[]"):
        answer = api.client.post("/v1/device/error-reports", content=body, headers=device.headers)
        assert_problem(answer, 400, "invalid_batch")


@pytest.mark.parametrize("offset", [dt.timedelta(days=3650), -dt.timedelta(days=20000)])
def test_clock_skew_is_recorded_with_the_receive_time(
    api: Api, device: ReportingDevice, clock: FixedClock, offset: dt.timedelta
) -> None:
    device_now = clock.now() + offset
    event = crash(device_now)
    answer = upload(api, device, [event], clock.now(), sent_at=max(0, int(device_now.timestamp())))
    assert answer.status_code == 200, answer.text
    [row] = report(api, device)
    assert row["clock_skewed"] is True
    assert dt.datetime.fromisoformat(row["start_time"]) == clock.now()


def test_crash_flood_is_aggregated_and_bounded(
    api: Api, device: ReportingDevice, clock: FixedClock
) -> None:
    """A million crashes of one app arrive as one row with a count, one problem."""
    upload(api, device, [crash(clock.now(), count=1_000_000)], clock.now())
    rows = report(api, device)
    assert [r["event_count"] for r in rows] == [1_000_000]
    problems = api.client.get(
        f"/v1/tenants/{device.tenant_id}/problems", headers=api.operator
    ).json()["items"]
    assert [(p["event_count"], p["device_count"]) for p in problems] == [(1_000_000, 1)]


def test_problems_group_devices_and_show_a_trend(
    api: Api, tmp_path: Path, clock: FixedClock
) -> None:
    devices = reporting_devices(api, tmp_path, clock.now(), count=3)
    for index, one in enumerate(devices):
        upload(api, one, [crash(clock.now(), count=index + 1)], clock.now())
    upload(api, devices[0], [crash(clock.now(), signal=6)], clock.now())
    problems = api.client.get(
        f"/v1/tenants/{devices[0].tenant_id}/problems", headers=api.operator
    ).json()["items"]
    by_outcome = {p["outcome"]: p for p in problems}
    assert by_outcome["signal 11"]["device_count"] == 3
    assert by_outcome["signal 11"]["event_count"] == 6
    assert by_outcome["signal 6"]["device_count"] == 1
    detail = api.client.get(
        f"/v1/tenants/{devices[0].tenant_id}/problems/{by_outcome['signal 11']['id']}",
        headers=api.operator,
    ).json()
    assert len(detail["trend"]) == 14
    assert detail["trend"][-1]["count"] == 6
    assert len(detail["recent"]) == 3


def test_report_filters_paging_and_csv(api: Api, tmp_path: Path, clock: FixedClock) -> None:
    first, second = reporting_devices(api, tmp_path, clock.now(), count=2)
    upload(api, first, [crash(clock.now(), signal=s) for s in range(1, 6)], clock.now())
    upload(api, second, [crash(clock.now(), component_id=uuid.uuid4())], clock.now())
    assert len(report(api, first, device_id=first.device_id)) == 5
    assert len(report(api, first, component_id=str(COMPONENT))) == 5
    assert len(report(api, first, device_group_id=first.group_id)) == 6
    assert report(api, first, since=(clock.now() + dt.timedelta(days=1)).isoformat()) == []
    seen: list[str] = []
    token = None
    while True:
        params: dict[str, object] = {"limit": 2}
        if token:
            params["continuation_token"] = token
        answer = api.client.get(
            f"/v1/tenants/{first.tenant_id}/error-reports", params=params, headers=api.operator
        )
        assert answer.status_code == 200, answer.text
        page = answer.json()
        seen += [r["event_id"] for r in page["items"]]
        token = page["continuation_token"]
        if token is None:
            break
    assert len(seen) == len(set(seen)) == 6
    answer = api.client.get(
        f"/v1/tenants/{first.tenant_id}/error-reports",
        params={"format": "csv"},
        headers=api.operator,
    )
    assert answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(answer.text)))
    assert rows[0] == [
        "Device ID",
        "Event Type",
        "Event Class",
        "Event Category",
        "Event Count",
        "Description",
        "Start Time",
        "End Time",
    ]
    assert len(rows) == 7


def test_reports_are_per_tenant_and_readers_may_read(
    api: Api, tmp_path: Path, clock: FixedClock
) -> None:
    [mine] = reporting_devices(api, tmp_path / "a", clock.now())
    [theirs] = reporting_devices(api, tmp_path / "b", clock.now())
    upload(api, theirs, [crash(clock.now())], clock.now())
    reader = member(api, mine.tenant_id, "Reader")
    assert (
        api.client.get(f"/v1/tenants/{mine.tenant_id}/error-reports", headers=reader).json()[
            "items"
        ]
        == []
    )
    assert_problem(
        api.client.get(f"/v1/tenants/{theirs.tenant_id}/error-reports", headers=reader),
        404,
        "tenant_not_found",
    )


def test_crash_dump_upload_when_the_group_does_not_allow_it_is_refused(
    api: Api, device: ReportingDevice
) -> None:
    answer = api.client.post("/v1/device/crash-dumps", content=b"dump", headers=device.headers)
    assert_problem(answer, 403, "crash_dumps_not_allowed")
    config = api.client.get("/v1/device/reporting-config", headers=device.headers).json()
    assert config["allow_crash_dumps"] is False
    dumps = api.client.get(f"/v1/tenants/{device.tenant_id}/crash-dumps", headers=api.operator)
    assert dumps.json()["items"] == []


def test_crash_dump_is_kept_and_downloaded_by_a_contributor(
    api: Api, tmp_path: Path, clock: FixedClock
) -> None:
    [device] = reporting_devices(api, tmp_path, clock.now(), crash_dumps=True)
    assert (
        api.client.get("/v1/device/reporting-config", headers=device.headers).json()[
            "allow_crash_dumps"
        ]
        is True
    )
    event_id = uuid.uuid4()
    answer = api.client.post(
        "/v1/device/crash-dumps",
        content=b"traceback...",
        params={"event_id": str(event_id)},
        headers=device.headers,
    )
    assert answer.status_code == 201, answer.text
    dump = answer.json()
    assert dump["event_id"] == str(event_id)
    reader = member(api, device.tenant_id, "Reader")
    contributor = member(api, device.tenant_id, "Contributor")
    url = f"/v1/tenants/{device.tenant_id}/crash-dumps/{dump['id']}"
    assert_problem(api.client.get(url, headers=reader), 403, "forbidden")
    assert api.client.get(url, headers=contributor).content == b"traceback..."
    too_big = api.client.post(
        "/v1/device/crash-dumps", content=b"x" * (64 * 1024 + 1), headers=device.headers
    )
    assert_problem(too_big, 413, "crash_dump_too_large")


def test_retention_removes_old_events_and_dumps_per_tenant_setting(
    api: Api, tmp_path: Path, clock: FixedClock
) -> None:
    [device] = reporting_devices(api, tmp_path, clock.now(), crash_dumps=True)
    assert upload(api, device, [crash(clock.now())], clock.now()).status_code == 200
    dumped = api.client.post("/v1/device/crash-dumps", content=b"dump", headers=device.headers)
    assert dumped.status_code == 201
    storage = api.client.app.state.storage
    clock.advance(dt.timedelta(days=13))
    assert apply_retention(storage, now=clock.now()).events == 0
    assert len(report(api, device, since=(clock.now() - dt.timedelta(days=30)).isoformat())) == 1
    clock.advance(dt.timedelta(days=2))
    result = apply_retention(storage, now=clock.now())
    assert (result.events, result.dumps) == (1, 0)
    clock.advance(dt.timedelta(days=15))
    assert apply_retention(storage, now=clock.now()).dumps == 1
    [later] = reporting_devices(api, tmp_path / "later", clock.now())
    settings = api.client.put(
        f"/v1/tenants/{later.tenant_id}/error-report-settings",
        json={"event_retention_days": 1, "dump_retention_days": 1},
        headers=api.operator,
    )
    assert settings.status_code == 200, settings.text
    stored = upload(api, later, [crash(clock.now())], clock.now())
    assert stored.status_code == 200
    assert len(stored.json()["stored"]) == 1
    clock.advance(dt.timedelta(hours=23))
    assert apply_retention(storage, now=clock.now()).events == 0
    clock.advance(dt.timedelta(hours=2))
    assert apply_retention(storage, now=clock.now()).events == 1


def test_retention_runs_safely_from_several_processes_at_once(
    api: Api, tmp_path: Path, clock: FixedClock
) -> None:
    import threading

    [device] = reporting_devices(api, tmp_path, clock.now())
    upload(api, device, [crash(clock.now()) for _ in range(20)], clock.now())
    clock.advance(dt.timedelta(days=15))
    storage = api.client.app.state.storage
    results = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(apply_retention(storage, now=clock.now()))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(r.events for r in results) == 20
