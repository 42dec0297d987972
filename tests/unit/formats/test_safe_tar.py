"""Safe tar: deterministic packing, and unpacking that refuses every escape and writes nothing."""

from __future__ import annotations

import io
import os
import shutil
import stat
import tarfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opensphere.formats.errors import FormatError
from opensphere.formats.safe_tar import ArchiveError, pack_directory, unpack_tar

LIMITS = {"max_total_size": 1024 * 1024, "max_entries": 100}


def _member(name: str, data: bytes = b"", **attributes: object) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    for key, value in attributes.items():
        setattr(info, key, value)
    return info, data


def _archive(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buffer.getvalue()


def _assert_refused(
    body: bytes,
    workspace: Path,
    match: str,
    *,
    max_total_size: int = 1024 * 1024,
    max_entries: int = 100,
) -> None:
    """Refused with ``match``, and nothing at all was written: no dest, no staging leftovers."""
    dest = workspace / "app"
    with pytest.raises(ArchiveError, match=match):
        unpack_tar(body, dest, max_total_size=max_total_size, max_entries=max_entries)
    assert list(workspace.iterdir()) == []


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "workspace"
    path.mkdir()
    return path


@pytest.fixture
def app_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "source"
    (folder / "bin").mkdir(parents=True)
    (folder / "bin" / "app").write_bytes(b"#!/bin/sh\necho hello\n")
    (folder / "bin" / "app").chmod(0o755)
    (folder / "app_manifest.json").write_text('{"SchemaVersion": 1}')
    (folder / "data").mkdir()
    (folder / "data" / "é-unicode.txt").write_text("x")
    (folder / "empty").mkdir()
    return folder


# --- packing --------------------------------------------------------------------------------


def test_pack_then_unpack_round_trips(app_folder: Path, workspace: Path) -> None:
    dest = workspace / "app"
    unpack_tar(pack_directory(app_folder), dest, **LIMITS)
    assert (dest / "bin" / "app").read_bytes() == (app_folder / "bin" / "app").read_bytes()
    assert (dest / "bin" / "app").stat().st_mode & stat.S_IXUSR
    assert not (dest / "app_manifest.json").stat().st_mode & stat.S_IXUSR
    assert (dest / "data" / "é-unicode.txt").read_text() == "x"
    assert (dest / "empty").is_dir()
    assert sorted(p.name for p in workspace.iterdir()) == ["app"]


def test_packing_is_deterministic(app_folder: Path, tmp_path: Path) -> None:
    first = pack_directory(app_folder)
    assert pack_directory(app_folder) == first
    # Same content, created in another order, with other times and permissions: same bytes.
    copy = tmp_path / "copy"
    (copy / "empty").mkdir(parents=True)
    (copy / "data").mkdir()
    (copy / "data" / "é-unicode.txt").write_text("x")
    (copy / "app_manifest.json").write_text('{"SchemaVersion": 1}')
    (copy / "bin").mkdir()
    shutil.copyfile(app_folder / "bin" / "app", copy / "bin" / "app")
    (copy / "bin" / "app").chmod(0o700)
    (copy / "app_manifest.json").chmod(0o600)
    os.utime(copy / "app_manifest.json", (1, 1))
    assert pack_directory(copy) == first


def test_packing_normalises_owners_times_and_modes(app_folder: Path) -> None:
    (app_folder / "bin" / "app").chmod(0o4777)
    with tarfile.open(fileobj=io.BytesIO(pack_directory(app_folder))) as archive:
        members = archive.getmembers()
    assert [m.name for m in members] == [
        "app_manifest.json",
        "bin",
        "bin/app",
        "data",
        "data/é-unicode.txt",
        "empty",
    ]
    assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in members} == {(0, 0, "", "", 0)}
    modes = {m.name: m.mode for m in members}
    assert modes["bin/app"] == 0o755
    assert modes["app_manifest.json"] == 0o644
    assert modes["bin"] == 0o755


def test_packing_refuses_a_symlink_in_the_source(app_folder: Path) -> None:
    (app_folder / "bin" / "passwd").symlink_to("/etc/passwd")
    with pytest.raises(ArchiveError, match="only regular files and directories"):
        pack_directory(app_folder)


def test_packing_refuses_a_fifo_in_the_source(app_folder: Path) -> None:
    os.mkfifo(app_folder / "pipe")
    with pytest.raises(ArchiveError, match="'pipe'"):
        pack_directory(app_folder)


def test_packing_refuses_a_source_that_is_not_a_directory(app_folder: Path) -> None:
    with pytest.raises(ArchiveError, match="not a directory"):
        pack_directory(app_folder / "app_manifest.json")


def test_long_names_round_trip(tmp_path: Path, workspace: Path) -> None:
    source = tmp_path / "long"
    deep = source / ("d" * 120) / ("e" * 120)
    deep.mkdir(parents=True)
    (deep / ("f" * 200)).write_bytes(b"long")
    unpack_tar(pack_directory(source), workspace / "app", **LIMITS)
    assert (workspace / "app" / ("d" * 120) / ("e" * 120) / ("f" * 200)).read_bytes() == b"long"


# --- unpacking attacks ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../x", "a/../../x", "a/.."])
def test_path_traversal_is_refused(workspace: Path, name: str) -> None:
    _assert_refused(_archive(_member(name, b"evil")), workspace, "path traversal")


def test_absolute_path_is_refused(workspace: Path) -> None:
    _assert_refused(_archive(_member("/tmp/evil", b"evil")), workspace, "absolute path")


@pytest.mark.parametrize("name", ["./a", "a//b", "a/./b"])
def test_dot_or_empty_component_is_refused(workspace: Path, name: str) -> None:
    _assert_refused(_archive(_member(name, b"x")), workspace, "empty or '.'")


def test_backslash_name_is_refused(workspace: Path) -> None:
    _assert_refused(_archive(_member("..\\evil", b"x")), workspace, "backslash")


def test_symlink_pointing_out_is_refused(workspace: Path) -> None:
    link = _member("passwd", type=tarfile.SYMTYPE, linkname="../../../etc/passwd")
    _assert_refused(_archive(link), workspace, "symbolic link is not allowed")


def test_symlink_pointing_inside_is_refused_too(workspace: Path) -> None:
    link = _member("alias", type=tarfile.SYMTYPE, linkname="app")
    _assert_refused(_archive(_member("app", b"x"), link), workspace, "symbolic link")


def test_hard_link_is_refused(workspace: Path) -> None:
    link = _member("shadow", type=tarfile.LNKTYPE, linkname="/etc/shadow")
    _assert_refused(_archive(link), workspace, "hard link is not allowed")


@pytest.mark.parametrize(
    ("kind", "label"), [(tarfile.CHRTYPE, "character device"), (tarfile.BLKTYPE, "block device")]
)
def test_device_node_is_refused(workspace: Path, kind: bytes, label: str) -> None:
    node = _member("dev/mem", type=kind, devmajor=1, devminor=1)
    _assert_refused(_archive(node), workspace, label)


def test_fifo_is_refused(workspace: Path) -> None:
    _assert_refused(_archive(_member("pipe", type=tarfile.FIFOTYPE)), workspace, "FIFO")


@pytest.mark.parametrize("mode", [0o4755, 0o2755, 0o1755])
def test_setuid_setgid_and_sticky_bits_are_refused(workspace: Path, mode: int) -> None:
    _assert_refused(_archive(_member("bin/app", b"x", mode=mode)), workspace, "setuid")


def test_setuid_directory_is_refused(workspace: Path) -> None:
    directory = _member("bin", type=tarfile.DIRTYPE, mode=0o2755)
    _assert_refused(_archive(directory), workspace, "setuid")


def test_oversized_entry_is_refused(workspace: Path) -> None:
    body = _archive(_member("big", b"x" * 11))
    _assert_refused(body, workspace, "entry of 11 bytes exceeds", max_total_size=10)


def test_total_size_over_the_limit_is_refused(workspace: Path) -> None:
    body = _archive(_member("a", b"x" * 6), _member("b", b"x" * 6))
    _assert_refused(body, workspace, "contents exceed the 10-byte limit", max_total_size=10)


def test_too_many_entries_are_refused(workspace: Path) -> None:
    body = _archive(*(_member(f"f{index}", b"x") for index in range(4)))
    _assert_refused(body, workspace, "more than 3 entries", max_entries=3)


def test_nothing_is_written_when_a_late_entry_is_bad(workspace: Path) -> None:
    body = _archive(
        _member("bin", type=tarfile.DIRTYPE, mode=0o755),
        _member("bin/app", b"fine", mode=0o755),
        _member("app_manifest.json", b"{}"),
        _member("../../escape", b"evil"),
    )
    _assert_refused(body, workspace, "path traversal")


def test_duplicate_entry_is_refused(workspace: Path) -> None:
    body = _archive(_member("app", b"first"), _member("app", b"second"))
    _assert_refused(body, workspace, "duplicate entry")


def test_entry_inside_a_file_is_refused(workspace: Path) -> None:
    body = _archive(_member("bin", b"a file"), _member("bin/app", b"x"))
    _assert_refused(body, workspace, "which is a file")


def test_file_over_an_implied_directory_is_refused(workspace: Path) -> None:
    body = _archive(_member("bin/app", b"x"), _member("bin", b"a file"))
    _assert_refused(body, workspace, "both a file and a directory")


def test_directory_with_data_is_refused(workspace: Path) -> None:
    directory = _member("bin", type=tarfile.DIRTYPE, size=5)
    _assert_refused(_archive(directory), workspace, "directory entry with data")


def test_garbage_after_the_last_entry_is_refused(workspace: Path) -> None:
    body = _archive(_member("a", b"x"))
    end = 512 * 2  # header and one data block
    tampered = body[:end] + b"not a tar header".ljust(512, b"!") + body[end + 512 :]
    _assert_refused(tampered, workspace, "unexpected data after the last entry")


def test_truncated_archive_is_refused(workspace: Path) -> None:
    body = _archive(_member("a", b"x" * 2000))
    _assert_refused(body[:1024], workspace, "past the end|not a valid tar")


def test_data_that_is_not_a_tar_is_refused(workspace: Path) -> None:
    _assert_refused(b"PK\x03\x04 this is a zip", workspace, "not a valid tar archive")


def test_compressed_archive_is_refused(workspace: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info, data = _member("a", b"x")
        archive.addfile(info, io.BytesIO(data))
    _assert_refused(buffer.getvalue(), workspace, "not a valid tar archive")


_VALID = _archive(
    _member("bin", type=tarfile.DIRTYPE, mode=0o755),
    _member("bin/app", b"#!/bin/sh\n", mode=0o755),
    _member("app_manifest.json", b"{}"),
)


@settings(max_examples=60, deadline=None)
@given(
    position=st.integers(min_value=0, max_value=len(_VALID) - 1),
    value=st.integers(min_value=0, max_value=255),
    cut=st.integers(min_value=0, max_value=len(_VALID)),
)
def test_damaged_archives_are_refused_or_stay_inside_dest(
    tmp_path_factory: pytest.TempPathFactory, position: int, value: int, cut: int
) -> None:
    workspace = tmp_path_factory.mktemp("fuzz")
    body = bytearray(_VALID)
    body[position] = value
    try:
        unpack_tar(bytes(body[:cut]), workspace / "app", max_total_size=4096, max_entries=10)
    except ArchiveError:
        assert list(workspace.iterdir()) == []
        return
    assert [p.name for p in workspace.iterdir()] == ["app"]
    for path in (workspace / "app").rglob("*"):
        assert path.is_dir() or path.is_file()
        assert not path.is_symlink()
        assert not path.stat().st_mode & (stat.S_ISUID | stat.S_ISGID)


# --- destination ----------------------------------------------------------------------------


def test_existing_non_empty_destination_is_left_alone(app_folder: Path, workspace: Path) -> None:
    dest = workspace / "app"
    dest.mkdir()
    (dest / "keep").write_text("mine")
    with pytest.raises(FileExistsError):
        unpack_tar(pack_directory(app_folder), dest, **LIMITS)
    assert [p.name for p in dest.iterdir()] == ["keep"]
    assert [p.name for p in workspace.iterdir()] == ["app"]


def test_symlinked_destination_is_refused(
    app_folder: Path, workspace: Path, tmp_path: Path
) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    (workspace / "app").symlink_to(target)
    with pytest.raises(FileExistsError):
        unpack_tar(pack_directory(app_folder), workspace / "app", **LIMITS)
    assert list(target.iterdir()) == []


def test_existing_empty_destination_is_filled(app_folder: Path, workspace: Path) -> None:
    dest = workspace / "app"
    dest.mkdir()
    unpack_tar(pack_directory(app_folder), dest, **LIMITS)
    assert (dest / "bin" / "app").is_file()


def test_archive_error_is_a_format_error() -> None:
    assert issubclass(ArchiveError, FormatError)
