"""Application bodies as tar archives: packed deterministically, unpacked without surprises.

An app package's body is untrusted until its signature is checked, and even a correctly signed
body may come from a careless or hostile developer (Azure Sphere's ASXipFS once let an app
image carry device nodes, reference §2.5). So unpacking accepts only what ``pack_directory``
produces: regular files and directories, relative names, no links, no special bits. The whole
archive is checked before the first byte is written, and the result appears at ``dest`` in one
rename, so a refused or failed unpack leaves nothing behind.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Final

from opensphere.formats.errors import FormatError

MAX_NAME_BYTES: Final = 1024
MAX_COMPONENT_BYTES: Final = 255
_FILE_TYPES: Final = (tarfile.REGTYPE, tarfile.AREGTYPE)
_TYPE_NAMES: Final = {
    tarfile.SYMTYPE: "a symbolic link",
    tarfile.LNKTYPE: "a hard link",
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a FIFO",
    tarfile.CONTTYPE: "a contiguous file",
    tarfile.GNUTYPE_SPARSE: "a sparse file",
}
_SPECIAL_BITS: Final = stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX


class ArchiveError(FormatError):
    """An archive (or a folder to pack) holds something unsafe or malformed.

    ``entry`` names the offending member when there is one.
    """

    def __init__(self, message: str, *, entry: str | None = None) -> None:
        self.entry = entry
        super().__init__(f"{entry!r}: {message}" if entry is not None else message)


def pack_directory(folder: Path) -> bytes:
    """Tar an app folder so that the same content always gives the same bytes.

    Names are sorted; times, owners and permissions are normalised (0644, or 0755 for files
    the owner may execute, and for directories). Anything but regular files and directories is
    refused rather than skipped, so nothing the developer expects goes missing silently.
    """
    if not stat.S_ISDIR(os.lstat(folder).st_mode):
        raise ArchiveError(f"{folder} is not a directory")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for relative, path, is_dir in _walk(folder, PurePosixPath()):
            info = tarfile.TarInfo(relative.as_posix())
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if is_dir:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                archive.addfile(info)
                continue
            content, executable = _read_regular_file(path, relative)
            info.size = len(content)
            info.mode = 0o755 if executable else 0o644
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def unpack_tar(body: bytes, dest: Path, *, max_total_size: int, max_entries: int) -> None:
    """Unpack into ``dest`` (absent or an empty directory) only if every entry is acceptable.

    Checks, all before writing: at most ``max_entries`` entries and ``max_total_size`` bytes of
    file content; only regular files and directories; names relative, without ``.``/``..`` or
    empty parts; no setuid, setgid or sticky bits; no duplicate or conflicting names; no data
    past the end of the archive. Extraction then still runs through tarfile's ``data`` filter.
    """
    try:
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:") as archive:
            members = _checked_members(archive, body, max_total_size, max_entries)
            if dest.is_symlink() or (dest.exists() and (not dest.is_dir() or any(dest.iterdir()))):
                raise FileExistsError(f"{dest} exists and is not an empty directory")
            staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=dest.parent))
            try:
                staging.chmod(0o755)  # as packed directories are; mkdtemp makes it 0700
                archive.extractall(staging, members=members, filter="data")
                os.rename(staging, dest)
            except BaseException:
                shutil.rmtree(staging)
                raise
    except tarfile.TarError as exc:
        raise ArchiveError(f"not a valid tar archive: {exc}") from exc


def _check_name(name: str) -> PurePosixPath:
    """Refuse names that could leave the destination or mean different files elsewhere."""
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        raise ArchiveError("name is not valid UTF-8", entry=name) from None
    if not name or len(encoded) > MAX_NAME_BYTES:
        raise ArchiveError(f"name must be 1 to {MAX_NAME_BYTES} bytes", entry=name)
    if name.startswith("/"):
        raise ArchiveError("absolute path", entry=name)
    if "\\" in name or any(ord(char) < 0x20 or ord(char) == 0x7F for char in name):
        raise ArchiveError("name contains a backslash or a control character", entry=name)
    parts = name.split("/")
    if ".." in parts:
        raise ArchiveError("path traversal ('..')", entry=name)
    if any(part in ("", ".") for part in parts):
        raise ArchiveError("empty or '.' path component", entry=name)
    if any(len(part.encode("utf-8")) > MAX_COMPONENT_BYTES for part in parts):
        raise ArchiveError(f"a path component is over {MAX_COMPONENT_BYTES} bytes", entry=name)
    return PurePosixPath(name)


def _walk(folder: Path, prefix: PurePosixPath) -> Iterator[tuple[PurePosixPath, Path, bool]]:
    with os.scandir(folder) as scan:
        entries = sorted(scan, key=lambda entry: entry.name)
    for entry in entries:
        relative = prefix / entry.name
        _check_name(relative.as_posix())
        mode = entry.stat(follow_symlinks=False).st_mode
        if stat.S_ISDIR(mode):
            yield relative, Path(entry.path), True
            yield from _walk(Path(entry.path), relative)
        elif stat.S_ISREG(mode):
            yield relative, Path(entry.path), False
        else:
            raise ArchiveError(
                "only regular files and directories can be packed", entry=relative.as_posix()
            )


def _read_regular_file(path: Path, relative: PurePosixPath) -> tuple[bytes, bool]:
    # O_NOFOLLOW plus fstat: a file swapped for a symlink after the scan is refused, not followed.
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise ArchiveError(f"cannot open: {exc}", entry=relative.as_posix()) from exc
    with os.fdopen(descriptor, "rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise ArchiveError("changed into a non-regular file", entry=relative.as_posix())
        return handle.read(), bool(mode & stat.S_IXUSR)


def _checked_members(
    archive: tarfile.TarFile, body: bytes, max_total_size: int, max_entries: int
) -> list[tarfile.TarInfo]:
    members: list[tarfile.TarInfo] = []
    kinds: dict[PurePosixPath, bool] = {}  # path -> is a directory (explicit or implied)
    explicit: set[PurePosixPath] = set()
    total = 0
    for member in archive:
        if len(members) == max_entries:
            raise ArchiveError(f"more than {max_entries} entries")
        path = _check_name(member.name)
        is_dir = _check_member_type(member)
        if member.mode & _SPECIAL_BITS:
            raise ArchiveError("setuid, setgid or sticky bit set", entry=member.name)
        if member.size > max_total_size:
            raise ArchiveError(
                f"entry of {member.size} bytes exceeds the {max_total_size}-byte limit",
                entry=member.name,
            )
        total += member.size
        if total > max_total_size:
            raise ArchiveError(f"contents exceed the {max_total_size}-byte limit")
        if member.offset_data + member.size > len(body):
            raise ArchiveError("data runs past the end of the archive", entry=member.name)
        _check_placement(path, is_dir, kinds, explicit)
        members.append(member)
    # tarfile stops quietly at a damaged header: only end-of-archive zeros may follow.
    if body[archive.offset :].strip(b"\0"):
        raise ArchiveError(f"unexpected data after the last entry (offset {archive.offset})")
    return members


def _check_member_type(member: tarfile.TarInfo) -> bool:
    if member.type == tarfile.DIRTYPE:
        if member.size:
            raise ArchiveError("directory entry with data", entry=member.name)
        return True
    if member.type in _FILE_TYPES and member.sparse is None:
        return False
    kind = _TYPE_NAMES.get(member.type, f"entry type {member.type!r}")
    raise ArchiveError(
        f"{kind} is not allowed; only regular files and directories", entry=member.name
    )


def _check_placement(
    path: PurePosixPath,
    is_dir: bool,
    kinds: dict[PurePosixPath, bool],
    explicit: set[PurePosixPath],
) -> None:
    if path in explicit:
        raise ArchiveError("duplicate entry", entry=str(path))
    for parent in path.parents[:-1]:
        if kinds.setdefault(parent, True) is False:
            raise ArchiveError(f"inside {str(parent)!r}, which is a file", entry=str(path))
    if kinds.setdefault(path, is_dir) is not is_dir:
        raise ArchiveError("is both a file and a directory", entry=str(path))
    explicit.add(path)
