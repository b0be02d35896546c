"""Logic that needs I/O, written once for sync and async callers alike.

A *flow* is a generator that yields what it needs done, a ``Request`` to send or a
``Pause``, and is sent back the ``httpx.Response`` (or ``None`` after a pause), the way
``httpx.Auth`` flows work. ``Runner.run`` performs those steps blocking and
``Runner.arun`` awaiting them; that is all that differs between an SDK method and its
async twin. A request that fails (``httpx.HTTPError``, ``httpx.InvalidURL``) is thrown
into the flow at its ``yield``, so the flow handles it where it made the request.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Generator, Mapping
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import httpx

from swarm_oauth.sdk._network import DEADLINE, LATE, stagger_connects
from swarm_oauth.sdk.errors import ConfigurationError

T = TypeVar("T")

# Where ``from_env`` constructors read ``ca_bundle``, as the server's commands do.
CA_BUNDLE_VARIABLE = "SWARM_OAUTH_CA_BUNDLE"
# What a failed request raises: no response, a broken connection, or a bad URL.
REQUEST_FAILURES = (httpx.HTTPError, httpx.InvalidURL)
# The most a response body may hold once decoded. A JWKS, a token answer and a revocation
# list are far smaller; a server that sends more (a gzip bomb, an endless body) fails the
# request instead of filling the service's memory.
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
# The content codings read: one read of a gzip or deflate stream inflates to at most about
# a thousand times its size, so the cap is checked in time. Brotli and zstd (decoded by
# httpx when their packages are installed) and stacked codings inflate further per read.
_CODINGS = frozenset({"identity", "gzip", "x-gzip", "deflate"})
# What every request says it takes, so that a server (or a compressing proxy) that
# honours it sends nothing else: httpx's default names br and zstd when their packages
# happen to be installed.
ACCEPT_ENCODING = "gzip, deflate"
# Response headers a body read whole no longer has: it is decoded, its length known.
_FRAMING = frozenset({b"content-encoding", b"content-length", b"transfer-encoding"})


class ResponseTooLarge(httpx.HTTPError):
    """A response body beyond ``MAX_RESPONSE_BYTES``."""


@dataclass(frozen=True, slots=True)
class Request:
    """An HTTP request for the runner to send; the flow is sent its ``httpx.Response``."""

    method: str
    url: str
    headers: Mapping[str, str] | None = None
    data: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Pause:
    """Wait ``seconds`` (sleeping, or yielding the event loop) before going on."""

    seconds: float


# The send type is Any: a flow gets a Response for a Request and None for a Pause.
Flow = Generator[Request | Pause, Any, T]


class _Course(Generic[T]):
    """Where a flow stands: the step it waits on (``None`` once done), then its result."""

    def __init__(self, flow: Flow[T]) -> None:
        self._flow = flow
        self.step: Request | Pause | None = None
        self.result: T
        self.reply(None)

    def reply(self, value: Any) -> None:
        """Give the current step's outcome to the flow and note what it wants next."""
        self._advance(lambda: self._flow.send(value))

    def fail(self, error: Exception) -> None:
        """Raise ``error`` in the flow at its current step."""
        self._advance(lambda: self._flow.throw(error))

    def _advance(self, resume: Callable[[], Request | Pause]) -> None:
        try:
            self.step = resume()
        except StopIteration as done:
            self.step, self.result = None, done.value


def describe(error: Exception) -> str:
    """Why a request failed, for a message that also names the URL; with a hint when the
    server's certificate is not trusted (the usual cause: a private CA not configured)."""
    text = f"{type(error).__name__}: {error}"
    if "CERTIFICATE_VERIFY_FAILED" in text:
        text += (
            f" (give the CA that signed it as ca_bundle or {CA_BUNDLE_VARIABLE}, or as"
            " verify= to an http client of your own)"
        )
    return text


def trust(ca_bundle: str | Path) -> ssl.SSLContext:
    """A client TLS context that trusts the CAs in the PEM file ``ca_bundle`` and no others."""
    try:
        return ssl.create_default_context(cafile=str(ca_bundle))
    except (OSError, ssl.SSLError) as error:
        raise ConfigurationError(
            f"ca_bundle {ca_bundle}: not a readable PEM file of CA certificates ({error})"
        ) from None


def system_trust() -> ssl.SSLContext:
    """A client TLS context that trusts the system's CAs (OpenSSL's default paths, or
    ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``): a private CA added the usual way
    (``update-ca-certificates``) counts. Where the system has none (a minimal image
    without ``ca-certificates``), Mozilla's, as certifi has them."""
    paths = ssl.get_default_verify_paths()  # None where the file or directory is absent
    if paths.cafile is None and paths.capath is None:
        return httpx.create_ssl_context()
    return ssl.create_default_context()


class Runner:
    """Performs flows' steps with the caller's httpx clients, or short-lived ones.

    A short-lived client is made on a flow's first request and closed when the flow
    ends; ``timeout`` and ``ca_bundle`` apply to it only (the caller's clients keep
    their own settings, so ``ca_bundle`` with both of them is a ``ConfigurationError``:
    with one, it is for the short-lived clients of the other side).
    """

    def __init__(
        self,
        timeout: float = 5.0,
        http_client: httpx.Client | None = None,
        async_http_client: httpx.AsyncClient | None = None,
        ca_bundle: str | Path | None = None,
    ) -> None:
        """Use these clients when given; else make one per flow with ``timeout``, trusting
        the CAs of ``ca_bundle`` if given (else the system's)."""
        self.timeout = timeout
        self._client = http_client
        self._async_client = async_http_client
        self._trusted: ssl.SSLContext | None = None
        if ca_bundle is not None:
            if http_client is not None and async_http_client is not None:
                raise ConfigurationError(
                    "give ca_bundle or your own http clients (with their own verify=), not both"
                )
            self._trusted = trust(ca_bundle)

    def _verify(self) -> ssl.SSLContext:
        # Made once, on the first flow: loading the CAs takes tens of milliseconds, which
        # every short-lived client would otherwise spend again (on the event loop, for
        # the async ones: each JWKS or revocation refresh stalled the service that long).
        if self._trusted is None:
            self._trusted = system_trust()
        return self._trusted

    def run(self, flow: Flow[T]) -> T:
        """Run ``flow`` to its end, blocking on each step; its return value."""
        course = _Course(flow)
        with ExitStack() as stack:
            client = self._client
            while (step := course.step) is not None:
                if isinstance(step, Pause):
                    time.sleep(step.seconds)
                    course.reply(None)
                    continue
                deadline = None
                if client is None:
                    client = stack.enter_context(
                        stagger_connects(httpx.Client(timeout=self.timeout, verify=self._verify()))
                    )
                if client is not self._client:
                    deadline = time.monotonic() + self.timeout
                bounding = DEADLINE.set(deadline)
                try:
                    with client.stream(**_arguments(step)) as streamed:
                        body = _Body(deadline, streamed)
                        for chunk in streamed.iter_bytes():
                            body.add(chunk)
                    response = body.response(streamed)
                except REQUEST_FAILURES as error:
                    course.fail(error)
                else:
                    course.reply(response)
                finally:
                    DEADLINE.reset(bounding)
        return course.result

    async def arun(self, flow: Flow[T]) -> T:
        """Like ``run``, awaiting each step so the event loop is never blocked."""
        course = _Course(flow)
        async with AsyncExitStack() as stack:
            client = self._async_client
            while (step := course.step) is not None:
                if isinstance(step, Pause):
                    await asyncio.sleep(step.seconds)
                    course.reply(None)
                    continue
                deadline = None
                if client is None:
                    client = httpx.AsyncClient(timeout=self.timeout, verify=self._verify())
                    await stack.enter_async_context(client)
                if client is not self._async_client:
                    deadline = time.monotonic() + self.timeout
                try:
                    # The async transport has no network backend of the SDK's to bound reads
                    # with; cancelling the exchange at the deadline does the same.
                    async with asyncio.timeout(_left(deadline)):
                        async with client.stream(**_arguments(step)) as streamed:
                            body = _Body(deadline, streamed)
                            async for chunk in streamed.aiter_bytes():
                                body.add(chunk)
                    response = body.response(streamed)
                except TimeoutError:
                    course.fail(httpx.ReadTimeout(LATE))
                except REQUEST_FAILURES as error:
                    course.fail(error)
                else:
                    course.reply(response)
        return course.result


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


def _arguments(request: Request) -> dict[str, Any]:
    return {
        "method": request.method,
        "url": request.url,
        "headers": {"Accept-Encoding": ACCEPT_ENCODING, **(request.headers or {})},
        "data": request.data,
        # Even with a client of yours that follows redirects: a 307 would resend a form
        # with the client secret in it to wherever it points.
        "follow_redirects": False,
        # The SDK authenticates its own requests; a client of yours may carry the `auth=`
        # of other calls (another identity's credentials, or a flow that asks this very
        # token source for a token and would wait on itself).
        "auth": None,
    }


class _Body:
    """A response body read in chunks, within ``MAX_RESPONSE_BYTES`` and, for the clients
    the runner makes, by ``deadline`` (httpx's timeout bounds each read, not their sum,
    so a server sending a byte at a time would hold the caller for as long as it likes)."""

    def __init__(self, deadline: float | None, streamed: httpx.Response) -> None:
        self._deadline = deadline
        self._request = streamed.request
        self._chunks: list[bytes] = []
        self._size = 0
        coding = streamed.headers.get("content-encoding", "identity").strip().lower()
        if coding not in _CODINGS:
            raise httpx.DecodingError(
                f"the response's content coding {coding[:40]!r} is not one the SDK reads",
                request=self._request,
            )
        self._arrived()

    def add(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > MAX_RESPONSE_BYTES:
            raise ResponseTooLarge(f"the response exceeds {MAX_RESPONSE_BYTES} bytes")
        self._chunks.append(chunk)
        self._arrived()

    def _arrived(self) -> None:
        if self._deadline is not None and time.monotonic() > self._deadline:
            raise httpx.ReadTimeout(LATE, request=self._request)

    def response(self, streamed: httpx.Response) -> httpx.Response:
        """A response like ``streamed``, its whole (decoded) body read."""
        # As received (bytes): a value need not be ASCII, and is kept as it came.
        headers = [(k, v) for k, v in streamed.headers.raw if k.lower() not in _FRAMING]
        return httpx.Response(
            streamed.status_code,
            headers=headers,
            content=b"".join(self._chunks),
            request=streamed.request,
        )
