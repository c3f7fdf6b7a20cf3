"""Operability tests: the deploy manifests, the metrics endpoints, the suite's traces."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def k8s_validate() -> ModuleType:
    """scripts/k8s_validate.py, imported (it is a script, not a package)."""
    path = ROOT / "scripts" / "k8s_validate.py"
    spec = importlib.util.spec_from_file_location("northstar_k8s_validate", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
