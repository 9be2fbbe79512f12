"""The house rules a newcomer relies on, checked: short functions, imports that point one way."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("addons", "relay", "openai_front", "pool_store", "sites", "terminal", "simulator", "scripts")
MAX_FUNCTION_LINES = 80
# Which package may import which: the flow is page → proxy (addons) → core (relay) → pool and site;
# the HTTP front sits on the core; nothing below imports what is above it.
MAY_IMPORT = {
    "sites": set(),
    "pool_store": set(),
    "terminal": set(),
    "relay": {"sites", "pool_store"},
    "openai_front": {"relay", "sites", "pool_store"},
    "addons": {"relay", "openai_front", "sites", "pool_store", "terminal"},
    "simulator": {"sites"},
}


def functions(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text("utf-8"))
    return [(node.name, node.end_lineno - node.lineno + 1) for node in ast.walk(tree)  # type: ignore[operator]
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]


def test_no_product_function_is_longer_than_a_screen():
    long = [f"{path.relative_to(ROOT)}:{name} ({lines} lines)"
            for pkg in PRODUCT for path in (ROOT / pkg).rglob("*.py")
            for name, lines in functions(path) if lines > MAX_FUNCTION_LINES]
    assert not long, "split these:\n" + "\n".join(long)


def test_imports_point_one_way():
    wrong = []
    for pkg, allowed in MAY_IMPORT.items():
        for path in (ROOT / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text("utf-8"))):
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    top = node.module.split(".")[0]
                elif isinstance(node, ast.Import):
                    top = node.names[0].name.split(".")[0]
                else:
                    continue
                if top in MAY_IMPORT and top != pkg and top not in allowed:
                    wrong.append(f"{path.relative_to(ROOT)} imports {top}")
    assert not wrong, "\n".join(wrong)


def test_business_logic_never_imports_rich():
    users = {str(path.relative_to(ROOT)) for pkg in PRODUCT for path in (ROOT / pkg).rglob("*.py")
             if "rich" in {n.split(".")[0] for n in _imports(path)}}
    assert users <= {"terminal/console.py"}, users


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out
