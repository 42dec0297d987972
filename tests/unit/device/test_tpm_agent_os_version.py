"""Which OS version a TPM host reports: the operator registers the same one."""

from __future__ import annotations

from pathlib import Path

import pytest

from opensphere.device.errors import DeviceStateError
from opensphere.device.tpm_agent import os_version_of


@pytest.mark.parametrize(
    ("content", "version"),
    [
        ('ID=debian\nVERSION_ID="12"\n', "12"),
        ("ID=arch\n", "arch"),
        ('NAME="X"\nVERSION_ID=7.1\nID=x\n', "7.1"),
    ],
)
def test_the_version_is_version_id_else_id(tmp_path: Path, content: str, version: str) -> None:
    (tmp_path / "os-release").write_text(content)
    assert os_version_of(tmp_path / "os-release") == version


def test_a_file_without_either_or_no_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "os-release").write_text('NAME="nameless"\n')
    with pytest.raises(DeviceStateError, match="--os-version"):
        os_version_of(tmp_path / "os-release")
    with pytest.raises(DeviceStateError, match="cannot read"):
        os_version_of(tmp_path / "missing")
