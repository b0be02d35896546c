"""The registrar's settings."""

from __future__ import annotations

from swarm_oauth.registrar.runner import RegistrarSettings


def test_settings_never_print_the_admin_token():
    settings = RegistrarSettings("http://tokens:8080", "http://tokens:8080/api/token", "s3cr3t-x")
    assert "s3cr3t-x" not in repr(settings)
    assert "s3cr3t-x" not in str(settings)
    assert "http://tokens:8080/api/token" in repr(settings)  # the rest still helps a reader
