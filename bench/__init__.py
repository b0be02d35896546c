"""Issue 7's benchmarks: ``python -m bench`` (see ``bench/README.md``)."""
