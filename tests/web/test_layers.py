"""Layering (DESIGN.md §2): only the facade imports the web layer, and the web
layer reaches the facade only for type hints."""

from __future__ import annotations

import ast
from pathlib import Path

import prpm_playground

PACKAGE = Path(prpm_playground.__file__).parent


def imported(path: Path) -> set[str]:
    """Modules a file imports at run time (``if TYPE_CHECKING:`` blocks left out)."""
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            node.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


# The services, ports, adapters and foundation (DESIGN.md §2): everything below web.
BELOW_WEB = (
    "_book.py",
    "_clock.py",
    "_ids.py",
    "_validation.py",
    "catalog.py",
    "config.py",
    "errors.py",
    "estimator.py",
    "ledger.py",
    "models.py",
    "periods.py",
    "pricing.py",
    "reset.py",
    "runner.py",
    "sessions.py",
    "testing.py",
    "payments/",
    "providers/",
    "sources/",
    "storage/",
)
ABOVE = ("prpm_playground.web", "prpm_playground.contrib", "prpm_playground.playground")


def test_nothing_below_the_web_layer_imports_it() -> None:
    checked = 0
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE).as_posix()
        if not relative.startswith(BELOW_WEB):
            continue
        checked += 1
        bad = {m for m in imported(path) if m.startswith(ABOVE)}
        assert not bad, f"{relative} imports {bad}"
    assert checked > 20


def test_the_web_layer_does_not_import_the_facade_at_run_time() -> None:
    for path in (PACKAGE / "web").glob("*.py"):
        assert not any(m.startswith("prpm_playground.playground") for m in imported(path)), path


def test_no_module_imports_another_packages_private_module() -> None:
    # A private module (``_name``) is its package's own business: code of
    # other packages goes through that package's public modules.
    checked = 0
    for path in PACKAGE.rglob("*.py"):
        package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
        for module in imported(path):
            parts = module.split(".")
            if parts[0] != "prpm_playground":
                continue
            for depth, part in enumerate(parts[1:], start=1):
                where = PACKAGE.joinpath(*parts[1 : depth + 1])
                is_module = where.with_suffix(".py").exists() or where.is_dir()
                if is_module and part.startswith("_") and not part.startswith("__"):
                    owner = ".".join(parts[:depth])
                    checked += 1
                    assert package.startswith(owner), (
                        f"{path.relative_to(PACKAGE)} imports {module}"
                    )
    assert checked > 10


def test_the_openapi_builder_needs_no_package_root() -> None:
    # Only the web schemas and the version: not the package with every service.
    roots = {m for m in imported(PACKAGE / "web" / "openapi.py") if m.count(".") <= 1}
    assert roots <= {"prpm_playground._version", "prpm_playground._version.__version__"} | {
        m for m in roots if not m.startswith("prpm_playground")
    }
