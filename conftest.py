"""Repository-level pytest configuration.

The harness's plugin (`hil.pytest_plugin`) is loaded through its `pytest11` entry point once the
package is installed (`pip install -e .`); it collects `scenarios/*.toml` as test items
and uses `fixtures/virtual.toml` as the default rig.
"""

from __future__ import annotations

import importlib.util

if importlib.util.find_spec("hil") is None:  # pragma: no cover - a reminder, not a path
    raise SystemExit("install the harness first: pip install -e '.[dev]' (see README.md)")
