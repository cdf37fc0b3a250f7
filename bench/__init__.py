"""Benchmarks of wsgi-drain against the usual ways to restart mod_wsgi (issue 4).

Run everything with ``python -m bench.run`` (see docs/benchmarks.md); each part
also runs alone: ``python -m bench.restart_methods``, ``python -m
bench.exit_detection``, ``python -m bench.discovery_scale``.  Nothing here is
timed by the test suite: tests/integration/test_bench.py only checks that a
short run produces correct, complete results.
"""
