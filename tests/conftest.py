"""Makes `tests/` importable, so that tests in tests/unit and tests/integration share the helpers of `kit`.

Without an `__init__.py` here, pytest's default import mode puts the directory of this file on `sys.path` before
collecting any test (on every xdist worker too): that is all this file is for.
"""
