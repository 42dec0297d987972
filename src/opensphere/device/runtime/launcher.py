"""The first code of every app process: confine it, then become the app.

The runtime runs this file as a script (``python -I -S launcher.py SPEC``), standard library
only, so that nothing here can be shadowed by the app or the environment, and so that the
runtime itself never forks with threads running ``preexec_fn`` code. In order, it:

1. sets resource limits (lowering hard limits, which the app cannot raise again);
2. with a sandbox: enters new network and mount namespaces (no interface but loopback, so no
   route out), makes a private, read-only ``/run`` that holds only the app's files
   (``/run/app``), applibs (``/run/applibs``) and, if granted, the device certificate folder
   (``/run/deviceauth``); hides ``/tmp``, ``/var/tmp`` and ``/dev/shm`` behind empty read-only
   file systems; exposes the interpreter if a parent folder such as ``/root`` would hide it;
3. drops to the app's own user and group, with no supplementary groups and no way to gain
   privileges again (``PR_SET_NO_NEW_PRIVS``);
4. replaces itself with the interpreter running the app's entry point.

Any failure exits with status 125 and one line on stderr, which lands in the app's log.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import resource
import socket
import stat
import struct
import sys
from typing import Final, NoReturn, TypedDict

LAUNCH_FAILED: Final = 125
APPLIBS_FD: Final = 3  # where the app finds its connection to the runtime
APP_ROOT: Final = "/run/app"
APPLIBS_ROOT: Final = "/run/applibs"
DEVICE_AUTH_ROOT: Final = "/run/deviceauth"
# Writable by everyone on the host: apps get empty read-only ones, so they share nothing.
HIDDEN_FOLDERS: Final = ("/tmp", "/var/tmp", "/dev/shm")  # noqa: S108

_CLONE_NEWNS: Final = 0x00020000
_CLONE_NEWNET: Final = 0x40000000
_MS_RDONLY: Final = 0x1
_MS_NOSUID: Final = 0x2
_MS_NODEV: Final = 0x4
_MS_NOEXEC: Final = 0x8
_MS_REMOUNT: Final = 0x20
_MS_BIND: Final = 0x1000
_MS_REC: Final = 0x4000
_MS_PRIVATE: Final = 0x40000
_PR_SET_NO_NEW_PRIVS: Final = 38
_SIOCGIFFLAGS: Final = 0x8913
_SIOCSIFFLAGS: Final = 0x8914
_IFF_UP: Final = 0x1
_SAFE: Final = _MS_NOSUID | _MS_NODEV
_TMPFS_OPTIONS: Final = b"size=64k,mode=0755"


class Sandbox(TypedDict):
    """Host folders to show the app, and the user it runs as."""

    app_folder: str
    applibs_folder: str
    device_auth_folder: str | None
    python_prefix: str
    uid: int


class LaunchSpec(TypedDict):
    python: str
    argv: list[str]  # the interpreter's arguments: flags, entry point, the app's CmdArgs
    env: dict[str, str]
    cwd: str
    applibs_fd: int
    limits: list[tuple[str, int, int]]  # ("RLIMIT_AS", soft, hard)
    sandbox: Sandbox | None


class LaunchError(Exception):
    pass


def main() -> NoReturn:
    try:
        if sys.argv[1:] == ["--probe"]:
            _enter_namespaces()
            _hide(HIDDEN_FOLDERS[0])
            os._exit(0)
        spec: LaunchSpec = json.loads(sys.argv[1])
        for name, soft, hard in spec["limits"]:
            resource.setrlimit(getattr(resource, name), (soft, hard))
        if spec["applibs_fd"] != APPLIBS_FD:
            os.dup2(spec["applibs_fd"], APPLIBS_FD)
            os.close(spec["applibs_fd"])
        sandbox = spec["sandbox"]
        if sandbox is not None:
            _confine(sandbox)
        os.chdir(spec["cwd"])
        os.execve(spec["python"], [spec["python"], *spec["argv"]], spec["env"])  # noqa: S606
    except (LaunchError, OSError, ValueError, KeyError, IndexError) as exc:
        print(f"opensphere launcher: {exc}", file=sys.stderr, flush=True)
        os._exit(LAUNCH_FAILED)


def _confine(sandbox: Sandbox) -> None:
    _enter_namespaces()
    # Open the folders first: the mounts below may hide the paths they were reached by.
    shown = {
        APP_ROOT: _open_folder(sandbox["app_folder"]),
        APPLIBS_ROOT: _open_folder(sandbox["applibs_folder"]),
    }
    if sandbox["device_auth_folder"] is not None:
        shown[DEVICE_AUTH_ROOT] = _open_folder(sandbox["device_auth_folder"])
    prefix = os.path.realpath(sandbox["python_prefix"])
    prefix_fd = _open_folder(prefix)
    _mount(b"tmpfs", "/run", b"tmpfs", _SAFE | _MS_NOEXEC, _TMPFS_OPTIONS)
    for target, descriptor in shown.items():
        os.mkdir(target, 0o755)
        _bind_read_only(descriptor, target)
    _remount_read_only("/run", _MS_NOEXEC)
    for folder in HIDDEN_FOLDERS:
        _hide(folder)
    hiding = _first_closed_parent(prefix)
    if hiding is not None:
        _mount(b"tmpfs", hiding, b"tmpfs", _SAFE, _TMPFS_OPTIONS)
        os.makedirs(prefix, 0o755, exist_ok=True)
        _bind_read_only(prefix_fd, prefix, executable=True)
        _remount_read_only(hiding, 0)
    for descriptor in (*shown.values(), prefix_fd):
        os.close(descriptor)
    uid = sandbox["uid"]
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    _check(_libc().prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")


def _enter_namespaces() -> None:
    libc = _libc()
    _check(libc.unshare(_CLONE_NEWNS | _CLONE_NEWNET), "unshare(CLONE_NEWNS | CLONE_NEWNET)")
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE, None)
    _loopback_up()


def _loopback_up() -> None:
    """A new network namespace starts with ``lo`` down; the app may talk to itself."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        request = struct.pack("16sH14x", b"lo", 0)
        (flags,) = struct.unpack_from("16xH", fcntl.ioctl(probe, _SIOCGIFFLAGS, request))
        fcntl.ioctl(probe, _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))


def _open_folder(path: str) -> int:
    return os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)


def _bind_read_only(descriptor: int, target: str, *, executable: bool = False) -> None:
    _mount(f"/proc/self/fd/{descriptor}".encode(), target, None, _MS_BIND, None)
    _remount_read_only(target, _MS_BIND | (0 if executable else _MS_NOEXEC))


def _remount_read_only(target: str, extra: int) -> None:
    options = None if extra & _MS_BIND else _TMPFS_OPTIONS
    _mount(None, target, None, _MS_REMOUNT | _MS_RDONLY | _SAFE | extra, options)


def _hide(folder: str) -> None:
    if os.path.isdir(folder):
        flags = _MS_RDONLY | _SAFE | _MS_NOEXEC
        _mount(b"tmpfs", folder, b"tmpfs", flags, b"size=4k,mode=0755")


def _first_closed_parent(path: str) -> str | None:
    """The outermost folder on the way to ``path`` that other users may not enter."""
    current = "/"
    for part in path.strip("/").split("/"):
        current = os.path.join(current, part)
        if not os.stat(current).st_mode & stat.S_IXOTH:
            return current
    return None


def _mount(
    source: bytes | None, target: str, kind: bytes | None, flags: int, data: bytes | None
) -> None:
    result = _libc().mount(source, target.encode(), kind, flags, data)
    _check(result, f"mount {target}")


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise LaunchError(f"{what}: {os.strerror(code)}")


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


if __name__ == "__main__":
    main()
