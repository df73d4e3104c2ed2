"""Ready models (``stetho:NAME``, :mod:`stetho.runs.zoo`): resolution, errors, cards, the
scoring core's loader, and the package data that ships them."""

from __future__ import annotations

import glob
import shutil
import tomllib
from pathlib import Path

import fixtures_runs
import pytest
from conftest import REPO
from zoo_helpers import CARD, make_zoo

from stetho.export import pipeline_files
from stetho.io import ArtifactError
from stetho.runs import load_run
from stetho.runs import zoo as zoo_module
from stetho.runs.folder import PipelineFolder
from stetho.runs.zoo import (
    MODEL_CARD,
    card_summary,
    check_outside_zoo,
    is_model_name,
    list_models,
    model_card,
    resolve_model,
)
from stetho.scoring.backends import PipelineScorer, load_scorer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

one_torch_thread = fixtures_runs.one_torch_thread
tiny_run = fixtures_runs.tiny_run


@pytest.fixture(scope="module")
def zoo_root(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_zoo(tmp_path_factory.mktemp("zoo") / "zoo", tiny_run)
    (root / "README.md").write_text("what goes here\n")  # a file: not a model
    (root / "broken").mkdir()  # a folder without a graph: not listed
    return root


@pytest.fixture
def zoo(zoo_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(zoo_module, "ZOO_DIR", zoo_root)
    return zoo_root


def test_names_resolve_to_the_packaged_folder_and_paths_stay_paths(zoo: Path) -> None:
    assert list_models() == ["tiny"]
    assert is_model_name("stetho:tiny") and is_model_name(Path("stetho:tiny"))
    assert not is_model_name("runs/tiny") and not is_model_name("tiny")
    assert resolve_model("stetho:tiny") == zoo / "tiny"
    assert resolve_model(Path("stetho:tiny")) == zoo / "tiny"  # typer hands over a Path
    for value in ("runs/x", Path("some/pipe"), "tiny", "./stetho"):
        resolved = resolve_model(value)
        assert isinstance(resolved, Path) and resolved == Path(value)


def test_unknown_name_names_it_the_shipped_ones_and_the_listing(zoo: Path) -> None:
    with pytest.raises(ValueError) as info:
        resolve_model("stetho:heart-v9")
    message = str(info.value)
    assert "stetho:heart-v9" in message and "stetho:tiny" in message
    assert "stetho models" in message
    for bad in ("stetho:", "stetho:../zoo", "stetho:tiny/../tiny"):
        with pytest.raises(ValueError, match="stetho:tiny"):
            resolve_model(bad)
    # A model folder without its graph is an unusable artifact, named.
    with pytest.raises(ArtifactError, match="broken"):
        resolve_model("stetho:broken")


def test_an_install_without_models_says_so(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(zoo_module, "ZOO_DIR", tmp_path / "absent")
    assert list_models() == []
    with pytest.raises(ValueError, match="none is shipped in this install") as info:
        resolve_model("stetho:heart-v1")
    assert "stetho models" in str(info.value)


def test_model_card_and_its_summary(zoo: Path) -> None:
    assert model_card("tiny") == CARD
    assert model_card("stetho:tiny") == CARD
    assert card_summary(CARD) == "Tiny test screener: two synthetic classes, not for patients"
    assert card_summary("\n\n  plain first line\nsecond") == "plain first line"
    with pytest.raises(ValueError, match="stetho:tiny"):
        model_card("nope")


def test_a_model_without_its_card_is_named(zoo: Path, tmp_path: Path, monkeypatch) -> None:
    bare = tmp_path / "zoo"
    bare.mkdir()
    shutil.copytree(zoo / "tiny", bare / "nocard", ignore=shutil.ignore_patterns(MODEL_CARD))
    monkeypatch.setattr(zoo_module, "ZOO_DIR", bare)
    assert list_models() == ["nocard"]  # still usable
    with pytest.raises(ArtifactError, match="no card"):
        model_card("nocard")


def test_load_scorer_takes_a_name(zoo: Path, tiny_run: Path) -> None:
    scorer = load_scorer("stetho:tiny")
    assert isinstance(scorer, PipelineScorer) and scorer.kind == "pipeline"
    assert scorer.name == "stetho:tiny"  # what /health shows
    by_path = load_scorer(zoo / "tiny")
    assert by_path.name == "tiny" and by_path.classes == scorer.classes
    with pytest.raises(ValueError, match="no fold can be chosen"):
        load_scorer("stetho:tiny", folds=[0])
    with pytest.raises(ValueError, match="stetho:tiny"):
        load_scorer("stetho:absent")
    # A run folder still loads as a run, with the folds asked for.
    assert load_scorer(tiny_run, folds=[1]).kind == "run"


def test_load_run_says_a_name_is_a_pipeline(zoo: Path) -> None:
    with pytest.raises(ValueError, match="not a training run"):
        load_run("stetho:tiny")


def test_outputs_inside_the_zoo_are_refused(zoo: Path, tmp_path: Path) -> None:
    for inside in (zoo, zoo / "tiny" / "preds.csv", zoo / "new" / "eval"):
        with pytest.raises(ValueError, match="only ever read"):
            check_outside_zoo(inside)
    check_outside_zoo(tmp_path / "preds.csv")  # elsewhere: fine


def test_package_data_ships_every_file_of_an_exported_model(zoo: Path) -> None:
    """setuptools ships ``glob(<package>/<pattern>, recursive=True)`` files: every file of an
    exported model folder (and its card) must match a ``stetho`` package-data pattern."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["stetho"]
    # Lay the model out as it sits in the package: <package>/zoo/<name>/...
    package = zoo.parent
    assert zoo.name == "zoo"
    shipped = {
        Path(p)
        for pattern in patterns
        for p in glob.glob(str(package / pattern), recursive=True)
        if Path(p).is_file()
    }
    model = PipelineFolder(zoo / "tiny")
    files = [*pipeline_files(model), model.root / MODEL_CARD]
    assert sorted(p.name for p in model.root.iterdir()) == sorted(p.name for p in files)
    missing = [p.name for p in files if p not in shipped]
    assert not missing, f"pyproject package-data does not ship {missing}"
    # The real zoo folder's README is package data too.
    real = REPO / "src" / "stetho"
    found = {Path(p) for pat in patterns for p in glob.glob(str(real / pat), recursive=True)}
    assert real / "zoo" / "README.md" in found
