"""The fleet simulator against a real `sphere server`: invariants green, and able to fail.

The first test is the command as a user runs it; the second drives a `Simulation` day by day
and tampers with two devices' event queues between days, so the end checks must catch a lost
and an extra event (the checks are only worth something if they can fail).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from opensphere.device.flash import EVENTS_QUEUE
from opensphere.device.packaging import load_signing_key
from opensphere.device.reporting.queue import EventQueue, Occurrence
from opensphere.formats.error_events import EventCategory
from opensphere.sim.backend import Backend
from opensphere.sim.plan import Rates, SimConfig, make_plan
from opensphere.sim.session import SessionOptions, prepared
from opensphere.sim.world import APP_COMPONENT
from support.service import SPHERE, running_service

pytestmark = [pytest.mark.xdist_group("e2e"), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
TEST_KEY = ROOT / "samples" / "keys" / "test-signing-key.pem"


def test_sphere_simulate_runs_a_fleet_for_days_and_every_invariant_holds(tmp_path: Path) -> None:
    with running_service(tmp_path / "data") as service:
        token = service.operator_token_file.read_text().strip()
        result = subprocess.run(
            [
                SPHERE,
                "simulate",
                "--devices", "20",
                "--days", "3",
                "--seed", "1",
                "--power-cut-rate", "0.3",
                "--crashes-per-day", "1",
                "--url", service.url,
                "--app-key", str(TEST_KEY),
                "--work-dir", str(tmp_path / "work"),
                "--output", "json",
            ],
            env={**os.environ, "OPENSPHERE_TOKEN": token},
            capture_output=True,
            text=True,
            check=False,
            timeout=240,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["violations"] == []
    assert (summary["devices"], summary["days"]) == (20, 3)
    assert summary["attestations"] >= 20  # everyone at least once, most of them daily
    assert summary["update_checks"] >= 50
    assert summary["installs"] >= 20  # app 1.0.0 everywhere, then OS 2.0.0, app 2.0.0 to half
    assert summary["power_cuts"] > 0
    assert summary["crashes_filed"] == summary["crashes_stored"] > 0
    assert len(list((tmp_path / "work" / "devices").iterdir())) == 20


def test_a_lost_and_an_extra_event_break_the_invariants(tmp_path: Path) -> None:
    rates = Rates(crashes_per_day=0, power_cut=0, offline=0, reboot=0)
    plan = make_plan(SimConfig(devices=3, days=2, seed=4, rates=rates))
    with running_service(tmp_path / "data") as service:
        backend = Backend(service.url, service.operator_token_file.read_text().strip())
        work = Path(tempfile.mkdtemp(dir=tmp_path))
        options = SessionOptions(work=work, app_signer=load_signing_key(TEST_KEY))
        with prepared(plan, backend, options) as simulation:
            simulation.run_day(0)
            lost, extra, _ = simulation.devices
            crash = Occurrence(
                category=EventCategory.APP_CRASH, component_id=APP_COMPONENT, image_id=uuid.uuid4()
            )
            now = int(lost.clock.now().timestamp())
            EventQueue(lost.folder / EVENTS_QUEUE).record(crash, now=now)
            lost.crashes_filed += 1
            (lost.folder / EVENTS_QUEUE).unlink()  # the queue is gone before the next upload
            EventQueue(extra.folder / EVENTS_QUEUE).record(crash, now=now)  # filed, not counted
            simulation.run_day(1)
            summary = simulation.finish()
    broken = {(v.device, v.invariant) for v in summary.violations}
    assert broken == {(0, "no event lost"), (1, "no event duplicated")}
    assert (summary.crashes_filed, summary.crashes_stored) == (1, 1)
