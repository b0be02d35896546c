"""TokenSource against a real token server: reuse, refresh, single flight, rotation.

Requests are counted with httpx event hooks on clients that use the real transport.
The source's clock is a variable here, so "80% of the lifetime later" needs no sleep.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from swarm_oauth.sdk import SecretFileError, TokenRequestError, TokenSource, Verifier
from tests.support.server import ServerProcess

LIFETIME = 900  # the server's default token lifetime
CALLERS = 50


class Counter:
    """Counts token requests made through the clients it hands out."""

    def __init__(self) -> None:
        self.requests = 0
        self._lock = threading.Lock()

    def _count(self, request: httpx.Request) -> None:
        with self._lock:
            self.requests += 1

    async def _acount(self, request: httpx.Request) -> None:
        self._count(request)

    def client(self) -> httpx.Client:
        return httpx.Client(timeout=10, event_hooks={"request": [self._count]})

    def async_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=10, event_hooks={"request": [self._acount]})


@dataclass
class Identity:
    server: ServerProcess
    client_id: str
    secret_file: Path
    counter: Counter
    clock: list[float]

    def source(self, **options: Any) -> TokenSource:
        settings: dict[str, Any] = {
            "client_secret_file": self.secret_file,
            "audience": "inventory",
            "http_client": self.counter.client(),
            "clock": lambda: self.clock[0],
            **options,
        }
        return TokenSource(self.client_id, f"{self.server.url}/api/token", **settings)

    def verifier(self, audience: str = "inventory") -> Verifier:
        return Verifier(issuer=self.server.url, audience=audience)


@pytest.fixture
def identity(token_server: ServerProcess, tmp_path: Path) -> Identity:
    body = token_server.add_client(
        "orders", scopes=["read", "write"], audiences=["inventory", "billing"]
    )
    secret_file = tmp_path / "oauth_client_secret"
    secret_file.write_text(body["client_secret"] + "\n")
    return Identity(token_server, "orders", secret_file, Counter(), [1000.0])


def test_token_is_reused_until_80_percent_of_its_lifetime(identity: Identity) -> None:
    source = identity.source()
    first = source.token()
    assert identity.counter.requests == 1
    identity.clock[0] += 0.79 * LIFETIME
    assert source.token() == first
    assert identity.counter.requests == 1
    identity.clock[0] += 0.02 * LIFETIME
    second = source.token()
    assert second != first
    assert identity.counter.requests == 2
    assert source.token() == second
    assert identity.verifier().verify(second)["client_id"] == "orders"


def test_from_env_with_the_registrars_variables(identity: Identity) -> None:
    env = {
        "OAUTH_CLIENT_ID": identity.client_id,
        "OAUTH_TOKEN_URL": f"{identity.server.url}/api/token",
        "OAUTH_CLIENT_SECRET_FILE": str(identity.secret_file),
        "OAUTH_AUDIENCE": "billing",
    }
    token = TokenSource.from_env(env).token()
    assert identity.verifier("billing").verify(token)["sub"] == "orders"


def run_threads(count: int, target: Callable[[], str]) -> list[str]:
    barrier = threading.Barrier(count)
    results: list[str] = []

    def call() -> None:
        barrier.wait()
        results.append(target())

    threads = [threading.Thread(target=call) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_fifty_threads_without_a_token_make_one_request(identity: Identity) -> None:
    source = identity.source()
    tokens = run_threads(CALLERS, source.token)
    assert len(tokens) == CALLERS
    assert len(set(tokens)) == 1
    assert identity.counter.requests == 1


def test_fifty_tasks_without_a_token_make_one_request(identity: Identity) -> None:
    async def main() -> list[str]:
        async with identity.counter.async_client() as client:
            source = identity.source(async_http_client=client)
            return await asyncio.gather(*(source.atoken() for _ in range(CALLERS)))

    tokens = asyncio.run(main())
    assert len(set(tokens)) == 1
    assert identity.counter.requests == 1


def test_threads_and_tasks_together_make_one_request(identity: Identity) -> None:
    results: list[str] = []

    async def main() -> None:
        async with identity.counter.async_client() as client:
            source = identity.source(async_http_client=client)
            threads = [
                threading.Thread(target=lambda: results.append(source.token()))
                for _ in range(CALLERS // 2)
            ]
            for thread in threads:
                thread.start()
            results.extend(await asyncio.gather(*(source.atoken() for _ in range(CALLERS // 2))))
            await asyncio.to_thread(lambda: [thread.join() for thread in threads])

    asyncio.run(main())
    assert len(results) == CALLERS
    assert len(set(results)) == 1
    assert identity.counter.requests == 1


def test_refresh_due_under_fifty_callers_makes_one_request(identity: Identity) -> None:
    source = identity.source()
    first = source.token()
    identity.clock[0] += 0.85 * LIFETIME
    tokens = run_threads(CALLERS, source.token)
    assert identity.counter.requests == 2
    # Callers that came while the refresh was in flight kept the still-valid token.
    assert set(tokens) <= {first, source.token()}
    assert source.token() != first


def rotate(server: ServerProcess, client_id: str) -> str:
    with server.admin() as admin:
        response = admin.post(
            "/api/clients/rotate", json={"client_id": client_id, "grace_seconds": 0}
        )
    assert response.status_code == 200, response.text
    return str(response.json()["client_secret"])


def wait_until_refused(server: ServerProcess, client_id: str, secret: str) -> None:
    """The server stops taking a rotated-out secret within a second (its contract)."""
    deadline = time.monotonic() + 5
    while server.token(client_id, secret).status_code != 401:
        assert time.monotonic() < deadline, "the old secret is still accepted"
        time.sleep(0.1)


def test_rotated_secret_written_to_the_file_is_picked_up(
    identity: Identity, caplog: pytest.LogCaptureFixture
) -> None:
    source = identity.source(retry_interval=30)
    old_secret = identity.secret_file.read_text().strip()
    first = source.token()
    new_secret = rotate(identity.server, identity.client_id)
    wait_until_refused(identity.server, identity.client_id, old_secret)

    # Refresh due while the file still holds the revoked secret: the refusal is logged
    # and the current, still valid token keeps being used.
    identity.clock[0] += 0.9 * LIFETIME
    with caplog.at_level(logging.WARNING, logger="swarm_oauth.sdk"):
        assert source.token() == first
    assert identity.counter.requests == 2
    assert "invalid_client" in caplog.text
    assert old_secret not in caplog.text
    assert source.token() == first  # no new attempt within retry_interval
    assert identity.counter.requests == 2

    identity.secret_file.write_text(new_secret)  # what a rotated Docker secret looks like
    identity.clock[0] += 30
    rotated = source.token()
    assert rotated != first
    assert identity.counter.requests == 3
    assert identity.verifier().verify(rotated)["sub"] == "orders"


def test_refused_secret_without_a_usable_token_raises(identity: Identity) -> None:
    identity.secret_file.write_text("not-the-secret")
    with pytest.raises(TokenRequestError) as caught:
        identity.source().token()
    assert caught.value.status_code == 401
    assert caught.value.error == "invalid_client"
    assert "not-the-secret" not in str(caught.value)


def test_a_refused_request_is_not_made_again_by_every_caller_at_once(identity: Identity) -> None:
    # A task whose secret was rotated out, say: each of its calls would otherwise cost the
    # token server a request, as fast as the service handles its own traffic.
    secret = identity.secret_file.read_text()
    identity.secret_file.write_text("not-the-secret")
    source = identity.source(async_http_client=identity.counter.async_client())
    with pytest.raises(TokenRequestError):
        source.token()
    for call in [source.token] * 20 + [lambda: asyncio.run(source.atoken())] * 5:
        with pytest.raises(TokenRequestError, match="not asked again for") as again:
            call()
        assert (again.value.status_code, again.value.error) == (401, "invalid_client")
    assert identity.counter.requests == 1
    identity.clock[0] += 1.0  # the first backoff: 0.5 to 1 s
    with pytest.raises(TokenRequestError) as second:
        source.token()
    assert "not asked again" not in str(second.value)
    assert identity.counter.requests == 2
    identity.clock[0] += 0.99  # the second in a row: 1 to 2 s
    with pytest.raises(TokenRequestError, match="not asked again"):
        source.token()
    identity.secret_file.write_text(secret)
    identity.clock[0] += 1.01
    assert identity.verifier().verify(source.token())["sub"] == "orders"
    assert identity.counter.requests == 3


class Unavailable(BaseHTTPRequestHandler):
    """A token endpoint that answers 503 with ``Retry-After: 20`` and a long, many-line
    error description."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        description = "down\nCRITICAL forged line " + "x" * 5000
        body = json.dumps({"error": "temporarily_unavailable", "error_description": description})
        self.send_response(503)
        self.send_header("Retry-After", "20")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: Any) -> None:
        pass


def test_a_server_that_says_when_to_come_back_is_not_asked_before(
    identity: Identity, caplog: pytest.LogCaptureFixture
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Unavailable)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/token"
        source = TokenSource(
            "orders",
            url,
            client_secret="s3cr3t",
            clock=lambda: identity.clock[0],
            http_client=identity.counter.client(),
        )
        with pytest.raises(TokenRequestError) as refused:
            source.token()
        assert refused.value.retry_after == 20
        # The server's words, quoted on one line and cut short (they reach logs).
        assert "\n" not in str(refused.value) and len(str(refused.value)) < 300
        identity.clock[0] += 19
        with pytest.raises(TokenRequestError, match=r"not asked again for 1\.0s"):
            source.token()
        identity.clock[0] += 1
        with pytest.raises(TokenRequestError):
            source.token()
        assert identity.counter.requests == 2
    finally:
        server.shutdown()
        server.server_close()


def test_forced_refresh_after_invalidate(identity: Identity) -> None:
    source = identity.source()
    first = source.token()
    assert source.invalidate("some other token")  # already replaced: a retry may help
    assert source.token() == first
    # Too young to be the reason for a 401: kept, and a retry would not help.
    assert not source.invalidate(first)
    assert source.token() == first
    identity.clock[0] += source.min_token_age
    assert source.invalidate(first)
    assert source.token() != first
    assert identity.counter.requests == 2


@pytest.mark.parametrize("auth_method", ["client_secret_basic", "client_secret_post"])
def test_scope_and_audience_with_either_client_authentication(
    identity: Identity, auth_method: str
) -> None:
    source = identity.source(auth_method=auth_method, scope=["read"], audience="billing")
    claims = identity.verifier("billing").verify(source.token(), scopes=["read"])
    assert claims["scope"] == "read"
    assert claims["aud"] == "billing"


def test_an_http_client_with_auth_of_its_own_does_not_lend_it_to_the_sdk(
    identity: Identity,
) -> None:
    # A client shared with the rest of a service may carry that service's own `auth=`:
    # it must not replace the client credentials, nor the verifier's plain JWKS request.
    elsewhere = httpx.BasicAuth("someone-else", "their-password")
    source = identity.source(http_client=httpx.Client(timeout=10, auth=elsewhere))
    token = source.token()
    verifier = Verifier(
        issuer=identity.server.url,
        audience="inventory",
        http_client=httpx.Client(timeout=10, auth=elsewhere),
    )
    assert verifier.verify(token)["sub"] == "orders"

    async def in_a_task() -> str:
        async_source = identity.source(
            async_http_client=httpx.AsyncClient(timeout=10, auth=elsewhere)
        )
        return await async_source.atoken()

    assert identity.verifier().verify(asyncio.run(in_a_task()))["sub"] == "orders"


def test_unreachable_token_endpoint(identity: Identity) -> None:
    url = identity.server.url
    identity.server.stop()
    source = TokenSource("orders", f"{url}/api/token", client_secret="x", timeout=2)
    with pytest.raises(TokenRequestError, match="unreachable") as caught:
        source.token()
    assert caught.value.status_code is None


def test_secret_file_that_never_appears(
    identity: Identity, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="swarm_oauth.sdk")
    source = identity.source(client_secret_file=tmp_path / "absent", secret_wait=0.3)
    with pytest.raises(SecretFileError, match="absent"):
        source.token()
    assert identity.counter.requests == 0
    # The wait itself is logged, naming the file, not only its end as the error.
    assert f"client secret file {tmp_path / 'absent'} is missing or empty" in caplog.text


def test_a_secret_file_gone_at_refresh_costs_no_wait_while_the_token_is_valid(
    identity: Identity, caplog: pytest.LogCaptureFixture
) -> None:
    source = identity.source(secret_wait=5)
    first = source.token()
    identity.secret_file.unlink()
    identity.clock[0] += 0.85 * LIFETIME
    started = time.monotonic()
    assert source.token() == first
    assert time.monotonic() - started < 1  # not the 5 s secret_wait, at every refresh
    assert "using the current token until it expires" in caplog.text
    assert identity.counter.requests == 1
