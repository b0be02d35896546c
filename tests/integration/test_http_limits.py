"""The listener's limits on a real server process: header size and count, the request read
timeout and the connection cap, each answered and closed, and none of them costing a
legitimate client its token. Raw sockets, because an HTTP client would not misbehave."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from swarm_oauth.serving.limits import MAX_HEADER_BYTES, MAX_HEADERS

REQUEST_LINE = b"GET /healthz HTTP/1.1\r\nHost: t\r\n"
# An answer and its close take milliseconds; this only bounds a test that would hang.
WAIT = 15.0


def rss_kib(pid: int) -> int:
    """The process's resident memory in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@contextlib.contextmanager
def connection(server) -> Iterator[socket.socket]:
    sock = socket.create_connection((server.host, server.port), timeout=WAIT)
    try:
        yield sock
    finally:
        sock.close()


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a reset counts as
    closed: it follows a close with unread bytes in the server's buffer)."""
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def exchange(server, data: bytes) -> bytes:
    """Send ``data`` and read the answer until the server closes."""
    with connection(server) as sock:
        sock.sendall(data)
        return read_until_closed(sock)


def flood(server, start: bytes) -> tuple[int, list[bytes]]:
    """Eight connections, each sending ``start`` and then 5 MiB of one field's value:
    how much the server's resident memory grew (KiB), and what each was answered."""
    pid = server.proc.pid
    exchange(server, REQUEST_LINE + b"\r\n")  # warm the connection path up
    before = rss_kib(pid)
    answers = []
    piece = b"a" * 65536
    for _ in range(8):
        with connection(server) as sock:
            sock.sendall(start)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                for _ in range(80):  # 5 MiB
                    sock.sendall(piece)
            answers.append(read_until_closed(sock))
    return rss_kib(pid) - before, answers


def test_an_oversized_header_is_431_and_the_server_does_not_keep_it(token_server):
    grown, answers = flood(token_server, REQUEST_LINE + b"X-Big: ")
    # Before the cap, each 5 MiB header stayed in the parser and the process grew by
    # about 73 MB over eight of them; now at most one read (256 KiB) is ever buffered.
    assert grown < 8 * 1024, f"resident memory grew by {grown} KiB"
    seen = [status_of(answer) for answer in answers if answer]
    assert set(seen) <= {431}
    assert httpx.get(token_server.url + "/healthz", timeout=10).status_code == 200


def test_a_header_over_the_cap_is_431_with_the_reason(token_server):
    answer = exchange(token_server, REQUEST_LINE + b"X-Big: " + b"a" * MAX_HEADER_BYTES + b"\r\n")
    assert status_of(answer) == 431
    assert b'"error":"request_header_fields_too_large"' in answer
    assert b"connection: close" in answer


def test_too_many_header_fields_are_431(token_server):
    fields = b"".join(b"X-%d: v\r\n" % n for n in range(MAX_HEADERS + 1))
    answer = exchange(token_server, REQUEST_LINE + fields + b"\r\n")
    assert status_of(answer) == 431
    assert b"too many request header fields" in answer


def test_a_request_exactly_at_the_caps_is_served_with_its_body(token_server):
    # Host, Connection, Content-Type, Content-Length and X-Pad make the count MAX_HEADERS.
    fields = b"".join(b"X-%d: v\r\n" % n for n in range(MAX_HEADERS - 5))
    line = b"POST /api/token HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
    head_start = line + fields + b"Content-Type: application/x-www-form-urlencoded\r\n"
    body = b"grant_type=client_credentials&client_id=nobody&client_secret=" + b"s" * 7000
    length = b"Content-Length: %d\r\n" % len(body)
    padding = MAX_HEADER_BYTES - len(head_start) - len(length) - len(b"X-Pad: \r\n\r\n")
    head = head_start + length + b"X-Pad: " + b"p" * padding + b"\r\n\r\n"
    assert len(head) == MAX_HEADER_BYTES
    # Head and body in one write: the body's bytes must not count against the head.
    answer = exchange(token_server, head + body)
    assert status_of(answer) == 401
    assert b'"error":"invalid_client"' in answer


def test_the_limits_are_configured_by_environment(server_factory):
    server = server_factory(
        env={"SWARM_OAUTH_MAX_HEADERS": "5", "SWARM_OAUTH_MAX_HEADER_BYTES": "2048"}
    )
    five_more = b"".join(b"X-%d: v\r\n" % n for n in range(5))  # six with Host
    assert status_of(exchange(server, REQUEST_LINE + five_more + b"\r\n")) == 431
    big = REQUEST_LINE + b"X-Big: " + b"a" * 2048 + b"\r\n\r\n"
    assert status_of(exchange(server, big)) == 431
    small = REQUEST_LINE + b"X-Big: " + b"a" * 1500 + b"\r\nConnection: close\r\n\r\n"
    assert status_of(exchange(server, small)) == 200


@pytest.fixture
def impatient_server(server_factory):
    """Requests must arrive within one second; at most 8 connections."""
    return server_factory(args=["--request-timeout", "1", "--max-connections", "8"])


def test_a_connection_that_sends_nothing_is_408_and_closed(impatient_server):
    with connection(impatient_server) as sock:
        answer = read_until_closed(sock)
    assert status_of(answer) == 408
    assert b'"error":"request_timeout"' in answer


def test_headers_trickling_in_are_408_and_closed(impatient_server):
    with connection(impatient_server) as sock:
        sock.sendall(REQUEST_LINE)
        closed = False
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for n in range(100):  # one header line every 0.1 s: never done in time
                sock.sendall(b"X-%d: v\r\n" % n)
                time.sleep(0.1)
                closed = bool(_readable(sock))
                if closed:
                    break
        assert closed
        answer = read_until_closed(sock)
    assert status_of(answer) == 408


def test_a_body_trickling_in_is_408_and_closed(impatient_server):
    with connection(impatient_server) as sock:
        sock.sendall(
            b"POST /api/token HTTP/1.1\r\nHost: t\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n"
            b"grant_type=client_credentials"
        )
        answer = read_until_closed(sock)
    assert status_of(answer) == 408


def _readable(sock: socket.socket) -> bytes:
    sock.settimeout(0)
    try:
        return sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return b""
    finally:
        sock.settimeout(WAIT)


def test_keep_alive_requests_each_get_the_full_timeout(impatient_server):
    with httpx.Client(base_url=impatient_server.url, timeout=10) as client:
        for _ in range(3):
            assert client.get("/healthz").status_code == 200
            time.sleep(0.6)  # less than the timeout between requests, more in total
        assert client.get("/healthz").status_code == 200


def test_a_request_begun_late_on_a_kept_alive_connection_gets_its_full_timeout(
    server_factory,
):
    # The connection's timer was armed when it opened; the second request begins two
    # seconds later and must still have three seconds of its own, not one.
    server = server_factory(args=["--request-timeout", "3"])
    with connection(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        assert status_of(sock.recv(65536)) == 200
        time.sleep(2)
        begun = time.monotonic()
        sock.sendall(REQUEST_LINE)
        answer = read_until_closed(sock)
        waited = time.monotonic() - begun
    assert status_of(answer) == 408
    assert waited >= 2.9, f"refused {waited:.2f} s after the request began"


def test_connections_beyond_the_cap_are_503_and_closed(server_factory):
    server = server_factory(args=["--request-timeout", "30", "--max-connections", "3"])
    held = [socket.create_connection((server.host, server.port)) for _ in range(3)]
    try:
        with connection(server) as extra:
            answer = read_until_closed(extra)
        assert status_of(answer) == 503
        assert b"retry-after: 1" in answer
        held.pop().close()
        deadline = time.monotonic() + WAIT
        while True:  # the server notices the close on its next loop turn
            answer = exchange(server, REQUEST_LINE + b"Connection: close\r\n\r\n")
            if status_of(answer) == 200 or time.monotonic() > deadline:
                break
        assert status_of(answer) == 200
    finally:
        for sock in held:
            sock.close()


def test_slow_sockets_cost_no_client_its_token(server_factory):
    server = server_factory(args=["--request-timeout", "2", "--max-connections", "64"])
    secret = server.add_client("orders")["client_secret"]
    slow = [socket.create_connection((server.host, server.port)) for _ in range(40)]
    try:
        for sock in slow:
            sock.sendall(REQUEST_LINE)
        with ThreadPoolExecutor(4) as pool:
            statuses = list(
                pool.map(lambda _: server.token("orders", secret).status_code, range(60))
            )
        assert statuses == [200] * 60
        answers = [read_until_closed(sock) for sock in slow]
        assert {status_of(answer) for answer in answers} == {408}
    finally:
        for sock in slow:
            sock.close()


def chunked_token_request(body: bytes, trailer: bytes) -> bytes:
    """A token request whose form arrives in one chunk, then ``trailer`` (its fields)."""
    head = (
        b"POST /api/token HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    return head + b"%x\r\n" % len(body) + body + b"\r\n0\r\n" + trailer + b"\r\n"


def test_credentials_in_a_trailer_are_not_taken_for_the_requests_own(token_server):
    secret = token_server.add_client("orders")["client_secret"]
    basic = base64.b64encode(f"orders:{secret}".encode())
    form = b"grant_type=client_credentials"
    # The same credentials in the head are good: only where they travel differs.
    served = exchange(
        token_server,
        chunked_token_request(form, b"").replace(
            b"Transfer-Encoding", b"Authorization: Basic " + basic + b"\r\nTransfer-Encoding"
        ),
    )
    assert status_of(served) == 200, served
    answer = exchange(
        token_server, chunked_token_request(form, b"Authorization: Basic " + basic + b"\r\n")
    )
    assert status_of(answer) == 401, answer
    assert b'"error":"invalid_client"' in answer
    # A trailer the request may carry does not spoil it.
    form += b"&client_id=orders&client_secret=" + secret.encode()
    answer = exchange(token_server, chunked_token_request(form, b"X-Checksum: abc\r\n"))
    assert status_of(answer) == 200, answer
    # Nor does a body of 4,000 one-byte chunks: 24 KB of chunk framing is no trailer.
    padded = form + b"&pad=" + b"p" * (4000 - len(form) - 5)
    chunks = b"".join(b"1\r\n%c\r\n" % byte for byte in padded)
    request = chunked_token_request(b"", b"").replace(b"0\r\n\r\n0\r\n", chunks + b"0\r\n")
    answer = exchange(token_server, request)
    assert status_of(answer) == 200, answer


def test_an_oversized_trailer_is_431_and_the_server_does_not_keep_it(token_server):
    start = chunked_token_request(b"grant_type=client_credentials", b"")[:-2] + b"X-Big: "
    grown, answers = flood(token_server, start)
    assert grown < 8 * 1024, f"resident memory grew by {grown} KiB"
    seen = [status_of(answer) for answer in answers if answer]
    assert seen and set(seen) == {431}, seen
    assert b"the request trailer fields are too large" in answers[0]


H2C = (
    b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
    b"HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n"
)


def test_a_request_asking_to_upgrade_is_served_over_http_1_1_or_refused_with_a_reason(
    token_server,
):
    # What `curl --http2 http://...` sends: nothing here speaks h2c, so HTTP/1.1 answers.
    answer = exchange(token_server, b"GET /healthz HTTP/1.1\r\nHost: t\r\n" + H2C + b"\r\n")
    assert status_of(answer) == 200, answer
    assert b"connection: close" in answer.lower()
    # With a body, the parser would skip it and the token endpoint see an empty form.
    secret = token_server.add_client("orders")["client_secret"]
    form = f"grant_type=client_credentials&client_id=orders&client_secret={secret}".encode()
    head = b"POST /api/token HTTP/1.1\r\nHost: t\r\n" + H2C
    head += b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n"
    answer = exchange(token_server, head % len(form) + form)
    assert status_of(answer) == 400, answer
    assert b"send it without the Upgrade header" in answer
    assert secret.encode() not in answer
    assert token_server.token("orders", secret).status_code == 200


def test_a_request_pipelined_behind_a_direct_answer_is_not_cut_off_as_idle(token_server):
    # The first is answered at once, in the read that brought both; the second's body
    # takes longer than the 5 s a kept-alive connection may stay idle.
    body = b'{"client_id": "late-body"}'
    head = (
        b"POST /api/clients/add HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
        b"Authorization: Bearer " + token_server.admin_token.encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    with connection(token_server) as sock:
        sock.sendall(b"GET /api/verify HTTP/1.1\r\nHost: t\r\n\r\n" + head + body[:5])
        time.sleep(6.5)
        sock.sendall(body[5:])
        answers = read_until_closed(sock)
    first, _, second = answers.partition(b"HTTP/1.1 ")[2].partition(b"HTTP/1.1 ")
    assert first.startswith(b"401 "), answers
    assert second.startswith(b"201 "), answers


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"POST /api/token HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
def test_bytes_that_are_no_http_get_the_json_error_of_every_other_refusal(
    token_server, request_bytes
):
    answer = exchange(token_server, request_bytes)
    assert status_of(answer) == 400, answer
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head
    assert json.loads(body) == {
        "error": "invalid_request",
        "error_description": "the request is not valid HTTP/1.1",
    }


@pytest.mark.parametrize("extra", [b"Expect: 100-continue\r\n", b""])
def test_a_content_length_of_thousands_of_leading_zeros_is_read_as_the_number_it_is(
    token_server, extra
):
    # llhttp takes it; int() refuses more than 4,300 digits (a 500 before authentication).
    secret = token_server.add_client("orders")["client_secret"]
    form = f"grant_type=client_credentials&client_id=orders&client_secret={secret}".encode()
    head = (
        b"POST /api/token HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
        + extra
        + b"Content-Type: application/x-www-form-urlencoded\r\n"
        + b"Content-Length: "
        + b"0" * 5000
        + b"%d\r\n\r\n" % len(form)
    )
    answer = exchange(token_server, head + form)
    if answer.startswith(b"HTTP/1.1 100 "):  # the interim answer to Expect
        answer = answer.partition(b"\r\n\r\n")[2]
    assert status_of(answer) == 200, answer[:300]
    assert b'"access_token"' in answer


def _idle_after_answer(server, first: bytes, rest: bytes = b"", trickle: float = 0.0) -> float:
    """Send ``first``, then ``rest`` a byte every ``trickle`` s; seconds from the answer
    to the server closing the idle connection."""
    with connection(server) as sock:
        sock.sendall(first)
        for byte in rest:
            time.sleep(trickle)
            sock.sendall(bytes([byte]))
        answer = sock.recv(65536)
        answered = time.monotonic()
        assert answer.startswith(b"HTTP/1.1 "), answer
        assert b"connection: close" not in answer.lower()
        read_until_closed(sock)
        return time.monotonic() - answered


def test_an_idle_connection_is_closed_the_keep_alive_timeout_after_each_answer(token_server):
    # uvicorn's 5 s, from the answer: after one through ASGI, one the protocol gave
    # itself, and one whose body took 3 s to arrive (the connection's one timer, armed
    # when that request began, must neither cut the idle spell short nor let it run on).
    body = b"grant_type=client_credentials"
    slow = b"POST /api/token HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n" % len(body)
    slow += b"Content-Type: application/x-www-form-urlencoded\r\n\r\n"
    cases = [
        (b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n", b"", 0.0),
        (b"GET /api/verify HTTP/1.1\r\nHost: t\r\n\r\n", b"", 0.0),
        (slow, body, 3.0 / len(body)),
    ]
    with ThreadPoolExecutor(len(cases)) as pool:
        idle = list(pool.map(lambda case: _idle_after_answer(token_server, *case), cases))
    assert all(4.8 <= seconds <= 6.0 for seconds in idle), idle
