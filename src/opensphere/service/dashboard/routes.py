"""The dashboard's pages: read-only views over the API's own query functions, as HTML.

Each page signs the caller in from the session cookie (`session.py`), authorizes exactly as
the API does by calling the API's handlers with the same `RequestContext` (a foreign tenant
is "not found", a Reader sees everything), and renders a template. Errors become an HTML
page with the API's status code, never a 500; a missing or stale session goes to sign-in.
"""

from __future__ import annotations

import datetime as dt
import re
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from opensphere.api import error_reports as wire
from opensphere.api import schemas
from opensphere.api.schemas import CaCertificateStatus
from opensphere.service import audit, devices, products, tenants
from opensphere.service.ca import routes as ca_routes
from opensphere.service.context import RequestContext
from opensphere.service.dashboard import charts, views
from opensphere.service.dashboard.rendering import render
from opensphere.service.dashboard.session import signed_in
from opensphere.service.error_reports import routes as error_routes
from opensphere.service.errors import (
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
    ServiceError,
)
from opensphere.service.problems import STATUS_BY_ERROR
from opensphere.service.storage.models import Deployment
from opensphere.service.updates import deployments

router = APIRouter(prefix="/dashboard", include_in_schema=False)

PAGE_SIZE = 50
TREND_DAYS = 14
CA_WARNING = dt.timedelta(days=90)
_DEVICE_ID_RE = re.compile(r"^[0-9a-f]{128}$")
_ACTION_RE = re.compile(r"^[a-z_.-]{1,64}$")


@dataclass(frozen=True, slots=True)
class Page:
    """What every signed-in page knows: the caller, `now`, and the tenant it is about."""

    request: Request
    context: RequestContext
    tenant: schemas.Tenant | None
    several_tenants: bool

    @property
    def base(self) -> str:
        assert self.tenant is not None
        return f"/dashboard/tenants/{self.tenant.id}"

    def link(self, path: str, **query: str | None) -> str:
        """A dashboard URL under the tenant, with the query's non-empty values."""
        kept = {key: value for key, value in query.items() if value}
        suffix = "?" + urllib.parse.urlencode(kept) if kept else ""
        return f"{self.base}{path}{suffix}"


Builder = Callable[[Page], dict[str, Any]]


def _status(error: ServiceError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 400


def _uuid(raw: str | None, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(raw))
    except ValueError:
        raise NotFoundError(f"there is no {what} {str(raw)[:40]!r}", code="not_found") from None


def _optional_uuid(raw: str | None, what: str) -> uuid.UUID | None:
    if not raw:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise InvalidRequestError(
            f"{raw[:40]!r} is not a {what} ID", code="validation_failed"
        ) from None


def _sign_in_redirect(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    query = urllib.parse.urlencode({"next": target})
    return RedirectResponse(f"/dashboard/sign-in?{query}", status_code=303)


def _page(
    request: Request, template: str, build: Builder, *, tenant_id: str | None = None
) -> Response:
    """Sign in from the cookie, resolve the tenant as a Reader, build and render the page."""
    session = request.app.state.storage.read_session()
    try:
        try:
            context = signed_in(request, session)
        except AuthenticationError:
            return _sign_in_redirect(request)
        several = len(tenants.list_tenants(context, limit=2, continuation_token=None).items) > 1
        page = Page(request, context, None, several)
        try:
            if tenant_id is not None:
                tenant = tenants.show_tenant(_uuid(tenant_id, "tenant"), context)
                page = Page(request, context, tenant, several)
            data = build(page)
        except ServiceError as exc:
            data = {"page": page, "error": exc, "section": "error"}
            return render(request, "error.html", data, status=_status(exc))
        return render(request, template, {"page": page, **data})
    finally:
        session.close()


# --- tenants -------------------------------------------------------------------------------


@router.get("/")
def home(request: Request) -> Response:
    """Straight to the caller's tenant when there is one, else the tenant picker."""
    session = request.app.state.storage.read_session()
    try:
        try:
            context = signed_in(request, session)
        except AuthenticationError:
            return _sign_in_redirect(request)
        listed = tenants.list_tenants(context, limit=2, continuation_token=None).items
    finally:
        session.close()
    if len(listed) == 1:
        return RedirectResponse(f"/dashboard/tenants/{listed[0].id}", status_code=303)
    return RedirectResponse("/dashboard/tenants", status_code=303)


@router.get("/tenants")
def tenant_picker(request: Request, after: str | None = None) -> Response:
    def build(page: Page) -> dict[str, Any]:
        listed = tenants.list_tenants(page.context, limit=PAGE_SIZE, continuation_token=after)
        return {"section": "tenants", "tenants": listed}

    return _page(request, "tenants.html", build)


@router.get("/tenants/{tenant_id}")
def overview(request: Request, tenant_id: str) -> Response:
    """Fleet overview: totals, and devices by attestation, OS, update state, product, group."""

    def build(page: Page) -> dict[str, Any]:
        assert page.tenant is not None
        session, now, tid = page.context.session, page.context.now, page.tenant.id
        freshness = views.attestation_freshness(session, tid, now)
        states = views.update_states(session, tid)
        cas = ca_routes.list_ca_certificates(
            tid, page.request, page.context, limit=100, continuation_token=None
        ).items
        active = [ca for ca in cas if ca.status == CaCertificateStatus.ACTIVE]
        trend = views.daily_events(session, tid, now, TREND_DAYS)
        return {
            "section": "overview",
            "totals": views.fleet_totals(session, tid),
            "fresh": freshness[2].value,
            "failed_updates": next(d.value for d in states if d.label == "failed"),
            "ca": min(active, key=lambda ca: ca.not_after) if active else None,
            "charts": [
                charts.horizontal_bars("Devices by last attestation", freshness),
                charts.horizontal_bars(
                    "Devices by OS version", views.devices_by_os_version(session, tid)
                ),
                charts.horizontal_bars("Devices by update state", states),
                charts.horizontal_bars(
                    "Devices by product", views.devices_by_product(session, tid)
                ),
                charts.horizontal_bars(
                    "Largest device groups",
                    views.devices_by_group(session, tid, f"{page.base}/device-groups/"),
                ),
                _trend_chart("Error events per day, last 14 days", trend),
            ],
        }

    return _page(request, "overview.html", build, tenant_id=tenant_id)


def _trend_chart(title: str, trend: list[Any]) -> charts.Chart:
    return charts.columns(
        title,
        [charts.Datum(day.day.strftime("%m-%d"), day.count, "failed") for day in trend],
    )


# --- devices --------------------------------------------------------------------------------


@router.get("/tenants/{tenant_id}/devices")
def device_list(
    request: Request, tenant_id: str, group: str | None = None, after: str | None = None
) -> Response:
    """The tenant's devices, a page at a time, optionally those of one device group."""

    def build(page: Page) -> dict[str, Any]:
        assert page.tenant is not None
        session, tid = page.context.session, page.tenant.id
        group_id = _optional_uuid(group, "device group")
        listed = devices.list_devices(
            tid,
            page.context,
            limit=PAGE_SIZE,
            continuation_token=after,
            device_group_id=group_id,
            product_id=None,
            enabled=None,
        )
        groups = products.list_device_groups(
            tid, page.context, limit=1000, continuation_token=None, product_id=None, name=None
        ).items
        ids = [device.device_id for device in listed.items]
        return {
            "section": "devices",
            "devices": listed,
            "group_id": group_id,
            "groups": groups,
            "labels": views.group_labels(session, [g.id for g in groups]),
            "states": views.update_states_of(session, ids),
            "next": None
            if listed.continuation_token is None
            else page.link(
                "/devices",
                group=None if group_id is None else str(group_id),
                after=listed.continuation_token,
            ),
        }

    return _page(request, "devices.html", build, tenant_id=tenant_id)


@router.get("/tenants/{tenant_id}/devices/{device_id}")
def device_page(request: Request, tenant_id: str, device_id: str) -> Response:
    """One device: identity, attestation and certificate, update state and images, events."""

    def build(page: Page) -> dict[str, Any]:
        assert page.tenant is not None
        session, tid = page.context.session, page.tenant.id
        if not _DEVICE_ID_RE.fullmatch(device_id):
            raise NotFoundError("there is no such device in this tenant", code="device_not_found")
        device = devices.show_device(tid, device_id, page.context)
        status = device.update_status
        images = views.images_by_id(session, tid, status.installed_images if status else [])
        deployment = (
            None
            if status is None or status.deployment_id is None
            else session.get(Deployment, status.deployment_id)
        )
        cas = ca_routes.list_ca_certificates(
            tid, page.request, page.context, limit=100, continuation_token=None
        ).items
        events = cast(
            schemas.Page[wire.ErrorReportRow],
            error_routes.error_report(
                tid,
                page.context,
                format=wire.ReportFormat.JSON,
                product_id=None,
                device_group_id=None,
                device_id=device_id,
                component_id=None,
                since=None,
                until=None,
                limit=20,
                continuation_token=None,
            ),
        )
        return {
            "section": "devices",
            "device": device,
            "group_label": views.group_labels(session, [device.device_group_id]).get(
                device.device_group_id or uuid.UUID(int=0)
            ),
            "status": status,
            "images": images,
            "deployment": deployment if deployment and deployment.tenant_id == tid else None,
            "issuers": [ca for ca in cas if ca.status == CaCertificateStatus.ACTIVE],
            "events": events.items,
            "certificate_valid": device.certificate_expires_at is not None
            and device.certificate_expires_at > page.context.now,
        }

    return _page(request, "device.html", build, tenant_id=tenant_id)


# --- device groups and deployments ------------------------------------------------------------


@router.get("/tenants/{tenant_id}/device-groups")
def group_list(request: Request, tenant_id: str, after: str | None = None) -> Response:
    """Every device group with its device count and current deployment."""

    def build(page: Page) -> dict[str, Any]:
        assert page.tenant is not None
        session, tid = page.context.session, page.tenant.id
        listed = products.list_device_groups(
            tid, page.context, limit=PAGE_SIZE, continuation_token=after, product_id=None, name=None
        )
        ids = [group.id for group in listed.items]
        return {
            "section": "groups",
            "groups": listed,
            "labels": views.group_labels(session, ids),
            "counts": views.group_device_counts(session, ids),
            "current": views.current_deployments(session, ids),
            "next": None
            if listed.continuation_token is None
            else page.link("/device-groups", after=listed.continuation_token),
        }

    return _page(request, "groups.html", build, tenant_id=tenant_id)


def _rollout(page: Page, deployment: schemas.Deployment, in_group: int) -> dict[str, Any]:
    """The rollout picture: devices per reported state, and those yet to report."""
    data = views.state_data(deployment.status_counts)
    reported = sum(datum.value for datum in data)
    waiting = charts.Datum("not reported yet", max(in_group - reported, 0), "neutral")
    installed = deployment.status_counts.get(schemas.UpdateState.INSTALLED, 0)
    return {
        "deployment": deployment,
        "chart": charts.horizontal_bars("Rollout progress by update state", [*data, waiting]),
        "installed": installed,
        "in_group": in_group,
        "images": views.images_by_id(
            page.context.session, deployment.tenant_id, deployment.image_ids
        ),
    }


@router.get("/tenants/{tenant_id}/device-groups/{group_id}")
def group_page(
    request: Request, tenant_id: str, group_id: str, after: str | None = None
) -> Response:
    """A device group: its settings, its current deployment's rollout, and its history."""

    def build(page: Page) -> dict[str, Any]:
        assert page.tenant is not None
        session, tid = page.context.session, page.tenant.id
        group = products.show_device_group(tid, _uuid(group_id, "device group"), page.context)
        in_group = views.group_device_counts(session, [group.id]).get(group.id, 0)
        history = deployments.list_deployments(
            tid, group.id, page.context, limit=PAGE_SIZE, continuation_token=after
        )
        return {
            "section": "groups",
            "group": group,
            "label": views.group_labels(session, [group.id]).get(group.id, group.name),
            "in_group": in_group,
            "rollout": None
            if group.deployment is None
            else _rollout(page, group.deployment, in_group),
            "history": history,
            "next": None
            if history.continuation_token is None
            else page.link(f"/device-groups/{group.id}", after=history.continuation_token),
        }

    return _page(request, "group.html", build, tenant_id=tenant_id)


@router.get("/tenants/{tenant_id}/device-groups/{group_id}/deployments/{deployment_id}")
def deployment_page(
    request: Request, tenant_id: str, group_id: str, deployment_id: str
) -> Response:
    """One deployment: its images, its state, its rollout by update state, its failures."""

    def build(page: Page) -> dict[str, Any]:
        assert page.tenant is not None
        session, tid = page.context.session, page.tenant.id
        gid = _uuid(group_id, "device group")
        deployment = deployments.show_deployment(
            tid, gid, _uuid(deployment_id, "deployment"), page.context
        )
        in_group = views.group_device_counts(session, [gid]).get(gid, 0)
        return {
            "section": "groups",
            "label": views.group_labels(session, [gid]).get(gid, str(gid)),
            "group_id": gid,
            "failed": views.failed_devices(session, deployment.id),
            "rollout": _rollout(page, deployment, in_group),
        }

    return _page(request, "deployment.html", build, tenant_id=tenant_id)


# --- error reports ------------------------------------------------------------------------------


@router.get("/tenants/{tenant_id}/errors")
def errors_page(request: Request, tenant_id: str, after: str | None = None) -> Response:
    """Error trends: events per day and per category, the biggest problems, all problems."""

    def build(page: Page) -> dict[str, Any]:
        assert page.tenant is not None
        session, now, tid = page.context.session, page.context.now, page.tenant.id
        listed = error_routes.list_problems(
            tid, page.context, limit=PAGE_SIZE, continuation_token=after
        )
        since = now - dt.timedelta(days=TREND_DAYS)
        return {
            "section": "errors",
            "problems": listed,
            "charts": [
                _trend_chart(
                    "Error events per day, last 14 days",
                    views.daily_events(session, tid, now, TREND_DAYS),
                ),
                charts.horizontal_bars(
                    "Error events by category, last 14 days",
                    views.events_by_category(session, tid, since),
                    unit="events",
                ),
                charts.horizontal_bars(
                    "Problems with the most events",
                    views.top_problems(session, tid, f"{page.base}/problems/"),
                    unit="events",
                ),
            ],
            "next": None
            if listed.continuation_token is None
            else page.link("/errors", after=listed.continuation_token),
        }

    return _page(request, "errors.html", build, tenant_id=tenant_id)


@router.get("/tenants/{tenant_id}/problems/{problem_id}")
def problem_page(request: Request, tenant_id: str, problem_id: str) -> Response:
    def build(page: Page) -> dict[str, Any]:
        assert page.tenant is not None
        problem = error_routes.show_problem(
            page.tenant.id, _uuid(problem_id, "problem"), page.context
        )
        return {
            "section": "errors",
            "problem": problem,
            "trend": _trend_chart("Events of this problem per day, last 14 days", problem.trend),
        }

    return _page(request, "problem.html", build, tenant_id=tenant_id)


# --- CA certificates and audit ---------------------------------------------------------------


@router.get("/tenants/{tenant_id}/ca-certificates")
def ca_page(request: Request, tenant_id: str) -> Response:
    """The tenant's CA generations with their status and how long each has left."""

    def build(page: Page) -> dict[str, Any]:
        assert page.tenant is not None
        cas = ca_routes.list_ca_certificates(
            page.tenant.id, page.request, page.context, limit=100, continuation_token=None
        ).items
        now = page.context.now
        return {
            "section": "ca",
            "cas": [(ca, (ca.not_after - now).days, ca.not_after - now < CA_WARNING) for ca in cas],
        }

    return _page(request, "ca.html", build, tenant_id=tenant_id)


@router.get("/tenants/{tenant_id}/audit")
def audit_page(
    request: Request, tenant_id: str, action: str | None = None, after: str | None = None
) -> Response:
    """The tenant's audit log, newest first, optionally one action."""

    def build(page: Page) -> dict[str, Any]:
        assert page.tenant is not None
        if action and not _ACTION_RE.fullmatch(action):
            raise InvalidRequestError(
                "an action is lowercase letters, '.', '_' or '-', e.g. product.create",
                code="validation_failed",
            )
        listed = audit.list_tenant_audit(
            page.tenant.id,
            page.context,
            limit=PAGE_SIZE,
            continuation_token=after,
            action=action or None,
            since=None,
            until=None,
        )
        return {
            "section": "audit",
            "events": listed,
            "action": action or "",
            "next": None
            if listed.continuation_token is None
            else page.link("/audit", action=action, after=listed.continuation_token),
        }

    return _page(request, "audit.html", build, tenant_id=tenant_id)
