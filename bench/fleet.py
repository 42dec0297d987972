"""Fleet simulation throughput and the reconnect storm, against the attestation floor.

One run, per database engine (SQLite; PostgreSQL too with --postgres or
OPENSPHERE_BENCH_POSTGRES_URL):

1. a real `sphere server` pinned to core 0 (bench/error_ingest.py's `_server`);
2. manufacturing N emulated devices (default 10,000; own keys, IDevID, flash each), claimed;
   printed separately: it is set-up, not simulation;
3. the simulator (`opensphere.sim`, pinned to core 1) living `--days` simulated days: daily
   attestation, update checks (app 1.0.0, OS 2.0.0, app 2.0.0 to half the group), crashes,
   reboots, power cuts during updates, offline devices; device-days per second, median of the
   days; then the invariants (every device attested, reached, not bricked, no event lost);
4. the reconnect storm: after a simulated two-day outage every device's certificate has
   expired and all of them attest again at once, `--storm-workers` at a time; attestations per
   second, median of `--storms` storms;
5. the floor: bench/attestation.py's `floor_per_second` (verify evidence + issue a
   certificate in-process, one core), in the same run.

Last line: the storm's attestations per second against the floor.
Run: .venv/bin/python bench/fleet.py [--devices 1000]  (BENCH_SECONDS sets the floor's length)
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

from opensphere.device.packaging import load_signing_key
from opensphere.sim.backend import Backend
from opensphere.sim.plan import SimConfig, make_plan
from opensphere.sim.session import SessionOptions, prepared

sys.path.insert(0, str(Path(__file__).resolve().parent))
# Sibling benchmarks, found through the path set just above (error_ingest adds tests/ itself).
from attestation import CLIENT_CORE, SERVER_CORE, BenchDevice, floor_per_second
from error_ingest import PostgresServer, _server

ROOT = Path(__file__).resolve().parents[1]
TEST_KEY = ROOT / "samples" / "keys" / "test-signing-key.pem"
OUTAGE = dt.timedelta(days=2)


def measure(
    engine: str, folder: Path, database_url: str | None, args: argparse.Namespace
) -> tuple[float, float, float]:
    """Print one engine's figures; return storm/floor, the storm's median rate, the floor."""
    plan = make_plan(SimConfig(devices=args.devices, days=args.days, seed=args.seed))
    port = 18000 + os.getpid() % 10000
    with _server(folder / "data", port, database_url) as url:
        token = (folder / "data" / "operator-token").read_text().strip()
        options = SessionOptions(
            work=folder / "work", app_signer=load_signing_key(TEST_KEY), manufacture_workers=2
        )
        os.sched_setaffinity(0, {SERVER_CORE, CLIENT_CORE})  # manufacturing may use both
        with prepared(plan, Backend(url, token), options) as simulation:
            made = simulation.manufactured_in
            print(
                f"{engine:10} manufacturing: {args.devices} devices in {made:.1f} s "
                f"({1000 * made / args.devices:.1f} ms each, 2 processes, claims included)"
            )
            os.sched_setaffinity(0, {CLIENT_CORE})
            simulation.run()
            per_day = [args.devices / seconds for seconds in simulation.day_seconds]
            print(
                f"{engine:10} simulation: {args.days} days, device-days per s by day "
                f"{', '.join(f'{r:.1f}' for r in per_day)}; median {statistics.median(per_day):.1f}"
            )
            storms = []
            for _ in range(args.storms):
                storm = simulation.reconnect_storm(OUTAGE, workers=args.storm_workers)
                storms.append(storm.per_second)
                print(
                    f"{engine:10} reconnect storm: {storm.attestations} attestations in "
                    f"{storm.seconds:.1f} s = {storm.per_second:.0f} /s"
                )
            began = time.perf_counter()
            summary = simulation.finish()
            print(
                f"{engine:10} invariants: {len(summary.violations)} violations "
                f"({summary.attestations} attestations, {summary.installs} installs, "
                f"{summary.power_cuts} power cuts, {summary.crashes_stored}/"
                f"{summary.crashes_filed} crashes stored; checked in "
                f"{time.perf_counter() - began:.0f} s)"
            )
            for violation in summary.violations[:5]:
                print(f"{engine:10}   {violation}")
            os.sched_setaffinity(0, {SERVER_CORE})
            floor = floor_per_second(BenchDevice(folder / "floor-device", simulation.world.fleet))
            os.sched_setaffinity(0, {SERVER_CORE, CLIENT_CORE})
    storm = statistics.median(storms)
    print(f"{engine:10} floor, one core: {floor:.0f} verify+certificate per s")
    print(f"{engine:10} storm/floor = {storm / floor:.2f}")
    return storm / floor, storm, floor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--storms", type=int, default=3)
    parser.add_argument("--storm-workers", type=int, default=8)
    parser.add_argument("--postgres", action="store_true", help="also on a throwaway PostgreSQL")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    logging.getLogger("opensphere").setLevel(logging.ERROR)
    results = []
    with tempfile.TemporaryDirectory(prefix="opensphere-bench-fleet-") as folder:
        results.append(("sqlite", *measure("sqlite", Path(folder), None, args)))
    postgres_url = os.environ.get("OPENSPHERE_BENCH_POSTGRES_URL")
    if args.postgres or postgres_url:
        postgres = None if postgres_url else PostgresServer(Path(tempfile.mkdtemp()))
        try:
            url = postgres_url or postgres.start()
            with tempfile.TemporaryDirectory(prefix="opensphere-bench-fleet-") as folder:
                results.append(("postgresql", *measure("postgresql", Path(folder), url, args)))
        finally:
            if postgres is not None:
                postgres.stop()
                shutil.rmtree(postgres.base_dir, ignore_errors=True)
    print(
        "reconnect storm vs attestation floor: "
        + ", ".join(
            f"{engine} {storm:.0f}/s vs {floor:.0f}/s = {ratio:.2f}"
            for engine, ratio, storm, floor in results
        )
    )


if __name__ == "__main__":
    main()
