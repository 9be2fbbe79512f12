"""The run command installs the project without the test extras: everything the tool imports must come
from `[project].dependencies` (or what they pull in), never only from the test extras.

`scripts/check_run.sh` (run by CI) proves it for real in a fresh virtualenv; this test names the module
that breaks it, at unit speed, in any venv.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
# What runs without the test extras: the packages the project ships, and the user scripts of scripts/.
# scripts/demo.py is left out on purpose: scripts/demo.sh installs the test extras (browser driver, SDK).
NOT_PRODUCT_DIRS = {"tests", "bench", "scripts", "certs", "data", "build"}
DEMO_SCRIPTS = {"demo.py"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def product_packages() -> list[str]:
    return sorted(
        p.name for p in ROOT.iterdir()
        if p.is_dir() and (p / "__init__.py").exists() and p.name not in NOT_PRODUCT_DIRS
    )


def product_files() -> list[Path]:
    files = [f for pkg in product_packages() for f in (ROOT / pkg).rglob("*.py")]
    files += [f for f in (ROOT / "scripts").glob("*.py") if f.name not in DEMO_SCRIPTS]
    return files


def imported_top_level(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def base_closure() -> set[str]:
    """Distributions a base install brings: the declared dependencies and theirs, extras excluded."""
    todo = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    seen: set[str] = set()
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = _norm(req.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = md.distribution(req.name).requires or []
        except md.PackageNotFoundError:
            continue  # an optional platform package that is not installed here
        for extra in req.extras:  # e.g. uvicorn[standard]: its extra's requirements are part of the base
            todo += [r for r in map(Requirement, requires) if r.marker and r.marker.evaluate({"extra": extra})]
        todo += [Requirement(r) for r in requires]
    return seen


def test_the_packages_to_install_are_the_product_packages():
    include = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    assert sorted(p.rstrip("*") for p in include) == product_packages()


def test_every_third_party_import_of_the_product_comes_with_a_base_install():
    own = set(product_packages())
    providers = md.packages_distributions()
    closure = base_closure()
    missing = []
    for path in product_files():
        for name in sorted(imported_top_level(path)):
            if name in own or name in sys.stdlib_module_names or name == "__future__":
                continue
            dists = {_norm(d) for d in providers.get(name, [])}
            if not dists & closure:
                missing.append(f"{path.relative_to(ROOT)} imports {name} ({', '.join(sorted(dists)) or '?'})")
    assert not missing, "not in [project].dependencies:\n" + "\n".join(missing)


def test_the_guard_sees_a_test_only_package():
    """The closure really excludes the test extras (else the guard above could not fail)."""
    closure = base_closure()
    assert "fastapi" in closure and "h11" in closure  # declared, and pulled in by uvicorn
    assert "pytest" not in closure and "openai" not in closure and "playwright" not in closure
