"""``stetho evaluate`` on held-out slices of the shared data, scored with a tiny run.

The metrics in ``evaluation.json`` are checked against a direct computation from the
``predictions.csv`` the same call wrote (scikit-learn on the scores), never against fixed
numbers; the scores themselves are checked against ``stetho.scoring.batch.predict_files``.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import fixtures_runs
import numpy as np
import pandas as pd
import pytest
from conftest import CHROMIUM, CHROMIUM_ARGS, REPO, WORKSPACE
from shared_data import circor_slice, needs_circor, needs_physionet, physionet_slice
from sklearn.metrics import confusion_matrix, roc_auc_score
from typer.testing import CliRunner

from stetho.cli import app
from stetho.data import readers as datasets
from stetho.data.manifest import apply_patient_regex, patient_warning
from stetho.decision.calibration import expected_calibration_error
from stetho.evaluation import evaluate, parse_label_map, resolve_label_map
from stetho.runs import load_run
from stetho.scoring.batch import InputItem, predict_files
from stetho.scoring.core import run_rule

#: 3 normal and 3 abnormal records of training-b.
RECORDS = ("b0001", "b0002", "b0003", "b0008", "b0013", "b0016")
#: Absent, Present and Unknown patients with two recordings each.
CIRCOR_MAP = "present=abnormal,absent=normal,unknown=-"

one_torch_thread = fixtures_runs.one_torch_thread
tiny_run = fixtures_runs.tiny_run


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("held_out")
    out: dict[str, Path] = {}
    if (WORKSPACE / "shared/data/physionet-2016").is_dir():
        out["physionet"] = physionet_slice(root / "physionet", RECORDS) / "training-b"
    if (WORKSPACE / "shared/data/circor-2022-dev").is_dir():
        out["circor"] = circor_slice(root / "circor")
    return out


@pytest.fixture(scope="module")
def physionet_eval(tiny_run: Path, held_out, tmp_path_factory) -> Path:
    if "physionet" not in held_out:
        pytest.skip("shared PhysioNet 2016 absent")
    out = tmp_path_factory.mktemp("ev") / "physionet"
    evaluate(tiny_run, [held_out["physionet"]], out=out, progress=False, n_boot=200)
    return out


# --- labels -------------------------------------------------------------------------------


def test_label_map_parsing_and_resolution() -> None:
    given = parse_label_map(["Present=abnormal, absent=normal", "unknown=-"])
    assert given == {"present": "abnormal", "absent": "normal", "unknown": "-"}
    mapping = resolve_label_map(
        ["present", "absent", "unknown"], ["murmur", "normal"], "normal", given
    )
    assert mapping.mode == "binary"
    assert [mapping.target(x) for x in ("present", "absent", "unknown")] == [
        "abnormal",
        "normal",
        None,
    ]
    multi = resolve_label_map(
        ["present", "absent"],
        ["murmur", "normal"],
        "normal",
        {"present": "murmur", "absent": "normal"},
    )
    assert multi.mode == "multiclass" and multi.target("present") == "murmur"
    # PhysioNet's vocabulary needs no map: normal is a class, abnormal the abnormal decision.
    assert (
        resolve_label_map(["abnormal", "normal"], ["murmur", "normal"], "normal").mode == "binary"
    )
    for bad, words in (
        ("present", "is not FROM=TO"),
        ("a=b,a=c", "mapped twice"),
    ):
        with pytest.raises(ValueError, match=words):
            parse_label_map(bad)
    with pytest.raises(ValueError, match="'extrastole' is not a class of the run"):
        resolve_label_map(["present"], ["murmur", "normal"], "normal", {"present": "extrastole"})
    with pytest.raises(ValueError, match="no normal class"):
        resolve_label_map(["present"], ["a", "b", "c"], None, {"present": "abnormal"})
    with pytest.raises(ValueError, match="does not have"):
        resolve_label_map(["present"], ["murmur", "normal"], "normal", {"absent": "normal"})


# --- PhysioNet: normal vs abnormal ---------------------------------------------------------


@needs_physionet
def test_physionet_metrics_match_the_predictions(
    physionet_eval: Path,
    tiny_run: Path,
    held_out,
) -> None:
    result = json.loads((physionet_eval / "evaluation.json").read_text())
    preds = pd.read_csv(physionet_eval / "predictions.csv", keep_default_na=False)
    assert len(preds) == len(RECORDS) and (preds["error"] == "").all()
    assert result["label_map"]["mode"] == "binary"
    assert {r["label"]: r["target"] for r in result["labels"]} == {
        "abnormal": "abnormal",
        "normal": "normal",
    }
    # the scores are the scoring core's
    run = load_run(tiny_run)
    items = [InputItem(p, p) for p in preds["path"]]
    direct = predict_files(run, items, progress=False)
    np.testing.assert_allclose(preds["abnormal_prob"], direct["abnormal_prob"], rtol=1e-6)

    nva = result["metrics"]["normal_vs_abnormal"]
    truth = (preds["label"] == "abnormal").to_numpy()
    score = preds["abnormal_prob"].to_numpy(float)
    threshold = run_rule(run).threshold  # the run's deployed rule (its decision.json)
    flagged = score >= threshold
    assert nva["threshold"] == pytest.approx(threshold)
    assert nva["auc"] == pytest.approx(roc_auc_score(truth, score))
    assert nva["sensitivity"] == pytest.approx(flagged[truth].mean())
    assert nva["specificity"] == pytest.approx((~flagged[~truth]).mean())
    assert nva["confusion_matrix"]["matrix"] == confusion_matrix(truth, flagged).tolist()
    assert (flagged == preds["abnormal"].astype(bool)).all()  # the rule's own decision
    two = np.column_stack([1 - score, score])
    names = np.where(truth, "abnormal", "normal")
    assert nva["ece"] == pytest.approx(
        expected_calibration_error(two, names, ["normal", "abnormal"], bins=15)
    )
    lo, hi = nva["auc_ci"]
    assert lo is None or lo <= hi
    for key in ("sensitivity", "specificity"):
        lo, hi = nva[f"{key}_ci"]
        assert 0 <= lo <= hi <= 1
    assert list(result["metrics"]["per_source"]) == ["training-b"]
    assert result["metrics"]["per_source"]["training-b"]["auc"] == pytest.approx(nva["auc"])
    assert list(result["metrics"]["per_dataset"]) == ["training-b"]
    # PhysioNet names no patients: the evaluation says so
    assert any("its own patient" in w and "training-b" in w for w in result["warnings"])
    page = (physionet_eval / "evaluation.html").read_text()
    assert "its own patient" in page and "Normal vs abnormal" in page


@needs_physionet
def test_existing_output_is_refused_and_force_replaces_only_its_own(
    physionet_eval: Path,
    tiny_run: Path,
    held_out,
    tmp_path: Path,
) -> None:
    before = (physionet_eval / "evaluation.json").read_bytes()
    with pytest.raises(FileExistsError, match="already exists.*--force"):
        evaluate(tiny_run, [held_out["physionet"]], out=physionet_eval, progress=False)
    assert (physionet_eval / "evaluation.json").read_bytes() == before
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not written by this command"):
        evaluate(tiny_run, [held_out["physionet"]], out=foreign, force=True, progress=False)
    assert (foreign / "notes.txt").read_text() == "keep me"
    again = shutil.copytree(physionet_eval, tmp_path / "again")
    evaluate(tiny_run, [held_out["physionet"]], out=again, force=True, progress=False, n_boot=50)
    assert json.loads((again / "evaluation.json").read_text())["recordings"]["scored"] == 6


# --- CirCor: the label map -----------------------------------------------------------------


@needs_circor
def test_circor_unknown_labels_are_refused_before_scoring(
    tiny_run: Path,
    held_out,
    tmp_path: Path,
) -> None:
    result = CliRunner().invoke(
        app, ["evaluate", str(tiny_run), str(held_out["circor"]), "--out", str(tmp_path / "e")]
    )
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert "label(s) ['absent', 'present', 'unknown'] are not classes of the run" in message
    assert "--label-map" in message
    assert not (tmp_path / "e").exists()


@needs_circor
def test_circor_with_a_label_map_via_the_cli(
    tiny_run: Path,
    held_out,
    tmp_path: Path,
) -> None:
    out = tmp_path / "circor"
    result = CliRunner().invoke(
        app,
        ["evaluate", str(tiny_run), str(held_out["circor"]), "--label-map", CIRCOR_MAP]
        + ["--out", str(out), "--no-progress"],
    )
    assert result.exit_code == 0, result.output
    assert "ROC AUC abnormal" in result.output
    data = json.loads((out / "evaluation.json").read_text())
    preds = pd.read_csv(out / "predictions.csv", keep_default_na=False)
    # unknown (patient 29378) is left out; present -> abnormal, absent -> normal
    assert sorted(preds["patient"].unique()) == ["circor/49873", "circor/49900"]
    assert data["recordings"] | {} == {
        "in_datasets": 6,
        "unlabelled": 0,
        "left_out": 2,
        "scored": 4,
        "not_scored": 0,
    }
    assert set(zip(preds["label"], preds["target"], strict=True)) == {
        ("present", "abnormal"),
        ("absent", "normal"),
    }
    nva = data["metrics"]["normal_vs_abnormal"]
    truth = (preds["target"] == "abnormal").to_numpy()
    assert nva["auc"] == pytest.approx(roc_auc_score(truth, preds["abnormal_prob"]))
    # two recordings per patient: patients, not recordings, are the unit of the intervals
    assert data["metrics"]["patients"] == {"patients": 2, "recordings": 4}
    assert nva["patients"]["patients"] == 2
    assert not any("its own patient" in w for w in data["warnings"])


@needs_circor
def test_circor_onto_the_run_classes_gives_multiclass_metrics(
    tiny_run: Path,
    held_out,
    tmp_path: Path,
) -> None:
    done = evaluate(
        tiny_run,
        [held_out["circor"]],
        label_map=parse_label_map("present=murmur,absent=normal,unknown=-"),
        out=tmp_path / "multi",
        progress=False,
        n_boot=50,
    )
    mc = done.result["metrics"]["multiclass"]
    preds = done.predictions
    y = preds["target"].to_numpy()
    assert mc["per_class"]["murmur"]["auc"] == pytest.approx(
        roc_auc_score(y == "murmur", preds["prob_murmur"])
    )
    argmax = np.where(preds["prob_murmur"] > preds["prob_normal"], "murmur", "normal")
    assert (
        mc["confusion_matrix"]["matrix"]
        == confusion_matrix(y, argmax, labels=["murmur", "normal"]).tolist()
    )
    assert (
        mc["decision_confusion_matrix"]["matrix"]
        == confusion_matrix(y, preds["predicted"], labels=["murmur", "normal"]).tolist()
    )


# --- patients ------------------------------------------------------------------------------


def test_patient_regex_groups_recordings(make_wav, tmp_path: Path) -> None:
    for label in ("normal", "murmur"):
        for patient in ("p1", "p2"):
            for site in ("AV", "MV"):
                make_wav(tmp_path / "data" / label / f"{patient}{label}_{site}.wav", 0.5, 2000)
    plain = datasets.read_dataset(tmp_path / "data")
    warning = patient_warning(plain)
    assert warning is not None and "every recording is its own patient" in warning
    grouped = datasets.read_dataset(tmp_path / "data", patient_regex=r"^(?P<patient>p\d\w+?)_")
    assert grouped["patient"].nunique() == 4
    assert set(grouped["patient"]) == {
        "data/p1normal",
        "data/p2normal",
        "data/p1murmur",
        "data/p2murmur",
    }
    assert patient_warning(grouped) is None
    with pytest.raises(ValueError, match=r"finds no patient id .* 8 of 8"):
        apply_patient_regex(plain, r"^(x)_", name="test")
    with pytest.raises(ValueError, match="has 2 groups"):
        apply_patient_regex(plain, r"(p)(\d)", name="test")


def test_train_warns_about_patients_and_takes_a_regex(make_wav, tmp_path: Path) -> None:
    from stetho.config import load_config
    from stetho.training.plan import plan_training

    for label in ("normal", "murmur"):
        for i in range(4):
            for site in ("A", "B"):
                make_wav(tmp_path / "data" / label / f"{label}{i}_{site}.wav", 0.5, 2000)
    cfg = load_config(None, ["dataset.number_of_folds=2"])
    plan = plan_training(cfg, data=tmp_path / "data")
    assert any("its own patient" in w for w in plan.warnings)
    plan = plan_training(cfg, data=tmp_path / "data", patient_regex=r"^(\w+?)_")
    assert not any("its own patient" in w for w in plan.warnings)
    folds = plan.manifest.groupby("patient")["fold"].nunique()
    assert len(folds) == 8 and (folds == 1).all()  # both sites of a patient in one fold


def test_train_cli_patient_regex_reaches_the_run_manifest(make_wav, tmp_path: Path) -> None:
    from fixtures_runs import TINY_OVERRIDES

    for label in ("normal", "murmur"):
        for i in range(3):
            for site in ("A", "B"):
                make_wav(tmp_path / "data" / label / f"{label}{i}_{site}.wav", 2.5, 2000)
    result = CliRunner().invoke(
        app,
        [
            "train",
            str(REPO / "configs/heartbeat.yaml"),
            *TINY_OVERRIDES,
            "architecture.pretrained=false",  # TINY's width 8 is not the shipped backbone's
            "--data",
            str(tmp_path / "data"),
        ]
        + ["--out", str(tmp_path / "run"), "--patient-regex", r"^(\w+?)_", "--no-progress"],
    )
    assert result.exit_code == 0, result.output
    manifest = pd.read_parquet(tmp_path / "run" / "manifest.parquet")
    assert manifest["patient"].nunique() == 6
    assert manifest.groupby("patient")["fold"].nunique().eq(1).all()
    warnings = json.loads((tmp_path / "run" / "warnings.json").read_text())
    assert not any("its own patient" in w for w in warnings)


# --- the page in a browser -----------------------------------------------------------------


@needs_physionet
@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.is_file(), reason="no chromium binary (apt-get install chromium)")
def test_evaluation_page_opens_cleanly_in_chromium(physionet_eval: Path) -> None:

    sync_api = pytest.importorskip("playwright.sync_api")
    errors: list[str] = []
    remote: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))

        def route(r) -> None:
            if r.request.url.startswith(("file://", "data:")):
                r.continue_()
            else:
                remote.append(r.request.url)
                r.abort()

        page.route("**/*", route)
        page.goto((physionet_eval / "evaluation.html").as_uri(), wait_until="load")
        for name in (
            "Summary",
            "Labels",
            "Warnings",
            "Normal vs abnormal",
            "Per dataset",
            "Per source",
        ):
            assert page.get_by_role("heading", name=name, exact=True).is_visible(), name
        images = page.eval_on_selector_all(
            "img", "els => els.map(e => e.complete && e.naturalWidth > 0)"
        )
        assert len(images) == 3 and all(images)
        text = page.inner_text("#ev-summary")
        auc = json.loads((physionet_eval / "evaluation.json").read_text())["metrics"][
            "normal_vs_abnormal"
        ]["auc"]
        assert re.search(rf"{auc:.3f}", text)
        browser.close()
    assert errors == [] and remote == []


# --- the exported scorer's output check ------------------------------------------------------


def test_score_py_refuses_parquet_without_pyarrow_before_scoring(
    monkeypatch, tmp_path: Path, capsys
) -> None:
    import importlib.util
    import sys

    template = REPO / "src/stetho/export/template/score.py"
    spec = importlib.util.spec_from_file_location("score_template_for_evaluate", template)
    assert spec is not None and spec.loader is not None
    score = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(score)
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow -> ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    # The pipeline folder does not exist: reaching the scoring would fail on it instead.
    with pytest.raises(SystemExit) as exit_:
        score.main(["a.wav", "--out", str(tmp_path / "x.parquet"), "--pipeline", str(tmp_path)])
    assert exit_.value.code == 2
    assert "writing parquet needs pyarrow" in capsys.readouterr().err
    assert not (tmp_path / "x.parquet").exists()
