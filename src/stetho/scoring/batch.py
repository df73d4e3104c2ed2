"""Score recordings with a trained run: files, folders and tables in, one row per recording out.

The flow is the one the run was validated with: decode (:func:`stetho.data.audio.read_audio`:
mono mean, float32, soxr ``HQ`` to the model's rate, the model's acceptance rule), cut with
the run's chunking rule (:func:`stetho.scoring.chunking.chunk_mean`, ``Fix`` or ``Dynamic``),
score each chunk with every fold model, average the probabilities over folds and chunks,
then decide with the run's :class:`~stetho.decision.DecisionRule`. Any
:class:`~stetho.scoring.backends.Scorer` works: a loaded run or an exported pipeline.

Output columns, in order (:func:`output_columns`):

``path``
    The recording as given on the command line, as found under a given folder
    (``<folder as given>/<relative path>``), or as written in a table's path column.
``prob_<class>``
    The rule's probability of each class (float): the fold mean of the chunk mean,
    renormalised to sum to 1 under BCE and calibrated when the rule says so.
``label``
    The decision's label (:class:`stetho.decision.DecisionRule`): the normal class when not
    flagged abnormal, the most probable other class when flagged (the most probable class
    for runs without a normal class); empty when the file failed.
``abnormal``, ``abnormal_prob``, ``outcome``
    Only when the rule has a normal class (``normal``, or the first of two classes):
    ``abnormal_prob`` = ``1 - prob_<normal>``, ``abnormal`` = 1 when it is at or above the
    threshold (0 or 1), ``outcome`` = ``normal``, ``abnormal`` or ``re-record`` (abnormal
    probability inside the rule's abstain band). Empty when the file failed.
``duration_s``
    Length of the decoded recording in seconds; empty when the file failed.
``error``
    Empty when the file was scored, otherwise why not (the reason of the
    :class:`~stetho.data.audio.AudioError`: ``empty file (0 bytes)``, ``cannot decode: ...``,
    ``too short: ...``). A bad file never stops the batch.

The torch-free pipeline written by :mod:`stetho.export` (``score.py``) produces the same table.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from stetho.data.audio import AudioError, AudioSource, DecodeError, iter_audio_files, read_audio
from stetho.data.manifest import compile_patient_regex
from stetho.data.readers import TABLE_SUFFIXES
from stetho.data.readers.table import find_audio_column, load_table, table_audio_paths
from stetho.decision import Calibration, DecisionRule
from stetho.decision.patients import Aggregation, patient_decisions
from stetho.decision.shift import estimate_priors, shift_indicator
from stetho.runs import Run
from stetho.runs.folder import RunFolder
from stetho.scoring.backends import RunScorer, Scorer
from stetho.scoring.core import Acceptance, Scored, decide, with_prior_shift

logger = logging.getLogger(__name__)

#: Default number of recordings decoded and scored together (also the most chunks per
#: forward pass).
DEFAULT_BATCH_SIZE = 64


@dataclass(frozen=True)
class InputItem:
    """One recording to score.

    ``path`` is how the output names it (as given, as found under a folder, as written in a
    table); ``abs_path`` is where it is read from.
    """

    path: str
    abs_path: str


def collect_inputs(inputs: Sequence[str | os.PathLike[str]]) -> list[InputItem]:
    """Expand command-line inputs into recordings, keeping their order.

    * a folder: every audio file below it (recursive, :data:`stetho.data.audio.AUDIO_EXTENSIONS`,
      hidden entries skipped, sorted), named ``<folder as given>/<relative path>``;
    * a ``.csv``/``.tsv``/``.parquet``/``.pq`` file: a table whose ``path`` (or ``audio``)
      column lists recordings; relative entries are relative to the table's folder;
    * anything else, existing or not: one recording (a missing one is reported in its row's
      ``error``, like any other bad file).

    Raises ``ValueError`` for a table without a path column, ``FileNotFoundError`` for an
    empty input list.
    """
    if not inputs:
        raise FileNotFoundError("no inputs: give audio files, folders or tables")
    items: list[InputItem] = []
    for raw in inputs:
        given = os.fspath(raw)
        path = Path(given)
        if path.is_dir():
            found = iter_audio_files(path)
            if not found:
                logger.warning("%s: no audio files in this folder", given)
            items += [InputItem(str(f), os.path.abspath(f)) for f in found]
        elif path.is_file() and path.suffix.lower() in TABLE_SUFFIXES:
            items += [InputItem(v, full) for v, full in table_audio_paths(path)]
        else:
            items.append(InputItem(given, os.path.abspath(path)))
    return items


def output_columns(rule: DecisionRule | Sequence[str]) -> list[str]:
    """The output table's columns, in order (see the module docstring), for a rule or for the
    default rule of some classes."""
    if not isinstance(rule, DecisionRule):
        rule = DecisionRule.default(list(rule))
    extra = ["abnormal", "abnormal_prob", "outcome"] if rule.normal_class is not None else []
    classes = rule.classes
    return ["path", *(f"prob_{c}" for c in classes), "label", *extra, "duration_s", "error"]


def results_frame(results: Sequence[Scored], rule: DecisionRule) -> pd.DataFrame:
    """The output table (:func:`output_columns`) of scored recordings, in their order."""
    classes = rule.classes
    n, k = len(results), len(classes)
    probs = np.full((n, k), np.nan)
    for i, r in enumerate(results):
        if r.probs is not None:
            probs[i] = r.probs
    df = pd.DataFrame({"path": pd.Series([r.path for r in results], dtype=object)})
    for j, c in enumerate(classes):
        df[f"prob_{c}"] = probs[:, j]
    df["label"] = pd.Series([r.label for r in results], dtype=object)
    if rule.normal_class is not None:
        flags = [None if r.decision is None else r.decision.abnormal for r in results]
        df["abnormal"] = pd.array([None if f is None else int(f) for f in flags], dtype="Int64")
        df["abnormal_prob"] = [
            np.nan if r.abnormal_prob is None else r.abnormal_prob for r in results
        ]
        df["outcome"] = pd.Series(
            [None if r.decision is None else r.decision.outcome for r in results], dtype=object
        )
    df["duration_s"] = [np.nan if r.duration_s is None else r.duration_s for r in results]
    df["error"] = pd.Series([r.error for r in results], dtype=object)
    return df[output_columns(rule)]


def as_scorer(model: Run | Scorer) -> Scorer:
    """A loaded run as a :class:`~stetho.scoring.backends.RunScorer`; a scorer as is."""
    return RunScorer(model) if isinstance(model, Run) else model


def read_for(
    scorer: Scorer,
    source: AudioSource,
    *,
    name: str | None = None,
    acceptance: Acceptance | None = None,
) -> np.ndarray:
    """Decode ``source`` as the model expects: mono float32 at its rate, within its acceptance
    rule (or the given, stricter one). Raises :class:`~stetho.data.audio.AudioError`."""
    accept = acceptance or scorer.acceptance
    try:
        audio = read_audio(
            source,
            sample_rate=scorer.sample_rate,
            min_duration_s=accept.min_duration_s,
            max_duration_s=accept.max_duration_s,
            name=name,
        )
    except OSError as exc:  # e.g. permission denied, I/O error on a network share
        label = name if name is not None else str(source)
        raise DecodeError(label, f"cannot read: {exc}") from None
    return audio.samples


def score_group(
    model: Run | Scorer,
    items: Sequence[InputItem],
    *,
    batch_size: int,
    rule: DecisionRule | None = None,
    quality_gate: bool = False,
) -> list[Scored]:
    """Decode, score and decide a group of recordings together (bad ones get their reason).

    The unit of work of :func:`predict_files` and of the Dask workers
    (:mod:`stetho.scoring.dask`): same groups, same batches, same numbers. ``quality_gate``:
    the heart-sound analysis runs on each recording and an unusable one gets "re-record"
    (:func:`usable_by_analysis`).
    """
    scorer = as_scorer(model)
    rule = rule or scorer.rule
    results: list[Scored | None] = [None] * len(items)
    good: list[int] = []
    waves: list[np.ndarray] = []
    for i, item in enumerate(items):
        try:
            wave = read_for(scorer, item.abs_path, name=item.path)
        except AudioError as exc:
            logger.debug("not scored: %s", exc)
            results[i] = Scored(item.path, None, None, None, exc.reason)
            continue
        good.append(i)
        waves.append(wave)
    if waves:
        raw = scorer.predict(waves, batch_size=batch_size)
        usable = usable_by_analysis(waves, scorer.sample_rate) if quality_gate else None
        scored = decide(
            rule,
            raw,
            paths=[items[i].path for i in good],
            durations=[len(w) / scorer.sample_rate for w in waves],
            usable=usable,
        )
        if usable is not None:
            scored = [
                replace(r, analysis={"usable": ok}) for r, ok in zip(scored, usable, strict=True)
            ]
        for i, r in zip(good, scored, strict=True):
            results[i] = r
    return [r for r in results if r is not None]


def groups(items: Sequence[InputItem], size: int) -> Iterator[Sequence[InputItem]]:
    """Consecutive groups of ``size`` items (the last may be shorter)."""
    if size < 1:
        raise ValueError(f"batch_size={size}: expected a positive number of recordings")
    for start in range(0, len(items), size):
        yield items[start : start + size]


def rule_with_threshold(scorer: Scorer, threshold: float | None) -> DecisionRule:
    """The scorer's rule, with ``threshold`` (a probability) instead of its own when given."""
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold={threshold}: expected a probability in [0, 1]")
    return scorer.rule.with_threshold(threshold)


def predict_files(
    model: Run | Scorer,
    items: Sequence[InputItem],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = True,
    threshold: float | None = None,
    quality_gate: bool = False,
) -> pd.DataFrame:
    """Score recordings with a run's fold ensemble (or a pipeline); one row per item, in order.

    Args:
        model: a loaded run (:func:`stetho.runs.load_run`, all folds or the chosen ones) or a
            :class:`~stetho.scoring.backends.Scorer`.
        items: from :func:`collect_inputs`.
        batch_size: recordings decoded and scored together, and the most chunks per
            forward pass; bounds memory on large archives.
        progress: a progress bar on stderr.
        threshold: for the ``abnormal`` column; defaults to the rule's (the run's
            ``decision.json``, else ``prediction.probability_threshold``).
        quality_gate: "re-record" for recordings the heart-sound analysis finds unusable.

    Returns:
        The table described in the module docstring (:func:`output_columns`).
    """
    scorer = as_scorer(model)
    rule = rule_with_threshold(scorer, threshold)
    results = score_items(
        scorer,
        items,
        rule=rule,
        batch_size=batch_size,
        progress=progress,
        quality_gate=quality_gate,
    )
    return results_frame(results, rule)


def score_items(
    scorer: Scorer,
    items: Sequence[InputItem],
    *,
    rule: DecisionRule,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = True,
    quality_gate: bool = False,
) -> list[Scored]:
    """:func:`predict_files` before the table: one :class:`Scored` per item, in order."""
    results: list[Scored] = []
    with tqdm(total=len(items), desc="scoring", unit="file", disable=not progress) as bar:
        for group in groups(items, batch_size):
            results += score_group(
                scorer, group, batch_size=batch_size, rule=rule, quality_gate=quality_gate
            )
            bar.update(len(group))
    n_bad = sum(1 for r in results if r.error)
    if n_bad:
        logger.warning(
            "%d of %d recording(s) could not be scored: see the error column", n_bad, len(results)
        )
    return results


def score_file(
    model: Run | Scorer,
    source: AudioSource,
    *,
    name: str | None = None,
    threshold: float | None = None,
) -> dict[str, Any]:
    """Score one recording (a path, its bytes or a binary file object).

    Returns ``{"path", "probs": {class: p}, "label", "duration_s"}`` plus ``"abnormal"``
    (bool), ``"abnormal_prob"`` and ``"outcome"`` when the rule has a normal class. Raises
    :class:`~stetho.data.audio.AudioError` for a recording that cannot be used.
    """
    scorer = as_scorer(model)
    rule = rule_with_threshold(scorer, threshold)
    if name is None:
        name = os.fspath(source) if isinstance(source, str | os.PathLike) else "<upload>"
    wave = read_for(scorer, source, name=name)
    (r,) = decide(
        rule, scorer.predict([wave]), paths=[name], durations=[len(wave) / scorer.sample_rate]
    )
    assert r.probs is not None and r.decision is not None
    out: dict[str, Any] = {
        "path": r.path,
        "probs": {c: float(p) for c, p in zip(rule.classes, r.probs, strict=True)},
        "label": r.label,
        "duration_s": r.duration_s,
    }
    if rule.normal_class is not None:
        out["abnormal"] = bool(r.decision.abnormal)
        out["abnormal_prob"] = r.decision.abnormal_probability
        out["outcome"] = r.decision.outcome
    return out


# --- issue #13: quality gate, label-shift adaptation, shift warning, patients ---------------


def usable_by_analysis(waves: Sequence[np.ndarray], sample_rate: int) -> list[bool]:
    """``stetho.pcg.analyze(...).quality.usable`` of each wave (the quality gate)."""
    from stetho.pcg import analyze  # the LR-HSMM analysis: loaded only when gating

    return [bool(analyze(w, sample_rate).quality.usable) for w in waves]


@dataclass
class BatchDecisions:
    """What ``stetho predict`` writes: the table, and (optionally) the per-patient table and a
    record of how the batch was decided (prior adaptation, shift indicator)."""

    table: pd.DataFrame
    rule: DecisionRule
    patients: pd.DataFrame | None = None
    record: dict[str, Any] = field(default_factory=dict)


#: Below this estimated share of healthy recordings, ``adapt_priors`` refuses the estimate.
MIN_NORMAL_SHARE = 0.01


def adapt_priors(
    results: Sequence[Scored], rule: DecisionRule, train_prior: Sequence[float]
) -> tuple[list[Scored], DecisionRule, dict[str, Any]]:
    """Re-estimate the class prior of a scored batch without labels (EM,
    :func:`stetho.decision.shift.estimate_priors`) and re-decide it with the rule whose
    calibration bias carries the update ``log π_new − log π_train``.

    The rule's calibrated probabilities ``p`` become ``softmax(log p + update)``: the same as
    applying the updated rule to the raw outputs (the log-normaliser is a shared shift).

    An estimate that leaves the healthy class under :data:`MIN_NORMAL_SHARE` of the batch is
    refused (results and rule returned unchanged, ``record["refused"]`` says why). EM runs to
    that corner when the recorder changed rather than the class mix: the posteriors are then
    not calibrated for the new device, every recording looks a little abnormal, and each EM
    step amplifies it. On PhysioNet 2016's five databases (23-79 % healthy), four from-scratch
    runs of the default config put the healthy share under 0.1 % on every one and flagged every
    recording (docs/benchmarks.md, eighth measurement). Estimates above the floor can be as
    wrong; the guard only stops the corner.
    """
    ok = [i for i, r in enumerate(results) if r.probs is not None]
    if not ok:
        raise ValueError("--adapt-priors: no recording of the batch could be scored")
    probs = np.stack([results[i].probs for i in ok])  # type: ignore[misc]
    shift = estimate_priors(probs, train_prior)
    batch_prior = dict(zip(rule.classes, shift.prior, strict=True))
    estimate: dict[str, Any] = {
        "train_prior": dict(zip(rule.classes, shift.train_prior, strict=True)),
        "batch_prior": batch_prior,
        "bias_update": list(shift.bias),
        "iterations": shift.iterations,
        "converged": shift.converged,
    }
    if rule.normal_class is not None:
        healthy = batch_prior[rule.normal_class]
        if healthy < MIN_NORMAL_SHARE:
            top = max(batch_prior, key=lambda c: batch_prior[c])
            reason = (
                f"--adapt-priors refused: EM estimated {healthy:.1%} of these {len(ok)} "
                f"recordings to be {rule.normal_class!r} ({top!r} "
                f"{batch_prior[top]:.1%}). That corner is what EM reaches when the "
                "recorder changed, not the class mix, so the run's rule decides this batch "
                "unchanged; to fit the rule to this device, label a few of its recordings "
                "and run `stetho calibrate RUN LABELLED --out NEW_RUN`"
            )
            return list(results), rule, {**estimate, "applied": False, "refused": reason}
    note = (
        f"EM label-shift estimate on {len(ok)} recordings: prior "
        f"{dict(zip(rule.classes, np.round(shift.prior, 4).tolist(), strict=True))}"
    )
    adapted = with_prior_shift(rule, shift.bias, note=note)
    step = DecisionRule(
        rule.classes,
        rule.normal_class,
        calibration=Calibration("prior-shift", (1.0,) * len(rule.classes), shift.bias),
        threshold=rule.threshold,
        abstain_band=rule.abstain_band,
    )
    new_probs = step.probabilities(probs)
    usable = [
        bool((results[i].analysis or {}).get("usable", True)) for i in ok
    ]  # the quality gate's verdict survives the update
    decisions = step.decide_all(new_probs, usable)
    out = list(results)
    for j, i in enumerate(ok):
        out[i] = replace(results[i], probs=new_probs[j], decision=decisions[j])
    return out, adapted, {**estimate, "applied": True, "rule": adapted.to_dict()}


def training_prior(scorer: Scorer) -> list[float] | None:
    """The prior the rule's probabilities are calibrated under: ``decision.json``'s
    ``meta.train_prior``, else the run's out-of-fold label frequencies; ``None`` for a
    pipeline without either."""
    prior = scorer.rule.meta.get("train_prior")
    if prior:
        return [float(v) for v in prior]
    oof = _training_oof(scorer)
    if oof is None:
        return None
    counts = np.array([(oof["label"] == c).sum() for c in scorer.classes], float) + 1.0
    return (counts / counts.sum()).tolist()


def _training_oof(scorer: Scorer) -> pd.DataFrame | None:
    run = getattr(scorer, "run", None)
    if not isinstance(run, Run):
        return None
    path = RunFolder(run.path).oof_predictions
    return pd.read_parquet(path) if path.is_file() else None


def batch_shift(scorer: Scorer, rule: DecisionRule, results: Sequence[Scored]) -> dict[str, Any]:
    """:func:`stetho.decision.shift.shift_indicator` of the batch against the run's
    out-of-fold predictions (both through ``rule``); ``{"available": False, ...}`` when there
    is nothing to compare (a pipeline, no normal class, nothing scored)."""
    oof = _training_oof(scorer)
    probs = [r.probs for r in results if r.probs is not None]
    if oof is None or not probs or rule.normal_class != "normal":
        return {"available": False, "message": "no training predictions to compare with"}
    train = rule.probabilities(oof[[f"prob_{c}" for c in rule.classes]].to_numpy(np.float64))
    ind = shift_indicator(train, np.stack(probs), list(rule.classes))
    return {"available": True, **ind.__dict__}


def patients_from_inputs(
    items: Sequence[InputItem],
    inputs: Sequence[str | os.PathLike[str]],
    *,
    column: str | None = None,
    regex: str | None = None,
) -> list[str | None]:
    """A patient id per item: a table's ``column`` (``--patient-column``), or the first group
    (else the whole match) of ``regex`` searched in the file name (``--patient-regex``);
    ``None`` where there is none (that recording is its own patient)."""
    if (column is None) == (regex is None):
        raise ValueError("give exactly one of --patient-column and --patient-regex")
    if regex is not None:
        # The same rule as training's --patient-regex (a group named patient, else the one
        # group); an unmatched name here is a recording of its own, not an error.
        pattern = compile_patient_regex(regex)
        group: str | int = "patient" if "patient" in pattern.groupindex else 1
        out: list[str | None] = []
        for item in items:
            m = pattern.search(Path(item.path).name)
            out.append(m.group(group) or None if m is not None else None)
        return out
    by_path: dict[str, str | None] = {}
    tables = [Path(os.fspath(i)) for i in inputs]
    tables = [t for t in tables if t.is_file() and t.suffix.lower() in TABLE_SUFFIXES]
    if not tables:
        raise ValueError("--patient-column needs a table among the inputs (csv/tsv/parquet)")
    for table in tables:
        df = load_table(table, as_text=True)
        if column not in df.columns:
            raise ValueError(
                f"{table}: no column {column!r} for --patient-column; it has {list(df.columns)}"
            )
        path_col = find_audio_column(df, table)
        for path, pid in zip(df[path_col], df[column], strict=True):
            by_path[str(path)] = None if pd.isna(pid) or str(pid) == "" else str(pid)
    return [by_path.get(item.path) for item in items]


def patient_table(
    table: pd.DataFrame,
    patients: Sequence[str | None],
    rule: DecisionRule,
    *,
    method: Aggregation = "any",
) -> pd.DataFrame:
    """One row per patient of a scored table (:func:`stetho.decision.patients.patient_decisions`
    with the rule's threshold): ``patient, n_recordings, n_used, score, decision``. Failed
    recordings are left out; a missing id makes the recording its own patient."""
    if rule.normal_class is None:
        raise ValueError("patient decisions need a rule with a normal class")
    ok = (table["error"] == "").to_numpy()
    ids = np.asarray(list(patients), dtype=object)[ok]
    ids = np.array(
        [
            p if p is not None else f"path:{path}"
            for p, path in zip(ids, table["path"][ok], strict=True)
        ],
        dtype=object,
    )
    return patient_decisions(
        ids,
        table.loc[ok, "abnormal_prob"].to_numpy(float),
        rule.threshold,
        method=method,
        outcome=table.loc[ok, "outcome"].to_numpy(dtype=object),
    ).rename(columns={"score": "abnormal_prob"})


def predict_batch(
    model: Run | Scorer,
    items: Sequence[InputItem],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = True,
    threshold: float | None = None,
    quality_gate: bool = False,
    adapt: bool = False,
    patients: Sequence[str | None] | None = None,
    aggregation: Aggregation | None = None,
) -> BatchDecisions:
    """:func:`predict_files` with the batch-level decisions of ``stetho predict``: prior
    adaptation (``adapt``), the shift indicator (always, when the run's training predictions
    are there) and the per-patient table (``patients``, one id per item)."""
    scorer = as_scorer(model)
    rule = rule_with_threshold(scorer, threshold)
    results = score_items(
        scorer,
        items,
        rule=rule,
        batch_size=batch_size,
        progress=progress,
        quality_gate=quality_gate,
    )
    record: dict[str, Any] = {
        "quality_gate": quality_gate,
        "shift": batch_shift(scorer, rule, results),
    }
    if adapt:
        prior = training_prior(scorer)
        if prior is None:
            raise ValueError(
                "--adapt-priors needs the training prior: the run's decision.json or its "
                "out-of-fold predictions"
            )
        results, rule, record["adapted_priors"] = adapt_priors(results, rule, prior)
    table = results_frame(results, rule)
    per_patient = None
    if patients is not None:
        method = aggregation or rule.meta.get("patient_aggregation") or "any"
        per_patient = patient_table(table, patients, rule, method=method)
        record["patients"] = {"aggregation": method, "n": int(len(per_patient))}
    return BatchDecisions(table=table, rule=rule, patients=per_patient, record=record)
