"""The shape of the rooms package, read from its source: imports, cycles, layers, privates.

``python -m tests.architecture [path/to/rooms]`` prints the import cycles (counting imports
made only for type checking) and any import that points up the layers of DESIGN §1;
tests/test_architecture.py holds the code to them.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

# Lower layers first; a module may import its own layer and those below. The package's
# public face (rooms/__init__.py) re-exports from every layer.
LAYERS: list[tuple[str, ...]] = [
    ("rooms._types", "rooms._log", "rooms._tasks", "rooms._retry", "rooms.exceptions"),
    ("rooms.protocol",),
    ("rooms.engine", "rooms.brokers", "rooms.lifespan"),
    ("rooms.recovery", "rooms.cluster", "rooms.acks", "rooms.handshake", "rooms.handlers"),
    ("rooms",),  # the Socket.IO layer: server, namespace, socket, delivery, ...
    # Applications of the Socket.IO API and the ASGI face: plug-ins, observers, middleware.
    (
        "rooms.mailbox",
        "rooms.presence",
        "rooms.admin",
        "rooms.metrics",
        "rooms.tracing",
        "rooms.middleware",
        "rooms.starlette",
        "rooms.testing",
    ),
]
# Imports that are not dependencies: a convenience method of the core that makes a plug-in
# from above, importing it inside the method, so that only those who call it load it.
CONVENIENCES = {
    ("rooms.server", "rooms.admin"),  # Server.instrument() -> rooms.admin.Admin
    ("rooms.namespace", "rooms.presence"),  # Namespace.presence -> rooms.presence.Presence
    ("rooms.server", "rooms.presence"),  # Server.presence (its type only)
}


@dataclass
class Graph:
    modules: dict[str, Path]
    runtime: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    typing: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))

    def edges(self, module: str) -> set[str]:
        return self.runtime[module] | self.typing[module]


def read(root: Path) -> Graph:
    """Every module under ``root`` (the rooms package) and what each imports of it."""
    modules = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    graph = Graph(modules)
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        type_only = {
            id(n) for node in ast.walk(tree) if _is_type_checking(node) for n in ast.walk(node)
        }
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree):
            for target in _imported(node, package):
                module = _resolve(target, modules)
                if module is not None and module != name and (name, module) not in CONVENIENCES:
                    (graph.typing if id(node) in type_only else graph.runtime)[name].add(module)
    return graph


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imported(node: ast.AST, package: str) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            parts = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*parts, base] if base else parts)
        yield base
        yield from (f"{base}.{alias.name}" for alias in node.names)


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def cycles(graph: Graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph.modules):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.edges(start))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.edges(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def package_of(module: str, graph: Graph) -> str:
    """The package a module belongs to (a package's __init__ is its own package)."""
    path = graph.modules[module]
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def layer(module: str) -> int:
    best, depth = len(LAYERS) - 1, -1
    for number, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > depth:
                best, depth = number, len(prefix)
    return best


def upward(graph: Graph) -> list[tuple[str, str]]:
    """Imports that point up the layers (the package's public face excepted)."""
    return sorted(
        (a, b)
        for a in graph.modules
        if a != "rooms"
        for b in graph.edges(a)
        if b != "rooms" and layer(b) > layer(a)
    )


def main(argv: list[str]) -> None:
    root = Path(argv[0]) if argv else Path(__file__).resolve().parent.parent / "rooms"
    graph = read(root)
    print(f"{len(graph.modules)} modules in {root}")
    print("import cycles (type-checking imports included):")
    for component in cycles(graph):
        packages = sorted({package_of(m, graph) for m in component})
        print(f"  {len(component)} modules, {len(packages)} package(s): {' '.join(component)}")
    print("imports up the layers:")
    for a, b in upward(graph):
        print(f"  {a} -> {b}")


if __name__ == "__main__":
    main(sys.argv[1:])


def private_uses(graph: Graph) -> list[str]:
    """``x._name`` (or ``from m import _name``) outside the package that defines ``_name``.

    Read from the source by name: a private attribute counts as defined by the packages
    that assign it, list it in ``__slots__`` or define it as a method."""
    defined: dict[str, set[str]] = defaultdict(set)
    trees = {m: ast.parse(p.read_text()) for m, p in graph.modules.items()}
    for module, tree in trees.items():
        package = package_of(module, graph)
        for node in ast.walk(tree):
            for name in _private_definitions(node):
                defined[name].add(package)
    found = []
    for module, tree in trees.items():
        package = package_of(module, graph)
        for node in ast.walk(tree):
            name = None
            if isinstance(node, ast.Attribute) and _private(node.attr):
                if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                    continue
                name = node.attr
            if name is not None and defined.get(name) and package not in defined[name]:
                found.append(f"{module}:{node.lineno} uses {name} of {sorted(defined[name])}")
    return found


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _private_definitions(node: ast.AST) -> Iterator[str]:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and _private(node.name):
        yield node.name
    targets: list[ast.expr] = []
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, ast.AnnAssign):
        targets = [node.target]
    for target in targets:
        if isinstance(target, ast.Attribute) and _private(target.attr):
            yield target.attr
        if isinstance(target, ast.Name) and target.id == "__slots__" and node.value is not None:
            for item in getattr(node.value, "elts", ()):
                if isinstance(item, ast.Constant) and _private(str(item.value)):
                    yield str(item.value)
