"""The simulator's day plan: reproducible from its seed, and shaped as promised."""

from __future__ import annotations

import pytest

from opensphere.sim.plan import (
    DAY_SECONDS,
    MAX_CUT_STEP,
    FleetEventKind,
    Rates,
    SimConfig,
    fleet_events,
    make_plan,
)


def test_the_same_seed_gives_the_same_plan_and_another_seed_another() -> None:
    config = SimConfig(devices=50, days=5, seed=7)
    assert make_plan(config) == make_plan(config)
    assert make_plan(config) != make_plan(SimConfig(devices=50, days=5, seed=8))


def test_every_device_is_online_on_the_last_day_and_offline_periods_end_before() -> None:
    rates = Rates(offline=0.5, max_offline_days=3)
    plan = make_plan(SimConfig(devices=200, days=6, seed=3, rates=rates))
    assert all(device.online for device in plan.days[-1])
    assert plan.offline_periods() > 50  # half the devices go offline on a given day
    assert any(not device.online for day in plan.days[:-1] for device in day)


def test_offline_devices_have_no_power_cut_and_times_fall_within_the_day() -> None:
    rates = Rates(power_cut=1.0, offline=0.3, crashes_per_day=3.0, reboot=1.0)
    plan = make_plan(SimConfig(devices=100, days=4, seed=5, rates=rates))
    for day in plan.days:
        for device in day:
            if device.online:
                assert device.power_cut_step is not None
                assert 1 <= device.power_cut_step <= MAX_CUT_STEP
            else:
                assert device.power_cut_step is None
            assert 0 <= device.check_at < DAY_SECONDS
            assert list(device.crash_times) == sorted(device.crash_times)
            assert all(0 <= t < DAY_SECONDS for t in device.crash_times)
            assert device.reboot_at is not None


def test_crashes_follow_the_mean_rate() -> None:
    plan = make_plan(
        SimConfig(devices=1000, days=2, seed=11, rates=Rates(crashes_per_day=0.5, offline=0))
    )
    assert 850 <= plan.planned_crashes() <= 1150  # 1000 expected; 5 sigma ≈ 160
    none = make_plan(SimConfig(devices=100, days=2, seed=1, rates=Rates(crashes_per_day=0)))
    assert none.planned_crashes() == 0


def test_fleet_events_deploy_publish_and_roll_out_to_a_share() -> None:
    assert fleet_events(1, 50) == fleet_events(1, 30)
    [only] = fleet_events(1, 50)
    assert (only.day, only.kind, only.rollout_percentage) == (0, FleetEventKind.DEPLOY_APP, 100)
    first, os_release, second = fleet_events(9, 40)
    assert (os_release.day, os_release.kind, os_release.version) == (3, "publish-os", "2.0.0")
    assert (second.day, second.version, second.rollout_percentage) == (6, "2.0.0", 40)
    assert first.day == 0
    assert all(1 <= event.day < 2 for event in fleet_events(2, 50)[1:])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"devices": 0, "days": 1, "seed": 1}, "at least one device"),
        ({"devices": 1, "days": 0, "seed": 1}, "at least one device"),
        ({"devices": 1, "days": 1, "seed": 1, "second_rollout_percentage": 0}, "rollout"),
    ],
)
def test_a_config_that_makes_no_sense_is_refused(options: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SimConfig(**options)


def test_rates_that_are_no_probabilities_are_refused() -> None:
    with pytest.raises(ValueError, match="probability"):
        Rates(power_cut=1.5)
    with pytest.raises(ValueError, match="crashes"):
        Rates(crashes_per_day=-1)
