"""Revocations: what a revocation list revokes, and when the verifier fetches, keeps,
waits for or refuses it. The list comes over real HTTP from a local server; the clock
that decides freshness is moved by hand instead of slept through."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from swarm_oauth.sdk import ConfigurationError, RevocationsUnavailable, Verifier
from swarm_oauth.sdk._flow import Runner
from swarm_oauth.sdk.revocations import RevocationList, Revocations
from tests.support.document_server import DocumentServer

NOW = 1_000_000.0  # wall-clock seconds of the documents below


def document(tokens: Sequence[object] = (), clients: Sequence[object] = ()) -> dict[str, Any]:
    return {"tokens": list(tokens), "clients": list(clients)}


def token(jti: str, expires_at: float = NOW + 600, client_id: str = "orders") -> dict[str, Any]:
    return {"jti": jti, "client_id": client_id, "expires_at": expires_at}


def client(client_id: str, issued_before: float, expires_at: float = NOW + 600) -> dict[str, Any]:
    return {"client_id": client_id, "issued_before": issued_before, "expires_at": expires_at}


def claims(jti: str = "j", client_id: str = "orders", iat: object = NOW - 100) -> dict[str, Any]:
    return {"jti": jti, "client_id": client_id, "iat": iat}


# -- the list ------------------------------------------------------------------------------


def test_a_token_is_revoked_by_its_jti_or_by_its_clients_cutoff() -> None:
    listed = RevocationList.parse(
        document([token("stolen")], [client("leaked", issued_before=NOW - 50)]), NOW
    )
    assert len(listed) == 2
    assert listed.revoked(claims(jti="stolen"))
    assert listed.revoked(claims(jti="stolen", client_id="someone-else"))  # a jti is a jti
    assert not listed.revoked(claims(jti="other"))
    assert listed.revoked(claims(client_id="leaked", iat=NOW - 51))
    assert listed.revoked(claims(client_id="leaked", iat=NOW - 50))  # at the cut-off
    assert not listed.revoked(claims(client_id="leaked", iat=NOW - 49))  # issued after it
    # Claims of the wrong type: a list jti matches nothing; a listed client's token whose
    # iat is not a number cannot be shown to be newer than the cut-off.
    assert not listed.revoked(claims(jti=["stolen"]))  # type: ignore[arg-type]
    assert listed.revoked(claims(client_id="leaked", iat="later"))
    assert not RevocationList().revoked(claims())


def test_entries_that_ended_are_dropped_the_later_of_two_kept() -> None:
    listed = RevocationList.parse(
        document(
            [token("gone", expires_at=NOW - 31), token("kept", expires_at=NOW - 29),
             token("twice", expires_at=NOW - 60), token("twice", expires_at=NOW + 60)],
            [client("gone", NOW - 900, expires_at=NOW - 31),
             client("twice", NOW - 900, expires_at=NOW + 10),
             client("twice", NOW - 500, expires_at=NOW + 5)],
        ),
        NOW,
        keep=30,  # a verifier with 30 s of leeway keeps an entry 30 s past its expires_at
    )  # fmt: skip
    assert set(listed.tokens) == {"kept", "twice"}
    assert listed.clients == {"twice": (NOW - 500, NOW + 40)}
    assert listed.pruned(NOW) is listed  # nothing ended: the same list
    later = listed.pruned(NOW + 2)
    assert set(later.tokens) == {"twice"}
    assert later.pruned(NOW + 41).clients == {}


def test_a_new_list_keeps_what_the_earlier_one_listed_until_it_ends() -> None:
    # The server stops listing an entry at its expires_at; a verifier whose leeway keeps
    # a token valid past that must still refuse it.
    earlier = RevocationList(
        {"ended": NOW - 1, "kept": NOW + 20, "both": NOW + 5},
        {"leaked": (NOW - 300, NOW + 20), "old": (NOW - 900, NOW - 1)},
    )
    fetched = RevocationList({"both": NOW + 10, "new": NOW + 60}, {"leaked": (NOW - 100, NOW + 9)})
    merged = fetched.including(earlier, NOW)
    assert merged.tokens == {"kept": NOW + 20, "both": NOW + 10, "new": NOW + 60}
    assert merged.clients == {"leaked": (NOW - 100, NOW + 20)}
    assert fetched.including(RevocationList({"ended": NOW - 1}), NOW) is fetched


@pytest.mark.parametrize(
    "body",
    [
        [],
        {},
        {"tokens": []},
        {"tokens": {}, "clients": []},
        {"tokens": ["jti"], "clients": []},
        document([{"jti": "", "expires_at": NOW}]),
        document([{"jti": "j", "expires_at": "soon"}]),
        document([{"jti": "j", "expires_at": True}]),
        document([{"jti": "j", "expires_at": float("nan")}]),
        document(clients=[{"client_id": "c", "expires_at": NOW}]),
        document(clients=[{"client_id": 7, "issued_before": NOW, "expires_at": NOW}]),
    ],
)
def test_anything_but_a_revocation_list_is_refused(body: object) -> None:
    with pytest.raises(ValueError):
        RevocationList.parse(body, NOW)


# -- fetching and freshness ----------------------------------------------------------------


class Clock:
    """Monotonic seconds, moved by the test."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def server() -> Iterator[DocumentServer]:
    served = DocumentServer(document([token("j1")]), "/api/revocations", etags=True)
    yield served
    served.close()


def revocations(server: DocumentServer, clock: Clock, **options: Any) -> Revocations:
    settings: dict[str, Any] = {"refresh": 5.0, "max_stale": 20.0, **options}
    return Revocations(server.url, Runner(2.0), clock=clock, wall_clock=lambda: NOW, **settings)


def eventually(predicate: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_the_first_call_waits_then_the_list_serves_without_requests(
    server: DocumentServer,
) -> None:
    clock = Clock()
    changes: list[RevocationList] = []
    listed = revocations(server, clock, on_change=changes.append)
    first = listed.current()
    assert first.revoked(claims(jti="j1"))
    assert changes == [first]
    clock.now += 3.9  # before the refresh's last second: no request at all
    assert listed.current() is first
    assert server.answered == [200]


def test_a_refresh_in_the_last_second_runs_in_the_background_and_sends_the_etag(
    server: DocumentServer,
) -> None:
    clock = Clock()
    changes: list[RevocationList] = []
    listed = revocations(server, clock, on_change=changes.append)
    first = listed.current()
    clock.now += 4.5
    server.hold()
    assert listed.current() is first  # answered at once while the refresh is held
    assert server.arrived.wait(10)
    assert listed.refreshing
    server.release()
    eventually(lambda: not listed.refreshing)
    assert server.answered == [200, 304]
    assert server.if_none_match[1] is not None  # the ETag of the first answer
    assert listed.current() is first  # 304: the same list, and no new one announced
    assert changes == [first]
    clock.now += 3.9  # fresh again from the 304's request, not from the first fetch
    assert listed.current() is first
    assert len(server.answered) == 2


def test_a_caller_after_an_idle_spell_waits_for_the_new_list(server: DocumentServer) -> None:
    clock = Clock()
    listed = revocations(server, clock)
    listed.current()
    server.document = document([token("j1"), token("j2")])
    clock.now += 5.0  # the whole refresh interval without a call
    assert listed.current().revoked(claims(jti="j2"))  # this very call sees it


def test_an_entity_tag_that_is_not_ascii_is_never_sent_back(server: DocumentServer) -> None:
    # RFC 9110 allows obs-text in an entity tag; httpx could not send it in If-None-Match,
    # and every later refresh would fail before it left.
    server.etag = '"r\u00e9v"'
    clock = Clock()
    listed = revocations(server, clock)
    listed.current()
    server.document = document([token("j1"), token("j2")])
    clock.now += 5.0
    assert listed.current().revoked(claims(jti="j2"))  # the refresh went, and was read
    assert server.if_none_match == [None, None]


def test_an_entry_the_server_no_longer_lists_is_kept_for_the_leeway(
    server: DocumentServer,
) -> None:
    clock = Clock()
    server.document = document([token("late", expires_at=NOW - 10)])
    listed = revocations(server, clock, keep=30)
    assert listed.current().revoked(claims(jti="late"))
    server.document = document()  # past its expires_at, the server dropped it
    clock.now += 5.0
    refreshed = listed.current()
    assert server.answered == [200, 200]
    assert refreshed.revoked(claims(jti="late"))  # accepted until exp + leeway: refused


def test_an_outage_keeps_the_last_list_then_fails_closed_then_recovers(
    server: DocumentServer, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    listed = revocations(server, clock)
    first = listed.current()
    server.status = 503
    with caplog.at_level(logging.INFO, logger="swarm_oauth.sdk"):
        clock.now += 5.0
        assert listed.current() is first  # it waited for the refresh, which failed
        for _ in range(3):  # within the retry interval: the last list, no request
            clock.now += 1.0
            assert listed.current() is first
        assert server.answered == [200, 503]
        clock.now += 2.0  # a retry is allowed: in the background, the caller goes on
        assert listed.current() is first
        eventually(lambda: len(server.answered) == 3 and not listed.refreshing)
        clock.now += 11.0  # the last success was sent more than max_stale ago
        for _ in range(2):
            with pytest.raises(RevocationsUnavailable, match=r"last refreshed 21s ago.*HTTP 503"):
                listed.current()
        eventually(lambda: not listed.refreshing)
        server.status = 200
        server.document = document([token("j3")])
        clock.now += 5.0
        server.hold()
        with pytest.raises(RevocationsUnavailable):
            listed.current()  # starts the retry that will succeed, refusing meanwhile
        server.release()
        eventually(lambda: not listed.refreshing)
        assert listed.current().revoked(claims(jti="j3"))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(warnings) == 1 and "answered HTTP 503" in warnings[0]  # once per outage
    assert len(errors) == 1 and "refusing every token" in errors[0]
    assert "refreshed again" in caplog.text


def test_no_list_yet_refuses_and_retries_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    with (
        caplog.at_level(logging.WARNING, logger="swarm_oauth.sdk"),
        DocumentServer({"not": "a list"}, "/api/revocations") as server,
    ):
        listed = revocations(server, clock)
        for _ in range(3):
            with pytest.raises(RevocationsUnavailable, match=r"no revocation list from .*: not a"):
                listed.current()
        assert server.answered == [200]
        clock.now += 5.0
        server.document = document()
        assert len(listed.current()) == 0
    assert caplog.text.count("cannot fetch the revocation list") == 1


def test_an_unreachable_url_is_named_in_the_error() -> None:
    listed = Revocations("http://127.0.0.1:9/api/revocations", Runner(1.0))
    with pytest.raises(
        RevocationsUnavailable, match=r"127\.0\.0\.1:9/api/revocations.*ConnectError"
    ):
        listed.current()


def test_async_callers_wait_for_the_first_list_and_refresh_in_a_task(
    server: DocumentServer,
) -> None:
    clock = Clock()
    listed = revocations(server, clock)

    async def main() -> None:
        assert listed.ready() is None  # nothing to use without waiting
        lists = await asyncio.gather(*(listed.acurrent() for _ in range(20)))
        assert all(each is lists[0] for each in lists)
        assert server.answered == [200]  # one request for twenty callers
        clock.now += 4.5
        server.hold()
        assert listed.ready() is lists[0]  # and a refresh started in a task
        assert await asyncio.to_thread(server.arrived.wait, 10)
        server.release()
        while listed.refreshing:
            await asyncio.sleep(0.01)

    asyncio.run(main())
    assert server.answered == [200, 304]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"revocation_refresh": 0}, "revocation_refresh must be positive"),
        ({"revocation_refresh": 5, "revocation_max_stale": 5}, "must be longer than"),
    ],
)
def test_impossible_revocation_settings(options: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Verifier(issuer="http://i", audience="a", check_revocations=True, **options)


def test_a_revocations_url_without_checking_revocations_is_a_mistake() -> None:
    with pytest.raises(ConfigurationError, match="check_revocations=True"):
        Verifier(issuer="http://i", audience="a", revocations_url="http://i/api/revocations")
    checking = Verifier(issuer="http://i/", audience="a", check_revocations=True)
    assert checking.revocations is not None
    assert checking.revocations.url == "http://i/api/revocations"
