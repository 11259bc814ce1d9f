"""Structure rules (issue 12): no private name crosses a subpackage, no import cycle.

Read from the source with ``ast``, so the test sees every import, also the lazy ones inside
functions (they count for the private-name rule; the cycle rule looks at module-level
imports, which are what runs at import time).
"""

from __future__ import annotations

import ast
from pathlib import Path

import torchlime

PACKAGE = Path(torchlime.__file__).parent
# Private modules several subpackages share on purpose (STYLE.md: a shared private module is fine).
SHARED = {
    "torchlime._checks", "torchlime._captum", "torchlime._deps", "torchlime._atomic", "torchlime._buffers",
    "torchlime.functional._linalg",
}


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def subpackage(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else parts[0]


def imports(module: str, path: Path, top_level_only: bool) -> list[tuple[str, list[str]]]:
    """(absolute module, imported names) of every ``from ... import`` in a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out = []
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((target, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out.extend((a.name, []) for a in node.names)
    return [(t, n) for t, n in out if t.startswith("torchlime")]


def test_no_private_name_crosses_a_subpackage():
    bad = []
    for module, path in modules().items():
        for target, names in imports(module, path, top_level_only=False):
            if subpackage(target) == subpackage(module) or target in SHARED:
                continue
            private_module = any(p.startswith("_") for p in target.split(".")[1:])
            private_names = [n for n in names if n.startswith("_")]
            if private_module or private_names:
                bad.append(f"{module} imports {private_names or names} from {target}")
    assert not bad, "private names across subpackages:\n" + "\n".join(bad)


def test_no_import_cycle_between_modules():
    mods = modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for module, path in mods.items():
        for target, names in imports(module, path, top_level_only=True):
            for candidate in [f"{target}.{n}" for n in names] + [target]:
                if candidate in mods and candidate != module:
                    graph[module].add(candidate)
                    break
    # A package importing its own submodules (its __init__) is not a cycle worth reporting.
    seen: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        seen[node] = 1
        stack.append(node)
        for nxt in graph[node]:
            if nxt.startswith(node + "."):
                continue
            if seen.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                if not all(c.startswith(subpackage(nxt)) and c.count(".") <= 1 for c in cycle):
                    cycles.append(" -> ".join(cycle))
            elif nxt not in seen:
                visit(nxt, stack)
        stack.pop()
        seen[node] = 2

    for m in sorted(graph):
        if m not in seen:
            visit(m, [])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)
