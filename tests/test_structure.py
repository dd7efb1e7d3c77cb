"""The layout rules: core/ stands alone (no import of train/ or ui/, no import cycle), and only the
model itself calls `generate`."""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_core_imports_nothing_from_train_or_ui_and_has_no_cycle():
    graph = {f"core.{p.stem}": {m for m in _imports(p) if m.startswith("core.")} for p in (REPO / "core").glob("*.py")}
    outside = {m: sorted(i for i in _imports(REPO / "core" / f"{m[5:]}.py") if i.split(".")[0] in ("train", "ui"))
               for m in graph}
    assert not any(outside.values()), outside

    def cycle_from(node: str, path: list[str]) -> list[str] | None:
        for dep in sorted(graph.get(node, ())):
            if dep in path:
                return path[path.index(dep):] + [dep]
            found = cycle_from(dep, path + [dep])
            if found:
                return found
        return None

    cycles = [c for m in graph if (c := cycle_from(m, [m]))]
    assert not cycles, cycles[0]


def test_only_the_model_calls_generate():
    callers = []
    for path in [*(REPO / "core").glob("*.py"), *(REPO / "train").rglob("*.py"), *(REPO / "ui").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "generate":
                callers.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert all(c.startswith("core/model.py:") for c in callers), callers
