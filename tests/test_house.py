"""The house (docs/design.md#floors-of-imports): the project's units import each other in one direction only,
counting imports inside functions, and no top-level product file grows past what a reader holds in one
sitting."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 650  # a top-level product file (the guide says ~600)


def units() -> set[str]:
    """The project's units: each top-level .py file and each top-level package (a folder of .py files)."""
    files = {p.stem for p in ROOT.glob("*.py")}
    packages = {p.parent.name for p in ROOT.glob("*/*.py") if p.parent.name not in ("tests", "notebooks")}
    return files | packages


def imports(path: Path, known: set[str]) -> set[str]:
    """The units `path` imports, anywhere in it (functions included); relative imports stay inside a package."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                 [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
        out |= {n.split(".")[0] for n in names} & known
    return out


def graph() -> dict[str, set[str]]:
    known = units()
    edges = {u: set() for u in known}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        unit = rel.parts[0].removesuffix(".py")
        if unit in known:
            edges[unit] |= imports(path, known) - {unit}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every unit that can reach itself, with one path back to it."""
    found = []
    for start in sorted(edges):
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in sorted(edges.get(node, ())):
                if nxt == start:
                    found.append(path + [start])
                    stack = []
                    break
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, path + [nxt]))
    return found


def test_the_cycle_finder_finds_a_cycle_and_passes_a_chain():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"], ["b", "c", "a", "b"],
                                                             ["c", "a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_no_import_circle_between_the_projects_units():
    edges = graph()
    assert {"tools", "config", "data", "modules", "tokenizers", "train", "evaluation"} <= set(edges)
    assert cycles(edges) == []
    assert edges["tools"] == edges["config"] == set()  # the ground imports nothing of the project
    assert "modules" not in edges["data"]  # data makes batches and never runs a model


def test_no_top_level_product_file_is_too_long_to_read_in_one_sitting():
    long = {p.name: n for p in ROOT.glob("*.py") if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}
