"""The token server's HTTP layer: thin adapters over clients, keys and tokens.

Import what you need from its modules (``swarm_oauth.api.app.create_app``); this package
loads nothing itself, so a part that needs only ``api.errors`` stays light.
"""
