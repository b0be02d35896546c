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


@pytest.mark.parametrize(
    ("url", "reason"),
    [("http://127.0.0.1:abc", "Invalid port"), ("clients:8080", "not an http or https URL")],
)
def test_a_backend_url_must_be_one(url, reason):
    backend = BackendSettings("builtin", clients_url=url)
    with pytest.raises(BackendConfigError, match=f"--clients-url {url}: {reason}"):
        backend.check()


@pytest.mark.parametrize(
    "url",
    [
        "http://admin:hunter2@hydra:4445",
        "ftp://admin:hunter2@hydra",
        "http://admin:hunter2@hydra:abc",
    ],
)
def test_a_password_in_a_backend_url_is_shown_neither_in_an_error_nor_in_the_log(url):
    backend = BackendSettings("hydra", hydra_admin_url=url)
    refusal = ""
    try:
        backend.check()
    except BackendConfigError as exc:
        refusal = str(exc)
    # Refused or accepted, the password appears nowhere an operator's tools collect.
    assert "hunter2" not in refusal and "hunter2" not in backend.location
    assert "***@hydra" in backend.location


def test_a_reservation_longer_than_ten_years_is_refused_before_the_registrar_starts():
    from click.testing import CliRunner

    from swarm_oauth.registrar.command import registrar

    # A reservation's end is written as a label the registrar must read back.
    result = CliRunner().invoke(registrar, ["--id-reservation-seconds", "1e12"])
    assert result.exit_code == 2
    assert "--id-reservation-seconds" in result.output and "315360000" in result.output


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--rotation-grace", "31d"], "longer than 30d"),
        (["--secret-max-age", "10m", "--rotation-grace", "1h"], "shorter than --rotation-grace"),
        (["--secret-max-age", "10s", "--rotation-grace", "0"], "(or 30s)"),
    ],
)
def test_secret_ages_and_graces_that_cannot_work_stop_the_registrar_at_start(args, reason):
    from click.testing import CliRunner

    from swarm_oauth.registrar.command import registrar

    # A grace past the clients API's 30 days failed every rotation; a max age within
    # the grace ended the grace of each rotation by the next.
    result = CliRunner().invoke(registrar, ["--token-url", "http://tokens.test/api/token", *args])
    assert result.exit_code == 2
    assert reason in result.output


def test_registrar_release_quotes_the_id_into_the_path(tmp_path):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from click.testing import CliRunner

    from swarm_oauth.registrar.command import registrar

    paths: list[str] = []

    class Registrar(BaseHTTPRequestHandler):
        def do_DELETE(self) -> None:
            paths.append(self.path)
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            body = b'{"error": "not_found", "error_description": "not reserved"}'
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Registrar)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    (tmp_path / "admin-token").write_text("t0ken")
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        args = [
            "release",
            "a?b/c",
            "--url",
            url,
            "--admin-token-file",
            str(tmp_path / "admin-token"),
        ]
        result = CliRunner().invoke(registrar, args)
    finally:
        server.shutdown()
        server.server_close()
    # One id, not the id "a" with a query (nor a path of its own).
    assert paths == ["/v1/reservations/a%3Fb%2Fc"]
    assert result.exit_code != 0


def test_registrar_subcommands_ignore_the_daemons_certificate_settings(tmp_path):
    from click.testing import CliRunner

    from swarm_oauth.registrar.command import registrar
    from tests.support.server import free_port

    # The registrar container's environment, where an operator runs its subcommands.
    env = {"SWARM_OAUTH_TLS_CERT_FILE": str(tmp_path / "missing.pem")}
    (tmp_path / "admin-token").write_text("t0ken")
    url = f"http://127.0.0.1:{free_port()}"
    args = ["status", "--url", url, "--admin-token-file", str(tmp_path / "admin-token")]
    result = CliRunner().invoke(registrar, args, env=env)
    assert result.exit_code == 2
    assert f"cannot reach the registrar at {url}" in result.output
    # The daemon itself still refuses to start without its certificate.
    daemon = CliRunner().invoke(registrar, [], env=env)
    assert daemon.exit_code == 2 and "missing.pem" in daemon.output
