"""HTTP conventions shared by every service's FastAPI app.

- Errors are RFC 9457 problem details (`application/problem+json`); validation errors
  carry an `errors` list naming each bad field by its path.
- `/healthz` says the process is alive; `/readyz` says its dependencies answer (and its
  consumers have partitions); `/metrics` is the Prometheus exposition.
- Each request gets a correlation id (`X-Request-ID`), bound into every log line, and a
  server span (joining the caller's W3C `traceparent`, if any) whose trace id is in
  every log line too; it is counted by route template, never by raw path.
- OPTIONS answers 204 with `Allow` naming every method of the resource, and so does a
  405 (Starlette's names only the first route's).
- `/docs` (Swagger UI) and `/docs/asyncapi` are served with their assets from the
  service itself (`lintas_shared.docs`).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Final

import fastapi.routing
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.telemetry import TelemetryConfig
from opentelemetry.trace import SpanKind
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lintas_shared import metrics
from lintas_shared.docs import install_docs
from lintas_shared.http_guard import HttpLimits, RequestGuard
from lintas_shared.logging import get_logger, log_context
from lintas_shared.person_tokens import PersonTokenVerifier
from lintas_shared.problems import PROBLEM_JSON, FieldError, Problem, problem_response
from lintas_shared.tracing import TRACEPARENT_HEADER, context_from_traceparent, tracer

ReadinessCheck = Callable[[], Awaitable[bool]]
#: Probed by machines every few seconds: counted, but neither traced nor logged.
OPERATIONS_ROUTES: Final = frozenset({"/healthz", "/readyz", "/metrics"})
#: Path parameters worth a place in the log context (ids, never personal data).
_LOGGED_PATH_IDS: Final = ("case_id", "referral_id")
_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

#: Pass as `FastAPI(telemetry=...)`: FastAPI's own OpenTelemetry spans would put the raw
#: path and query string (free text such as an audit reason) on every span, and double
#: ours; `install_conventions` traces each request with the route template only.
NATIVE_TELEMETRY_OFF: Final[TelemetryConfig] = {"tracing": False, "metrics": False, "logs": False}

log = get_logger(__name__)

__all__ = [
    "NATIVE_TELEMETRY_OFF",
    "PROBLEM_JSON",
    "FieldError",
    "Problem",
    "ReadinessCheck",
    "install_conventions",
    "problem_response",
    "validation_errors",
]


def field_path(loc: Sequence[str | int]) -> str:
    """'worker.phone' for FastAPI's ('body', 'worker', 'phone')."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<body>"


def validation_errors(errors: Sequence[Any]) -> list[FieldError]:
    """Turn pydantic/FastAPI error dicts into named field errors (never echoing input)."""
    result = []
    for err in errors:
        message = str(err.get("msg", "invalid"))
        if err.get("type") == "extra_forbidden":
            message = "unknown field"
        result.append(
            FieldError(
                field=field_path(err.get("loc", ())),
                message=message,
                type=str(err.get("type", "value_error")),
            )
        )
    return result


async def _on_validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return problem_response(
        422,
        "Invalid request",
        "One or more fields are invalid.",
        errors=validation_errors(exc.errors()),
    )


async def _on_http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else None
    return problem_response(exc.status_code, _title(exc.status_code), detail, headers=exc.headers)


def _title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class RouteTemplates:
    """Finds the template of the route a path goes to (`/v1/cases/{case_id}`), before
    the router runs, so that metrics, the span name and the log context can use it.

    Built from FastAPI's flattened view of included routers when it offers one (from
    0.165 an included router is one opaque entry in `app.router.routes`), else from the
    routes themselves; rebuilt when routes are added.
    """

    def __init__(self, app: FastAPI) -> None:
        self._app = app
        self._built_for = -1
        self._routes: list[tuple[str, re.Pattern[str], frozenset[str] | None]] = []

    def _build(self) -> None:
        flatten = getattr(fastapi.routing, "iter_route_contexts", None)
        routes: Iterable[Any] = (
            flatten(self._app.router.routes) if flatten else self._app.router.routes
        )
        compiled = []
        for route in routes:
            template = getattr(route, "path_format", None) or getattr(route, "path", None)
            if not isinstance(template, str):
                continue
            methods = getattr(route, "methods", None)
            regex, _format, _convertors = compile_path(template)
            compiled.append((template, regex, frozenset(methods) if methods else None))
        self._routes = compiled
        self._built_for = len(self._app.router.routes)

    def match(self, method: str, path: str) -> tuple[str, dict[str, str]]:
        """The route template and path parameters; `<unmatched>` when no route matches
        (a raw path could hold anything). A path known for another method gives its
        template (the 405 is still that route's)."""
        if self._built_for != len(self._app.router.routes):
            self._build()
        other_method: tuple[str, dict[str, str]] | None = None
        for template, regex, methods in self._routes:
            found = regex.match(path)
            if found is None:
                continue
            if methods is None or method in methods:
                return template, found.groupdict()
            other_method = other_method or (template, found.groupdict())
        return other_method or (metrics.UNMATCHED_ROUTE, {})

    def allowed(self, path: str) -> frozenset[str] | None:
        """Every method of the resource at `path` (with OPTIONS, and HEAD where GET is),
        or None when no route has this path: what `Allow` lists (RFC 9110). Where a
        fixed path and a template both match (`/v1/cases/batch`, `/v1/cases/{case_id}`),
        the resource is the one with the fewest parameters."""
        if self._built_for != len(self._app.router.routes):
            self._build()
        by_parameters: dict[int, set[str]] = {}
        for _template, regex, methods in self._routes:
            if methods is not None and regex.match(path) is not None:
                by_parameters.setdefault(len(regex.groupindex), set()).update(methods)
        found = by_parameters[min(by_parameters)] if by_parameters else set()
        if not found:
            return None
        if "GET" in found:
            found.add("HEAD")
        return frozenset(found | {"OPTIONS"})


def _ids_of(params: Mapping[str, Any]) -> dict[str, str]:
    return {k: str(params[k]) for k in _LOGGED_PATH_IDS if k in params}


def _created_ids(routes: RouteTemplates, status: int, location: str | None) -> dict[str, str]:
    """The ids in a 201's Location (`/v1/cases/{case_id}`): the case a POST created."""
    if status != 201 or not location or not location.startswith("/"):
        return {}
    return _ids_of(routes.match("GET", location.split("?")[0])[1])


class ObserveRequests:
    """Gives each request its id (`X-Request-ID`, bound into the log context), a server
    span, a log line, metrics by route template, and the `Allow` header of OPTIONS and
    405 answers.

    A plain ASGI middleware: Starlette's `BaseHTTPMiddleware` (`@app.middleware`) runs
    the app in a task of its own and streams each response through a memory channel,
    work for every request that intake's profile showed under load.
    """

    def __init__(self, app: ASGIApp, routes: RouteTemplates) -> None:
        self._app = app
        self._routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        rid = (headers.get("x-request-id") or str(uuid.uuid4()))[:64]
        method = scope["method"] if scope["method"] in _METHODS else "OTHER"
        allowed = self._routes.allowed(scope["path"])
        if scope["method"] == "OPTIONS" and allowed is not None:
            # What this resource supports, for every route that shares its path.
            answer = Response(
                status_code=204, headers={"Allow": _allow(allowed), "X-Request-ID": rid}
            )
            await answer(scope, receive, send)
            return
        route, params = self._routes.match(scope["method"], scope["path"])
        started = time.perf_counter()
        answered: dict[str, Any] = {"status": 500}  # unless a response says otherwise

        async def send_marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                answered["status"] = message["status"]
                marked = MutableHeaders(scope=message)
                marked["X-Request-ID"] = rid
                if message["status"] == 405 and allowed is not None:
                    # Starlette names only the first matching route's methods.
                    marked["Allow"] = _allow(allowed)
                answered["location"] = marked.get("location")
            await send(message)

        try:
            if route in OPERATIONS_ROUTES:
                await self._app(scope, receive, send_marked)
                return
            ids = _ids_of(params)
            with (
                log_context(request_id=rid, **ids),
                tracer().start_as_current_span(
                    f"{method} {route}",
                    context=context_from_traceparent(headers.get(TRACEPARENT_HEADER)),
                    kind=SpanKind.SERVER,
                    attributes={"http.request.method": method, "http.route": route},
                ) as span,
            ):
                await self._app(scope, receive, send_marked)
                status = answered["status"]
                span.set_attribute("http.response.status_code", status)
                ids |= _created_ids(self._routes, status, answered.get("location"))
                # Only an id the service accepted: a refused path may hold anything,
                # and span attributes, unlike log lines, are not redacted.
                if "case_id" in ids and status < 400:
                    span.set_attribute("lintas.case_id", ids["case_id"])
                # A flood refused by the rate limit would flood the log too: those
                # are counted in the metrics and logged only at debug level.
                (log.debug if status == 429 else log.info)(
                    "request handled",
                    method=method,
                    route=route,
                    status=status,
                    duration_ms=round((time.perf_counter() - started) * 1000, 1),
                    **ids,
                )
        finally:
            status_text = str(answered["status"])
            metrics.HTTP_REQUESTS.labels(method, route, status_text).inc()
            metrics.HTTP_DURATION.labels(method, route).observe(time.perf_counter() - started)


#: What the request guard may answer instead of the route, by whether a body is sent.
_GUARD_REFUSALS: Final = {
    "429": "Too many requests from this key; retry after `Retry-After` seconds",
}
_GUARD_BODY_REFUSALS: Final = {
    "400": "JSON nested deeper than the limit",
    "408": "The body did not arrive in time",
    "413": "The body is larger than the limit",
}
_PROBLEM_REF: Final = "#/components/schemas/Problem"


def document_problems(schema: dict[str, Any]) -> dict[str, Any]:
    """Make an OpenAPI document say what the service really answers on errors: every
    error is `application/problem+json` (FastAPI would document `application/json`, and
    its own shape for 422), and every API operation may get the guard's refusals."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    if "Problem" not in components:
        problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(problem.pop("$defs", {}))
        components["Problem"] = problem
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    problem_content = {PROBLEM_JSON: {"schema": {"$ref": _PROBLEM_REF}}}
    for path, operations in schema.get("paths", {}).items():
        if path in OPERATIONS_ROUTES:  # /readyz's 503 is its own JSON, not a problem
            continue
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if "428" in responses:  # the handler answers 428 without it: it is required
                for parameter in operation.get("parameters", ()):
                    if parameter.get("in") == "header" and parameter["name"] == "if-match":
                        parameter["required"] = True
                        schema_ = parameter["schema"]
                        for alternative in schema_.pop("anyOf", ()):
                            if alternative.get("type") == "string":
                                schema_.update(alternative)
            for status, response in responses.items():
                if status.startswith(("4", "5")):
                    response["content"] = problem_content
            refusals = dict(_GUARD_REFUSALS)
            if "requestBody" in operation:
                refusals |= _GUARD_BODY_REFUSALS
            for status, description in refusals.items():
                responses.setdefault(
                    status, {"description": description, "content": problem_content}
                )
    return schema


def install_conventions(
    app: FastAPI,
    readiness: Mapping[str, ReadinessCheck],
    limits: HttpLimits,
    asyncapi: Callable[[], Any] | None = None,
    person_tokens: PersonTokenVerifier | None = None,
) -> None:
    """Add problem-details errors, request ids, the request guard (rate, size, slow
    bodies, nesting; see `lintas_shared.http_guard`), health, readiness, metrics, tracing
    and AsyncAPI. With `person_tokens`, the guard limits a person token's requests per
    person."""
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    routes = RouteTemplates(app)

    build_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_problems(build_openapi())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    # Added before `observe`, so inside it: the guard's refusals are counted and logged.
    app.add_middleware(
        RequestGuard,
        limits=limits,
        exempt_paths=OPERATIONS_ROUTES,
        person_tokens=person_tokens,
    )

    app.add_middleware(ObserveRequests, routes=routes)

    @app.get("/healthz", tags=["operations"], summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}, "description": "Exposition format"}},
    )
    async def prometheus_metrics() -> Response:
        return Response(await metrics.render(), media_type=metrics.CONTENT_TYPE)

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="Kafka and the store answer; the consumers have partitions",
        responses={503: {"description": "A dependency does not answer"}},
    )
    async def readyz() -> Response:
        checks = {name: await check() for name, check in readiness.items()}
        ok = all(checks.values())
        return JSONResponse(
            {"status": "ready" if ok else "not ready", "checks": checks},
            status_code=200 if ok else 503,
        )

    if asyncapi is not None:
        spec = asyncapi

        @app.get(
            "/v1/asyncapi.json",
            tags=["documentation"],
            summary="AsyncAPI 3.0 document of this service's events",
        )
        async def asyncapi_document() -> Any:
            return spec()

    install_docs(app, asyncapi)


def _allow(methods: Iterable[str]) -> str:
    order = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
    return ", ".join(m for m in order if m in set(methods))
