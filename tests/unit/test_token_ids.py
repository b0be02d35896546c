"""Token ids: random, unique across pool refills, threads and a fork."""

from __future__ import annotations

import base64
import os
import threading

from swarm_oauth.tokens.ids import POOL_BYTES, TokenIds


def _raw(token_id: str) -> bytes:
    return base64.urlsafe_b64decode(token_id + "==")


def test_ids_are_16_random_bytes_and_never_repeat_across_refills():
    ids = TokenIds()
    drawn = [ids.next() for _ in range(3 * POOL_BYTES // 16 + 5)]
    assert len(set(drawn)) == len(drawn)
    assert all(len(i) == 22 and len(_raw(i)) == 16 for i in drawn)
    # Bytes of one refill are spent once each: no two ids overlap in content either.
    assert len({_raw(i) for i in drawn}) == len(drawn)


def test_threads_drawing_at_once_get_distinct_ids():
    ids = TokenIds()
    drawn: list[list[str]] = [[] for _ in range(4)]

    def draw(out: list[str]) -> None:
        for _ in range(2000):
            out.append(ids.next())

    threads = [threading.Thread(target=draw, args=(out,)) for out in drawn]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [i for out in drawn for i in out]
    assert len(set(every)) == len(every) == 8000


def test_a_forked_child_does_not_hand_out_its_parents_ids():
    ids = TokenIds()
    ids.next()  # the pool now holds unread bytes the child inherits
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next ids and leave at once
        try:
            os.write(write, " ".join(ids.next() for _ in range(8)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = set(pipe.read().split())
    os.waitpid(pid, 0)
    parent = {ids.next() for _ in range(8)}
    assert len(child) == 8 and not child & parent
