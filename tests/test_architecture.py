"""The layout is the architecture (ARCHITECTURE.md): imports point down the pipeline only,
module-level imports have no cycles, and each folder's file names live in one module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Where each subpackage lives (the user's top-level folders map into cifake_hub; the links
# cifake_hub/builders etc. point at them, so static checks see one tree).
PACKAGES = {
    "cifake_hub": ROOT / "cifake_hub",
    "cifake_hub.builders": ROOT / "builders",
    "cifake_hub.training": ROOT / "training",
    "cifake_hub.cards": ROOT / "cards",
}
MAX_FUNCTION_LINES = 60
# Lower layers first; a module may import its own layer and the ones below.
LAYERS = {
    "core": 0,
    "builders": 1,
    "training": 1,
    "zoo": 1,
    "explain": 2,
    "evaluate": 2,
    "cards": 3,
    "hub": 4,
    "jobs": 5,
    "cli": 6,
}
JOBS = {
    "cifake_hub.demo",
    "cifake_hub.predict",
    "cifake_hub.study",
    "cifake_hub.app",
    "cifake_hub.ship",
}
# The package itself exports the job-level ``load_detector``, imported on first use (PEP 562):
# the one import that may point up, and only from inside a function.
FACADE = {("cifake_hub", "cifake_hub.predict"), ("cifake_hub", "cifake_hub.predict.load_detector")}


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            if package == "cifake_hub" and parts and f"cifake_hub.{parts[0]}" in PACKAGES:
                continue  # reached through a link: counted under its own package
            found[".".join([package, *parts])] = path
    return found


def layer(module: str) -> str:
    if module in JOBS:
        return "jobs"
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in (
        "builders",
        "training",
        "zoo",
        "explain",
        "evaluate",
        "cards",
        "hub",
        "cli",
    ):
        return parts[1]
    return "core"


def imports(path: Path, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m.startswith("cifake_hub")}


def test_imports_point_down_the_pipeline():
    mods = modules()
    wrong = []
    for name, path in mods.items():
        for target in imports(path, top_level_only=False):
            if target not in mods or (name, target) in FACADE:
                continue  # a name imported from a module, checked as that module
            mine, theirs = layer(name), layer(target)
            if LAYERS[theirs] > LAYERS[mine] or ({mine, theirs} == {"builders", "training"}):
                wrong.append(f"{name} ({mine}) imports {target} ({theirs})")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles_not_even_lazy_or_for_typing():
    mods = modules()
    graph = {
        name: {
            t
            for t in imports(path, top_level_only=False)
            if t in mods and t != name and (name, t) not in FACADE
        }
        for name, path in mods.items()
    }
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join([*trail, node, nxt]))
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [])


@pytest.mark.parametrize(
    ("owner", "names"),
    [
        (
            "cifake_hub/dataset_folder.py",
            ["import_report.json", "import_config.json", "build_config.json",
             "generator_config.json", '".work"'],
        ),
        (
            "training/run_folder.py",
            ["run_config.json", "results.jsonl", "test_results.json", "model.keras",
             "summary.json", "figure6.png", "heatmaps.npz", "explain_config.json", "tables.md",
             '"tables"', '"plots"', '"models"', "recipe_result.json", '"checkpoints"',
             "last.keras", "best.keras", "state.json", "road.png"],
            # ("gradcam" is also a method's name)
        ),
    ],
)  # fmt: skip
def test_folder_file_names_live_in_their_folder_module(owner, names):
    sources = {
        p: p.read_text()
        for folder in PACKAGES.values()
        for p in folder.rglob("*.py")
        if "tests" not in p.parts
    }
    for name in names:
        holders = [
            p.relative_to(ROOT).as_posix()
            for p, text in sources.items()
            if re.search(re.escape(name if name.startswith('"') else f'"{name}"'), text)
        ]
        assert holders == [owner], f"{name} is spelled in {holders}"


def test_no_private_names_imported_across_modules():
    wrong = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cifake_hub"):
                private = [
                    a.name
                    for a in node.names
                    if a.name.startswith("_") and not a.name.endswith("__")
                ]
                if private and node.module != name:
                    wrong.append(f"{name} imports {private} from {node.module}")
    assert not wrong, "\n".join(wrong)


def test_no_function_is_longer_than_the_limit():
    long = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {lines} lines")
    assert not long, "\n".join(long)
