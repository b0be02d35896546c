"""The registrar process loads none of the token server's domain: no store, no clients
package, no signing keys. Checked in a fresh interpreter, as the process starts."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import swarm_oauth.registrar

FORBIDDEN = ("swarm_oauth.store", "swarm_oauth.clients", "swarm_oauth.keys", "swarm_oauth.api")

PROBE = """
import contextlib, io, json, sys
from swarm_oauth.cli import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
    main(["registrar", "--help"])
for name in {modules!r}:
    __import__(name)
print(json.dumps(sorted(sys.modules)))
"""


def test_the_registrar_imports_nothing_of_the_server_domain():
    modules = [
        f"swarm_oauth.registrar.{info.name}"
        for info in pkgutil.iter_modules(swarm_oauth.registrar.__path__)
    ]
    assert "swarm_oauth.registrar.runner" in modules
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(modules=modules)],
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = json.loads(result.stdout)
    assert "swarm_oauth.registrar.runner" in loaded and "swarm_oauth.web" in loaded
    leaked = [m for m in loaded if m.startswith(FORBIDDEN)]
    assert leaked == []
