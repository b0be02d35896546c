"""The raw signing rate of ``cryptography`` on one core: the ceiling of any token server.

Keys come from ``swarm_oauth.keys.material`` so they are the product's (RSA 2048, P-256,
Ed25519). Run as ``taskset -c N python -m bench.signing SECONDS``; prints JSON by
algorithm: ops per second of wall time and ops per second of this process's CPU time (the
second holds when other work shares the core).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding

from swarm_oauth.keys.material import ALGORITHMS, generate_private_key

# A signing input the size of one of our access tokens' header.payload.
MESSAGE = b"e" * 330


def signer(alg: str) -> Callable[[], bytes]:
    """One raw signature of ``MESSAGE`` with a fresh key for ``alg``."""
    key = generate_private_key(alg)
    if alg == "ES256":
        curve = ec.ECDSA(hashes.SHA256())
        return lambda: key.sign(MESSAGE, curve)  # type: ignore[call-arg,union-attr]
    if alg == "RS256":
        pad, digest = padding.PKCS1v15(), hashes.SHA256()
        return lambda: key.sign(MESSAGE, pad, digest)  # type: ignore[call-arg,union-attr]
    return lambda: key.sign(MESSAGE)  # type: ignore[call-arg]


def rates(sign: Callable[[], object], seconds: float) -> tuple[float, float]:
    """Calls per second over about ``seconds`` of wall time, and per CPU second."""
    count = 0
    started, cpu_started = time.perf_counter(), time.process_time()
    deadline = started + seconds
    while True:
        for _ in range(50):
            sign()
        count += 50
        now = time.perf_counter()
        if now >= deadline:
            cpu = time.process_time() - cpu_started
            return count / (now - started), count / cpu if cpu else 0.0


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    print(json.dumps({alg: rates(signer(alg), seconds) for alg in ALGORITHMS}))


if __name__ == "__main__":
    main()
