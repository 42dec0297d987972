"""CPU time of one no-change update check: our client against python-tuf's own refresh.

Both clients refresh the same exported repository from the same loopback static server, in the
same run, alternately; the server is another process so `time.process_time` counts the client
alone. Each side has refreshed once before, so every measured check finds nothing new: it loads
and verifies the trusted metadata and fetches only `2.root.json` (absent) and `timestamp.json`.
The goal is a ratio within 1.20. The last line printed is the ratio.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import io
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from securesystemslib.signer import CryptoSigner
from tuf.ngclient import Updater

from opensphere.updates import client
from opensphere.updates.repository import (
    Channel,
    ImageTarget,
    OnlineSigners,
    RepositoryState,
    RootSigners,
    initial_repository,
    publish_targets,
)
from opensphere.updates.static import export_static

IMAGE = b"\x7fimage" * 2048


def build_repository(folder: Path, groups: int) -> RepositoryState:
    """A tenant with `groups` device groups, each deployed two images."""
    now = dt.datetime.now(dt.UTC)
    online = OnlineSigners(*(CryptoSigner.generate_ed25519() for _ in range(4)))
    root = RootSigners(tuple(CryptoSigner.generate_ed25519() for _ in range(2)), threshold=2)
    state = initial_repository(root=root, online=online, now=now)
    target = ImageTarget(
        length=len(IMAGE),
        sha256=hashlib.sha256(IMAGE).hexdigest(),
        image_id=uuid.uuid4(),
        component_id=uuid.uuid4(),
        image_type="Application",
        security_version=1,
    )
    for _ in range(groups):
        deployment = {"app.imagepackage": target, "board.imagepackage": target}
        state = publish_targets(
            state, Channel.group(uuid.uuid4()), deployment, online=online, now=now
        )

    def open_blob(sha256: str) -> IO[bytes]:
        return io.BytesIO(IMAGE)

    export_static(state, folder, open_blob=open_blob)
    return state


@contextmanager
def static_server(folder: Path) -> Iterator[str]:
    """`python -m http.server` on loopback: a plain static server, as a CDN origin would be."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    process = subprocess.Popen(
        [*command, "--directory", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/metadata/"
    finally:
        process.terminate()
        process.wait(timeout=10)


def cpu_time(check: Callable[[], object]) -> float:
    start = time.process_time()
    check()
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repetitions", type=int, default=60)
    parser.add_argument("--groups", type=int, default=20)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-tuf-") as scratch:
        base = Path(scratch)
        state = build_repository(base / "served", args.groups)
        ours, theirs = base / "ours", base / "theirs"
        with static_server(base / "served") as metadata_url:
            client.init_trust(ours, state.roots[0])
            client.init_trust(theirs, state.roots[0])

            def our_check() -> None:
                result = client.refresh(ours, metadata_url)
                assert not result.changed

            def their_check() -> None:
                Updater(str(theirs), metadata_url, bootstrap=None).refresh()

            client.refresh(ours, metadata_url)
            their_check()
            timings: dict[str, list[float]] = {"ours": [], "theirs": []}
            for _ in range(args.repetitions):
                timings["ours"].append(cpu_time(our_check))
                timings["theirs"].append(cpu_time(their_check))

    ours_ms = statistics.median(timings["ours"]) * 1000
    theirs_ms = statistics.median(timings["theirs"]) * 1000
    print(
        f"no-change update check, CPU time (median of {args.repetitions}), "
        f"{args.groups} device groups, loopback static server:"
    )
    print(f"  opensphere.updates.client.refresh  {ours_ms:7.3f} ms")
    print(f"  python-tuf Updater.refresh         {theirs_ms:7.3f} ms")
    print(f"ratio {ours_ms / theirs_ms:.3f} (opensphere / python-tuf, goal <= 1.20)")


if __name__ == "__main__":
    main()
