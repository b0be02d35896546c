"""Prometheus metrics of the token server (one registry per process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_REQUESTS = Counter(
    "swarm_oauth_http_requests",
    "HTTP requests by route, method and status code.",
    ["route", "method", "status"],
    registry=REGISTRY,
)
HTTP_DURATION = Histogram(
    "swarm_oauth_http_request_duration_seconds",
    "Time from request start to the end of the response, by route.",
    ["route"],
    registry=REGISTRY,
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
TOKENS = Counter(
    "swarm_oauth_token_requests",
    "Token requests by outcome (issued or the OAuth error code).",
    ["outcome"],
    registry=REGISTRY,
)
TOKEN_ISSUE_SECONDS = Histogram(
    "swarm_oauth_token_issue_seconds",
    "Time to authenticate the client and sign a token, excluding HTTP.",
    registry=REGISTRY,
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05),
)
FORWARD_AUTH = Counter(
    "swarm_oauth_forward_auth_requests",
    "Forward-auth checks (GET /api/verify) by outcome: allowed, or the error code.",
    ["outcome"],
    registry=REGISTRY,
)
