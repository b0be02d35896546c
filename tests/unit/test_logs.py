"""The log writer thread: records reach the output in order and formatted, a consumer
that stops reading never blocks the thread that logs, and what could not wait is
counted and reported once the consumer reads again. Real threads and queues; the output
is a function that blocks while the test says so, as a full pipe would."""

from __future__ import annotations

import json
import logging
import select
import threading
from queue import SimpleQueue

import pytest

import swarm_oauth.logs
from swarm_oauth.logs import (
    MAX_BATCH_LINES,
    BoundedQueueHandler,
    HotLog,
    JSONFormatter,
    LineWriter,
    LogWriter,
    TextFormatter,
)


class Consumer:
    """Collects what is written; while ``blocked`` is set, a write waits."""

    def __init__(self) -> None:
        self.text = ""
        self.writes: list[bytes] = []
        self.open = threading.Event()
        self.open.set()
        self.writing = threading.Event()

    def write(self, data: bytes) -> None:
        self.writing.set()
        self.open.wait()
        self.writes.append(data)
        self.text += data.decode()

    def lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.text.splitlines()]


def start_writer(name, handler, write):
    """The logger ``name`` whose records go through ``handler`` to a started writer
    thread that formats them as JSON lines for ``write``."""
    lines = LineWriter(write)
    lines.setFormatter(JSONFormatter())
    writer = LogWriter(handler, lines)
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    writer.start()
    return logger, writer


@pytest.fixture
def logged():
    """A logger whose records go through a BoundedQueueHandler (limit 50) to a writer."""
    consumer = Consumer()
    handler = BoundedQueueHandler(SimpleQueue(), limit=50)
    logger, writer = start_writer("test_logs.writer", handler, consumer.write)
    yield logger, handler, writer, consumer
    consumer.open.set()
    writer.close()
    logger.handlers[:] = []


def test_records_are_written_in_order_with_their_fields(logged):
    logger, _, writer, consumer = logged
    for n in range(20):
        logger.info("request %d", n, extra={"status": 200, "client_id": "svc"})
    writer.close()
    lines = consumer.lines()
    assert [line["msg"] for line in lines] == [f"request {n}" for n in range(20)]
    assert lines[0]["status"] == 200 and lines[0]["client_id"] == "svc"
    assert lines[0]["logger"] == "test_logs.writer" and lines[0]["level"] == "info"


def test_an_exception_is_rendered_where_it_was_logged(logged):
    logger, _, writer, consumer = logged
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")
    writer.close()
    (line,) = consumer.lines()
    assert "ValueError: boom" in str(line["exc"])


def test_a_consumer_that_stops_reading_blocks_no_caller_and_drops_are_reported(logged):
    logger, handler, writer, consumer = logged
    consumer.open.clear()
    logger.info("first")
    assert consumer.writing.wait(5), "the writer never wrote"
    # The writer now waits in write(); the caller goes on, whatever it logs.
    for n in range(200):
        logger.info("while blocked", extra={"n": n})
    assert handler.dropped == 200 - 50
    consumer.open.set()
    writer.close()
    lines = consumer.lines()
    kept = [line for line in lines if line["msg"] == "while blocked"]
    assert [line["n"] for line in kept] == list(range(50))
    (report,) = [line for line in lines if line["logger"] == "swarm_oauth.logs"]
    assert report["dropped"] == 150
    assert report["level"] == "warning"


def test_lines_are_written_whole_in_pieces_a_pipe_takes_at_once(logged):
    logger, _, writer, consumer = logged
    consumer.open.clear()
    logger.info("first")
    assert consumer.writing.wait(5)
    for n in range(40):  # while the writer waits: one batch of about 8 KB
        logger.info("x" * 150, extra={"n": n})
    consumer.open.set()
    writer.close()
    assert len(consumer.writes) > 2
    assert all(len(data) <= select.PIPE_BUF and data.endswith(b"\n") for data in consumer.writes)
    assert [line["n"] for line in consumer.lines() if "n" in line] == list(range(40))


def test_lines_are_written_while_records_keep_coming_not_only_when_the_queue_runs_dry():
    consumer = Consumer()
    handler = BoundedQueueHandler(SimpleQueue(), limit=5000)
    waiting_at_write: list[int] = []

    def write(data: bytes) -> None:
        waiting_at_write.append(handler.queue.qsize())
        consumer.write(data)

    logger, writer = start_writer("test_logs.busy", handler, write)
    try:
        consumer.open.clear()
        logger.info("first")
        assert consumer.writing.wait(5)
        for n in range(4 * MAX_BATCH_LINES):  # queued while the writer waits
            logger.info("busy", extra={"n": n})
        consumer.open.set()
    finally:
        writer.close()
        logger.handlers[:] = []
    # The backlog went out in batches while most of it still waited in the queue.
    assert max(waiting_at_write) >= 2 * MAX_BATCH_LINES
    assert [line["n"] for line in consumer.lines() if "n" in line] == list(
        range(4 * MAX_BATCH_LINES)
    )


def test_a_hot_line_is_queued_directly_and_reads_as_logger_info_would(logged, monkeypatch):
    logger, handler, writer, consumer = logged
    monkeypatch.setattr(swarm_oauth.logs, "_handler", handler)
    monkeypatch.setattr(swarm_oauth.logs, "_formatter", writer.handlers[0].formatter)
    logger.handlers[:] = [handler]  # pytest's capture may have added its own
    hot = HotLog(logger, "request", {"method": "POST", "path": "/api/token"})
    fields = {"status": 200, "client_id": "svc", "duration_ms": 0.5}
    logger.info("request", extra={"method": "POST", "path": "/api/token", **fields})

    def no_record_built(*args, **kwargs):
        raise AssertionError("the hot line went through Logger.makeRecord")

    monkeypatch.setattr(logger, "makeRecord", no_record_built)
    hot(fields)
    writer.close()
    plain, direct = consumer.lines()
    assert plain.pop("ts")[:19] <= direct.pop("ts")[:19]
    assert direct == plain


def test_a_hot_line_in_text_reads_as_logger_info_would(logged, monkeypatch):
    logger, handler, writer, consumer = logged
    formatter = TextFormatter()
    writer.handlers[0].setFormatter(formatter)
    monkeypatch.setattr(swarm_oauth.logs, "_handler", handler)
    monkeypatch.setattr(swarm_oauth.logs, "_formatter", formatter)
    logger.handlers[:] = [handler]  # pytest's capture may have added its own
    fields = {"method": "POST", "path": "/a b", "status": 200, "remote": None}
    logger.info("request", extra=fields)
    HotLog(logger, "request", {"method": "POST"})(
        {k: v for k, v in fields.items() if k != "method"}
    )
    writer.close()
    plain, direct = consumer.text.splitlines()
    assert direct.split(" ", 1)[1] == plain.split(" ", 1)[1]  # all but the time
    assert 'path="/a b"' in direct and "remote=null" in direct


def test_a_hot_line_takes_the_logger_path_when_anything_else_may_see_it(logged, monkeypatch):
    logger, handler, writer, consumer = logged
    monkeypatch.setattr(swarm_oauth.logs, "_handler", handler)
    monkeypatch.setattr(swarm_oauth.logs, "_formatter", writer.handlers[0].formatter)
    logger.handlers[:] = [handler]  # pytest's capture may have added its own
    seen: list[logging.LogRecord] = []
    logger.addFilter(lambda record: seen.append(record) or True)
    HotLog(logger, "filtered")({"status": 200})

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    logger.filters.clear()
    logger.addHandler(Collect())
    HotLog(logger, "two handlers", {"status": 200})({})
    logger.setLevel(logging.WARNING)
    HotLog(logger, "below the level")({"status": 200})
    writer.close()
    assert [record.msg for record in seen] == ["filtered", "two handlers"]
    assert [line["msg"] for line in consumer.lines()] == ["filtered", "two handlers"]
    assert consumer.lines()[0]["status"] == 200


class Opaque:
    """Not JSON: the encoder writes its ``str``."""

    def __str__(self) -> str:
        return "opaque"


@pytest.mark.parametrize(
    "fields",
    [
        {"status": 200, "duration_ms": 0.123, "remote": "127.0.0.1", "client_id": "svc"},
        {"remote": None, "ok": True, "no": False, "big": 10**30, "neg": -1, "zero": 0.0},
        {"nan": float("nan"), "inf": float("inf"), "small": 1e-7, "whole": 12.0},
        {"text": 'quote " backslash \\ tab \t nl \n', "unicode": "é ☃ \udc80 \x00"},
        {"list": [1, "a", None], "dict": {"k": [True]}, "tuple": (1, 2), "other": Opaque()},
        {"enum": logging.INFO, "flag": __import__("enum").IntEnum("E", "A").A},
        {},
        # Keys the head already has: the later value wins in place, as in a dict.
        {"status": 200, "level": "warning", "msg": "other", "ts": "then"},
        {"path": "/other", "status": 401},
    ],
)
def test_a_line_template_writes_what_line_writes(fields):
    formatter = JSONFormatter()
    fixed = {"method": "POST", "path": "/api/token", "route": "/api/token"}
    template = formatter.template("info", "swarm_oauth.access", "request", fixed)
    created = 1_800_000_000.5
    expected = formatter.line(created, "info", "swarm_oauth.access", "request", {**fixed, **fields})
    assert template(created, fields) == expected
    assert template(created, fields) == expected  # the keys encoded the first time, reused
    assert json.loads(expected)  # still JSON (NaN as the encoder allows it)


def test_a_line_template_keeps_a_bounded_number_of_keys():
    formatter = JSONFormatter()
    template = formatter.template("info", "t", "m", {})
    for n in range(3 * swarm_oauth.logs.MAX_TEMPLATE_KEYS):
        fields = {f"key{n}": n}
        assert template(0.0, fields) == formatter.line(0.0, "info", "t", "m", fields)
    assert len(template._keys) == swarm_oauth.logs.MAX_TEMPLATE_KEYS


def test_a_hot_line_that_cannot_be_formatted_is_reported_and_the_writer_goes_on(
    logged, monkeypatch, capsys
):
    logger, handler, writer, consumer = logged
    monkeypatch.setattr(swarm_oauth.logs, "_handler", handler)
    monkeypatch.setattr(swarm_oauth.logs, "_formatter", writer.handlers[0].formatter)
    logger.handlers[:] = [handler]  # pytest's capture may have added its own

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no text")

    hot = HotLog(logger, "request")
    hot({"value": Unprintable()})
    hot({"value": "fine"})
    writer.close()
    assert [line["value"] for line in consumer.lines()] == ["fine"]
    assert "Logging error" in capsys.readouterr().err
