"""The SDK's blocking network backend: connects that race a name's addresses, as RFC 8305
(Happy Eyeballs) says, and reads bounded by the deadline of the exchange in progress.

A swarm service name with ``endpoint_mode: dnsrr`` resolves to every replica. When a
replica's node dies its address stays in DNS until the swarm notices (seconds), and a
connect to it gets no answer at all. ``socket.create_connection``, which httpx's blocking
transport uses, gives each address the whole timeout in turn, so a sync caller whose
resolver listed the dead address first spent its timeout there. The async transport
(anyio) already starts the next address 250 ms after the last; this module does the same
for the blocking one, so both kinds of caller ride out a dead replica alike.

httpx's timeouts bound each read, so a server that drips its answer (headers included) a
byte at a time holds a caller as long as it likes; ``DEADLINE``, set by the SDK's runner
for each request, bounds the connect and every read and write together.
"""

from __future__ import annotations

import errno
import itertools
import selectors
import socket
import ssl
import time
from collections.abc import Iterable, Sequence
from contextvars import ContextVar
from typing import Any

import httpcore
import httpx
from httpcore._backends.sync import SyncStream

# RFC 8305 §5's recommended Connection Attempt Delay, and anyio's.
ATTEMPT_DELAY = 0.25
_IN_PROGRESS = {errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY}
# When (``time.monotonic``) the request this thread is making must have been answered.
DEADLINE: ContextVar[float | None] = ContextVar("swarm_oauth_sdk_deadline", default=None)
# Why a request that ran past its deadline failed.
LATE = "the response took longer than the timeout"

Address = tuple[int, int, int, Any]  # family, type, proto, sockaddr


def interleaved(infos: Iterable[tuple[Any, ...]]) -> list[Address]:
    """``getaddrinfo``'s answers alternating between address families (RFC 8305 §4),
    each family in the resolver's order."""
    families: dict[int, list[Address]] = {}
    for family, kind, proto, _, sockaddr in infos:
        families.setdefault(family, []).append((family, kind, proto, sockaddr))
    rounds = itertools.zip_longest(*families.values())
    return [address for group in rounds for address in group if address is not None]


def connect_staggered(
    addresses: Sequence[Address],
    timeout: float | None,
    source_address: tuple[str, int] | None = None,
    delay: float = ATTEMPT_DELAY,
) -> socket.socket:
    """The first of ``addresses`` to accept a TCP connection, trying the next one ``delay``
    seconds after the last (at once if the last failed), all within ``timeout`` together.

    Raises ``TimeoutError`` when none connected in time, else the last attempt's
    ``OSError``. The returned socket is blocking; the others are closed.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    remaining = iter(addresses)
    failure: OSError | None = None
    with selectors.DefaultSelector() as pending:
        next_start = time.monotonic()
        exhausted = False
        try:
            while True:
                now = time.monotonic()
                if not exhausted and (now >= next_start or not pending.get_map()):
                    address = next(remaining, None)
                    if address is None:
                        exhausted = True
                    else:
                        try:
                            pending.register(_start(address, source_address), selectors.EVENT_WRITE)
                            next_start = now + delay
                        except OSError as error:
                            failure = error
                        continue
                if exhausted and not pending.get_map():
                    raise failure or OSError(errno.EHOSTUNREACH, "no address to connect to")
                if deadline is not None and now >= deadline:
                    raise TimeoutError("timed out")
                waits = [] if deadline is None else [deadline - now]
                if not exhausted:
                    waits.append(max(0.0, next_start - now))
                for key, _ in pending.select(min(waits) if waits else None):
                    sock: socket.socket = key.fileobj  # type: ignore[assignment]
                    pending.unregister(sock)
                    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if code == 0:
                        sock.setblocking(True)
                        return sock
                    sock.close()
                    failure = OSError(code, f"{errno.errorcode.get(code, code)} connecting")
                    next_start = time.monotonic()
        finally:
            for key in list(pending.get_map().values()):
                key.fileobj.close()  # type: ignore[union-attr]


def _start(address: Address, source_address: tuple[str, int] | None) -> socket.socket:
    family, kind, proto, sockaddr = address
    sock = socket.socket(family, kind, proto)
    try:
        if source_address is not None:
            sock.bind(source_address)
        sock.setblocking(False)
        code = sock.connect_ex(sockaddr)
        if code not in _IN_PROGRESS and code != 0:
            raise OSError(code, f"{errno.errorcode.get(code, code)} connecting")
    except OSError:
        sock.close()
        raise
    return sock


class StaggeredBackend(httpcore.SyncBackend):
    """httpcore's blocking network backend with ``connect_staggered`` for TCP."""

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        """A connection to the first of ``host``'s addresses that answers."""
        source = None if local_address is None else (local_address, 0)
        timeout = _bounded(timeout, httpcore.ConnectTimeout)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            sock = connect_staggered(interleaved(infos), timeout, source)
        except TimeoutError as error:
            raise httpcore.ConnectTimeout(error) from error
        except OSError as error:
            raise httpcore.ConnectError(error) from error
        for option in socket_options or ():
            sock.setsockopt(*option)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return BoundedStream(SyncStream(sock))


class BoundedStream(httpcore.NetworkStream):
    """A network stream whose reads, writes and TLS handshake end by ``DEADLINE``."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        """Up to ``max_bytes``, waiting no longer than ``timeout`` nor past the deadline."""
        return self._stream.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        """All of ``buffer``, each send within ``timeout`` and the deadline."""
        self._stream.write(buffer, _bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        """Close the connection."""
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        """The stream after a TLS handshake, itself bounded."""
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return BoundedStream(self._stream.start_tls(ssl_context, server_hostname, bounded))

    def get_extra_info(self, info: str) -> Any:
        """What the underlying stream says of ``info`` (its socket, its TLS object)."""
        return self._stream.get_extra_info(info)


def _bounded(timeout: float | None, expired: type[httpcore.TimeoutException]) -> float | None:
    deadline = DEADLINE.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise expired(LATE)
    return left if timeout is None else min(timeout, left)


def stagger_connects(client: httpx.Client) -> httpx.Client:
    """``client``, its connections (direct, or to an HTTP proxy from the environment)
    made by ``StaggeredBackend``.

    httpx has no setting for the network backend; each transport's pool holds it. Were
    that to change, the client would connect as ``create_connection`` does, unbounded by
    ``DEADLINE``, which the SDK's tests would notice.
    """
    transports = [getattr(client, "_transport", None), *getattr(client, "_mounts", {}).values()]
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        if isinstance(pool, httpcore.ConnectionPool):
            pool._network_backend = StaggeredBackend()
    return client
