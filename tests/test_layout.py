"""The layout of sfc_tf/, measured from the imports of its modules (read with ast; imports inside functions and
under TYPE_CHECKING count): few top-level modules, packages by stage of the data flow, no import that runs to a
later stage or to the CLI, no cycle between packages."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "sfc_tf"
MAX_TOP_LEVEL_MODULES = 10

# Every package and top-level module of sfc_tf/, by stage: a module may import from its own stage and earlier ones.
# The container format comes before the stages that code to its ids; the trainers' shared machinery before the
# stages that train; then the data flow (base layer, data built from it, reconstruction, enhancement), the ways of
# running it (serving, the codec), what is built on the codec, and the command line last.
STAGES = (
    ("errors",),
    ("settings", "files", "runs", "checkpoint", "metrics"),
    ("bitstream", "zoo"),
    ("training",),
    ("base",),
    ("data",),
    ("reconstruction",),
    ("enhancement",),
    ("serving",),
    ("codec",),
    ("apps", "evaluation"),
    ("cli",),
)
STAGE = {unit: rank for rank, units in enumerate(STAGES) for unit in units}


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, pathlib.Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if "__pycache__" not in p.parts}


def imports(path: pathlib.Path, known: dict[str, pathlib.Path]) -> list[tuple[int, str]]:
    """(line, module) of every sfc_tf module ``path`` imports; ``from sfc_tf.x import y`` names module
    ``sfc_tf.x.y`` where one exists, else ``sfc_tf.x``."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            for alias in node.names:
                target = f"{base}.{alias.name}"
                found.append((node.lineno, target if target in known else base))
    return [(line, target) for line, target in found if target == "sfc_tf" or target.startswith("sfc_tf.")]


def unit(module: str) -> str:
    """The package or top-level module of sfc_tf that ``module`` belongs to ("sfc_tf": the package itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "sfc_tf"


def edges() -> list[tuple[str, int, str]]:
    known = modules()
    return [(name, line, target) for name, path in known.items() for line, target in imports(path, known)]


def test_few_top_level_modules():
    top = sorted(p.stem for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
    assert len(top) <= MAX_TOP_LEVEL_MODULES, f"{len(top)} top-level modules in sfc_tf/: {top}"


def test_every_package_and_top_level_module_has_a_stage():
    units = {unit(name) for name in modules()} - {"sfc_tf"}
    assert units == set(STAGE), f"not in STAGES: {sorted(units - set(STAGE))}; gone: {sorted(set(STAGE) - units)}"


def test_no_library_module_imports_the_cli():
    offending = [
        f"{name} (line {line})" for name, line, target in edges() if unit(target) == "cli" and unit(name) != "cli"
    ]
    assert not offending, f"library modules import sfc_tf.cli: {offending}"


def test_no_module_imports_from_a_later_stage():
    upward = [
        f"{name} (line {line}) imports {target}: stage of {unit(target)!r} comes after {unit(name)!r}'s"
        for name, line, target in edges()
        if unit(target) != "sfc_tf" and STAGE[unit(target)] > STAGE[unit(name)]
    ]
    assert not upward, "\n".join(upward)


def test_no_import_cycle_between_packages():
    graph: dict[str, set[str]] = {}
    for name, _, target in edges():
        if unit(name) != unit(target) and unit(target) != "sfc_tf":
            graph.setdefault(unit(name), set()).add(unit(target))
    done: set[str] = set()

    def visit(node: str, path: tuple[str, ...]) -> None:
        if node in path:
            raise AssertionError("import cycle between packages: " + " -> ".join(path[path.index(node) :] + (node,)))
        if node not in done:
            for following in sorted(graph.get(node, ())):
                visit(following, path + (node,))
            done.add(node)

    for node in sorted(graph):
        visit(node, ())
