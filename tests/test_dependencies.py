"""Installs that stay green: bounded ranges, a lock that covers them, and the
documented commands installing from it."""

from __future__ import annotations

import importlib.util
import os
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("lock_diff", ROOT / "scripts" / "lock_diff.py")
assert _spec is not None
assert _spec.loader is not None
lock_diff = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lock_diff)
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
LOCK = ROOT / "requirements" / "constraints.txt"
LOCK_ARG = "-c requirements/constraints.txt"


def requirements() -> list[tuple[str, Requirement]]:
    project = PYPROJECT["project"]
    found = [("dependencies", Requirement(line)) for line in project["dependencies"]]
    for extra, lines in project["optional-dependencies"].items():
        found += [(extra, Requirement(line)) for line in lines]
    return found


def readme_commands() -> list[str]:
    blocks = re.findall(r"^```bash\n(.*?)^```$", (ROOT / "README.md").read_text(), re.S | re.M)
    return [block.strip() for block in blocks[:2]]


@pytest.mark.parametrize(("group", "requirement"), requirements(), ids=str)
def test_every_dependency_has_an_upper_bound(group: str, requirement: Requirement) -> None:
    assert any(spec.operator in ("<", "<=", "==", "~=") for spec in requirement.specifier), (
        f"{requirement} ({group}) has no upper bound"
    )
    assert any(spec.operator in (">=", "==", "~=") for spec in requirement.specifier), (
        f"{requirement} ({group}) has no lower bound"
    )


def test_the_build_backend_is_bounded() -> None:
    [backend] = PYPROJECT["build-system"]["requires"]
    assert "<" in backend


def test_the_lock_pins_every_dependency_inside_its_range() -> None:
    pins = lock_diff.locked_versions(LOCK)
    for group, requirement in requirements():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} ({group}) is not in the lock: run scripts/lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"the lock has {name}=={pins[name]}, outside {requirement} ({group}): run scripts/lock"
        )


def test_the_lock_is_for_the_supported_python_and_says_how_to_refresh_it() -> None:
    header = LOCK.read_text(encoding="utf-8").splitlines()[:3]
    assert "#    scripts/lock" in header
    assert "--python-version 3.11" in (ROOT / "scripts" / "lock").read_text()
    assert PYPROJECT["project"]["requires-python"] == ">=3.11"


def test_the_readme_commands_and_ci_install_from_the_lock() -> None:
    demo, tests = readme_commands()
    assert f'pip install -q {LOCK_ARG} -e ".[demo]"' in demo
    assert "prpm-playground demo" in demo
    assert f'pip install -q {LOCK_ARG} -e ".[dev]"' in tests
    assert "pytest" in tests
    ci = (ROOT / ".ci" / "run").read_text()
    assert f'pip install -q {LOCK_ARG} -e ".[dev,docs]"' in ci


@pytest.mark.skipif(
    os.environ.get("PRPM_CHECK_UNLOCKED") == "1",
    reason="scripts/check-latest tests versions other than the lock's on purpose",
)
def test_this_environment_has_the_locked_versions() -> None:
    # What CI and the README's commands install is what the lock says, so a
    # fresh clone tests exactly the versions that passed.
    moved, _, _ = lock_diff.differences(LOCK)
    assert moved == [], (
        "installed versions differ from requirements/constraints.txt; install with "
        f"`pip install {LOCK_ARG} -e '.[dev]'`: {moved}"
    )
