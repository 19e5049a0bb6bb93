"""Makes `tests/` importable, so that tests in tests/unit and tests/integration share the helpers of `kit`.

Without an `__init__.py` here, pytest's default import mode puts the directory of this file on `sys.path` before
collecting any test (on every xdist worker too). It also gives the demo's simulated printers credentials, as
`kartech demo` does at start, for tests that load config/demo.yaml in-process.
"""

import os
import secrets

from gateway.cli import DEMO_SECRETS

for _name in DEMO_SECRETS:
    os.environ.setdefault(_name, secrets.token_hex(8))
