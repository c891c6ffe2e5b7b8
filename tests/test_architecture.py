"""How the harness's modules depend on each other (issue 12), read from their source.

Every module under hil/ is parsed (not imported), and every import counts: at the top,
inside a function, under TYPE_CHECKING. The rules:

- no import cycle between modules, but for the allow-list below;
- no cycle between packages: a subpackage hil.X is one unit with all its modules, a
  top-level module hil/foo.py is a unit of its own;
- the virtual flight controller (hil.vfc) is the device under test: outside it, only its
  board type imports it;
- no module reads another module's private attributes: `x._name`, `getattr(x, "_name")`
  or `from hil.m import _name`, where `x` is not self, cls, super() or a name defined at
  the top of the same module, and `_name` is not one the module itself declares (on
  self or cls, in a class body, in `__slots__`): another instance of a class of the
  same module is fine, another module's object is not;
- no `board_class ==` / `!=` outside hil/rig.py and hil/boards/: board types differ by
  the class registered for them, not by branches spread through the harness.

The allow-lists name what is left in files this change could not edit; when one of
those sites goes, its entry must go too (the last test says so).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HIL = ROOT / "hil"

#: Module import cycles allowed for now, each as the set of its modules.
ALLOWED_MODULE_CYCLES: set[frozenset[str]] = set()

#: The modules outside hil.vfc that may import it: the virtual board's type. (Its USB
#: backend, hil.boards.virtual_usb, needs only hil.usb.control_socket.)
VFC_IMPORTERS = {"hil.boards.virtual"}

#: Private attributes read across modules, (file, attribute) -> why it is still there.
ALLOWED_PRIVATE: dict[tuple[str, str], str] = {}

#: Names with a leading underscore that are their library's public API.
PUBLIC_UNDERSCORED = {
    ("os", "_exit"),  # os._exit: exit a forked child without running the parent's cleanup
}
NAMEDTUPLE_API = {"_asdict", "_fields", "_make", "_replace"}

#: `board_class ==` / `!=` left outside the board types, file -> why.
ALLOWED_BOARD_CLASS: dict[str, str] = {}


# ----------------------------------------------------------------------------- reading


@cache
def modules() -> dict[str, tuple[str, ast.Module]]:
    """Every module under hil/: dotted name -> (path from the repository root, its AST)."""
    found = {}
    for path in sorted(HIL.rglob("*.py")):
        rel = path.relative_to(ROOT)
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = (rel.as_posix(), ast.parse(path.read_text(encoding="utf-8"), str(rel)))
    return found


def _is_package(name: str) -> bool:
    return modules()[name][0].endswith("/__init__.py")


def _known(name: str) -> str:
    """The module an import of `name` loads: itself, or the nearest package holding it."""
    mods = modules()
    while name not in mods and "." in name:
        name = name.rpartition(".")[0]
    return name


def imports(name: str) -> Iterator[tuple[str, int]]:
    """(hil module imported, line) for every import in module `name`, wherever it is."""
    mods = modules()
    for node in ast.walk(mods[name][1]):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name if _is_package(name) else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            targets = [
                f"{module}.{alias.name}" if f"{module}.{alias.name}" in mods else module
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            if target == "hil" or target.startswith("hil."):
                target = _known(target)
                if target != name:
                    yield target, node.lineno


def module_graph() -> dict[str, set[str]]:
    return {name: {target for target, _ in imports(name)} for name in modules()}


def unit(name: str) -> str:
    """The package-level unit of a module: hil.X for hil.X and everything under it."""
    return ".".join(name.split(".")[:2])


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, targets in module_graph().items():
        here = unit(name)
        graph.setdefault(here, set()).update(
            unit(t) for t in targets if unit(t) not in (here, "hil")
        )
    return graph


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(frozenset(component))
    return found


def _describe(component: Iterable[str], graph: dict[str, set[str]]) -> str:
    members = sorted(component)
    edges = [f"{a} -> {b}" for a in members for b in sorted(graph.get(a, ())) if b in component]
    return "{" + ", ".join(members) + "}: " + "; ".join(edges)


def _private(attr: str) -> bool:
    return attr.startswith("_") and not (attr.startswith("__") and attr.endswith("__"))


def _top_level_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
    return names


def _declared(tree: ast.Module) -> set[str]:
    """Private attribute names the module declares as its own: set on self or cls,
    defined in a class body, listed in a class's __slots__."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                names.add(node.attr)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    names.add(item.name)
                elif isinstance(item, ast.Assign | ast.AnnAssign):
                    targets = item.targets if isinstance(item, ast.Assign) else [item.target]
                    for target in targets:
                        if isinstance(target, ast.Name):
                            names.add(target.id)
                            if target.id == "__slots__" and item.value is not None:
                                names.update(
                                    c.value for c in ast.walk(item.value)
                                    if isinstance(c, ast.Constant) and isinstance(c.value, str)
                                )
    return {n for n in names if _private(n)}


def _own_object(value: ast.expr, top: set[str]) -> bool:
    if isinstance(value, ast.Name):
        return value.id in ("self", "cls") or value.id in top
    return (
        isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "super"
    )


def private_reads() -> Iterator[tuple[str, int, str, str]]:
    """(file, line, attribute, code) of every use of another module's private attribute."""
    for path, tree in modules().values():
        yield from _private_uses(path, tree)


def _private_uses(path: str, tree: ast.Module) -> Iterator[tuple[str, int, str, str]]:
    top = _top_level_names(tree)
    own = _declared(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            value = node.value
            if _own_object(value, top) or node.attr in own or node.attr in NAMEDTUPLE_API:
                continue
            if isinstance(value, ast.Name) and (value.id, node.attr) in PUBLIC_UNDERSCORED:
                continue
            yield path, node.lineno, node.attr, ast.unparse(node)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _private(node.args[1].value)
        ):
            attr = node.args[1].value
            if not _own_object(node.args[0], top) and attr not in own:
                yield path, node.lineno, attr, ast.unparse(node)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hil"):
            for alias in node.names:
                if _private(alias.name):
                    yield path, node.lineno, alias.name, f"from {node.module} import {alias.name}"


def board_class_comparisons() -> Iterator[tuple[str, int, str]]:
    """(file, line, code) of every `board_class ==` / `!=` outside the board types."""
    for path, tree in modules().values():
        if path == "hil/rig.py" or path.startswith("hil/boards/"):
            continue
        yield from _board_class_compares(path, tree)


def _board_class_compares(path: str, tree: ast.Module) -> Iterator[tuple[str, int, str]]:
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        if not any(isinstance(op, ast.Eq | ast.NotEq | ast.Is | ast.IsNot) for op in node.ops):
            continue
        sides = [node.left, *node.comparators]
        if any(isinstance(s, ast.Attribute) and s.attr == "board_class" for s in sides):
            yield path, node.lineno, ast.unparse(node)


# ------------------------------------------------------------------------------- rules


def test_every_module_under_hil_is_read():
    names = modules()
    assert "hil.rig" in names and "hil.vfc.copter" in names and "hil.boards.virtual" in names
    # Imports inside functions count: hil.bench asks the virtual board type, in a function.
    assert "hil.boards.virtual" in {t for t, _ in imports("hil.bench")}


def test_no_import_cycles_between_modules():
    graph = module_graph()
    found = [c for c in cycles(graph) if c not in ALLOWED_MODULE_CYCLES]
    assert not found, "import cycles between modules:\n" + "\n".join(_describe(c, graph) for c in found)


def test_no_import_cycles_between_packages():
    graph = package_graph()
    found = cycles(graph)
    assert not found, "import cycles between packages:\n" + "\n".join(_describe(c, graph) for c in found)


def test_only_the_virtual_board_type_imports_the_virtual_flight_controller():
    found = [
        f"{modules()[name][0]}:{line} imports {target}"
        for name in modules()
        if name != "hil.vfc" and not name.startswith("hil.vfc.") and name not in VFC_IMPORTERS
        for target, line in imports(name)
        if target == "hil.vfc" or target.startswith("hil.vfc.")
    ]
    assert not found, (
        "hil.vfc is the device under test; only its board type (hil.boards.virtual) may "
        "import it:\n" + "\n".join(found)
    )


def test_no_module_reads_another_modules_private_attributes():
    found = [
        f"{path}:{line}: {code}"
        for path, line, attr, code in private_reads()
        if (path, attr) not in ALLOWED_PRIVATE
    ]
    assert not found, "private attributes of other modules' objects:\n" + "\n".join(found)


def test_board_types_are_not_told_apart_by_board_class_outside_them():
    found = [
        f"{path}:{line}: {code}"
        for path, line, code in board_class_comparisons()
        if path not in ALLOWED_BOARD_CLASS
    ]
    assert not found, (
        "compare board_class only in hil/rig.py and hil/boards/ (give the board type a "
        "property or method instead):\n" + "\n".join(found)
    )


def test_allow_lists_hold_only_what_is_still_there():
    graph = module_graph()
    stale = [f"module cycle {sorted(c)}" for c in ALLOWED_MODULE_CYCLES if c not in cycles(graph)]
    reads = {(path, attr) for path, _, attr, _ in private_reads()}
    stale += [f"private read {key}" for key in ALLOWED_PRIVATE if key not in reads]
    compared = {path for path, _, _ in board_class_comparisons()}
    stale += [f"board_class comparison in {path}" for path in ALLOWED_BOARD_CLASS if path not in compared]
    stale += [f"vfc importer {name}" for name in VFC_IMPORTERS if name not in modules()]
    assert not stale, "allow-list entries with nothing left to allow; remove them:\n" + "\n".join(stale)


# ------------------------------------------------------------------- the checks can fail


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [frozenset({"a", "b", "c"})]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_private_reads_are_found_and_own_attributes_are_not():
    tree = ast.parse(
        "import os\n"
        "from hil.other import _helper\n"
        "_STATE = object()\n"
        "class Model:\n"
        "    __slots__ = ('_mine',)\n"
        "    def __init__(self):\n"
        "        self._x = 1\n"
        "    def copy(self, other):\n"
        "        return other._x + other._mine + _STATE._y + self._z + super()._w\n"
        "def foreign(loop, ap):\n"
        "    loop._saved = 1\n"
        "    os._exit(0)\n"
        "    return getattr(ap, '_link', None), loop._motor_ns, loop.__class__\n"
    )
    found = sorted(attr for _, _, attr, _ in _private_uses("m.py", tree))
    assert found == ["_helper", "_link", "_motor_ns", "_saved"]


def test_board_class_comparisons_are_found():
    tree = ast.parse(
        "if board.board_class == 'msp': pass\n"
        "if 'msp' != session.board.board_class: pass\n"
        "if board.board_class in scenario.applies_to: pass\n"
    )
    assert [line for _, line, _ in _board_class_compares("m.py", tree)] == [1, 2]
