"""Compare the packages installed in this interpreter with the lock.

    python scripts/lock_diff.py [--check] [LOCK]

LOCK defaults to requirements/constraints.txt. Prints one line per package
whose installed version is not the locked one (``name locked -> installed``),
each locked package this platform needs that is missing, and each installed
package the lock does not name. With ``--check`` it exits 1 when a locked
package is installed at another version; otherwise it only reports.
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

DEFAULT_LOCK = Path(__file__).resolve().parent.parent / "requirements" / "constraints.txt"
# Installer tooling and this project itself are not in the lock.
NOT_LOCKED = {"pip", "setuptools", "wheel", "prpm-playground"}


def locked_versions(lock: Path) -> dict[str, str]:
    """Each package the lock pins for this platform, by canonical name."""
    pins: dict[str, str] = {}
    for line in lock.read_text(encoding="utf-8").splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        [spec] = requirement.specifier
        pins[canonicalize_name(requirement.name)] = spec.version
    return pins


def installed_versions() -> dict[str, str]:
    return {
        canonicalize_name(dist.metadata["Name"]): dist.version
        for dist in metadata.distributions()
        if dist.metadata["Name"]
    }


def differences(lock: Path) -> tuple[list[str], list[str], list[str]]:
    """(moved, missing, unlocked) lines, each sorted."""
    pins, installed = locked_versions(lock), installed_versions()
    moved = [
        f"{name} {pins[name]} -> {version}"
        for name, version in installed.items()
        if name in pins and version != pins[name]
    ]
    missing = [f"{name} {version}" for name, version in pins.items() if name not in installed]
    unlocked = [
        f"{name} {version}"
        for name, version in installed.items()
        if name not in pins and name not in NOT_LOCKED
    ]
    return sorted(moved), sorted(missing), sorted(unlocked)


def main(argv: list[str]) -> int:
    check = "--check" in argv
    paths = [arg for arg in argv if arg != "--check"]
    lock = Path(paths[0]) if paths else DEFAULT_LOCK
    moved, missing, unlocked = differences(lock)
    for title, lines in (
        ("moved from the lock", moved),
        ("locked but not installed", missing),
        ("installed but not in the lock", unlocked),
    ):
        print(f"{title}: {len(lines)}")
        for line in lines:
            print(f"  {line}")
    return 1 if check and moved else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
