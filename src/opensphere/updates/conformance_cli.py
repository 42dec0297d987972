"""`sphere-tuf-client`: the device's TUF client behind tuf-conformance's client-under-test CLI.

    sphere-tuf-client --metadata-dir D init ROOT_FILE
    sphere-tuf-client --metadata-dir D --metadata-url U refresh
    sphere-tuf-client --metadata-dir D --metadata-url U --target-name T \\
        --target-base-url B --target-dir TD download

Exit code 0 on full success and 1 otherwise, as the suite's CLIENT-CLI.md requires: a usage
error is a failure too. It runs the same `opensphere.updates.client` code as the device, so the
conformance suite and our attack tests exercise what ships.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from opensphere.updates import client

PROG = "sphere-tuf-client"


def _init(args: argparse.Namespace) -> None:
    client.init_trust(Path(args.metadata_dir), Path(args.root_file).read_bytes())


def _refresh(args: argparse.Namespace) -> None:
    client.refresh(Path(args.metadata_dir), _required(args, "metadata_url"))


def _download(args: argparse.Namespace) -> None:
    client.download_target(
        Path(args.metadata_dir),
        _required(args, "metadata_url"),
        _required(args, "target_name"),
        _required(args, "target_base_url"),
        Path(_required(args, "target_dir")),
    )


def _required(args: argparse.Namespace, name: str) -> str:
    value = getattr(args, name)
    if not value:
        raise _UsageError(f"{args.command} needs --{name.replace('_', '-')}")
    return str(value)


class _UsageError(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="TUF client (tuf-conformance CLI).")
    parser.add_argument("--metadata-dir", required=True, help="trusted metadata folder")
    parser.add_argument("--metadata-url", help="base URL of the repository's metadata")
    parser.add_argument("--target-name", help="TUF target path to download")
    parser.add_argument("--target-base-url", help="base URL of the repository's targets")
    parser.add_argument("--target-dir", help="folder for downloaded, verified targets")
    commands = parser.add_subparsers(dest="command", required=True)
    init = commands.add_parser("init", help="trust ROOT_FILE (no network)")
    init.add_argument("root_file", metavar="ROOT_FILE")
    init.set_defaults(run=_init)
    commands.add_parser("refresh", help="update the top-level metadata").set_defaults(run=_refresh)
    commands.add_parser("download", help="fetch one target").set_defaults(run=_download)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return 0 if exc.code in (0, None) else 1
    run: Callable[[argparse.Namespace], None] = args.run
    try:
        run(args)
    except (client.UpdateClientError, _UsageError, OSError) as exc:
        print(f"{PROG}: {args.command} failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
