"""Benchmarks of the token endpoint and the registrar: ``python -m bench`` (see
``bench/README.md``)."""
