"""The layout's rules, checked on the source: imports run one way (no cycle among the project's modules,
counting every import except those under `if TYPE_CHECKING:`), the core never imports discord or bot/, and
the Discord layer reaches the core only through its front door."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support import ROOT

PACKAGES = ("embeddings", "bot")
# What the Discord modules (everything in bot/ but the CLI, the composition root) may import from the core.
FRONT_DOOR = {"embeddings.service", "embeddings.models", "embeddings.errors", "embeddings.settings"}


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or \
        (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Project modules `name` imports at run time (any depth: functions too, TYPE_CHECKING blocks not)."""
    found: set[str] = set()
    is_pkg = path.name == "__init__.py"

    def resolve(module: str | None, level: int) -> str:
        if not level:
            return module or ""
        base = name.split(".") if is_pkg else name.split(".")[:-1]
        base = base[: len(base) - (level - 1)]
        return ".".join(base + ([module] if module else []))

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            mod = resolve(node.module, node.level)
            found.add(mod)
            for alias in node.names:  # `from pkg import module`
                if f"{mod}.{alias.name}" in known:
                    found.add(f"{mod}.{alias.name}")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    out = set()
    for mod in found:
        while mod and mod not in known:  # `import a.b.c` of a function or class: its module
            mod = mod.rpartition(".")[0]
        if mod and mod != name:
            out.add(mod)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(name, path, set(mods)) for name, path in mods.items()}


def raw_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_no_import_cycles() -> None:
    g = graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def dfs(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for m in sorted(g[n]):
            if state.get(m) == 1:
                cycles.append(stack[stack.index(m):] + [m])
            elif m not in state:
                dfs(m)
        stack.pop()
        state[n] = 2

    for n in sorted(g):
        if n not in state:
            dfs(n)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_core_never_imports_discord_or_the_bot() -> None:
    for name, path in modules().items():
        if name.startswith("embeddings"):
            bad = {m for m in raw_imports(path) if m.split(".")[0] in ("discord", "bot")}
            assert not bad, f"{name} imports {sorted(bad)}"


def test_the_discord_layer_uses_only_the_front_door() -> None:
    g = graph()
    for name in g:
        if name.startswith("bot") and name != "bot.cli":
            core = {m for m in g[name] if m.startswith("embeddings")}
            assert core <= FRONT_DOOR, f"{name} imports {sorted(core - FRONT_DOOR)} (front door: {sorted(FRONT_DOOR)})"


def test_the_app_never_imports_a_cog() -> None:
    assert not {m for m in graph()["bot.app"] if m.startswith("bot.cogs")}
