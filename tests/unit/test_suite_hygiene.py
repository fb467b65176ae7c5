"""The test suite and the benchmarks keep to their own containers: every sweep or listing of the
runner's containers, networks, volumes and uids is scoped to the database (the store) of the test that
made them, so a second test session, a benchmark or a real runner on the same engine keeps its jobs.

Read from the sources (ast), so a new unscoped sweep fails here before it removes anyone's run."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# runner.sandbox's functions over every run of a store; without one they reach every runner's runs
STORE_SCOPED = {"managed_containers": 1, "managed_networks": 1, "release_uids": 1, "remove_orphan_volumes": 1}
RUNNER_LABELS = ("io.runner.", "LABEL_")  # a Docker filter on one of these selects runner-made things
STORE_LABELS = ("io.runner.store", "LABEL_STORE")


def _sources() -> list[Path]:
    return sorted(p for d in ("tests", "bench") for p in (ROOT / d).rglob("*.py"))


def _calls(path: Path) -> Iterator[tuple[ast.Call, ast.AST, str]]:
    """Every call in ``path`` with the innermost function (or the module) that holds it."""
    text = path.read_text()

    def visit(node: ast.AST, scope: ast.AST) -> Iterator[tuple[ast.Call, ast.AST, str]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Call):
                yield child, scope, text
            yield from visit(child, child if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) else scope)

    tree = ast.parse(text)
    yield from visit(tree, tree)


def _name(call: ast.Call) -> str:
    """``f`` for ``sandbox.f(...)`` (the runner's sweeps), the attribute for ``x.list(...)``, else ""."""
    f = call.func
    if not isinstance(f, ast.Attribute):
        return ""
    if f.attr in STORE_SCOPED:
        return f.attr if isinstance(f.value, ast.Name) and f.value.id == "sandbox" else ""
    return f.attr


def _source_of(expr: ast.expr, scope: ast.AST, text: str) -> str:
    """The expression's source, or for a plain name the source of what it was last assigned in scope."""
    if isinstance(expr, ast.Name):
        values = [n.value for n in ast.walk(scope) if isinstance(n, ast.Assign)
                  and any(isinstance(t, ast.Name) and t.id == expr.id for t in n.targets)]
        if values:
            return ast.get_source_segment(text, values[-1]) or ""
    return ast.get_source_segment(text, expr) or ""


def unscoped(path: Path) -> list[str]:
    """The lines of ``path`` that sweep or list the runner's resources without naming a store."""
    found = []
    for call, scope, text in _calls(path):
        name = _name(call)
        where = f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{call.lineno}"
        if name in STORE_SCOPED:
            store = call.args[STORE_SCOPED[name]] if len(call.args) > STORE_SCOPED[name] else next(
                (k.value for k in call.keywords if k.arg == "store"), None)
            if store is None or (isinstance(store, ast.Constant) and not store.value):
                found.append(f"{where}: {name}() without a store")
        elif name == "list":
            for k in call.keywords:
                source = _source_of(k.value, scope, text) if k.arg == "filters" else ""
                if any(m in source for m in RUNNER_LABELS) and not any(m in source for m in STORE_LABELS):
                    found.append(f"{where}: a filter on runner labels without the store's")
    return found


def test_every_sweep_in_the_tests_and_benchmarks_is_scoped_to_its_store() -> None:
    sources = _sources()
    assert any(p.name == "conftest.py" for p in sources) and any(p.parent.name == "bench" for p in sources)
    assert [line for p in sources for line in unscoped(p)] == []


@pytest.mark.parametrize(("code", "why"), [
    ("def f(dc):\n    for c in sandbox.managed_containers(dc):\n        c.remove(force=True)\n", "no store"),
    ("def f(dc):\n    sandbox.release_uids(dc, None)\n", "store None"),
    ("def f(dc):\n    dc.containers.list(filters={'label': 'io.runner.managed=true'})\n", "label, no store"),
    ("def f(dc):\n    mine = {'label': [f'{sandbox.LABEL_ROLE}=egress']}\n    dc.networks.list(filters=mine)\n",
     "through a name"),
])
def test_an_unscoped_sweep_is_found(tmp_path: Path, code: str, why: str) -> None:
    path = tmp_path / "sweep.py"
    path.write_text(code)
    assert len(unscoped(path)) == 1, why


def test_a_scoped_sweep_is_not_found(tmp_path: Path) -> None:
    path = tmp_path / "sweep.py"
    path.write_text("def f(dc, store):\n    sandbox.managed_containers(dc, store)\n"
                    "    sandbox.release_uids(dc, store=store)\n"
                    "    ours = [f'{sandbox.LABEL_ROLE}=egress', f'{sandbox.LABEL_STORE}={store}']\n"
                    "    dc.containers.list(filters={'label': ours})\n")
    assert unscoped(path) == []
