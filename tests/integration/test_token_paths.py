"""A token request and a forward-auth check get the same answer, log line and metrics
whichever way the server takes them: answered by the protocol itself (a plain request)
or by the ASGI application (the same request with a chunked body, which the protocol
never answers itself)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import jwt
import pytest

from swarm_oauth.serving.batch import MAX_BATCH
from swarm_oauth.serving.direct import Answer, Later, direct_endpoints
from tests.support.inprocess import InProcessServer

FORM = {"content-type": "application/x-www-form-urlencoded"}
BODY = b"grant_type=client_credentials&scope=read"


def chunked(body: bytes) -> Iterator[bytes]:
    """A body httpx sends with ``Transfer-Encoding: chunked``."""
    yield body


def ask(server, secret: str, *, stream: bool) -> httpx.Response:
    content = chunked(BODY) if stream else BODY
    return httpx.post(
        server.url + "/api/token",
        content=content,
        headers=FORM,
        auth=("orders", secret),
        timeout=10,
    )


def compared(response: httpx.Response) -> tuple[int, dict[str, str], dict[str, object]]:
    """What must not depend on the path: status, headers but the date and length, and
    the body (a token's claims but its times and id)."""
    headers = {k: v for k, v in response.headers.items() if k not in ("date", "content-length")}
    body = response.json()
    if "access_token" in body:
        claims = jwt.decode(body.pop("access_token"), options={"verify_signature": False})
        body["claims"] = {k: v for k, v in claims.items() if k not in ("iat", "exp", "jti")}
    return response.status_code, headers, body


@pytest.mark.parametrize("right_secret", [True, False], ids=["issued", "wrong secret"])
def test_both_paths_answer_alike(token_server, right_secret: bool) -> None:
    secret = token_server.add_client("orders", scopes=["read"])["client_secret"]
    if not right_secret:
        secret = "not-" + secret
    ask(token_server, secret, stream=False)  # the client is cached from here on
    plain = ask(token_server, secret, stream=False)
    streamed = ask(token_server, secret, stream=True)
    assert streamed.request.headers["transfer-encoding"] == "chunked"
    assert compared(plain) == compared(streamed)
    assert plain.status_code == (200 if right_secret else 401)
    outcome = "issued" if right_secret else "invalid_client"
    status = plain.status_code
    text = httpx.get(token_server.url + "/metrics").text
    assert f'swarm_oauth_token_requests_total{{outcome="{outcome}"}} 3.0' in text
    assert (
        f'swarm_oauth_http_requests_total{{method="POST",route="/api/token",status="{status}"}} 3.0'
        in text
    )
    token_server.stop()
    access = access_lines(token_server, "/api/token")
    assert len(access) == 3
    assert access[0] == access[1] == access[2]
    assert access[0]["client_id"] == "orders"
    assert access[0]["status"] == status
    assert ("error" in access[0]) is not right_secret


def access_lines(server, path: str) -> list[dict[str, object]]:
    """The access log's lines for ``path``, without their time and duration."""
    lines = [json.loads(line) for line in server.log().splitlines() if line.strip()]
    return [
        {k: v for k, v in line.items() if k not in ("ts", "duration_ms")}
        for line in lines
        if line["logger"] == "swarm_oauth.access" and line["path"] == path
    ]


def test_forward_auth_answers_alike_on_both_paths(token_server) -> None:
    secret = token_server.add_client("orders", scopes=["read", "write"])["client_secret"]
    token = token_server.token("orders", secret, scope="read").json()["access_token"]
    audience = quote(token_server.url, safe="")
    cases = {  # the metric's outcome: query, Authorization, status and error expected
        "allowed": (f"?audience={audience}&scope=read", f"Bearer {token}", 200, None),
        "invalid_token": (f"?audience={audience}", "Bearer not.a.token", 401, "invalid_token"),
        "insufficient_scope": ("?scope=write", f"Bearer {token}", 403, "insufficient_scope"),
        "bad_query": ("?scopes=read", f"Bearer {token}", 400, "invalid_request"),
    }
    for outcome, (query, authorization, status, error) in cases.items():
        url = f"{token_server.url}/api/verify{query}"
        headers = {"authorization": authorization}
        plain = httpx.get(url, headers=headers, timeout=10)
        streamed = httpx.request("GET", url, headers=headers, content=chunked(b""), timeout=10)
        assert streamed.request.headers["transfer-encoding"] == "chunked"
        assert plain.status_code == status, plain.text
        assert (plain.status_code, plain.content) == (streamed.status_code, streamed.content)
        assert {k: v for k, v in plain.headers.items() if k != "date"} == {
            k: v for k, v in streamed.headers.items() if k != "date"
        }
        if error is None:
            assert plain.headers["x-auth-client-id"] == "orders"
            assert plain.content == b""
        else:
            assert plain.json()["error"] == error
        text = httpx.get(token_server.url + "/metrics").text
        assert f'swarm_oauth_forward_auth_requests_total{{outcome="{outcome}"}} 2.0' in text
        assert (
            f'swarm_oauth_http_requests_total{{method="GET",route="/api/verify",status="{status}"}}'
            " 2.0" in text
        )
    token_server.stop()
    access = access_lines(token_server, "/api/verify")
    assert len(access) == 2 * len(cases)
    # Two by two alike; the query string (which may name audiences) is never logged.
    assert access[0::2] == access[1::2]
    assert [line["status"] for line in access[0::2]] == [c[2] for c in cases.values()]
    assert all(line["route"] == "/api/verify" and line["method"] == "GET" for line in access)
    # Who was let through or turned away, and why; a client id only from a token whose
    # signature verified, never one a caller merely wrote.
    logged = {
        outcome: {k: line.get(k) for k in ("client_id", "error", "error_description")}
        for outcome, line in zip(cases, access[0::2], strict=True)
    }
    assert logged == {
        "allowed": {"client_id": "orders", "error": None, "error_description": None},
        "invalid_token": {
            "client_id": None,
            "error": "invalid_token",
            "error_description": "the token is not a JWT",
        },
        "insufficient_scope": {
            "client_id": "orders",
            "error": "insufficient_scope",
            "error_description": "the token lacks scope(s): write",
        },
        "bad_query": {
            "client_id": None,
            "error": "invalid_request",
            "error_description": "unknown query parameter 'scopes' (use audience and scope)",
        },
    }


def raw_status(server, request: bytes) -> int:
    """The status of one request sent as is (httpx would drop a fragment from the URL)."""
    host, port = server.host, server.port
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(request)
        head = b""
        while b"\r\n" not in head:
            chunk = sock.recv(4096)
            assert chunk, head
            head += chunk
    return int(head.split(b" ", 2)[1])


def test_a_fragment_in_the_query_is_read_alike_on_both_paths(token_server) -> None:
    secret = token_server.add_client("orders", scopes=["read"])["client_secret"]
    token = token_server.token("orders", secret, scope="read").json()["access_token"]
    target = f"/api/verify?audience={quote(token_server.url, safe='')}&scope=read#x".encode()
    head = b"Host: x\r\nAuthorization: Bearer " + token.encode() + b"\r\nConnection: close\r\n"
    # GET is answered by the protocol itself, HEAD through ASGI, whose query_string has
    # no fragment: scope "read#x" would be a scope the token lacks.
    fast = raw_status(token_server, b"GET " + target + b" HTTP/1.1\r\n" + head + b"\r\n")
    asgi = raw_status(token_server, b"HEAD " + target + b" HTTP/1.1\r\n" + head + b"\r\n")
    assert (fast, asgi) == (200, 200)


def test_pipelined_requests_are_answered_in_order(token_server) -> None:
    """Token requests on either side of one the application answers, sent in one write:
    the answers come back in the order asked."""
    secret = token_server.add_client("orders", scopes=["read"])["client_secret"]
    host = f"{token_server.host}:{token_server.port}"
    basic = httpx.BasicAuth("orders", secret)._auth_header

    def token_request(scope: str) -> bytes:
        body = f"grant_type=client_credentials&scope={scope}"
        return (
            f"POST /api/token HTTP/1.1\r\nHost: {host}\r\nAuthorization: {basic}\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n\r\n{body}"
        ).encode()

    wire = (
        token_request("read")
        + f"GET /readyz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
        + token_request("write")
    )
    with socket.create_connection((token_server.host, token_server.port), timeout=10) as sock:
        sock.sendall(wire)
        answers = read_responses(sock, 3)
    assert [status for status, _ in answers] == [200, 200, 400]
    assert "access_token" in answers[0][1]
    assert answers[1][1]["status"] == "ready"
    assert answers[2][1]["error"] == "invalid_scope"


def test_requests_on_many_connections_at_once_each_get_their_own_answer(token_server) -> None:
    """More token requests than one batch of direct answers holds, all sent before any
    answer is read, half of them with a wrong secret: each connection gets the answer
    to its own request, and every token verifies and is unique."""
    secret = token_server.add_client("orders", scopes=["read"])["client_secret"]
    assert ask(token_server, secret, stream=False).status_code == 200  # now cached
    host = f"{token_server.host}:{token_server.port}"
    count = 3 * MAX_BATCH

    def wire(n: int) -> bytes:
        basic = httpx.BasicAuth("orders", secret if n % 2 == 0 else "wrong")._auth_header
        return (
            f"POST /api/token HTTP/1.1\r\nHost: {host}\r\nAuthorization: {basic}\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(BODY)}\r\n\r\n"
        ).encode() + BODY

    socks = [
        socket.create_connection((token_server.host, token_server.port), timeout=10)
        for _ in range(count)
    ]
    try:
        for n, sock in enumerate(socks):
            sock.sendall(wire(n))
        answers = [read_responses(sock, 1)[0] for sock in socks]
    finally:
        for sock in socks:
            sock.close()
    assert [status for status, _ in answers] == [200 if n % 2 == 0 else 401 for n in range(count)]
    jwks = jwt.PyJWKClient(f"{token_server.url}/.well-known/jwks.json")
    ids = set()
    for _, body in answers[0::2]:
        token = str(body["access_token"])
        key = jwks.get_signing_key_from_jwt(token)
        options = {"verify_aud": False}  # the audience is not what this test is about
        claims = jwt.decode(
            token, key.key, algorithms=["ES256"], issuer=token_server.url, options=options
        )
        assert claims["client_id"] == "orders"
        ids.add(claims["jti"])
    assert len(ids) == count // 2
    assert all(body["error"] == "invalid_client" for _, body in answers[1::2])


def read_responses(sock: socket.socket, count: int) -> list[tuple[int, dict[str, object]]]:
    """``count`` responses with a Content-Length and a JSON body, read off ``sock`` in
    order: (status, body)."""
    data = b""
    answers: list[tuple[int, dict[str, object]]] = []
    while len(answers) < count:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if sep:
            lines = head.decode("latin-1").split("\r\n")
            fields = dict(line.lower().split(": ", 1) for line in lines[1:])
            length = int(fields["content-length"])
            if len(rest) >= length:
                answers.append((int(lines[0].split()[1]), json.loads(rest[:length])))
                data = rest[length:]
                continue
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        data += chunk
    return answers


def settled(answer: Answer | Later | None) -> Answer | None:
    """What the protocol writes for a direct endpoint's return: a ``Later`` computed."""
    return answer if answer is None or isinstance(answer, Answer) else answer()


def test_the_direct_endpoint_declines_what_it_would_have_to_wait_for(inprocess) -> None:
    """The token endpoint answers at once only for a cached client with nothing to wait
    for; a client the cache has not seen, or one whose tokens were revoked this second,
    is left to the ASGI path (which queries the store, or lets the second pass)."""
    endpoint = direct_endpoints(inprocess.app)[b"/api/token"]
    secret = inprocess.admin(
        "POST", "/api/clients/add", json={"client_id": "orders", "scopes": ["read"]}
    ).json()["client_secret"]
    basic = httpx.BasicAuth("orders", secret)._auth_header.encode()
    headers = [(b"authorization", basic), (b"content-type", FORM["content-type"].encode())]
    client = ("127.0.0.1", 50000)

    inprocess.runtime.client_cache.forget("orders")
    assert endpoint(headers, BODY, b"", client) is None  # not cached: the store must be asked
    assert inprocess.request("POST", "/api/token", content=BODY, headers={
        "authorization": basic.decode(), **FORM}).status_code == 200  # fmt: skip
    answer = settled(endpoint(headers, BODY, b"", client))
    assert answer is not None and answer.status == 200
    assert (b"cache-control", b"no-store") in answer.headers
    assert "access_token" in json.loads(answer.body)

    wrong = [(b"authorization", httpx.BasicAuth("orders", "x")._auth_header.encode()), headers[1]]
    refused = settled(endpoint(wrong, BODY, b"", client))
    assert refused is not None and refused.status == 401
    assert any(name == b"www-authenticate" for name, _ in refused.headers)

    # A token issued in the second of a revocation would be revoked too: the ASGI path
    # waits for the next second. Revoked again when too close to a second's end to tell.
    for _ in range(5):
        revoked = inprocess.admin(
            "POST", "/api/clients/revoke-tokens", json={"client_id": "orders"}
        )
        assert revoked.status_code == 200
        if inprocess.runtime.revocations.issue_delay("orders", time.time()) > 0.05:
            assert inprocess.runtime.client_cache.peek("orders")[0]  # still cached
            assert endpoint(headers, BODY, b"", client) is None
            break
        time.sleep(0.1)
    else:
        pytest.fail("no revocation left 50 ms of its second")


def test_only_the_tokens_role_offers_direct_endpoints(tmp_path) -> None:
    for role, offered in (
        ("tokens", {b"/api/token": b"POST", b"/api/verify": b"GET"}),
        ("clients", {}),
    ):
        server = InProcessServer(tmp_path / role, role=role)
        try:
            endpoints = direct_endpoints(server.app)
            assert {path: e.method for path, e in endpoints.items()} == offered
        finally:
            server.close()
