"""Issue #13 end to end: training writes the decision rule and its honest figures;
``stetho calibrate`` writes a new run; predict's prior adaptation, quality gate and patients."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import fixtures_runs
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from stetho.cli import app
from stetho.decision import DecisionRule
from stetho.metrics import normal_vs_abnormal
from stetho.pcg import analyze
from stetho.runs import load_run
from stetho.runs.folder import RunFolder
from stetho.scoring import run_rule
from stetho.scoring.backends import RunScorer
from stetho.scoring.batch import (
    InputItem,
    adapt_priors,
    collect_inputs,
    patients_from_inputs,
    predict_batch,
    read_for,
)
from stetho.scoring.calibrate import calibrate_run
from stetho.scoring.core import Scored

one_torch_thread = fixtures_runs.one_torch_thread
sharp_run = fixtures_runs.sharp_run
tiny_run = fixtures_runs.tiny_run
scoring_folder = fixtures_runs.scoring_folder

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CLASSES = ["murmur", "normal"]


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_training_writes_decision_json_and_summary_fields(tiny_run):
    folder = RunFolder(tiny_run)
    rule = run_rule(load_run(tiny_run))
    stored = json.loads(folder.decision.read_text())
    assert DecisionRule.from_dict(stored) == rule
    assert rule.normal_class == "normal" and rule.calibration is not None
    assert rule.meta["operating_point"]["target"] == "macc"  # the config default
    summary = folder.read_json(folder.summary)
    block = summary["decision"]
    assert block["cross_fitted"] is True and "other folds" in block["note"]
    assert block["bins"] == 15
    for when in ("before", "after"):
        assert {"ece", "log_loss"} <= set(block["calibration"][when])
    rec = block["recording"]
    lo, hi = rec["sensitivity_ci"]
    assert lo <= rec["sensitivity"] <= hi and rec["ci_resamples"] == "patients"
    assert block["rule"]["threshold"] == pytest.approx(rule.threshold)
    assert "pooled out-of-fold" in block["rule"]["threshold_chosen"]
    assert block["patients"]["aggregation"] == "any"
    assert sum(map(sum, rec["confusion"]["matrix"])) == rec["n"]
    # The summary's normal-vs-abnormal figures are the deployed rule's.
    oof = pd.read_parquet(folder.oof_predictions)
    raw = oof[[f"prob_{c}" for c in CLASSES]].to_numpy()
    deployed = normal_vs_abnormal(oof["label"].to_numpy(), raw, CLASSES, rule=rule)
    assert summary["pooled"]["physionet2016"] == pytest.approx(deployed, nan_ok=True)
    assert folder.decision_oof.is_file()


def test_a_run_without_decision_json_scores_with_the_default_rule(sharp_run):
    run = load_run(sharp_run)
    assert run.decision is None
    assert run_rule(run) == DecisionRule.default(CLASSES)


@pytest.fixture(scope="module")
def device_table(mission_dir, tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("device")
    rec = fixtures_runs.mission_recordings(mission_dir, base / "r")
    return fixtures_runs.labelled_table(rec, base / "labelled.csv")


def test_calibrate_writes_a_new_run_and_leaves_the_original_alone(
    sharp_run, device_table, tmp_path
):
    before = _digest(sharp_run)
    out = tmp_path / "recal"
    new = calibrate_run(
        sharp_run,
        device_table,
        out=out,
        layout="table",
        overrides={"calibration": "temperature", "abstain_coverage": 0.7},
    )
    assert new == out and _digest(sharp_run) == before
    rule = run_rule(load_run(new))
    assert rule.calibration is not None and rule.calibration.method == "temperature"
    assert rule.abstain_band is not None and rule.abstain_band[0] < rule.abstain_band[1]
    record = RunFolder(new).read_json(RunFolder(new).recalibration)
    assert record["recordings"] == len(pd.read_csv(device_table))
    assert record["after"]["calibration"]["after"]["log_loss"] <= (
        record["before"]["calibration"]["after"]["log_loss"] + 1e-9
    )
    # Never overwritten, never in place; the CLI says so with exit code 2.
    with pytest.raises(FileExistsError):
        calibrate_run(sharp_run, device_table, out=out, layout="table")
    res = CliRunner().invoke(app, ["calibrate", str(sharp_run), str(device_table), "-o", str(out)])
    assert res.exit_code == 2 and "already exists" in res.output
    with pytest.raises(ValueError, match="never modified"):
        calibrate_run(sharp_run, device_table, out=sharp_run, layout="table")
    assert _digest(sharp_run) == before


def _scored(probs: np.ndarray, rule: DecisionRule) -> list[Scored]:
    d = rule.decide_all(probs)
    return [Scored(f"r{i}", probs[i], d[i], 1.0) for i in range(len(probs))]


def test_adapt_priors_moves_towards_the_batch_mix():
    rule = DecisionRule(CLASSES, "normal", threshold=0.5)
    rng = np.random.default_rng(0)
    # Calibrated under a 50/50 prior: class-conditional scores, then Bayes' rule.
    n = 2000
    y = rng.random(n) < 0.85  # the new batch: 85 % murmur
    llr = rng.normal(np.where(y, 1.0, -1.0), 1.2)
    p_murmur = 1 / (1 + np.exp(-llr * (2 / 1.2**2)))
    probs = np.stack([p_murmur, 1 - p_murmur], axis=1)
    results = _scored(probs, rule)
    adapted, new_rule, record = adapt_priors(results, rule, [0.5, 0.5])
    assert record["batch_prior"]["murmur"] == pytest.approx(0.85, abs=0.05)
    assert record["converged"]
    before = np.array([r.decision.abnormal_probability for r in results])
    after = np.array([r.decision.abnormal_probability for r in adapted])
    assert (after >= before - 1e-12).all() and after.mean() > before.mean() + 0.05
    # The recorded rule applied to the same probabilities gives the adapted decisions.
    again = new_rule.probabilities(probs)
    np.testing.assert_allclose(again, np.stack([r.probs for r in adapted]), atol=1e-9)
    flagged_before = sum(bool(r.decision.abnormal) for r in results)
    assert sum(bool(r.decision.abnormal) for r in adapted) > flagged_before
    assert record["applied"] is True


def test_adapt_priors_refuses_the_corner_a_new_recorder_drives_em_to():
    # A new recorder, not a new class mix: the device makes every recording sound a little
    # murmur-like (p(murmur) 0.55-0.75), whatever the batch's true mix, as the mission-set
    # runs' posteriors did on PhysioNet. EM amplifies that, step by step, to "all murmur".
    rule = DecisionRule(CLASSES, "normal", threshold=0.5)
    rng = np.random.default_rng(1)
    p_murmur = rng.uniform(0.55, 0.75, 400)
    probs = np.stack([p_murmur, 1 - p_murmur], axis=1)
    results = _scored(probs, rule)
    adapted, new_rule, record = adapt_priors(results, rule, [0.5, 0.5])
    assert record["batch_prior"]["normal"] < 0.01  # the estimate itself, kept for the record
    assert record["applied"] is False
    assert "stetho calibrate" in record["refused"] and "'normal'" in record["refused"]
    assert new_rule is rule
    for before, after in zip(results, adapted, strict=True):
        np.testing.assert_array_equal(after.probs, before.probs)
        assert after.decision == before.decision


def test_patients_and_quality_gate_in_predict(sharp_run, scoring_folder, tmp_path):
    items = collect_inputs([scoring_folder])
    # file names: a_normal.wav, c_murmur.flac, ...: the letter before "_" is the patient.
    patients = patients_from_inputs(items, [scoring_folder], regex=r"^([a-z])_")
    result = predict_batch(
        load_run(sharp_run), items, progress=False, quality_gate=True, patients=patients
    )
    table, per = result.table, result.patients
    ok = table["error"] == ""
    assert per is not None and set(per["decision"]) <= {"normal", "abnormal", "re-record"}
    for _, row in per.iterrows():
        mine = [
            i
            for i in np.flatnonzero(ok)
            if (patients[i] or f"path:{table['path'][i]}") == row["patient"]
        ]
        outcomes = table.loc[mine, "outcome"]
        accepted = outcomes[outcomes != "re-record"]
        if accepted.empty:
            assert row["decision"] == "re-record"
        else:  # "any": abnormal when any accepted recording is
            assert (row["decision"] == "abnormal") == (accepted == "abnormal").any()
    # The quality gate: re-record exactly where the heart-sound analysis says unusable.
    scorer = RunScorer(load_run(sharp_run))
    for i in np.flatnonzero(ok):
        usable = analyze(read_for(scorer, items[i].abs_path), scorer.sample_rate).quality.usable
        if not usable:
            assert table["outcome"][i] == "re-record"
    assert result.record["quality_gate"] is True
    # The CLI writes the per-patient table and the batch record beside the output.
    out = tmp_path / "preds.csv"
    res = CliRunner().invoke(
        app,
        [
            "predict",
            str(sharp_run),
            str(scoring_folder),
            "-o",
            str(out),
            "--no-progress",
            "--patient-regex",
            r"^([a-z])_",
            "--adapt-priors",
        ],
    )
    assert res.exit_code == 1, res.output  # the folder holds bad files (exit 1, as always)
    written = pd.read_csv(tmp_path / "preds.patients.csv")
    assert len(written) == len(per)
    record = json.loads((tmp_path / "preds.decisions.json").read_text())
    assert set(record["adapted_priors"]["batch_prior"]) == set(CLASSES)
    assert "adapted priors" in res.output


def test_patient_column_needs_a_table_with_it(tmp_path):
    table = tmp_path / "t.csv"
    pd.DataFrame({"path": ["a.wav", "b.wav"], "pid": ["p1", ""]}).to_csv(table, index=False)
    items = [InputItem("a.wav", "/x/a.wav"), InputItem("b.wav", "/x/b.wav")]
    assert patients_from_inputs(items, [table], column="pid") == ["p1", None]
    with pytest.raises(ValueError, match="no column 'patient'"):
        patients_from_inputs(items, [table], column="patient")
    with pytest.raises(ValueError, match="exactly one"):
        patients_from_inputs(items, [table])
