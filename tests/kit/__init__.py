"""Helpers shared by the unit and the integration tests (importable as `kit` through tests/conftest.py)."""
