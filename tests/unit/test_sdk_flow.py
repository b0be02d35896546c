"""Flows: logic written once, run blocking and awaiting with the same outcome."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from swarm_oauth.sdk._flow import Flow, Pause, Request, Runner

UNREACHABLE = "http://127.0.0.1:9/nothing-listens-here"


def probe(log: list[str]) -> Flow[str]:
    """Pauses, then asks an address nothing listens on and reports how that went."""
    reply = yield Pause(0.01)
    log.append(f"paused, got {reply!r}")
    try:
        yield Request("GET", UNREACHABLE)
    except httpx.ConnectError as error:
        log.append("the failure came back at the yield")
        return type(error).__name__
    return "answered"


def test_run_and_arun_take_the_same_course() -> None:
    blocking: list[str] = []
    awaiting: list[str] = []
    runner = Runner(timeout=2)
    assert runner.run(probe(blocking)) == "ConnectError"
    assert asyncio.run(runner.arun(probe(awaiting))) == "ConnectError"
    assert blocking == awaiting == ["paused, got None", "the failure came back at the yield"]


def test_an_error_the_flow_does_not_handle_reaches_the_caller() -> None:
    def unhandled() -> Flow[None]:
        yield Request("GET", UNREACHABLE)

    with pytest.raises(httpx.ConnectError):
        Runner(timeout=2).run(unhandled())
    with pytest.raises(httpx.ConnectError):
        asyncio.run(Runner(timeout=2).arun(unhandled()))


def test_the_callers_client_is_used() -> None:
    seen: list[str] = []

    def hook(request: httpx.Request) -> None:
        seen.append(str(request.url))

    def flow() -> Flow[int]:
        try:
            yield Request("GET", UNREACHABLE)
        except httpx.ConnectError:
            return len(seen)
        return -1

    with httpx.Client(timeout=2, event_hooks={"request": [hook]}) as client:
        assert Runner(http_client=client).run(flow()) == 1
    assert seen == [UNREACHABLE]
