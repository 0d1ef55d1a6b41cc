"""``mypy --strict`` passes on the package, with the ``[tool.mypy]`` settings of pyproject.toml
(the package ships ``py.typed``: its users' type checkers read these hints)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_mypy_strict_passes_on_the_package() -> None:
    # a subprocess (mypy's own cache, .mypy_cache/): about 50 s cold on one loaded core, 1 s warm
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "src/pyvae"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"mypy --strict src/pyvae:\n{result.stdout}{result.stderr}"
