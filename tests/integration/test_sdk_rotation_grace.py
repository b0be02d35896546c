"""A task that started with a client secret keeps getting tokens while the registrar rolls
its service onto a new one: the SDK re-reads the same (old) file, and the server accepts
the old secret for the rotation's grace."""

from __future__ import annotations

import pytest

from swarm_oauth.sdk import TokenRequestError, TokenSource


def test_a_task_with_the_old_secret_keeps_getting_tokens_during_the_grace(token_server, tmp_path):
    secret_file = tmp_path / "oauth_client_secret"
    secret_file.write_text(token_server.add_client("orders")["client_secret"])
    clock = [0.0]
    source = TokenSource(
        "orders",
        f"{token_server.url}/api/token",
        client_secret_file=secret_file,
        clock=lambda: clock[0],
    )
    first = source.token()
    with token_server.admin() as admin:
        rotated = admin.post(
            "/api/clients/rotate", json={"client_id": "orders", "grace_seconds": 600}
        )
    assert rotated.status_code == 200
    # The task's file still holds the old secret (its container is not replaced yet).
    clock[0] += 900  # past the first token's lifetime: a new token is needed
    second = source.token()
    assert second != first
    # Once the grace ends (here: a rotation without one), the old file no longer works.
    with token_server.admin() as admin:
        admin.post("/api/clients/rotate", json={"client_id": "orders", "grace_seconds": 0})
    clock[0] += 900
    with pytest.raises(TokenRequestError) as refused:
        source.token()
    assert refused.value.error == "invalid_client"
