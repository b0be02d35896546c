"""The image's health check: ``python -m swarm_oauth.healthcheck``.

Probes ``/healthz`` of the process in the same container, on loopback at
``SWARM_OAUTH_PORT``, over HTTPS when ``SWARM_OAUTH_TLS_CERT_FILE`` is set. The certificate
is not checked there: it names the service, not 127.0.0.1, and the probe never leaves the
container. Exit status 0 when healthy, 1 otherwise (what Docker's HEALTHCHECK reads).
"""

from __future__ import annotations

import os
import ssl
import sys
import urllib.request


def main() -> int:
    """Probe once; the exit status."""
    port = os.environ.get("SWARM_OAUTH_PORT", "8080")
    context = None
    scheme = "http"
    if os.environ.get("SWARM_OAUTH_TLS_CERT_FILE"):
        scheme = "https"
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        url = f"{scheme}://127.0.0.1:{port}/healthz"  # http or https, nothing else
        with urllib.request.urlopen(url, timeout=2, context=context) as response:  # noqa: S310
            return 0 if response.status == 200 else 1
    except OSError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
