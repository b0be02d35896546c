"""Structured logs: one JSON object per line on stderr, or for a person at a terminal
one line of text with the same fields (``--log-format text``).

Callers pass context with ``extra={...}``; a secret or token is never among it (the
values that would be are wrapped in types whose repr is redacted).
"""

from __future__ import annotations

import json
import logging
import sys
import time

# Attributes every LogRecord has; anything else came from ``extra``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


LOG_FORMATS = ("json", "text")


def extra_fields(record: logging.LogRecord) -> dict[str, object]:
    """What the caller passed in ``extra``."""
    return {name: value for name, value in vars(record).items() if name not in _STANDARD}


class JSONFormatter(logging.Formatter):
    """Formats a record as ``{"ts", "level", "logger", "msg", ...extra}``."""

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._stamp = ""

    def _timestamp(self, record: logging.LogRecord) -> str:
        # The access log writes a line per request; strftime once a second suffices.
        second = int(record.created)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._stamp}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": self._timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(extra_fields(record))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(JSONFormatter):
    """``12:00:01.234Z info  swarm_oauth.tokens  message  key=value ...``: the JSON
    line's fields, for reading; values with spaces are quoted as JSON strings."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = self._timestamp(record).partition("T")[2]
        pairs = " ".join(f"{k}={_text_value(v)}" for k, v in extra_fields(record).items())
        line = f"{stamp} {record.levelname.lower():<7} {record.name}  {record.getMessage()}"
        if pairs:
            line += f"  {pairs}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _text_value(value: object) -> str:
    if isinstance(value, str) and value and not any(c.isspace() or c in '"=' for c in value):
        return value
    return json.dumps(value, default=str)


def configure_logging(level: str = "info", log_format: str = "json") -> None:
    """Send every logger, uvicorn's included, to stderr in ``log_format`` (json or text)."""
    # Nothing here uses the caller's file and line, threads or processes in a line; not
    # collecting them is the logging HOWTO's own advice for a hot path.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TextFormatter() if log_format == "text" else JSONFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # Each app logs its requests itself (api/observe.py); uvicorn's own line would repeat
    # them, and in a worker process nothing else would silence it.
    logging.getLogger("uvicorn.access").propagate = False
    # The pool logs every failed connect; the watcher already logs an outage once.
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    if level.lower() != "debug":
        # httpx logs each request at INFO; the registrar logs its own actions instead.
        logging.getLogger("httpx").setLevel(logging.WARNING)
