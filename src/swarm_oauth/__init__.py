"""swarm-oauth: OAuth 2.0 client-credentials identities for Docker Swarm services."""

__version__ = "0.1.0"
