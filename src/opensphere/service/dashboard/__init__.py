"""The web dashboard: server-rendered, read-only pages over the API, under `/dashboard`.

`install` is the one call `create_app` makes: the pages (kept out of the OpenAPI document,
they are not API) and their static files (CSS), shipped as package data.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from opensphere.service.dashboard import routes, sign_in


def install(app: FastAPI) -> None:
    app.include_router(sign_in.router)
    app.include_router(routes.router)
    app.mount(
        "/dashboard/static",
        StaticFiles(packages=[("opensphere.service.dashboard", "static")]),
        name="dashboard-static",
    )
