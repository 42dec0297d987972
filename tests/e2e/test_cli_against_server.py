"""The `sphere` CLI against a real `sphere server` process, as a user drives it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.service import SPHERE, RunningService, running_service

pytestmark = pytest.mark.xdist_group("e2e")


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    with running_service(tmp_path_factory.mktemp("service") / "data") as running:
        yield running


@pytest.fixture
def sphere(tmp_path: Path):  # type: ignore[no-untyped-def]
    env = {**os.environ, "OPENSPHERE_CONFIG_DIR": str(tmp_path / "config"), "COLUMNS": "200"}
    env.pop("OPENSPHERE_PROFILE", None)

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [SPHERE, *args], env=env, input=stdin, capture_output=True, text=True, check=False
        )

    return run


def _json(result: subprocess.CompletedProcess[str]) -> object:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_operator_to_device_groups_story(service: RunningService, sphere) -> None:  # type: ignore[no-untyped-def]
    login = sphere("login", "--url", service.url, "--token-file", str(service.operator_token_file))
    assert login.returncode == 0, login.stderr
    assert "operator" in login.stdout
    tenant = _json(
        sphere("tenant", "create", "Fabrikam", "--admin", "ann@fabrikam.example", "-o", "json")
    )
    assert isinstance(tenant, dict)
    assert tenant["name"] == "Fabrikam"
    product = _json(sphere("product", "create", "--name", "Kettle", "-o", "json"))
    assert isinstance(product, dict)
    groups = _json(sphere("device-group", "list", "--product", "Kettle", "-o", "json"))
    assert isinstance(groups, list)
    assert len(groups) == 5
    created = _json(
        sphere(
            "device-group",
            "create",
            "-p",
            "Kettle",
            "-n",
            "Lab",
            "--os-feed",
            "RetailEval",
            "-o",
            "json",
        )
    )
    assert isinstance(created, dict)
    assert created["os_feed"] == "RetailEval"
    updated = _json(
        sphere(
            "device-group", "update", "Kettle/Lab", "--allow-crash-dumps-collection", "-o", "json"
        )
    )
    assert isinstance(updated, dict)
    assert updated["allow_crash_dumps"] is True
    shown = sphere("device-group", "show", "Lab", "--product", "Kettle")
    assert shown.returncode == 0
    assert "RetailEval" in shown.stdout
    events = _json(sphere("audit", "list", "-o", "json"))
    assert isinstance(events, list)
    assert [e["action"] for e in events][:2] == ["device_group.update", "device_group.create"]
    table = sphere("product", "list")
    assert "Kettle" in table.stdout


def test_tokens_and_roles_through_the_cli(service: RunningService, sphere) -> None:  # type: ignore[no-untyped-def]
    assert (
        sphere(
            "login", "--url", service.url, "--token-file", str(service.operator_token_file)
        ).returncode
        == 0
    )
    sphere("tenant", "create", "Northwind")
    assert (
        sphere("role", "add", "--user", "rita@northwind.example", "--role", "Reader").returncode
        == 0
    )
    issued = _json(
        sphere(
            "token",
            "create",
            "--name",
            "rita",
            "--for-user",
            "rita@northwind.example",
            "-o",
            "json",
        )
    )
    assert isinstance(issued, dict)
    secret = issued["token"]
    assert (
        sphere("login", "--url", service.url, "--profile", "rita", stdin=secret + "\n").returncode
        == 0
    )
    denied = sphere("product", "create", "--name", "Nope", "--profile", "rita")
    assert denied.returncode == 1
    assert "needs the Contributor role" in denied.stderr
    assert "forbidden" in denied.stderr
    assert "Traceback" not in denied.stderr
    revoked = sphere("token", "revoke", issued["id"])
    assert revoked.returncode == 0
    after = sphere("show-user", "--profile", "rita")
    assert after.returncode == 1
    assert "revoked" in after.stderr


def test_cli_errors_are_one_line_with_nonzero_exit(service: RunningService, sphere) -> None:  # type: ignore[no-untyped-def]
    not_signed_in = sphere("tenant", "list")
    assert not_signed_in.returncode == 1
    assert "not signed in" in not_signed_in.stderr
    unreachable = sphere("login", "--url", "http://127.0.0.1:9", stdin="osk_x\n")
    assert unreachable.returncode == 1
    assert "cannot reach the service" in unreachable.stderr
    assert (
        sphere(
            "login", "--url", service.url, "--token-file", str(service.operator_token_file)
        ).returncode
        == 0
    )
    bad_name = sphere("tenant", "create", " spaces ")
    assert bad_name.returncode == 1
    assert "not valid: name:" in bad_name.stderr
    assert "Traceback" not in bad_name.stderr
    assert len(bad_name.stderr.strip().splitlines()) <= 3
    usage = sphere("device-group", "create", "--name", "x")
    assert usage.returncode == 2


@pytest.mark.timeout(900)
def test_demo_tells_the_whole_story(tmp_path: Path) -> None:
    from support.service import free_port

    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "opensphere.demo",
            "--exit",
            "--data-dir",
            str(tmp_path / "demo"),
            "--port",
            str(free_port()),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # so that a timeout also stops its server and device agents
    )
    try:
        stdout, stderr = demo.communicate(timeout=840)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
    result = subprocess.CompletedProcess(demo.args, demo.returncode, stdout, stderr)
    assert result.returncode == 0, result.stdout + result.stderr
    for expected in (
        "Signed in to",
        "Field Test",
        "installed: 3",  # every device took 1.0.0 and 2.0.0
        "exit status 1",  # the broken sensor crashes the app
        "AppCrash",  # … and the problem list shows it
        "state: Halted",  # the faulty 3.0.0 rolled back and the rollout stopped
        "crashed at start",  # what the device says about it
        "/dashboard/",
    ):
        assert expected in result.stdout, expected


def test_server_on_a_taken_port_says_so_and_fails(service: RunningService, tmp_path: Path) -> None:
    port = service.url.rsplit(":", 1)[1]
    result = subprocess.run(
        [SPHERE, "server", "--data-dir", str(tmp_path / "data"), "--port", port],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 3
    assert "address already in use" in result.stderr
