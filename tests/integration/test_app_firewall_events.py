"""Firewall denials reach the failure-report queue, rate-limited and aggregated.

An app retrying a host its manifest does not allow, in a tight loop, must cost one queue
record, not one per attempt.
"""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

from app_runtime_helpers import Apps, needs_namespaces, pending_events, results, running_runtime

ATTEMPTS = 200
# A fixed clock keeps every filing in one aggregation window, whenever the test runs.
FIXED_NOW = dt.datetime(2025, 1, 1, 12, 0, tzinfo=dt.UTC)


@needs_namespaces
def test_repeated_denials_of_one_host_are_one_firewall_denial_record(tmp_path: Path) -> None:
    apps = Apps(tmp_path / "apps", tmp_path / "device")
    launch = apps.write(
        "Persistent",
        textwrap.dedent(
            f"""
            from applibs import networking
            refused = 0
            for _ in range({ATTEMPTS}):
                try:
                    networking.connect("127.0.0.2", 9)
                except PermissionError:
                    refused += 1
            print("RESULT refused", refused, flush=True)
            """
        ),
        idle=True,
        Capabilities={"AllowedConnections": ["127.0.0.1"]},
    )
    with running_runtime(apps.device, now=lambda: FIXED_NOW) as runtime:
        runtime.launch_app(launch)
        assert results(runtime, launch, 1, timeout=20) == [f"refused {ATTEMPTS}"]
        assert runtime.app_status(launch.component_id).refusals == {"AllowedConnections": ATTEMPTS}

    events = pending_events(apps.device)
    assert len(events) == 1, events
    (event,) = events
    assert event["category"] == "FirewallDenial"
    assert 1 <= event["count"] <= ATTEMPTS
    assert event["detail"] == (
        "Persistent: AllowedConnections: '127.0.0.2' is not in the app manifest"
    )
    assert event["component_id"] == str(launch.component_id)
    assert event["image_id"] == str(launch.image_id)
