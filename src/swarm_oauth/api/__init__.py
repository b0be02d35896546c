"""The token server's HTTP layer: thin adapters over clients, keys and tokens."""

from swarm_oauth.api.app import create_app

__all__ = ["create_app"]
