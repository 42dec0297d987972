"""`sphere login|logout|show-user` and `sphere token …`."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Annotated

import typer

from opensphere.api import schemas
from opensphere.cli.common import ProfileOption, TenantOption, resolve_tenant, signed_in_client
from opensphere.cli.config import Profile, Profiles
from opensphere.cli.errors import CliError
from opensphere.cli.output import OutputFormat, OutputOption, console, emit
from opensphere.client import Client

TOKEN_COLUMNS = ("id", "name", "user_name", "tenant_id", "status", "expires_at")


def _read_token(token_file: Path | None) -> str:
    if token_file is not None:
        try:
            return token_file.read_text().strip()
        except OSError as exc:
            raise CliError(f"cannot read the token file {token_file}: {exc.strerror}") from exc
    if not sys.stdin.isatty():
        return sys.stdin.readline().strip()
    return str(typer.prompt("API token", hide_input=True)).strip()


def login(
    url: Annotated[str, typer.Option(help="the service's URL, e.g. http://127.0.0.1:8443")],
    token_file: Annotated[
        Path | None, typer.Option(help="file holding the API token (else it is read from stdin)")
    ] = None,
    profile: Annotated[str, typer.Option(help="name of this sign-in profile")] = "default",
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Sign in to a service with an API token and remember it in a profile."""
    token = _read_token(token_file)
    with Client(url, token) as client:
        me = client.me()
    profiles = Profiles.load()
    previous = profiles.profiles.get(profile)
    keep_tenant = previous is not None and previous.url == url
    profiles.profiles[profile] = Profile(
        url=url,
        token=token,
        tenant_id=previous.tenant_id if previous and keep_tenant else None,
        tenant_name=previous.tenant_name if previous and keep_tenant else None,
    )
    if len(me.roles) == 1 and profiles.profiles[profile].tenant_id is None:
        profiles.profiles[profile].tenant_id = str(me.roles[0].tenant_id)
        profiles.profiles[profile].tenant_name = me.roles[0].tenant_name
    profiles.current = profile
    profiles.save()
    if output == OutputFormat.JSON:
        emit(me, output, ())
    else:
        console.print(f"Signed in to {url} as [bold]{me.name}[/bold] (profile {profile}).")


def logout(profile: ProfileOption = None) -> None:
    """Forget a sign-in profile (the token stays valid until revoked or expired)."""
    profiles = Profiles.load()
    name = profile or profiles.current
    if name is None or name not in profiles.profiles:
        raise CliError("you are not signed in")
    del profiles.profiles[name]
    if profiles.current == name:
        profiles.current = next(iter(profiles.profiles), None)
    profiles.save()
    console.print(f"Signed out of profile {name}.")


def show_user(profile: ProfileOption = None, output: OutputOption = OutputFormat.TABLE) -> None:
    """Who you are signed in as, and your roles."""
    with signed_in_client(profile) as client:
        me = client.me()
    if output == OutputFormat.JSON:
        emit(me, output, ())
        return
    console.print(f"[bold]{me.name}[/bold]{' (operator)' if me.is_operator else ''}")
    emit(me.roles, output, ("tenant_name", "tenant_id", "role"))


token_app = typer.Typer(help="API tokens: create (shown once), list, revoke.", no_args_is_help=True)


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="what the token is for")],
    expires_in_days: Annotated[int, typer.Option(help="1-730 days")] = 90,
    for_user: Annotated[
        str | None, typer.Option(help="issue it for another user (operator, or Administrator)")
    ] = None,
    tenant_scoped: Annotated[
        bool, typer.Option(help="limit the token to the tenant (--tenant or the selected one)")
    ] = False,
    tenant: TenantOption = None,
    profile: ProfileOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Create an API token. Its secret is printed once; store it now."""
    with signed_in_client(profile) as client:
        scope = (
            resolve_tenant(client, tenant, profile)
            if tenant_scoped or tenant
            else Profiles.load().selected_tenant(profile)
            if for_user
            else None
        )
        created = client.create_token(
            schemas.TokenCreate(
                name=name, expires_in_days=expires_in_days, tenant_id=scope, user=for_user
            )
        )
    if output == OutputFormat.JSON:
        emit(created, output, ())
        return
    emit(created.model_copy(update={"token": "(below)"}), output, ())
    console.print("Token (shown only now):")
    typer.echo(created.token)


@token_app.command("list")
def token_list(
    tenant: Annotated[
        str | None,
        typer.Option("--tenant", "-t", help="list the tokens limited to this tenant instead"),
    ] = None,
    profile: ProfileOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Your tokens, or (Administrator) the tokens limited to a tenant."""
    with signed_in_client(profile) as client:
        if tenant is None:
            tokens = list(client.tokens())
        else:
            tokens = list(client.tenant_tokens(resolve_tenant(client, tenant, profile)))
    emit(tokens, output, TOKEN_COLUMNS)


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[uuid.UUID, typer.Argument(help="the token's id (not its secret)")],
    profile: ProfileOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Revoke a token at once."""
    with signed_in_client(profile) as client:
        emit(client.revoke_token(token_id), output, TOKEN_COLUMNS)
