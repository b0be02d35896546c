"""Health, readiness, metrics, OpenAPI and logs that never carry a secret or a token."""

import json

import httpx
import jwt


def test_health_and_ready(token_server):
    assert httpx.get(token_server.url + "/healthz").json() == {
        "status": "ok",
        "pid": token_server.proc.pid,
    }
    ready = httpx.get(token_server.url + "/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


def test_metrics_count_requests_and_token_outcomes(token_server):
    secret = token_server.add_client("orders")["client_secret"]
    token_server.token("orders", secret)
    token_server.token("orders", "wrong")
    text = httpx.get(token_server.url + "/metrics").text
    assert 'swarm_oauth_token_requests_total{outcome="issued"} 1.0' in text
    assert 'swarm_oauth_token_requests_total{outcome="invalid_client"} 1.0' in text
    assert (
        'swarm_oauth_http_requests_total{method="POST",route="/api/token",status="200"} 1.0' in text
    )
    assert 'route="/api/clients/add"' in text
    assert "swarm_oauth_token_issue_seconds_count 1.0" in text


def test_logs_are_json_lines_without_secrets_or_tokens(token_server):
    body = token_server.add_client("orders")
    secret = body["client_secret"]
    token = token_server.token("orders", secret).json()["access_token"]
    with token_server.admin() as admin:
        admin.post("/api/clients/rotate", json={"client_id": "orders"})
    httpx.post(
        token_server.url + "/api/token?client_secret=" + secret,
        data={"grant_type": "client_credentials"},
    )
    token_server.stop()
    log = token_server.log()
    for needle in (secret, token, token.split(".")[2], token_server.admin_token):
        assert needle not in log
    lines = [json.loads(line) for line in log.splitlines() if line.strip()]
    access = [line for line in lines if line["logger"] == "swarm_oauth.access"]
    assert any(line["path"] == "/api/token" and line["status"] == 200 for line in access)
    assert all("?" not in line["path"] for line in access)
    assert any(str(token_server.data_dir / "admin-token") in line.get("path", "") for line in lines)


def test_key_rotation_publishes_first_and_keeps_old_tokens_valid(token_server):
    import subprocess
    import sys

    secret = token_server.add_client("orders")["client_secret"]
    old_token = token_server.token("orders", secret).json()["access_token"]
    old_kid = jwt.get_unverified_header(old_token)["kid"]
    rotated = subprocess.run(
        [sys.executable, "-m", "swarm_oauth", "keys", "rotate", "--data-dir",
         str(token_server.data_dir), "--publish-ahead", "0"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    new_kid = json.loads(rotated.stdout)["kid"]
    assert new_kid != old_kid
    import time

    deadline = time.monotonic() + 15
    while True:
        token = token_server.token("orders", secret).json()["access_token"]
        if jwt.get_unverified_header(token)["kid"] == new_kid or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert jwt.get_unverified_header(token)["kid"] == new_kid
    kids = [k["kid"] for k in httpx.get(token_server.url + "/.well-known/jwks.json").json()["keys"]]
    assert set(kids) == {old_kid, new_kid}
    client = jwt.PyJWKClient(f"{token_server.url}/.well-known/jwks.json")
    for t in (old_token, token):
        key = client.get_signing_key_from_jwt(t)
        assert jwt.decode(t, key.key, algorithms=["ES256"], audience=token_server.url)


def test_openapi_document_of_the_all_role(token_server):
    doc = httpx.get(token_server.url + "/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    assert {"/api/token", "/api/clients/add", "/api/cert", "/.well-known/jwks.json"} <= set(
        doc["paths"]
    )
