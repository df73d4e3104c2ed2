"""The closing table of ``stetho train``: the decision figures it prints are cross-fitted."""

from __future__ import annotations

from stetho.cli.train import final_table


def _summary(**decision: object) -> dict:
    pooled = {
        "per_class": {"murmur": {"auc": 0.9}, "normal": {"auc": 0.8}},
        "macro_auc": 0.85,
        "balanced_accuracy": 0.7,
        # The shipped rule scored on the folds it was fitted on: flattering.
        "physionet2016": {"macc": 0.99},
    }
    return {"pooled": pooled, "decision": decision, "seconds": 12.0}


def test_the_rules_figures_are_the_cross_fitted_ones() -> None:
    recording = {"macc": 0.75, "sensitivity": 0.7, "specificity": 0.8}
    rows = dict(final_table(_summary(recording=recording), command_seconds=20.0))
    assert rows["MAcc normal/abnormal (rule, cross-fitted)"] == "0.7500"
    assert rows["sensitivity / specificity (cross-fitted)"] == "0.7000 / 0.8000"
    assert "0.9900" not in rows.values()


def test_without_a_fitted_rule_the_default_rules_macc() -> None:
    rows = dict(final_table(_summary(skipped="no normal class"), command_seconds=20.0))
    assert rows["MAcc normal/abnormal"] == "0.9900"
    assert rows["training time (all segments)"] == "12 s"


def test_several_datasets_add_each_sources_normal_vs_abnormal_auc() -> None:
    summary = _summary(skipped="no normal class")
    summary["per_dataset"] = {"pascal": {}, "physionet2016": {}}
    summary["per_source"] = {
        "set_a": {"physionet2016": {"auc": 0.7}},
        "training-a": {"physionet2016": {"auc": 0.6}},
        "training-c": {"physionet2016": {"auc": float("nan")}},  # one class only
    }
    rows = dict(final_table(summary, command_seconds=1.0))
    assert rows["normal vs abnormal AUC, set_a (out-of-fold)"] == "0.7000"
    assert rows["normal vs abnormal AUC, mean over sources"] == "0.6500"
    assert not any("training-c" in name for name in rows)
    single = dict(final_table(_summary(skipped="x"), command_seconds=1.0))
    assert not any(name.startswith("normal vs abnormal AUC") for name in single)
