"""Boot time of an emulated device with one app, against the cryptographic floor.

An emulated device gets an OS release of realistic size (three boot-stage images with
filler) and one test-signed app; it boots several times (each boot verifies, measures and
unpacks everything) and the median is taken. Memory: peak Python allocations during one boot
(tracemalloc) and the process's peak RSS.

The floor, measured in the same run over the same bytes: one SHA-256 pass over every image
plus one ECDSA P-256 verification. Secure boot cannot be cheaper than reading and hashing
each byte once and checking one signature; the last line prints the ratio.

    .venv/bin/python bench/boot.py [--stage-mib 2] [--app-kib 256] [--boots 7]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import resource
import statistics
import tempfile
import time
import tracemalloc
import uuid
import warnings
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from opensphere.device.boot import boot_device, confirm_boot
from opensphere.device.emulator import Fleet, create_emulated_device
from opensphere.device.flash import DeviceFlash
from opensphere.device.install import sideload, stage_os_release
from opensphere.device.packaging import load_signing_key, package_application
from opensphere.rot import EmulatedRootOfTrust, EmulatedRootOfTrustWarning

MIB = 1024 * 1024
TEST_KEY = Path(__file__).resolve().parents[1] / "samples" / "keys" / "test-signing-key.pem"


def _make_app(folder: Path, payload_size: int) -> Path:
    (folder / "bin").mkdir(parents=True)
    (folder / "bin" / "app").write_text("#!/bin/sh\nexit 0\n")
    (folder / "bin" / "app").chmod(0o755)
    (folder / "data.bin").write_bytes(hashlib.shake_256(b"bench app").digest(payload_size))
    manifest = {
        "SchemaVersion": 1,
        "Name": "BenchApp",
        "ComponentId": str(uuid.UUID("0b1e2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d")),
        "EntryPoint": "/bin/app",
        "ApplicationType": "Default",
        "Capabilities": {"MutableStorage": {"SizeKB": 8}},
    }
    (folder / "app_manifest.json").write_text(json.dumps(manifest))
    return folder


def _floor_seconds(images: list[bytes], rounds: int) -> float:
    """SHA-256 over every image byte plus one ECDSA verify; the best of ``rounds``."""
    key = ec.generate_private_key(ec.SECP256R1())
    algorithm = ec.ECDSA(Prehashed(hashes.SHA256()))
    signature = key.sign(hashlib.sha256(b"".join(images)).digest(), algorithm)
    public_key = key.public_key()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        digest = hashlib.sha256()
        for data in images:
            digest.update(data)
        public_key.verify(signature, digest.digest(), algorithm)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage-mib", type=float, default=2.0, help="filler per boot stage")
    parser.add_argument("--app-kib", type=int, default=256, help="filler in the app")
    parser.add_argument("--boots", type=int, default=7)
    args = parser.parse_args()
    warnings.simplefilter("ignore", EmulatedRootOfTrustWarning)
    now = dt.datetime.now(dt.UTC)
    seconds = int(now.timestamp())

    with tempfile.TemporaryDirectory(prefix="opensphere-bench-boot-") as temp:
        root = Path(temp)
        fleet = Fleet.create(root / "fleet", now=now)
        create_emulated_device(root / "device", fleet, now=now, development=True)
        flash = DeviceFlash(root / "device")
        rot = EmulatedRootOfTrust.open(root / "device")
        release = fleet.build_os_release(
            version="2.0.0",
            security_version=1,
            build_time=seconds,
            payload_size=int(args.stage_mib * MIB),
        )
        stage_os_release(flash, rot, release)
        confirm_boot(flash, rot, boot_device(flash, rot, now=seconds))
        app = package_application(
            _make_app(root / "app", args.app_kib * 1024),
            signer=load_signing_key(TEST_KEY),
            version="1.0.0",
            security_version=1,
            build_time=seconds,
        )
        sideload(flash, rot, app, now=seconds)
        boot_device(flash, rot, now=seconds)  # first boot: commits fuses once, warms caches

        times = []
        for _ in range(args.boots):
            start = time.perf_counter()
            result = boot_device(flash, rot, now=seconds)
            times.append(time.perf_counter() - start)
        assert len(result.apps) == 1
        assert result.os_version == "2.0.0"

        tracemalloc.start()
        boot_device(flash, rot, now=seconds)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()

        images = [flash.read_keystore_bytes(), *release, app]
        total = sum(len(data) for data in images)
        floor = _floor_seconds(images, rounds=args.boots)

    boot = statistics.median(times)
    mib = total / MIB
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"images verified per boot: {len(images) - 1} + key store, {mib:.2f} MiB")
    print(f"boot (verify + measure + unpack app), median of {args.boots}: {boot * 1000:.1f} ms")
    print(
        f"boot memory: peak Python allocations {peak / MIB:.1f} MiB, "
        f"process peak RSS {rss_mib:.0f} MiB"
    )
    print(f"floor (SHA-256 of the same bytes + 1 ECDSA P-256 verify): {floor * 1000:.2f} ms")
    print(
        f"boot {boot * 1000 / mib:.2f} ms/MiB vs floor {floor * 1000 / mib:.2f} ms/MiB: "
        f"ratio {boot / floor:.1f}x"
    )


if __name__ == "__main__":
    main()
