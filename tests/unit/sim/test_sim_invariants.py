"""The end-of-run checks: each invariant fails on the observation that breaks it."""

from __future__ import annotations

import dataclasses
import uuid

from opensphere.sim.invariants import (
    DeployedApp,
    DeviceObservation,
    Expectations,
    PublishedOs,
    check_device,
    check_fleet,
    expected_app,
    expected_os,
)
from opensphere.sim.plan import DeviceDay, Plan, Rates, SimConfig, make_plan
from opensphere.updates.rollout import Rollout, in_rollout

FIRST = DeployedApp(0, uuid.uuid4(), uuid.uuid4(), 100)
OS = PublishedOs(1, "2.0.0")
DEVICE = "ab" * 64


def _plan(online: list[bool]) -> Plan:
    """One device, online on the days given."""
    config = SimConfig(devices=1, days=len(online), seed=1, rates=Rates(offline=0))
    days = tuple((DeviceDay(online=state, check_at=0),) for state in online)
    return dataclasses.replace(make_plan(config), days=days)


def _second(percentage: int, *, taking: bool) -> DeployedApp:
    """A deployment on day 2 whose rollout takes DEVICE or not."""
    while True:
        deployment = DeployedApp(2, uuid.uuid4(), uuid.uuid4(), percentage)
        rollout = Rollout(deployment.deployment_id, percentage, paused=False)
        if in_rollout(rollout, DEVICE) is taking:
            return deployment


def _healthy(plan: Plan, expectations: Expectations) -> DeviceObservation:
    app = expected_app(plan, expectations, 0, DEVICE)
    version = expected_os(plan, expectations, 0)
    images = frozenset() if app is None else frozenset({app})
    return DeviceObservation(
        index=0,
        device_id=DEVICE,
        attestations=2,
        service_attestation="Passed",
        boot_error=None,
        os_version=version,
        app_images=images,
        service_os_version=version,
        service_images=images | {uuid.uuid4()},
        crashes_filed=3,
        crashes_stored=3,
        crashes_pending=0,
        duplicate_event_ids=0,
    )


def _violated(seen: DeviceObservation, plan: Plan, expectations: Expectations) -> set[str]:
    return {v.invariant for v in check_device(plan, expectations, seen)}


def test_a_device_that_did_everything_right_passes() -> None:
    plan = _plan([True, True, True])
    expectations = Expectations("1.0.0", (FIRST,), OS)
    assert check_device(plan, expectations, _healthy(plan, expectations)) == []


def test_a_staged_rollout_is_expected_only_where_it_takes_the_device() -> None:
    plan = _plan([True, True, True])
    taking = Expectations("1.0.0", (FIRST, _second(50, taking=True)), None)
    skipping = Expectations("1.0.0", (FIRST, _second(50, taking=False)), None)
    assert expected_app(plan, taking, 0, DEVICE) == taking.deployments[1].image_id
    assert expected_app(plan, skipping, 0, DEVICE) == FIRST.image_id  # keeps the first


def test_a_deployment_superseded_while_the_device_was_offline_never_reaches_it() -> None:
    plan = _plan([False, False, True])
    expectations = Expectations("1.0.0", (FIRST, _second(50, taking=False)), OS)
    assert expected_app(plan, expectations, 0, DEVICE) is None
    assert expected_os(plan, expectations, 0) == "2.0.0"
    assert expected_os(_plan([True, False, False]), expectations, 0) == "1.0.0"


def test_each_broken_invariant_is_named() -> None:
    plan = _plan([True, True, True])
    expectations = Expectations("1.0.0", (FIRST,), OS)
    healthy = _healthy(plan, expectations)
    cases = {
        "no event lost": [{"crashes_stored": 2}, {"crashes_pending": 1}],
        "no event duplicated": [{"crashes_stored": 4}, {"duplicate_event_ids": 1}],
        "attested": [{"attestations": 0}, {"service_attestation": "Failed"}],
        "deployment reached": [{"app_images": frozenset()}, {"service_images": frozenset()}],
        "OS release reached": [{"os_version": "1.0.0"}, {"service_os_version": None}],
        "no error": [{"errors": ("day 1: daily work: HTTP 500",)}],
    }
    for invariant, changes in cases.items():
        for change in changes:
            seen = dataclasses.replace(healthy, **change)
            assert _violated(seen, plan, expectations) == {invariant}, change


def test_a_device_that_does_not_boot_is_bricked_and_one_never_observed_is_reported() -> None:
    plan = _plan([True])
    expectations = Expectations("1.0.0", (FIRST,), None)
    bricked = dataclasses.replace(_healthy(plan, expectations), boot_error="no bootable slot")
    assert _violated(bricked, plan, expectations) == {"not bricked"}
    [missing] = check_fleet(plan, expectations, [])
    assert (missing.device, missing.invariant) == (0, "observed")
