"""Power cuts: kill an install (or a boot) at every durable step; the device must still boot.

The install runs in a forked child. Before each file-system step that changes what is on
flash (fsync, rename, replace, unlink, mkdir, rmdir) the child counts; at step N it SIGKILLs
itself, so the step never happens. N runs from 1 until the child gets to the end, so every
step of the sequence is cut once. The parent then boots the device for real and checks that
a verified OS boots, that no fuse was raised by the install, and that a later install works.

SIGKILL loses no data the kernel already holds, so this checks the order of writes and
renames, not lost page cache: the fsyncs in the code are there for real power cuts.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import traceback
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from opensphere.device.boot import boot_device, confirm_boot
from opensphere.device.emulator import Fleet
from opensphere.device.install import sideload, stage_os_release
from opensphere.device.policy import BOOT_STAGES, fuse_name
from support.device_os import (
    APP_COMPONENT_ID,
    NOW,
    NOW_S,
    Device,
    app_package,
    make_app_folder,
    new_device,
    sdk_test_signer,
)

pytestmark = pytest.mark.filterwarnings("ignore::opensphere.rot.EmulatedRootOfTrustWarning")

_STEPS = ("fsync", "rename", "replace", "unlink", "mkdir", "rmdir")


def _die_at_step(kill_at: int) -> None:
    """Make the N-th durable step of this (child) process a power cut."""
    count = 0

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        def step(*args: Any, **kwargs: Any) -> Any:
            nonlocal count
            count += 1
            if count == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return original(*args, **kwargs)

        return step

    for name in _STEPS:
        setattr(os, name, wrap(getattr(os, name)))


def _run_cut(action: Callable[[], object], kill_at: int) -> bool:
    """Run ``action`` in a child cut at step ``kill_at``; True if the cut happened."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            _die_at_step(kill_at)
            action()
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        assert os.WTERMSIG(status) == signal.SIGKILL
        return True
    assert os.WEXITSTATUS(status) == 0, "the child failed without being cut (see stderr)"
    return False


def _cuts(template: Device, work: Path, action: Callable[[Device], None]) -> Iterator[Device]:
    """Yield a copy of ``template`` cut at step 1, 2, ... of ``action`` until it completes."""
    kill_at = 1
    while True:
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(template.folder, work, symlinks=True)
        device = Device(work, template.fleet)
        if not _run_cut(partial(action, device), kill_at):
            return
        yield device
        kill_at += 1


def _os_fuses(device: Device) -> list[int]:
    rot = device.rot()
    return [rot.counter(fuse_name(stage.component_id)) for stage in BOOT_STAGES]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Device, list[bytes], bytes]:
    """A development device that booted once with app 1.0.0; then an OS 2.0.0 and app 1.1.0."""
    root = tmp_path_factory.mktemp("power-cut")
    fleet = Fleet.create(root / "fleet", now=NOW)
    device = new_device(root / "template", fleet, development=True)
    app = make_app_folder(root / "app")
    sideload(device.flash, device.rot(), app_package(app, sdk_test_signer()), now=NOW_S)
    device.boot()
    release = fleet.build_os_release(version="2.0.0", security_version=2, build_time=NOW_S)
    newer_app = app_package(app, sdk_test_signer(), version="1.1.0", security_version=2)
    return device, release, newer_app


def test_power_cut_at_every_step_of_an_install_leaves_a_bootable_device(
    setup: tuple[Device, list[bytes], bytes], tmp_path: Path
) -> None:
    template, release, newer_app = setup

    def install(device: Device) -> None:
        rot = device.rot()
        stage_os_release(device.flash, rot, release)
        sideload(device.flash, rot, newer_app, now=NOW_S)

    cuts = 0
    for device in _cuts(template, tmp_path / "device", install):
        cuts += 1
        result, rot = device.boot()
        assert result.events == (), f"cut at step {cuts}: {result.events}"
        assert result.os_version in {"1.0.0", "2.0.0"}
        assert result.trial is (result.os_version == "2.0.0")
        assert _os_fuses(device) == [1, 1, 1], f"cut at step {cuts} raised a fuse"
        [app] = result.apps
        assert app.image.metadata.version in {"1.0.0", "1.1.0"}
        assert rot.counter(fuse_name(APP_COMPONENT_ID)) == app.image.metadata.security_version
        # Whatever the cut left behind, installing again works and the update goes through.
        if not result.trial:
            install(device)
            result = boot_device(device.flash, rot, now=NOW_S)
        assert result.trial
        confirm_boot(device.flash, rot, result)
        assert _os_fuses(device) == [2, 2, 2]
    assert cuts > 20  # the sequence really was cut at many points


def test_power_cut_at_every_step_of_a_trial_boot_and_confirm(
    setup: tuple[Device, list[bytes], bytes], tmp_path: Path
) -> None:
    template, release, _ = setup
    staged = Device(tmp_path / "staged", template.fleet)
    shutil.copytree(template.folder, staged.folder, symlinks=True)
    stage_os_release(staged.flash, staged.rot(), release)

    def boot_and_confirm(device: Device) -> None:
        rot = device.rot()
        confirm_boot(device.flash, rot, boot_device(device.flash, rot, now=NOW_S))

    cuts = 0
    for cut in _cuts(staged, tmp_path / "device", boot_and_confirm):
        cuts += 1
        result, _ = cut.boot()
        assert result.os_version in {"1.0.0", "2.0.0"}
        booted = [image.metadata.security_version for image in result.os_images]
        assert all(f <= v for f, v in zip(_os_fuses(cut), booted, strict=True))
        assert len(result.apps) == 1
    assert cuts > 5
