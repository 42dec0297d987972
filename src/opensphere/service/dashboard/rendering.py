"""Rendering a dashboard template: the Jinja2 environment and the headers every page carries."""

from __future__ import annotations

import datetime as dt
from typing import Any

import jinja2
from fastapi import Request, Response
from fastapi.templating import Jinja2Templates

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _when(moment: dt.datetime | None) -> str:
    return "—" if moment is None else moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("opensphere.service.dashboard", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["when"] = _when
    return environment


templates = Jinja2Templates(env=_environment())


def render(request: Request, template: str, data: dict[str, Any], *, status: int = 200) -> Response:
    return templates.TemplateResponse(
        request, template, data, status_code=status, headers=SECURITY_HEADERS
    )
