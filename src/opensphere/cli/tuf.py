"""`sphere tuf …`: the tenant's update metadata: root rotation to offline keys, static export.

`root rotate` signs on this machine: the key files never reach the service. `export` writes
the repository as plain files (`metadata/`, `targets/`) for a CDN or any static web server,
re-runnable: only new files are written, `timestamp.json` last.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import tempfile
import uuid
from pathlib import Path
from typing import IO, Annotated

import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from securesystemslib.signer import CryptoSigner, SSlibKey

from opensphere.api import schemas
from opensphere.cli.common import ProfileOption, TenantOption, resolve_tenant, signed_in_client
from opensphere.cli.errors import CliError
from opensphere.cli.output import OutputFormat, OutputOption, console, emit
from opensphere.client import Client
from opensphere.updates.repository import RepositoryState, draft_root_rotation
from opensphere.updates.static import export_static

ROOT_COLUMNS = ("version", "expires", "service_signs_root")

tuf_app = typer.Typer(help="The tenant's TUF update metadata.", no_args_is_help=True)
root_app = typer.Typer(help="The TUF root: show, rotate to offline keys.", no_args_is_help=True)
tuf_app.add_typer(root_app, name="root")
KeyFiles = Annotated[
    list[Path],
    typer.Option(help="PEM private key file (ECDSA P-256 or Ed25519); repeat for several"),
]


def _emit_root(root: schemas.TufRoot, output: OutputFormat) -> None:
    """The root JSON only in --output json: in a table it would drown the three fields."""
    if output == OutputFormat.JSON:
        emit(root, output, ROOT_COLUMNS)
    else:
        emit([root], output, ROOT_COLUMNS)


def load_signer(path: Path) -> CryptoSigner:
    """A signer over a PEM private key file (unencrypted)."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise CliError(f"{path}: not a readable unencrypted PEM private key ({exc})") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        raise CliError(f"{path}: TUF root keys here are ECDSA P-256 or Ed25519")
    return CryptoSigner(key, SSlibKey.from_crypto(key.public_key()))


@root_app.command("show")
def root_show(
    tenant: TenantOption = None,
    profile: ProfileOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """The current root's version and expiry, and whether the service still holds a root key."""
    with signed_in_client(profile) as client:
        _emit_root(client.tuf_root(resolve_tenant(client, tenant, profile)), output)


@root_app.command("new-key")
def root_new_key(
    out: Annotated[Path, typer.Option("--out", help="file for the new private key (0600)")],
) -> None:
    """Generate an ECDSA P-256 root key into a file, to keep offline."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise CliError(f"{out} exists; keys are never overwritten") from exc
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    console.print(f"{out}: new root key {SSlibKey.from_crypto(key.public_key()).keyid}")


@root_app.command("rotate")
def root_rotate(
    new_key_file: KeyFiles,
    current_key_file: Annotated[
        list[Path] | None,
        typer.Option(help="current offline root key file, if the service holds none; repeat"),
    ] = None,
    threshold: Annotated[int, typer.Option(min=1, help="signatures the new root needs")] = 1,
    tenant: TenantOption = None,
    profile: ProfileOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Publish a new root signed by new keys, which from then on stay offline (Administrator)."""
    new_signers = [load_signer(path) for path in new_key_file]
    current_signers = [load_signer(path) for path in current_key_file or []]
    with signed_in_client(profile) as client:
        tenant_id = resolve_tenant(client, tenant, profile)
        current = client.tuf_root(tenant_id)
        if not current.service_signs_root and not current_signers:
            raise CliError(
                "the root keys are offline: give the current ones with --current-key-file"
            )
        try:
            draft = draft_root_rotation(
                current.root.encode(),
                new_keys=[signer.public_key for signer in new_signers],
                threshold=threshold,
                now=dt.datetime.now(dt.UTC),
            )
        except ValueError as exc:
            raise CliError(str(exc)) from exc
        for signer in [*new_signers, *current_signers]:
            draft.sign(signer, append=True)
        _emit_root(client.rotate_tuf_root(tenant_id, draft.to_bytes()), output)


def export_repository(client: Client, tenant_id: uuid.UUID, out: Path) -> list[Path]:
    """Write the tenant's repository under `out` as plain files; the files written."""
    state = _state(client.tuf_state(tenant_id))

    def open_blob(sha256: str) -> IO[bytes]:
        spooled = tempfile.TemporaryFile()  # noqa: SIM115
        client.download_tuf_blob(tenant_id, sha256, spooled)
        spooled.seek(0)
        return spooled

    return export_static(state, out, open_blob=open_blob)


def _state(answer: schemas.TufState) -> RepositoryState:
    decode = base64.b64decode
    return RepositoryState(
        roots=tuple(decode(root) for root in answer.roots),
        targets=decode(answer.targets),
        snapshot=decode(answer.snapshot),
        timestamp=decode(answer.timestamp),
        delegated={role: decode(data) for role, data in answer.delegated.items()},
        manifests={role: decode(data) for role, data in answer.manifests.items()},
    )


@tuf_app.command("export")
def tuf_export(
    out: Annotated[Path, typer.Option("--out", help="folder to write metadata/ and targets/ in")],
    tenant: TenantOption = None,
    profile: ProfileOption = None,
) -> None:
    """Write the repository as static files for a CDN or web server (Reader)."""
    with signed_in_client(profile) as client:
        try:
            written = export_repository(client, resolve_tenant(client, tenant, profile), out)
        except ValueError as exc:
            raise CliError(str(exc)) from exc
    console.print(f"{len(written)} file(s) written under {out}", highlight=False)
