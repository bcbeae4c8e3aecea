"""End-to-end tests: a real JupyterHub, configurable-http-proxy and single-user image on rustdocker.

A package, so its conftest and modules never shadow the top-level `tests/conftest.py`, which the
integration tests import as `conftest`.
"""
