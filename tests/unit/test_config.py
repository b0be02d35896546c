"""The server's settings: the default issuer each listener gets."""

from __future__ import annotations

import httpx
import pytest

from swarm_oauth.config import ServerSettings


@pytest.mark.parametrize(
    ("host", "tls", "issuer"),
    [
        ("127.0.0.1", False, "http://127.0.0.1:8080"),
        ("tokens", True, "https://tokens:8080"),
        ("::1", False, "http://[::1]:8080"),
        ("fd00::5", True, "https://[fd00::5]:8080"),
    ],
)
def test_the_default_issuer_is_a_url_of_the_listener(host: str, tls: bool, issuer: str) -> None:
    url = ServerSettings(host=host, port=8080, tls=tls).issuer_url
    assert url == issuer
    assert httpx.URL(url + "/api/token").port == 8080


def test_a_configured_issuer_wins_without_its_trailing_slash() -> None:
    settings = ServerSettings(host="::1", issuer="https://auth.example/oauth/")
    assert settings.issuer_url == "https://auth.example/oauth"
