"""The layout rules of docs/architecture.md, checked on the source: imports only go down the
layers, no module imports another's private names, and only ``runs/`` names run artifacts."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from conftest import REPO

PACKAGE = REPO / "src" / "stetho"
#: docs/architecture.md's layers, lowest first: a package may import only those before it.
LAYERS = [
    "io",
    "config",
    "metrics",
    "viz",
    "data",
    "pcg",
    "features",
    "models",
    "runs",
    "decision",
    "scoring",
    "training",
    "pretrain",
    "explain",
    "report",
    "evaluation",
    "export",
    "workflows",
    "serve",
    "cli",
]
#: The standalone scorer runs without stetho: it is checked by its parity tests instead.
STANDALONE = PACKAGE / "export" / "template"
#: Ready models (package data): each holds a copy of the standalone scorer, no stetho module.
ZOO = PACKAGE / "zoo"
#: A run's (and a pipeline's) artifact names: only stetho.runs may spell them.
ARTIFACT = re.compile(
    r"""["'](summary|warnings|labels|environment|decision|elapsed|plan|preprocess|index)\.json["']"""
    r"""|["'](metrics)\.jsonl["']"""
    r"""|["'](oof_predictions|manifest|valid_predictions|decision_oof)\.parquet["']"""
    r"""|["']model\.(safetensors|onnx)["']|["']checkpoint\.pt["']|["']config\.yaml["']"""
    r"""|["']report\.html["']|["']\.partial["']"""
)


def _modules() -> list[tuple[str, Path, ast.Module]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if STANDALONE in path.parents or ZOO in path.parents:
            continue
        rel = path.relative_to(PACKAGE)
        layer = rel.parts[0].removesuffix(".py")
        out.append((layer, path, ast.parse(path.read_text(encoding="utf-8"))))
    return out


def _imports(tree: ast.Module) -> list[tuple[int, str, list[str]]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("stetho"):
            found.append((node.lineno, node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("stetho"):
                    found.append((node.lineno, alias.name, []))
    return found


def test_every_package_has_a_layer() -> None:
    packages = {layer for layer, _, _ in _modules()} - {"__init__", "__main__"}
    assert packages <= set(LAYERS), f"add {sorted(packages - set(LAYERS))} to LAYERS and the doc"
    top_level = sorted(p.stem for p in PACKAGE.glob("*.py"))
    assert top_level == ["__init__", "__main__", "config", "io", "metrics"]


def test_imports_only_go_down() -> None:
    rank = {name: i for i, name in enumerate(LAYERS)}
    upward = []
    for layer, path, tree in _modules():
        if layer not in rank:
            continue
        for line, module, _ in _imports(tree):
            parts = module.split(".")
            target = parts[1] if len(parts) > 1 else None
            if target in rank and rank[target] > rank[layer]:
                upward.append(f"{path.relative_to(REPO)}:{line}: {layer} -> {target}")
    assert not upward, "imports against the layers:\n" + "\n".join(upward)


def test_no_private_names_cross_modules() -> None:
    private = []
    for _, path, tree in _modules():
        for line, module, names in _imports(tree):
            leaked = [n for n in names if n.startswith("_")]
            if leaked or any(p.startswith("_") for p in module.split(".")):
                private.append(f"{path.relative_to(REPO)}:{line}: {module} {leaked}")
    assert not private, "private names imported:\n" + "\n".join(private)


@pytest.mark.parametrize("layer", [name for name in LAYERS if name != "runs"])
def test_only_runs_spells_artifact_names(layer: str) -> None:
    spelled = []
    for owner, path, _ in _modules():
        if owner != layer:
            continue
        for i, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            stripped = text.strip()
            if stripped.startswith("#") or not ARTIFACT.search(text):
                continue
            spelled.append(f"{path.relative_to(REPO)}:{i}: {stripped}")
    assert not spelled, "ask stetho.runs.folder for these paths:\n" + "\n".join(spelled)
