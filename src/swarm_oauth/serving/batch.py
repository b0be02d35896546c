"""Direct answers given together: those one pass of the event loop read are computed one
after the other, and only then written one after the other.

Served, a piece of work costs several times what it costs in a loop: between two
requests the kernel's receive and send paths and the interpreter's own work run the
caches cold. On one worker (``bench/PROFILE.md``, fifth pass) a token's ES256 signature
took 38 µs served against 22 in a loop, and a second signature right after the first
23. Computing a pass's answers in a row and then writing them in a row keeps each
kind of work warm: a token cost 68 µs of CPU against 117 answered one by one. Computing
and writing in turns (sign, write, sign, write) gave back nearly all of that.

Answers on one connection still go out in the order of its requests, and none waits
longer than the pass that read it: a connection whose answer waits here flushes the
batch before it reads its next request, refuses anything or shuts down; and the answer
that fills the batch (``MAX_BATCH``) flushes it at once, so that a pass with many
requests writes as it goes.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Protocol
from weakref import WeakKeyDictionary

from swarm_oauth.serving.direct import Answer, Later
from swarm_oauth.web import error_body

log = logging.getLogger("swarm_oauth.errors")

# Past a few answers in a row the caches are as warm as they get; more would only hold
# the first answers longer.
MAX_BATCH = 32
FAILED = Answer(
    500,
    ((b"content-type", b"application/json"),),
    json.dumps(error_body("server_error", "internal error"), separators=(",", ":")).encode(),
)


class Answering(Protocol):
    """A connection whose direct answer waits in a batch."""

    def send_direct(self, answer: Answer, keep_alive: bool) -> None:
        """Write ``answer``, closing the connection after it unless ``keep_alive``."""
        ...


class AnswerBatch:
    """The direct answers waiting to be computed and written, on one event loop (which
    it does not hold: ``batch_for`` keeps a batch only as long as its loop lives)."""

    __slots__ = ("_items", "_scheduled")

    def __init__(self) -> None:
        self._items: list[tuple[Answering, Answer | Later, bool]] = []
        self._scheduled = False

    def add(self, connection: Answering, answer: Answer | Later, keep_alive: bool) -> None:
        """Have ``answer`` (or what computes it) written to ``connection`` once this pass
        of the running event loop has read what it has to read."""
        self._items.append((connection, answer, keep_alive))
        if len(self._items) >= MAX_BATCH:
            self.flush()
        elif not self._scheduled:
            # Ready callbacks run after the pass's I/O callbacks, which add the others.
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._scheduled = False
        self.flush()

    def flush(self) -> None:
        """Compute every waiting answer, then write them all, in the order added."""
        items, self._items = self._items, []
        answers = [_computed(answer) for _, answer, _ in items]
        for (connection, _, keep_alive), answer in zip(items, answers, strict=True):
            connection.send_direct(answer, keep_alive)


def _computed(answer: Answer | Later) -> Answer:
    if isinstance(answer, Answer):
        return answer
    try:
        return answer()
    except Exception:
        # A Later must not raise (the application's own wrapper answers its errors): if
        # one does, its connection still gets an answer and the others theirs.
        log.exception("a direct answer failed")
        return FAILED


_batches: WeakKeyDictionary[asyncio.AbstractEventLoop, AnswerBatch] = WeakKeyDictionary()


def batch_for(loop: asyncio.AbstractEventLoop) -> AnswerBatch:
    """The batch of ``loop``'s connections (one per loop: a batch is flushed by a
    callback of its loop, and writes to transports of that loop only)."""
    batch = _batches.get(loop)
    if batch is None:
        batch = _batches[loop] = AnswerBatch()
    return batch
