"""OS feeds (operator): the OS vendor's signing keys, OS release images, publishing to a feed.

Wired under `sphere os-release` (`add-image`, `publish`) and as `sphere os-image-signer`.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated, Final

import typer

from opensphere.api import schemas
from opensphere.api.schemas import OsFeed
from opensphere.cli.common import ProfileOption, signed_in_client
from opensphere.cli.errors import CliError
from opensphere.cli.output import OutputFormat, OutputOption, emit
from opensphere.client import Client

RELEASE_COLUMNS: Final = ("id", "version", "retail_eval_at", "retail_at")
SIGNER_COLUMNS: Final = ("name", "public_key")

os_image_signer_app = typer.Typer(
    help="Keys OS component images must be signed with (operator).", no_args_is_help=True
)
ReleaseArgument = Annotated[str, typer.Argument(help="OS release version or GUID")]


def _release_id(client: Client, value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        pass
    for release in client.os_releases():
        if release.version == value:
            return release.id
    raise CliError(f"no OS release has version {value!r}: see 'sphere os-release list'")


def add_image(
    release: ReleaseArgument,
    files: Annotated[list[Path], typer.Argument(help="OS component image packages", exists=True)],
    profile: ProfileOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Add OS component images to a release not yet on a feed (operator)."""
    with signed_in_client(profile) as client:
        release_id = _release_id(client, release)
        answer = None
        for path in files:
            answer = client.add_os_image(release_id, path.read_bytes())
    assert answer is not None
    if output == OutputFormat.JSON:
        emit(answer, output, RELEASE_COLUMNS)
        return
    emit(answer.images, output, ("image_id", "image_type", "name", "version", "security_version"))


def publish(
    release: ReleaseArgument,
    feed: Annotated[OsFeed, typer.Option("--feed", help="Retail also reaches RetailEval")],
    profile: ProfileOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Make the release current on a feed; device groups on it are offered it at once."""
    with signed_in_client(profile) as client:
        emit(client.publish_os_release(_release_id(client, release), feed), output, RELEASE_COLUMNS)


@os_image_signer_app.command("show")
def signers_show(profile: ProfileOption = None, output: OutputOption = OutputFormat.TABLE) -> None:
    """The registered OS image signers."""
    with signed_in_client(profile) as client:
        emit(client.os_image_signers().keys, output, SIGNER_COLUMNS)


@os_image_signer_app.command("set")
def signers_set(
    keys: Annotated[
        list[str], typer.Argument(help="NAME=PUBLIC_KEY_PEM_FILE, one per signer; replaces all")
    ],
    profile: ProfileOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Replace the OS image signers (operator)."""
    signers = []
    for item in keys:
        name, _, file_name = item.partition("=")
        if not file_name:
            raise CliError(f"{item!r}: give NAME=PUBLIC_KEY_PEM_FILE")
        try:
            pem = Path(file_name).read_text()
        except OSError as exc:
            raise CliError(f"{file_name}: {exc}") from exc
        signers.append(schemas.OsImageSignerKey(name=name, public_key=pem))
    with signed_in_client(profile) as client:
        answer = client.set_os_image_signers(schemas.OsImageSigners(keys=signers))
    emit(answer.keys, output, SIGNER_COLUMNS)
