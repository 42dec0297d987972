"""The `sphere` command: one tree, one-line errors, non-zero exit codes."""

from __future__ import annotations

import sys

import typer
from pydantic import ValidationError
from rich.markup import escape

from opensphere.cli import (
    account,
    agent,
    apps,
    ca,
    deployments,
    device_emulator,
    device_os,
    device_reporting,
    devices,
    error_reports,
    images,
    manufacturer,
    operator,
    os_feeds,
    os_releases,
    products,
    server,
    simulate,
    tenants,
    tpm,
    tuf,
)
from opensphere.cli.errors import CliError
from opensphere.cli.output import err_console
from opensphere.client import ClientError

app = typer.Typer(
    name="sphere",
    help="OpenSphere: manage a fleet's tenants, products, device groups and the service.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("server")(server.server)
app.command("login")(account.login)
app.command("logout")(account.logout)
app.command("show-user")(account.show_user)
app.add_typer(tenants.tenant_app, name="tenant")
app.add_typer(tenants.role_app, name="role")
app.add_typer(account.token_app, name="token")
app.add_typer(products.product_app, name="product")
app.add_typer(products.group_app, name="device-group")
app.add_typer(tenants.audit_app, name="audit")
app.add_typer(manufacturer.manufacturer_app, name="manufacturer")
app.add_typer(tpm.tpm_manufacturer_app, name="tpm-manufacturer")
app.add_typer(devices.device_app, name="device")
app.add_typer(ca.ca_app, name="ca-certificate")
app.add_typer(os_releases.os_release_app, name="os-release")
app.add_typer(os_releases.security_version_app, name="security-version")
os_releases.os_release_app.command("add-image")(os_feeds.add_image)
os_releases.os_release_app.command("publish")(os_feeds.publish)
app.add_typer(os_feeds.os_image_signer_app, name="os-image-signer")
app.add_typer(images.image_app, name="image")
products.group_app.add_typer(deployments.deployment_app, name="deployment")
app.add_typer(tuf.tuf_app, name="tuf")
device_emulator.device_emulator_app.command("create")(device_os.create)
device_emulator.device_emulator_app.command("boot")(device_os.boot)
device_emulator.device_emulator_app.command("report")(device_reporting.report)
app.add_typer(device_emulator.device_emulator_app, name="device-emulator")
tenants.tenant_app.command("download-error-report")(error_reports.download_error_report)
tenants.tenant_app.command("error-report-settings")(error_reports.error_report_settings)
app.add_typer(error_reports.problem_app, name="problem")
devices.device_app.add_typer(error_reports.crash_dump_app, name="crash-dump")
devices.device_app.add_typer(device_os.sideload_app, name="sideload")
devices.device_app.add_typer(device_os.image_app, name="image")
device_os.capability_app.command("download")(devices.capability_download)
devices.device_app.add_typer(device_os.capability_app, name="capability")
app.add_typer(operator.operator_app, name="operator")
app.add_typer(device_os.image_package_app, name="image-package")
app.add_typer(apps.app_app, name="app")
app.add_typer(agent.agent_app, name="agent")
app.command("simulate")(simulate.simulate)


def main() -> None:
    try:
        app()
    except (CliError, ClientError) as exc:
        _fail(str(exc))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'value'}: {error['msg']}"
            for error in exc.errors()
        )
        _fail(f"the request is not valid: {problems}")


def _fail(message: str) -> None:
    err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(1)
