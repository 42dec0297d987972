"""The house rules that tools can check: ruff (lint and format) everywhere, mypy on the core."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.xdist_group("quality")


LINTED = [name for name in ("src", "tests", "scripts", "bench") if (ROOT / name).is_dir()]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=False)


def test_ruff_lint_is_clean() -> None:
    result = _run(str(BIN / "ruff"), "check", *LINTED)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean() -> None:
    result = _run(str(BIN / "ruff"), "format", "--check", *LINTED)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_clean_on_the_core_packages() -> None:
    result = _run(str(BIN / "mypy"))
    assert result.returncode == 0, result.stdout + result.stderr


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_dependencies_point_one_way() -> None:
    """formats and rot depend on nothing of ours above them; device and service never meet."""
    forbidden = {
        "formats": ("service", "device", "cli", "client"),
        "rot": ("service", "device", "cli", "client"),
        "updates": ("service", "device", "cli"),
        "device": ("service",),
        "service": ("device", "cli"),
        "sim": ("service", "cli"),
    }
    offenders = []
    for package, others in forbidden.items():
        for path in (ROOT / "src" / "opensphere" / package).rglob("*.py"):
            for module in _imported_modules(path):
                for other in others:
                    if module == f"opensphere.{other}" or module.startswith(f"opensphere.{other}."):
                        offenders.append(f"{path.relative_to(ROOT)} imports {module}")
    assert offenders == []
