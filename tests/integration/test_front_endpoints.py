"""The device hot paths answer in front of FastAPI's stack (`ServiceApp`), and still answer
every failure with a problem document: an unexpected one is logged under the request id and
answered 500 `internal_error`, with no traceback to the device."""

from __future__ import annotations

from pathlib import Path

import pytest
from device_helpers import BrokenReferences, challenge, make_evidence, new_fleet, post_evidence
from helpers import assert_problem
from update_helpers import tenancy

from conftest import Api, FixedClock
from opensphere.device.emulator import Fleet

pytestmark = pytest.mark.filterwarnings("ignore::opensphere.rot.EmulatedRootOfTrustWarning")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    return new_fleet(tmp_path_factory.mktemp("fleet") / "fleet")


def test_an_unexpected_failure_on_a_hot_path_is_a_logged_500_problem(
    api: Api,
    clock: FixedClock,
    tmp_path: Path,
    fleet: Fleet,
    caplog: pytest.LogCaptureFixture,
) -> None:
    world = tenancy(api, clock, tmp_path, fleet)
    device = world.device()
    evidence = make_evidence(device, challenge(api, device.device_id), clock.now())
    api.client.app.state.attestation.references = BrokenReferences()

    response = post_evidence(api, evidence)

    assert_problem(response, 500, "internal_error")
    request_id = response.headers["x-request-id"]
    assert response.json()["request_id"] == request_id
    assert "on fire" not in response.text
    assert f"(request {request_id})" in caplog.text
    assert "the reference store is on fire" in caplog.text


def test_an_unexpected_failure_on_the_update_check_is_a_logged_500_problem(
    api: Api, clock: FixedClock, tmp_path: Path, fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    world = tenancy(api, clock, tmp_path, fleet)
    headers = world.credential(world.device())
    tuf = api.client.app.state.tuf
    tuf.storage = None  # the device's registry entry cannot be read

    response = api.client.get(
        f"/v1/device/tuf/{world.tenant_id}/metadata/timestamp.json", headers=headers
    )

    assert_problem(response, 500, "internal_error")
    assert f"(request {response.headers['x-request-id']})" in caplog.text
