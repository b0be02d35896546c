"""The ``swarm-oauth`` console script, importable without the server's dependencies.

The bare distribution is the SDK; the command needs ``[server]``. Saying so beats an
ImportError traceback.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Run the command line, or explain which extra it needs."""
    try:
        from swarm_oauth.cli import main as cli_main
    except ImportError as exc:
        sys.exit(
            f"swarm-oauth: this command needs the server extra ({exc.name} is missing): "
            "pip install 'swarm-oauth[server]'"
        )
    cli_main()
