"""Structured JSON logging with personal data redacted before anything is written.

Every log line, ours or a library's, goes through the same structlog processors, the
last of which (before rendering) removes personal data: values under known personal
keys are replaced, and anything shaped like a phone number is masked wherever it
appears. Correlation ids (request id, case id, event id) come from contextvars; the
trace and span ids of the active OpenTelemetry span are added to every line.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any, Final

import structlog
from opentelemetry import trace

REDACTED: Final = "[redacted]"
PERSONAL_KEYS: Final = frozenset(
    {
        "full_name",
        "name",
        "phone",
        "to",
        "from",
        "date_of_birth",
        "passport_number",
        "id_number",
        "address",
        "home_region",
        "description",
        "body",
        "employer_name",
        "api_key",
        "x-api-key",
        "authorization",
    }
)
#: Keys whose values are ours, never personal, and must stay readable (a hex trace id
#: can hold a run of digits that looks like a phone number to the scrubber).
_TRUSTED_KEYS: Final = frozenset({"timestamp", "level", "logger", "service", "trace_id", "span_id"})
# Phone and ID numbers wherever they appear in text, without touching dates, times, IP
# addresses or UUIDs: international numbers (+62 812-3456-7890), runs of 8+ digits, and
# local numbers written in groups (0812-3456-7890).
_PHONE_OR_ID = re.compile(
    r"\+\d[\d\s().-]{6,}\d"
    r"|(?<![\d.:-])\d{8,}(?![\d.:-])"
    r"|(?<![\d.:-])0\d{2,4}[\s-]\d{3,4}[\s-]\d{3,5}(?![\d.:-])"
)


# Ids we generate (event, case and message ids) are UUIDs; one can hold a run of eight
# digits, which must not be mistaken for a phone number. No phone number is UUID-shaped.
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _scrub_text(text: str) -> str:
    if _PHONE_OR_ID.search(text) is None:
        return text  # the common case, decided in one pass
    out, last = [], 0
    for uuid in _UUID.finditer(text):
        out += [_PHONE_OR_ID.sub(REDACTED, text[last : uuid.start()]), uuid.group()]
        last = uuid.end()
    out.append(_PHONE_OR_ID.sub(REDACTED, text[last:]))
    return "".join(out)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return _scrub_text(value)
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if str(k).lower() in PERSONAL_KEYS else _scrub(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def add_trace_ids(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: the active span's `trace_id` and `span_id`, when there is one."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict.setdefault("trace_id", trace.format_trace_id(context.trace_id))
        event_dict.setdefault("span_id", trace.format_span_id(context.span_id))
    return event_dict


def redact_personal_data(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: remove personal data from every field of a log event."""
    for key in list(event_dict):
        if key in _TRUSTED_KEYS:
            continue
        if key.lower() in PERSONAL_KEYS:
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _scrub(event_dict[key])
    return event_dict


class _StdoutLogger:
    """structlog's last step: the rendered line to `sys.stdout` as it is when written
    (a test's capture too: loggers are cached on first use, their output is not)."""

    def __init__(self, name: str | None = None, *_args: Any) -> None:
        self.name = name

    def msg(self, message: str) -> None:
        """Write one line and flush it (a crash loses no line already logged)."""
        out = sys.stdout
        out.write(message + "\n")
        out.flush()

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


def _add_logger_name(
    logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    name = getattr(logger, "name", None)
    if name is not None:
        event_dict["logger"] = name
    return event_dict


def configure_logging(service: str, level: str = "INFO") -> None:
    """Send all logs (structlog and stdlib) to stdout as redacted JSON lines.

    Our own lines go through structlog alone, straight to stdout: through the stdlib
    `logging` machinery as well (a record, the caller's frame looked up, a handler),
    each cost twice as much CPU (45 against 22 us a line), and a case makes eight. The
    libraries' stdlib lines go through the same processors on their way out.
    """
    enriching: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        add_trace_ids,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact_personal_data,
    ]
    structlog.configure(
        processors=[_add_logger_name, *enriching, structlog.processors.JSONRenderer()],
        logger_factory=_StdoutLogger,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_logger_name,
            structlog.stdlib.ExtraAdder(),
            *enriching,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.JSONRenderer(),
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "faststream", "aiokafka"):
        lib = logging.getLogger(name)
        lib.handlers[:] = []
        lib.propagate = True
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    # Each request's own `request handled` line (lintas_shared.http) is the access log:
    # uvicorn's would repeat it, for health checks and scrapes too, with the raw path
    # and its query string (which can carry a name searched for). A fifth of intake's
    # log lines, and 2% of its CPU under load.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    structlog.contextvars.bind_contextvars(service=service)


def library_logger(name: str) -> logging.Logger:
    """A plain stdlib logger for libraries (FastStream) that propagates into our pipeline."""
    logger = logging.getLogger(name)
    logger.handlers[:] = []
    logger.propagate = True
    return logger


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    """A logger whose lines carry its name, the service and the current correlation ids."""
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)
    return logger


@contextmanager
def log_context(**values: Any) -> Iterator[None]:
    """Every line logged inside carries `values`; what was bound before is restored on
    the way out. As structlog's `bound_contextvars`, without its copy of the whole
    context on the way in (a few microseconds for every request and event)."""
    tokens = structlog.contextvars.bind_contextvars(**values)
    try:
        yield
    finally:
        structlog.contextvars.reset_contextvars(**tokens)
