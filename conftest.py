"""Fixtures shared by every test directory live in tests/support, one module each."""

pytest_plugins = [
    "tests.support.server",
    "tests.support.postgres",
    "tests.support.swarm",
    "tests.support.inprocess",
    "tests.support.swarm_listener",
    "tests.support.rig",
    "tests.support.node_tools",
    "tests.support.multinode",
]
