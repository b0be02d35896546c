"""The registrar: gives every selected swarm service an OAuth client and its Docker secret.

``reconcile`` holds the logic, on the ``ports`` it needs; ``docker_swarm`` and
``clients_api`` are those ports' adapters, ``triggers`` and ``app`` what sets it going,
and ``command`` the ``swarm-oauth registrar`` entry point.
"""
