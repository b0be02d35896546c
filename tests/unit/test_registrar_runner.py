"""The registrar's settings."""

from __future__ import annotations

import pytest

from swarm_oauth.registrar.backends import BackendConfigError, BackendSettings
from swarm_oauth.registrar.runner import RegistrarSettings


def test_settings_never_print_the_admin_token():
    backend = BackendSettings(
        "dcr", registration_url="http://idp/reg", initial_access_token="iat-s3cr3t"
    )
    settings = RegistrarSettings(backend, "http://tokens:8080/api/token", "s3cr3t-x")
    for shown in (repr(settings), str(settings)):
        assert "s3cr3t-x" not in shown and "iat-s3cr3t" not in shown
    assert "http://tokens:8080/api/token" in repr(settings)  # the rest still helps a reader


@pytest.mark.parametrize(
    ("backend", "missing"),
    [
        (BackendSettings("builtin"), "--clients-url"),
        (BackendSettings("hydra", clients_url="http://x"), "--hydra-admin-url"),
        (BackendSettings("dcr"), "--registration-url and --registration-key-file"),
    ],
)
def test_each_backend_names_the_settings_it_lacks(backend, missing):
    with pytest.raises(BackendConfigError, match=f"the {backend.name} backend needs {missing}$"):
        backend.check()
