"""``python -m swarm_oauth`` runs the command line."""

from swarm_oauth.cli import main

main()
