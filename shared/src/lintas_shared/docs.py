"""Documentation pages served by each service, with every asset from the service itself.

FastAPI's own `/docs` and `/redoc` pages load their script, stylesheet and icon from
public CDNs: on a machine that cannot reach them the page is blank, and where it can,
every reader's address goes to a third party. Here instead:

- `/docs` is Swagger UI from the vendored `swagger-ui-dist` (see
  `static/swagger-ui/README.md`: version, Apache-2.0 licence and notice), its files served
  at `/docs/assets/…`;
- `/docs/asyncapi` renders the service's AsyncAPI document (`/v1/asyncapi.json`) as a
  page of its own, with `lintas_shared.asyncapi.render_html` (no script, no asset);
- both pages carry a Content-Security-Policy that lets them load nothing but from the
  service itself.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from fastapi import FastAPI, HTTPException
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, Response

ASSETS_DIR: Final = Path(__file__).parent / "static" / "swagger-ui"
ASSETS_PATH: Final = "/docs/assets"
ASYNCAPI_PAGE: Final = "/docs/asyncapi"
#: The files a page may ask for, and their types.
ASSETS: Final = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
    "LICENSE": "text/plain; charset=utf-8",
    "NOTICE": "text/plain; charset=utf-8",
}
#: Nothing but the service itself: a page that tried a CDN would fail loudly in a test.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
_HEADERS: Final = {"Content-Security-Policy": CONTENT_SECURITY_POLICY}


def _drop_cdn_pages(app: FastAPI) -> None:
    """Remove FastAPI's own documentation routes (they point at public CDNs)."""
    cdn_paths = {app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url} - {None}
    app.router.routes[:] = [
        route for route in app.router.routes if getattr(route, "path", None) not in cdn_paths
    ]


def install_docs(app: FastAPI, asyncapi: Callable[[], Any] | None = None) -> None:
    """Serve `/docs` (Swagger UI) and, with `asyncapi`, `/docs/asyncapi`, from local
    assets. Nothing is installed on an app without a docs URL (the console's)."""
    if app.docs_url is None or app.openapi_url is None:
        return
    _drop_cdn_pages(app)
    title = app.title
    openapi_url = app.openapi_url

    @app.get(ASSETS_PATH + "/{name}", include_in_schema=False)
    async def docs_asset(name: str) -> Response:
        media_type = ASSETS.get(name)
        if media_type is None:
            raise HTTPException(404, "No such file.")
        return FileResponse(
            ASSETS_DIR / name,
            media_type=media_type,
            headers={"Cache-Control": "public, max-age=86400"},
        )

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{title}: documentation",
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png",
            # No badge from the public validator: nothing leaves the service.
            swagger_ui_parameters={"validatorUrl": None, "tryItOutEnabled": False},
        )
        body = bytes(page.body).decode()
        if asyncapi is not None:
            link = (
                '<p style="font-family:sans-serif;margin:1em 2em">'
                f'Events: <a href="{ASYNCAPI_PAGE}">the AsyncAPI documentation</a> '
                '(<a href="/v1/asyncapi.json">JSON</a>)</p>'
            )
            body = body.replace("<body>", "<body>\n" + link, 1)
        return HTMLResponse(body, headers=_HEADERS)

    if asyncapi is None:
        return
    spec = asyncapi

    @app.get(ASYNCAPI_PAGE, include_in_schema=False)
    async def asyncapi_page() -> HTMLResponse:
        from lintas_shared.asyncapi import render_html

        return HTMLResponse(render_html(spec()), headers=_HEADERS)
