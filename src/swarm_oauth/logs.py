"""Structured logs: one JSON object per line on stderr, or for a person at a terminal
one line of text with the same fields (``--log-format text``).

Callers pass context with ``extra={...}``; a secret or token is never among it (the
values that would be are wrapped in types whose repr is redacted).

Records are written by a thread of their own (``logging.handlers.QueueHandler`` and a
``QueueListener``): a request's log line costs the event loop a record and a queue put
(the access log's: its fields and a put), never a write, so stderr read slowly
(a busy log driver, a full pipe) stalls no request. The thread formats what has queued
up and writes it in one call. At most
``MAX_PENDING_RECORDS`` wait; beyond that records are dropped, and the count is logged
once the writer catches up.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import logging
import math
import os
import select
import sys
import time
from collections.abc import Callable, Mapping
from itertools import islice
from json.encoder import encode_basestring_ascii as _escape
from logging.handlers import QueueHandler, QueueListener
from queue import Empty, SimpleQueue
from typing import TextIO

# Attributes every LogRecord has; anything else came from ``extra``.
_BLANK = vars(logging.LogRecord("", 0, "", 0, "", None, None))
_STANDARD = frozenset(_BLANK) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


LOG_FORMATS = ("json", "text")
# About 1.5 KB each: a few MB held at most while stderr is not being read.
MAX_PENDING_RECORDS = 4096
# While records keep coming, the writer takes them this often (a line waits that long).
BATCH_SECONDS = 0.02
# Formatted lines written at once at the latest, should the queue never run empty.
MAX_BATCH_LINES = 256
# How long the process waits at exit for queued lines to be written.
EXIT_WRITE_SECONDS = 2.0

# A line's text from its time of creation and its extras (``JSONFormatter.template``).
LineTemplate = Callable[[float, Mapping[str, object]], str]
# Distinct extra keys a line template keeps encoded (the access log has a handful).
MAX_TEMPLATE_KEYS = 64

_encode = json.JSONEncoder(default=str).encode
# Tracebacks are rendered where they are logged: the writer runs later, on another thread.
_tracebacks = logging.Formatter()


def extra_fields(record: logging.LogRecord) -> dict[str, object]:
    """What the caller passed in ``extra``."""
    # A record's own attributes come first, in the order its constructor sets them:
    # only what follows them can be an extra.
    fields = islice(vars(record).items(), len(_BLANK), None)
    return {name: value for name, value in fields if name not in _STANDARD}


class JSONFormatter(logging.Formatter):
    """Formats a record as ``{"ts", "level", "logger", "msg", ...extra}``."""

    def __init__(self) -> None:
        super().__init__()
        # The last second formatted and its text, replaced whole: lines are formatted on
        # the writer's thread and, for the access log, on the event loop's (``HotLog``).
        self._stamp = (-1, "")

    def _timestamp(self, created: float) -> str:
        # The access log writes a line per request; strftime once a second suffices.
        second = int(created)
        stamp = self._stamp
        if stamp[0] != second:
            stamp = self._stamp = (
                second,
                time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)),
            )
        return f"{stamp[1]}.{int((created - second) * 1000):03d}Z"

    def _traceback(self, record: logging.LogRecord) -> str | None:
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        return record.exc_text or None

    def format(self, record: logging.LogRecord) -> str:
        return self.line(
            record.created,
            record.levelname.lower(),
            record.name,
            record.getMessage(),
            extra_fields(record),
            self._traceback(record),
        )

    def line(
        self,
        created: float,
        level: str,
        name: str,
        msg: str,
        fields: Mapping[str, object],
        exc: str | None = None,
    ) -> str:
        """The line of a record with these attributes, ``fields`` its extras."""
        entry: dict[str, object] = {
            "ts": self._timestamp(created),
            "level": level,
            "logger": name,
            "msg": msg,
        }
        entry.update(fields)
        if exc:
            entry["exc"] = exc
        return _encode(entry)

    def template(
        self, level: str, name: str, msg: str, fixed: Mapping[str, object]
    ) -> LineTemplate:
        """``line`` for many lines of one level, logger and message whose extras start
        with the same ``fixed`` fields: what they share is encoded once."""
        return _JSONTemplate(self, level, name, msg, fixed)


class _JSONTemplate:
    """``JSONFormatter.line`` with the leading members encoded once: the JSON encoder
    builds and walks a dict for each line, several times slower than joining the
    members of an access line's plain strings and numbers."""

    __slots__ = ("_args", "_formatter", "_head", "_keys", "_taken")

    def __init__(
        self, formatter: JSONFormatter, level: str, name: str, msg: str, fixed: Mapping[str, object]
    ) -> None:
        self._formatter = formatter
        self._args = (level, name, msg, fixed)
        # As ``_encode`` writes them: ", " between members and ": " after a key.
        self._head = (
            f'", "level": {_escape(level)}, "logger": {_escape(name)}, "msg": {_escape(msg)}'
            + "".join(f", {_escape(key)}: {_encode(value)}" for key, value in fixed.items())
        )
        # Each extra's key as it precedes its value; a key already in the head is not
        # here, and a line with one takes ``line``, where the later value wins in place.
        self._keys: dict[object, str] = {}
        self._taken = frozenset({"ts", "level", "logger", "msg", *fixed})

    def __call__(self, created: float, fields: Mapping[str, object]) -> str:
        parts = ['{"ts": "', self._formatter._timestamp(created), self._head]
        keys = self._keys
        for key, value in fields.items():
            encoded = keys.get(key)
            if encoded is None:
                if key in self._taken or not isinstance(key, str):
                    level, name, msg, fixed = self._args
                    return self._formatter.line(created, level, name, msg, {**fixed, **fields})
                encoded = f", {_escape(key)}: "
                if len(keys) < MAX_TEMPLATE_KEYS:
                    keys[key] = encoded
            parts.append(encoded)
            if isinstance(value, str):
                parts.append(_escape(value))
            elif type(value) is int:  # not a bool, which is one
                parts.append(int.__repr__(value))
            elif type(value) is float and math.isfinite(value):
                parts.append(float.__repr__(value))
            else:  # None, booleans, NaN, containers, other types: as the encoder has them
                parts.append(_encode(value))
        parts.append("}")
        return "".join(parts)


class TextFormatter(JSONFormatter):
    """``12:00:01.234Z info  swarm_oauth.tokens  message  key=value ...``: the JSON
    line's fields, for reading; values with spaces are quoted as JSON strings."""

    def line(
        self,
        created: float,
        level: str,
        name: str,
        msg: str,
        fields: Mapping[str, object],
        exc: str | None = None,
    ) -> str:
        stamp = self._timestamp(created).partition("T")[2]
        pairs = " ".join(f"{k}={_text_value(v)}" for k, v in fields.items())
        line = f"{stamp} {level:<7} {name}  {msg}"
        if pairs:
            line += f"  {pairs}"
        if exc:
            line += "\n" + exc
        return line

    def template(
        self, level: str, name: str, msg: str, fixed: Mapping[str, object]
    ) -> LineTemplate:
        return lambda created, fields: self.line(created, level, name, msg, {**fixed, **fields})


def _text_value(value: object) -> str:
    if isinstance(value, str) and value and not any(c.isspace() or c in '"=' for c in value):
        return value
    return json.dumps(value, default=str)


# A line for the writer to format (``HotLog``): its template, time and extra fields.
HotLine = tuple[LineTemplate, float, Mapping[str, object]]
# What waits for the writer: a record, or a line (``HotLog``).
Queued = logging.LogRecord | HotLine


class BoundedQueueHandler(QueueHandler):
    """Puts records on the writer's queue as they are, and drops them while ``limit``
    already wait (stderr is not being read)."""

    queue: SimpleQueue[Queued]

    def __init__(self, records: SimpleQueue[Queued], limit: int = MAX_PENDING_RECORDS) -> None:
        super().__init__(records)
        self.limit = limit
        self.dropped = 0

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # QueueHandler's own prepare formats and copies every record here, on the
        # caller's thread; the writer formats instead. Only what may change or hold
        # frames meanwhile is resolved now.
        if record.args:
            record.msg = record.getMessage()
            record.args = None
        if record.exc_info:
            record.exc_text = _tracebacks.formatException(record.exc_info)
            record.exc_info = None
        return record

    def enqueue(self, record: Queued) -> None:
        """Queue a record, or a line to format."""
        if self.queue.qsize() >= self.limit:
            self.dropped += 1
            return
        self.queue.put_nowait(record)


class LineWriter(logging.Handler):
    """Formats records into lines, and writes the lines gathered so far in as few calls as
    keep each line whole: a pipe (Docker's log driver) takes up to ``PIPE_BUF`` bytes in
    one piece, so lines from several workers sharing it never interleave. A line longer
    than that (a long traceback) goes out in a write of its own, which a pipe may split."""

    def __init__(self, write: Callable[[bytes], None]) -> None:
        super().__init__()
        self._write = write
        self._lines: list[bytes] = []

    @property
    def pending(self) -> int:
        """How many formatted lines wait for ``write_pending``."""
        return len(self._lines)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.add(self.format(record).encode("utf-8", "backslashreplace") + b"\n")
        except Exception:
            self.handleError(record)

    def add(self, line: bytes) -> None:
        """A formatted line (newline included) to write with the next batch."""
        self._lines.append(line)

    def add_line(
        self, template: LineTemplate, created: float, fields: Mapping[str, object]
    ) -> None:
        """A line of ``template`` (``HotLog``) to write with the next batch."""
        try:
            self.add(template(created, fields).encode("utf-8", "backslashreplace") + b"\n")
        except Exception:  # a value whose str() raises: reported as logging reports it
            self.handleError(logging.makeLogRecord({"msg": "an access line", "created": created}))

    def write_pending(self) -> None:
        """Write the lines formatted so far (blocks while stderr is full)."""
        chunk: list[bytes] = []
        size = 0
        for line in self._lines:
            if chunk and size + len(line) > select.PIPE_BUF:
                self._write_chunk(chunk)
                chunk, size = [], 0
            chunk.append(line)
            size += len(line)
        if chunk:
            self._write_chunk(chunk)
        self._lines.clear()

    def _write_chunk(self, lines: list[bytes]) -> None:
        # stderr closed: there is nowhere left to say so.
        with contextlib.suppress(OSError):
            self._write(b"".join(lines))


class LogWriter(QueueListener):
    """The thread that formats and writes queued records, in batches.

    While records keep coming it wakes every ``BATCH_SECONDS`` and takes what queued up
    meanwhile: were it waiting on the queue instead, every record put would wake it,
    and on a busy core that wake-up costs more than the record. Only when a pause found
    nothing does it wait for the next record.
    """

    queue: SimpleQueue[Queued]

    def __init__(self, handler: BoundedQueueHandler, writer: LineWriter) -> None:
        super().__init__(handler.queue, writer)
        self._source = handler
        self._writer = writer
        self._reported = 0
        self._idle = True

    def handle(self, record: Queued) -> None:
        if isinstance(record, tuple):
            self._writer.add_line(*record)
        else:
            super().handle(record)

    def dequeue(self, block: bool) -> Queued:  # type: ignore[override]
        while True:
            try:
                record = self.queue.get_nowait()
            except Empty:
                self._write_pending()
                if self._idle:
                    return self.queue.get()
                self._idle = True
                time.sleep(BATCH_SECONDS)
                continue
            self._idle = False
            if self._writer.pending >= MAX_BATCH_LINES:
                self._write_pending()  # records arrive as fast as they are formatted
            return record

    def _write_pending(self) -> None:
        self._report_drops()
        self._writer.write_pending()

    def _report_drops(self) -> None:
        dropped = self._source.dropped
        if dropped != self._reported:
            self._writer.handle(
                logging.makeLogRecord(
                    {
                        "name": "swarm_oauth.logs",
                        "levelno": logging.WARNING,
                        "levelname": "WARNING",
                        "msg": "log records dropped: stderr was not read fast enough",
                        "dropped": dropped - self._reported,
                    }
                )
            )
            self._reported = dropped

    def close(self, timeout: float = EXIT_WRITE_SECONDS) -> None:
        """Write what is queued and stop; give up after ``timeout`` seconds when stderr
        is not being read, rather than hold the process's exit."""
        thread = self._thread
        if thread is None:
            return
        self.enqueue_sentinel()
        thread.join(timeout)
        self._thread = None
        if not thread.is_alive():  # what it formatted after its last write
            self._write_pending()


class HotLog:
    """``logger.info(msg, extra={**fixed, **fields})`` for a line logged on every request
    (the access log), at a fraction of the cost.

    ``Logger.info`` builds a record attribute by attribute, walks the logger hierarchy
    and takes a handler's lock, and the writer then reads the record back to format it.
    When the writer's queue is the only place the line can go (no logger on the way has
    filters or handlers of its own), only the time and ``fields`` are queued, with a
    template of the writer's own formatter that has what ``msg`` and ``fixed`` give every
    line encoded once: no record is made, and the writer formats a batch of lines in a
    row, where the caches stay warm (served, formatting each line on the event loop cost
    several times what it does in a loop). Otherwise this is exactly ``logger.info``.
    ``fields`` must not change once logged (the writer reads it later).
    """

    def __init__(
        self, logger: logging.Logger, msg: str, fixed: Mapping[str, object] | None = None
    ) -> None:
        self.logger = logger
        self.msg = msg
        self.fixed = dict(fixed or {})
        # The template of the formatter last used: logging may be configured again.
        self._template: tuple[JSONFormatter, LineTemplate] | None = None

    def __call__(self, fields: Mapping[str, object]) -> None:
        """Log the message at INFO with the fixed fields and then ``fields`` as its extra."""
        logger = self.logger
        if not logger.isEnabledFor(logging.INFO):
            return
        handler, formatter = _handler, _formatter
        if handler is None or formatter is None or not _only_to(handler, logger):
            logger.info(self.msg, extra={**self.fixed, **fields})
            return
        cached = self._template
        if cached is None or cached[0] is not formatter:
            template = formatter.template("info", logger.name, self.msg, self.fixed)
            cached = self._template = (formatter, template)
        handler.enqueue((cached[1], time.time(), fields))


def _only_to(handler: logging.Handler, logger: logging.Logger) -> bool:
    """Whether ``logger``'s INFO records reach ``handler`` and nothing else, unfiltered."""
    node = logger
    while True:
        if node.filters:
            return False
        if not node.propagate or node.parent is None:
            return (
                node.handlers == [handler] and not handler.filters and handler.level <= logging.INFO
            )
        if node.handlers:
            return False
        node = node.parent


def _stderr_writer() -> Callable[[bytes], None]:
    """Writes to file descriptor 2 when stderr is one, else to ``sys.stderr`` itself
    (a test's capture): no buffer of Python's stands between a line and the fd."""
    stream: TextIO = sys.stderr
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):

        def write_stream(data: bytes) -> None:
            stream.write(data.decode("utf-8", "replace"))
            stream.flush()

        return write_stream

    def write_fd(data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:  # an inherited non-blocking pipe: wait until it drains
                select.select([], [fd], [])

    return write_fd


_writer: LogWriter | None = None
# The handler that queues records for ``_writer``, and the formatter ``_writer`` formats
# them with (``HotLog`` formats with it and queues to the handler directly).
_handler: BoundedQueueHandler | None = None
_formatter: JSONFormatter | None = None


def stop_writer() -> None:
    """Write what is queued and stop the log writer's thread; later lines go nowhere.

    Runs at exit; call it before ending the process any other way (by a signal's
    default action), which would lose the lines of the last batch."""
    global _writer
    if _writer is not None:
        _writer.close()
        _writer = None


def configure_logging(level: str = "info", log_format: str = "json") -> None:
    """Send every logger, uvicorn's included, to stderr in ``log_format`` (json or text),
    written by a thread of its own."""
    global _writer, _handler, _formatter
    # Nothing here uses the caller's file and line, threads or processes in a line; not
    # collecting them is the logging HOWTO's own advice for a hot path.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    stop_writer()
    lines = LineWriter(_stderr_writer())
    formatter = TextFormatter() if log_format == "text" else JSONFormatter()
    lines.setFormatter(formatter)
    handler = BoundedQueueHandler(SimpleQueue())
    _writer = LogWriter(handler, lines)
    _writer.start()
    _handler, _formatter = handler, formatter
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


atexit.register(stop_writer)
