"""The device OS commands end to end: create, pack, sideload, list, boot, show, sign."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from opensphere.cli.device_os import device_os_app
from opensphere.cli.errors import CliError
from opensphere.formats.image_package import parse_package
from support.device_os import APP_COMPONENT_ID, TEST_KEY_PATH, make_app_folder

pytestmark = pytest.mark.filterwarnings("ignore::opensphere.rot.EmulatedRootOfTrustWarning")

runner = CliRunner()


def _run(*args: str) -> str:
    result = runner.invoke(device_os_app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_development_walkthrough(tmp_path: Path) -> None:
    fleet, device = tmp_path / "fleet", tmp_path / "device"
    assert "created device" in _run("create", device, "--fleet", fleet, "--enable-development")
    app = make_app_folder(tmp_path / "app", storage_kb=4)
    package = tmp_path / "blink.imagepackage"
    _run("image-package", "pack-application", app, "--out", package, "--key", TEST_KEY_PATH)
    shown = json.loads(_run("image-package", "show", package, "--output", "json"))
    assert (shown["component_id"], shown["test_signed"]) == (str(APP_COMPONENT_ID), True)

    assert "installed Blink 1.0.0" in _run("sideload", "deploy", package, "--device", device)
    listing = json.loads(_run("image", "list-installed", "--device", device, "--output", "json"))
    assert [row["location"] for row in listing][-1] == "apps"

    booted = json.loads(_run("boot", device, "--output", "json"))
    assert booted["slot"] == "a"
    assert booted["development_mode"] is True
    assert [image["stage"] for image in booted["images"]] == [
        "bootloader",
        "security-monitor",
        "os",
        f"app:{APP_COMPONENT_ID}",
    ]
    assert booted["apps"][0]["storage_quota_bytes"] == 4096
    assert "booted slot a" in _run("boot", device)


def test_second_device_reuses_the_fleet_and_its_known_good_os(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet"
    _run("create", tmp_path / "one", "--fleet", fleet)
    _run("create", tmp_path / "two", "--fleet", fleet)
    first = json.loads(_run("boot", tmp_path / "one", "--output", "json"))
    second = json.loads(_run("boot", tmp_path / "two", "--output", "json"))
    assert [i["sha256"] for i in first["images"]] == [i["sha256"] for i in second["images"]]


def test_sideload_without_a_capability_is_a_one_line_error(tmp_path: Path) -> None:
    device = tmp_path / "device"
    _run("create", device, "--fleet", tmp_path / "fleet")
    package = tmp_path / "blink.imagepackage"
    _run(
        "image-package",
        "pack-application",
        make_app_folder(tmp_path / "app"),
        "--out",
        package,
        "--key",
        TEST_KEY_PATH,
    )
    with pytest.raises(CliError, match="appDevelopment"):
        runner.invoke(
            device_os_app,
            ["sideload", "deploy", str(package), "--device", str(device)],
            catch_exceptions=False,
        )


def test_sign_and_board_config(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet"
    _run("create", tmp_path / "device", "--fleet", fleet)
    config = tmp_path / "board.json"
    config.write_text("{}")
    package = tmp_path / "board.imagepackage"
    _run(
        "image-package",
        "pack-board-config",
        config,
        "--name",
        "lan",
        "--out",
        package,
        "--key",
        TEST_KEY_PATH,
    )
    assert parse_package(package.read_bytes()).metadata.identity.image_type.name == (
        "CustomerBoardConfig"
    )
    signed = tmp_path / "signed.imagepackage"
    _run("image-package", "sign", package, "--key", fleet / "app-signing-key.pem", "--out", signed)
    shown = json.loads(_run("image-package", "show", signed, "--output", "json"))
    assert shown["test_signed"] is False
