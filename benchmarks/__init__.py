"""Benchmarks of pytest-txscope against the other ways to isolate database tests (run on demand).

``python -m benchmarks.run --help`` runs them, and ``python -m benchmarks.fastapi_suite --help`` times the
FastAPI example's suite three ways; see docs/benchmarks.md. Nothing here is collected by the
project's own test run (``testpaths = ["tests"]``).
"""
