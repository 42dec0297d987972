"""Crash dumps kept on the device until uploaded: bounded in size and number.

The emulator's equivalent of a user-mode crash dump: which app, how it ended, the
last lines it wrote (a Python fault prints its traceback there) and its memory
limits. Written only while the device's group allows collection (the agent keeps
that setting in `reporting/config.json`, as the service last said).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

MAX_DUMP_BYTES = 64 * 1024
MAX_DUMPS = 10
DUMPS_FOLDER = Path("crash-dumps")
CONFIG_FILE = Path("reporting", "config.json")


@dataclass(frozen=True, slots=True)
class CrashInfo:
    event_id: uuid.UUID
    component_id: uuid.UUID
    image_id: uuid.UUID
    app_name: str
    time: dt.datetime
    exit_code: int | None
    signal: int | None
    log_tail: str
    memory_limit_bytes: int | None


def dumps_allowed(device_folder: Path) -> bool:
    try:
        return bool(json.loads((device_folder / CONFIG_FILE).read_text())["allow_crash_dumps"])
    except (OSError, ValueError, KeyError, TypeError):
        return False


def set_dumps_allowed(device_folder: Path, allowed: bool) -> None:
    path = device_folder / CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps({"allow_crash_dumps": allowed}))
    os.replace(temporary, path)


def write_dump(device_folder: Path, crash: CrashInfo) -> Path | None:
    """Keep a dump if collection is allowed; the oldest dumps go when there are too many."""
    if not dumps_allowed(device_folder):
        return None
    folder = device_folder / DUMPS_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    document = {
        "version": 1,
        "event_id": str(crash.event_id),
        "component_id": str(crash.component_id),
        "image_id": str(crash.image_id),
        "app_name": crash.app_name,
        "time": crash.time.isoformat(),
        "exit_code": crash.exit_code,
        "signal": crash.signal,
        "memory_limit_bytes": crash.memory_limit_bytes,
        "log_tail": "",
    }
    room = MAX_DUMP_BYTES - len(json.dumps(document).encode()) - 64
    tail = crash.log_tail.encode()[-max(room, 0) :].decode(errors="replace")
    document["log_tail"] = tail
    data = json.dumps(document, indent=1).encode()[:MAX_DUMP_BYTES]
    path = folder / f"{int(crash.time.timestamp()):012d}-{uuid.uuid4().hex}.json"
    temporary = path.with_suffix(".tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    for old in pending_dumps(device_folder)[:-MAX_DUMPS]:
        old.unlink(missing_ok=True)
    return path


def pending_dumps(device_folder: Path) -> list[Path]:
    """Dumps waiting for upload, oldest first."""
    folder = device_folder / DUMPS_FOLDER
    return sorted(folder.glob("*.json")) if folder.is_dir() else []
