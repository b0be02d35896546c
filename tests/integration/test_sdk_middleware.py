"""The framework glue on real apps: BearerTokenMiddleware on Starlette served by uvicorn,
the FastAPI dependency, and the httpx/requests auth classes that call such services.
Tokens come from a real token server; nothing is mocked.
"""

# No "from __future__ import annotations": FastAPI must evaluate the route signatures,
# whose dependencies are local variables.
import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Annotated, Any, Self

import httpx
import jwt
import pytest
import requests
import uvicorn
import websockets.sync.client
from fastapi import Depends, FastAPI, Request
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from websockets.exceptions import InvalidStatus

from swarm_oauth.sdk import BearerAuth, BearerTokenMiddleware, TokenSource, Verifier
from swarm_oauth.sdk.fastapi import TokenRejected, require_token, token_rejected_handler
from swarm_oauth.sdk.requests_auth import RequestsBearerAuth
from tests.support.deadlines import refused_within
from tests.support.server import ServerProcess, free_port


async def whoami(request: StarletteRequest) -> JSONResponse:
    claims = request.state.token_claims
    return JSONResponse({"sub": claims["sub"], "scope": claims.get("scope", "")})


async def healthz(request: StarletteRequest) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def hello(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text(f"hello {websocket.state.token_claims['sub']}")
    await websocket.close()


class Served:
    """A Starlette app behind BearerTokenMiddleware, on uvicorn in a thread."""

    def __init__(self, verifier: Verifier, scopes: str | tuple[str, ...] = ()) -> None:
        app = Starlette(
            routes=[
                Route("/whoami", whoami),
                Route("/healthz", healthz),
                WebSocketRoute("/ws", hello),
            ],
            middleware=[
                Middleware(
                    BearerTokenMiddleware,
                    verifier=verifier,
                    scopes=scopes,
                    exempt_paths=["/healthz"],
                )
            ],
        )
        self.requests = 0
        self._app = app
        config = uvicorn.Config(
            self._count,
            host="127.0.0.1",
            port=free_port(),
            log_level="warning",
            lifespan="off",
            interface="asgi3",
        )
        self.server = uvicorn.Server(config)
        self.url = f"http://127.0.0.1:{config.port}"

    async def _count(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.requests += 1
        await self._app(scope, receive, send)

    def __enter__(self) -> Self:
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def secret_file(token_server: ServerProcess, tmp_path: Path) -> Path:
    body = token_server.add_client(
        "orders", scopes=["read", "write"], audiences=["inventory", "billing"]
    )
    path = tmp_path / "oauth_client_secret"
    path.write_text(body["client_secret"])
    return path


def source_for(server: ServerProcess, secret_file: Path, **options: Any) -> TokenSource:
    settings = {"client_secret_file": secret_file, "audience": "inventory", **options}
    return TokenSource("orders", f"{server.url}/api/token", **settings)


@pytest.fixture
def app(token_server: ServerProcess) -> Iterator[Served]:
    with Served(Verifier(issuer=token_server.url, audience="inventory")) as served:
        yield served


def test_request_without_a_token_gets_a_bare_challenge(app: Served) -> None:
    response = httpx.get(f"{app.url}/whoami")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == {
        "error": "invalid_token",
        "error_description": "a Bearer token is required",
    }
    basic = httpx.get(f"{app.url}/whoami", auth=("user", "pass"))
    assert (basic.status_code, basic.headers["www-authenticate"]) == (401, "Bearer")


def test_valid_token_reaches_the_app_with_its_claims(
    app: Served, token_server: ServerProcess, secret_file: Path
) -> None:
    auth = BearerAuth(source_for(token_server, secret_file, scope="read"))
    response = httpx.get(f"{app.url}/whoami", auth=auth)
    assert response.status_code == 200
    assert response.json() == {"sub": "orders", "scope": "read"}


def test_a_token_is_verified_once_whatever_the_scheme_spelling(
    token_server: ServerProcess, secret_file: Path
) -> None:
    verifier = Verifier(issuer=token_server.url, audience="inventory")
    token = source_for(token_server, secret_file, scope="read").token()
    # RFC 7235 §2.1: the scheme is case-insensitive, and more than one space may follow
    # it. The fast path knows only the usual spelling, the general one the rest.
    spellings = [f"Bearer {token}", f"bearer {token}", f"BEARER   {token}", f"Bearer {token}"]
    with Served(verifier) as app:
        for value in spellings:
            response = httpx.get(f"{app.url}/whoami", headers={"Authorization": value})
            assert (response.status_code, response.json()) == (
                200,
                {"sub": "orders", "scope": "read"},
            )
    assert len(verifier.cache) == 1
    read = frozenset({"read"})
    claims = verifier.recall(f"Bearer {token}".encode(), read)
    assert claims is not None and claims["sub"] == "orders"
    for value in (f"bearer {token}", token, f"Bearer {token} "):
        assert verifier.recall(value.encode(), read) is None
    assert verifier.recall(f"Bearer {token}".encode(), frozenset({"write"})) is None
    assert asyncio.run(verifier.averify(token, scopes=["read"])) is claims


def test_invalid_tokens_get_an_invalid_token_challenge(
    app: Served, token_server: ServerProcess, secret_file: Path
) -> None:
    other_audience = source_for(token_server, secret_file, audience="billing").token()
    response = httpx.get(f"{app.url}/whoami", headers={"Authorization": f"Bearer {other_audience}"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == (
        'Bearer error="invalid_token", error_description="aud \'billing\' does not include '
        "'inventory'\""
    )
    assert response.json()["error"] == "invalid_token"
    garbage = httpx.get(f"{app.url}/whoami", headers={"Authorization": "Bearer abc"})
    assert garbage.status_code == 401
    assert 'error_description="not a JWT' in garbage.headers["www-authenticate"]


def test_two_authorization_headers_are_a_bad_request(app: Served) -> None:
    headers = [("Authorization", "Bearer a"), ("Authorization", "Bearer b")]
    response = httpx.get(f"{app.url}/whoami", headers=headers)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_exempt_path_needs_no_token(app: Served) -> None:
    response = httpx.get(f"{app.url}/healthz")
    assert (response.status_code, response.text) == (200, "ok")


# A string is a space-separated list, as OAuth writes scopes: not the letters w, r, i, t, e.
@pytest.mark.parametrize("required", [("write",), "write"])
def test_missing_scope_is_403_insufficient_scope(
    token_server: ServerProcess, secret_file: Path, required: str | tuple[str, ...]
) -> None:
    verifier = Verifier(issuer=token_server.url, audience="inventory")
    with Served(verifier, scopes=required) as served:
        reader = BearerAuth(source_for(token_server, secret_file, scope="read"))
        response = httpx.get(f"{served.url}/whoami", auth=reader)
        assert response.status_code == 403
        assert response.headers["www-authenticate"] == (
            'Bearer error="insufficient_scope", '
            'error_description="token lacks scope(s): write", scope="write"'
        )
        writer = BearerAuth(source_for(token_server, secret_file, scope="read write"))
        assert httpx.get(f"{served.url}/whoami", auth=writer).status_code == 200


def test_websocket_handshake_needs_a_token(
    app: Served, token_server: ServerProcess, secret_file: Path
) -> None:
    ws_url = app.url.replace("http://", "ws://") + "/ws"
    with pytest.raises(InvalidStatus) as refused:
        websockets.sync.client.connect(ws_url, open_timeout=10)
    assert refused.value.response.status_code == 403
    token = source_for(token_server, secret_file).token()
    headers = {"Authorization": f"Bearer {token}"}
    with websockets.sync.client.connect(ws_url, additional_headers=headers) as connection:
        assert connection.recv(timeout=10) == "hello orders"


def test_requests_auth_attaches_the_token(
    app: Served, token_server: ServerProcess, secret_file: Path
) -> None:
    with requests.Session() as session:
        session.auth = RequestsBearerAuth(source_for(token_server, secret_file))
        response = session.get(f"{app.url}/whoami", timeout=10)
    assert response.status_code == 200
    assert response.json()["sub"] == "orders"


class TokenCounter:
    def __init__(self) -> None:
        self.count = 0

    def hook(self, request: httpx.Request) -> None:
        self.count += 1

    async def ahook(self, request: httpx.Request) -> None:
        self.count += 1


@pytest.fixture
def short_lived(server_factory: Any, tmp_path: Path) -> tuple[ServerProcess, Path]:
    """A token server issuing 5-second tokens (which outlast the first call, even on a slow
    machine), and the secret file of client "orders"."""
    server = server_factory(data_dir=tmp_path / "short", args=["--token-lifetime", "5"])
    body = server.add_client("orders", audiences=["inventory", "billing"])
    path = tmp_path / "short-secret"
    path.write_text(body["client_secret"])
    return server, path


def wait_until_expired(token: str) -> None:
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]
    while time.time() < expires:
        time.sleep(0.1)


def stale_source(server: ServerProcess, secret_file: Path, counter: TokenCounter) -> TokenSource:
    """A source whose clock stands still: it believes its cached token never ages,
    like a service whose token expired in flight or whose clock is behind."""
    return source_for(
        server,
        secret_file,
        clock=lambda: 0.0,
        min_token_age=0,  # on this clock every token is brand new
        http_client=httpx.Client(event_hooks={"request": [counter.hook]}),
        async_http_client=httpx.AsyncClient(event_hooks={"request": [counter.ahook]}),
    )


def test_httpx_auth_retries_once_with_a_fresh_token_after_401(
    short_lived: tuple[ServerProcess, Path],
) -> None:
    server, secret_file = short_lived
    counter = TokenCounter()
    source = stale_source(server, secret_file, counter)
    with Served(Verifier(issuer=server.url, audience="inventory", leeway=0)) as served:
        auth = BearerAuth(source)
        assert httpx.get(f"{served.url}/whoami", auth=auth).status_code == 200
        wait_until_expired(source.token())
        response = httpx.get(f"{served.url}/whoami", auth=auth)
        assert response.status_code == 200
        assert [r.status_code for r in response.history] == [401]
        assert counter.count == 2
        assert served.requests == 3

        wait_until_expired(source.token())

        async def call() -> httpx.Response:
            async with httpx.AsyncClient(auth=auth) as client:
                return await client.get(f"{served.url}/whoami")

        assert asyncio.run(call()).status_code == 200
        assert counter.count == 3
        assert served.requests == 5


def test_requests_auth_retries_once_with_a_fresh_token_after_401(
    short_lived: tuple[ServerProcess, Path],
) -> None:
    server, secret_file = short_lived
    counter = TokenCounter()
    source = stale_source(server, secret_file, counter)
    with Served(Verifier(issuer=server.url, audience="inventory", leeway=0)) as served:
        with requests.Session() as session:
            session.auth = RequestsBearerAuth(source)
            assert session.get(f"{served.url}/whoami", timeout=10).status_code == 200
            wait_until_expired(source.token())
            response = session.post(f"{served.url}/whoami", data=b"body", timeout=10)
        assert response.status_code == 405  # authenticated, then refused by the route
        assert [r.status_code for r in response.history] == [401]
        assert counter.count == 2
        assert served.requests == 3


class Redirecting:
    """Two HTTP servers of different origins: ``url`` (127.0.0.1) redirects to the other
    (localhost), which answers 401 to everything and records what it was sent."""

    def __init__(self) -> None:
        seen = self.seen = []

        class Refusing(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append(self.headers.get("Authorization"))
                self.send_response(401)
                self.send_header("WWW-Authenticate", "Bearer")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.refusing = ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
        self.elsewhere = f"localhost:{self.refusing.server_address[1]}"
        elsewhere = self.elsewhere

        class Redirect(Refusing):
            def do_GET(self) -> None:
                self.send_response(302)
                self.send_header("Location", f"http://{elsewhere}/x")
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.redirect = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
        self.url = f"http://127.0.0.1:{self.redirect.server_address[1]}/go"
        for server in (self.refusing, self.redirect):
            threading.Thread(target=server.serve_forever, daemon=True).start()

    def close(self) -> None:
        for server in (self.refusing, self.redirect):
            server.shutdown()
            server.server_close()


def test_a_401_from_another_origin_after_a_redirect_neither_gets_nor_drops_the_token(
    token_server: ServerProcess, secret_file: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    counter, now = TokenCounter(), [1000.0]
    source = source_for(
        token_server,
        secret_file,
        clock=lambda: now[0],
        http_client=httpx.Client(event_hooks={"request": [counter.hook]}),
    )
    servers = Redirecting()
    # requests strips the token on the way to another host, and puts .netrc's there.
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine localhost login user password {'p' * 8}\n")
    monkeypatch.setenv("NETRC", str(netrc))
    try:
        with requests.Session() as session:
            session.auth = RequestsBearerAuth(source)
            now[0] += source.min_token_age  # old enough that a 401 of its own would drop it
            response = session.get(servers.url, timeout=10)
        assert response.status_code == 401
        assert servers.seen and all(a and a.startswith("Basic ") for a in servers.seen)
        with httpx.Client(auth=BearerAuth(source), follow_redirects=True) as client:
            assert [client.get(servers.url).status_code for _ in range(3)] == [401] * 3
        assert counter.count == 1  # the token was kept: the 401s were not to it
        assert not any(a and "Bearer" in a for a in servers.seen), servers.seen
    finally:
        servers.close()


def test_a_service_that_keeps_refusing_a_new_token_costs_no_token_requests(
    app: Served, token_server: ServerProcess, secret_file: Path
) -> None:
    counter = TokenCounter()
    now = [1000.0]
    wrong_audience = source_for(
        token_server,
        secret_file,
        audience="billing",  # the app wants "inventory": every request is a 401
        clock=lambda: now[0],
        http_client=httpx.Client(event_hooks={"request": [counter.hook]}),
        async_http_client=httpx.AsyncClient(event_hooks={"request": [counter.ahook]}),
    )
    auth = BearerAuth(wrong_audience)

    async def acalls() -> list[httpx.Response]:
        async with httpx.AsyncClient(auth=auth) as client:
            return [await client.get(f"{app.url}/whoami") for _ in range(3)]

    with requests.Session() as session:
        session.auth = RequestsBearerAuth(wrong_audience)
        responses = [httpx.get(f"{app.url}/whoami", auth=auth) for _ in range(3)]
        responses += asyncio.run(acalls())
        responses += [session.get(f"{app.url}/whoami", timeout=10) for _ in range(3)]
        assert [(r.status_code, len(r.history)) for r in responses] == [(401, 0)] * 9
        assert counter.count == 1  # the token is younger than min_token_age: kept, no retry
        assert app.requests == 9

        # Older than that, a 401 replaces it once; the replacement is young again.
        now[0] += wrong_audience.min_token_age
        response = httpx.get(f"{app.url}/whoami", auth=auth)
        assert (response.status_code, [r.status_code for r in response.history]) == (401, [401])
        assert session.get(f"{app.url}/whoami", timeout=10).history == []
        assert counter.count == 2
        assert app.requests == 12


def fastapi_app(verifier: Verifier, *, handler: bool = True) -> FastAPI:
    handlers = {TokenRejected: token_rejected_handler} if handler else {}
    api = FastAPI(exception_handlers=handlers)
    reader = require_token(verifier, "read")  # one string: space-separated scopes

    @api.get("/orders")
    async def orders(
        request: Request, claims: Annotated[dict[str, Any], Depends(reader)]
    ) -> dict[str, Any]:
        return {"sub": claims["sub"], "same": request.state.token_claims is claims}

    @api.get("/public")
    async def public() -> dict[str, str]:
        return {"ok": "yes"}

    return api


def middleware_app(verifier: Verifier) -> Starlette:
    async def orders(request: StarletteRequest) -> JSONResponse:
        return JSONResponse({"sub": request.state.token_claims["sub"]})

    return Starlette(
        routes=[Route("/orders", orders)],
        middleware=[Middleware(BearerTokenMiddleware, verifier=verifier, scopes=["read"])],
    )


def answers(
    app: Any, requests: list[dict[str, str]], path: str = "/orders"
) -> list[httpx.Response]:
    async def calls() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            return [await client.get(path, headers=headers) for headers in requests]

    return asyncio.run(calls())


def refusal(response: httpx.Response) -> tuple[Any, ...]:
    """Everything a caller can see of a refusal."""
    headers = ("content-type", "cache-control", "www-authenticate", "retry-after")
    return (response.status_code, response.json(), *(response.headers.get(h) for h in headers))


def test_fastapi_dependency(token_server: ServerProcess, secret_file: Path) -> None:
    verifier = Verifier(issuer=token_server.url, audience="inventory")
    api = fastapi_app(verifier)
    reader = source_for(token_server, secret_file, scope="read").token()
    writer = source_for(token_server, secret_file, scope="write").token()
    good = {"Authorization": f"Bearer {reader}"}
    refused = [
        {},
        {"Authorization": "Basic b3JkZXJzOng="},
        {"Authorization": "Bearer x.y.z"},
        {"Authorization": "Bearer "},
        {"Authorization": f"Bearer {writer}"},
    ]

    *refusals, allowed = answers(api, [*refused, good])
    missing, basic, garbage, blank, unscoped = refusals
    assert (missing.status_code, missing.headers["www-authenticate"]) == (401, "Bearer")
    assert basic.headers["www-authenticate"] == "Bearer"
    assert garbage.status_code == 401
    assert garbage.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    assert blank.status_code == 400
    assert unscoped.status_code == 403
    assert 'error="insufficient_scope"' in unscoped.headers["www-authenticate"]
    assert unscoped.json() == {
        "error": "insufficient_scope",
        "error_description": "token lacks scope(s): read",
    }
    # Exactly what the middleware answers to the same requests.
    expected = answers(middleware_app(verifier), refused)
    assert [refusal(r) for r in refusals] == [refusal(r) for r in expected]
    assert (allowed.status_code, allowed.json()) == (200, {"sub": "orders", "same": True})
    (public,) = answers(api, [{}], "/public")
    assert public.status_code == 200
    schemes = api.openapi()["components"]["securitySchemes"]
    assert schemes == {"TokenRequired": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}

    # Without the handler FastAPI writes its own body; status and headers stay the same.
    (plain,) = answers(fastapi_app(verifier, handler=False), [refused[-1]])
    assert plain.json() == {"detail": "token lacks scope(s): read"}
    assert (plain.status_code, plain.headers["www-authenticate"]) == (
        403,
        unscoped.headers["www-authenticate"],
    )
    assert plain.headers["cache-control"] == unscoped.headers["cache-control"] == "no-store"


def test_middleware_on_a_fastapi_app(token_server: ServerProcess, secret_file: Path) -> None:
    api = FastAPI()

    @api.get("/me")
    async def me(request: Request) -> dict[str, Any]:
        return {"sub": request.state.token_claims["sub"]}

    verifier = Verifier(issuer=token_server.url, audience="inventory")
    api.add_middleware(BearerTokenMiddleware, verifier=verifier)
    auth = BearerAuth(source_for(token_server, secret_file))

    async def calls() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            return await client.get("/me"), await client.get("/me", auth=auth)

    refused, allowed = asyncio.run(calls())
    assert refused.status_code == 401
    assert (allowed.status_code, allowed.json()) == (200, {"sub": "orders"})


def test_misconfigured_issuer_is_a_500_and_a_jwks_outage_a_503(
    token_server: ServerProcess, secret_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    token = source_for(token_server, secret_file, scope="read").token()
    headers = {"Authorization": f"Bearer {token}"}
    wrong_issuer = Verifier(issuer=f"{token_server.url}/tenant", audience="inventory")
    outage = Verifier(
        issuer=token_server.url, audience="inventory", jwks_url=f"http://127.0.0.1:{free_port()}"
    )
    with caplog.at_level(logging.ERROR, logger="swarm_oauth.sdk"):
        misconfigured = [
            answers(app, [headers])[0]
            for app in (middleware_app(wrong_issuer), fastapi_app(wrong_issuer))
        ]
        unavailable = [
            answers(app, [headers])[0] for app in (middleware_app(outage), fastapi_app(outage))
        ]
    for response in misconfigured:
        assert response.status_code == 500
        # The caller learns nothing of the setup; the log says which URL and why.
        assert response.json() == {
            "error": "server_error",
            "error_description": "this service cannot verify tokens",
        }
        assert "www-authenticate" not in response.headers
    assert (
        f"issuer metadata at {token_server.url}/.well-known/oauth-authorization-server/tenant: "
        "answered HTTP 404"
    ) in caplog.text
    for response in unavailable:
        assert (response.status_code, response.json()["error"]) == (503, "temporarily_unavailable")
        assert response.headers["retry-after"] == "5"


def test_a_revoked_token_is_401_and_an_unknown_revocation_list_503(
    token_server: ServerProcess, secret_file: Path
) -> None:
    revoked, kept = (source_for(token_server, secret_file, scope="read").token() for _ in range(2))
    verifier = Verifier(
        issuer=token_server.url,
        audience="inventory",
        check_revocations=True,
        revocation_refresh=1.0,
    )
    apps = (middleware_app(verifier), fastapi_app(verifier))
    headers = [{"Authorization": f"Bearer {token}"} for token in (revoked, kept)]
    assert [r.status_code for app in apps for r in answers(app, headers)] == [200] * 4
    secret = secret_file.read_text()
    response = httpx.post(
        f"{token_server.url}/api/revoke", data={"token": revoked}, auth=("orders", secret)
    )
    assert response.status_code == 200
    refused_within(
        lambda: answers(apps[0], headers[:1])[0].status_code == 200,
        time.monotonic(),
        1.0 + 1,  # the refresh interval plus about a second
        "the revoked token still passes",
    )
    for app in apps:
        refused, allowed = answers(app, headers)
        assert refusal(refused) == (
            401,
            {"error": "invalid_token", "error_description": "token has been revoked"},
            "application/json",
            "no-store",
            'Bearer error="invalid_token", error_description="token has been revoked"',
            None,
        )
        assert allowed.status_code == 200

    nowhere = Verifier(
        issuer=token_server.url,
        audience="inventory",
        check_revocations=True,
        revocations_url=f"http://127.0.0.1:{free_port()}/api/revocations",
    )
    for app in (middleware_app(nowhere), fastapi_app(nowhere)):
        (unavailable,) = answers(app, headers[1:])
        assert refusal(unavailable) == (
            503,
            {
                "error": "temporarily_unavailable",
                "error_description": "revocations cannot be checked",
            },
            "application/json",
            "no-store",
            None,
            "5",
        )
