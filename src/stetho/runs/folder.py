"""The run folder and the scoring-pipeline folder: every artifact's name, in one place.

```
runs/<name>/
  config.yaml              resolved config (every Auto filled in)
  warnings.json            what the resolver, the data checks and the hooks warned about
  labels.json              {"classes": [...], "loss_function": ..., "sample_rate": ...}
  decision.json            optional: the decision rule (stetho.decision.DecisionRule.to_dict)
  manifest.parquet         the data, with the fold column used
  plan.json                the folds to train (written before the first epoch)
  skipped.csv              files that could not be used, with the reason
  fold-<k>/model.safetensors   weights (no pickle), one per trained fold
  fold-<k>/history.json    that fold's epochs
  fold-<k>/valid_predictions.parquet   that fold's validation predictions
  fold-<k>/checkpoint.pt   training state while the fold runs (weights_only load)
  metrics.jsonl            one line per epoch and fold
  oof_predictions.parquet  path, fold, label, source, patient, prob_<class>...
  summary.json             per-fold, pooled and per-source metrics
  environment.json         versions, seed, git commit, device
  report.html              the self-contained report
  interpretations/         explanations of the worst-classified validation recordings
                           (an :class:`ExplanationFolder`)
  scoring/                 the exported ONNX pipeline (a :class:`PipelineFolder`)
  mlflow_run.json          the MLflow run this run was logged to
  evaluations/<data>/      ``stetho evaluate`` on a dataset the run never saw
                           (an :class:`EvaluationFolder`)
  elapsed.json             training seconds so far, summed over resumed segments (while partial)
  pseudo/round-<r>/fold-<k>/   intermediate pseudo-labelling rounds' fold models
  pseudo_labels_fold<k>_round<r>.parquet   the pseudo-labels fold k's round-r student used
```

While training, the folder is ``<name>.partial``; it is renamed to ``<name>`` only when
complete, so a crashed run never looks finished and ``--resume`` knows where to continue.
No other module spells these names: they ask a :class:`RunFolder` for the path.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stetho.io import atomic_write_json

logger = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"


def strip_partial(path: str | Path) -> Path:
    """``<name>.partial`` -> ``<name>``; any other path unchanged."""
    path = Path(path)
    return path.with_name(path.name.removesuffix(PARTIAL_SUFFIX)) if path.name else path


def with_partial(path: str | Path) -> Path:
    """``<name>`` -> ``<name>.partial`` (the folder a run is written into)."""
    path = strip_partial(path)
    return path.with_name(path.name + PARTIAL_SUFFIX)


@dataclass(frozen=True)
class RunFolder:
    """The files of one run, rooted at :attr:`root` (the final folder or its ``.partial``).

    ``RunFolder(path)`` does no I/O: it only names paths. :meth:`working` gives the ``.partial``
    folder a run is written into, :attr:`final` the name it gets when sealed.
    """

    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    # --- where ---------------------------------------------------------------------------
    @property
    def is_partial(self) -> bool:
        return self.root.name.endswith(PARTIAL_SUFFIX)

    @property
    def final(self) -> Path:
        """The sealed run's path (``<name>``), whichever of the two :attr:`root` is."""
        return strip_partial(self.root)

    @property
    def name(self) -> str:
        """The run's name, without ``.partial``."""
        return self.final.name

    def working(self) -> RunFolder:
        """The ``<name>.partial`` folder this run is (or was) written into."""
        return RunFolder(with_partial(self.root))

    def sealed(self) -> RunFolder:
        """The same run at its final path."""
        return RunFolder(self.final)

    # --- top-level artifacts ------------------------------------------------------------
    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def warnings(self) -> Path:
        return self.root / "warnings.json"

    @property
    def labels(self) -> Path:
        return self.root / "labels.json"

    @property
    def decision(self) -> Path:
        """The run's decision rule (optional; absent: the default rule of its classes)."""
        return self.root / "decision.json"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.parquet"

    @property
    def plan(self) -> Path:
        return self.root / "plan.json"

    @property
    def skipped(self) -> Path:
        return self.root / "skipped.csv"

    @property
    def metrics_log(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def oof_predictions(self) -> Path:
        return self.root / "oof_predictions.parquet"

    @property
    def decision_oof(self) -> Path:
        """Cross-fitted per-recording decisions of the after-folds step (the report's curves)."""
        return self.root / "decision_oof.parquet"

    @property
    def recalibration(self) -> Path:
        """What ``stetho calibrate`` fitted this run's decision.json on, and its figures."""
        return self.root / "recalibration.json"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def environment(self) -> Path:
        return self.root / "environment.json"

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    @property
    def interpretations(self) -> Path:
        return self.root / "interpretations"

    @property
    def explanations(self) -> ExplanationFolder:
        """The :attr:`interpretations` folder, as an :class:`ExplanationFolder`."""
        return ExplanationFolder(self.interpretations)

    @property
    def scoring(self) -> PipelineFolder:
        return PipelineFolder(self.root / "scoring")

    @property
    def mlflow_run(self) -> Path:
        return self.root / "mlflow_run.json"

    def evaluation(self, name: str) -> EvaluationFolder:
        """Where ``stetho evaluate`` writes its evaluation of dataset ``name`` by default."""
        return EvaluationFolder(self.root / "evaluations" / name)

    @property
    def elapsed(self) -> Path:
        return self.root / "elapsed.json"

    def pseudo_round(self, round_: int) -> RunFolder:
        """The folder of an intermediate pseudo-labelling round (its ``fold-<k>`` models)."""
        return RunFolder(self.root / "pseudo" / f"round-{round_}")

    def pseudo_labels(self, fold: int, round_: int) -> Path:
        """The audit table of the pseudo-labels that fold ``fold``'s round-``round_`` student
        trains on."""
        return self.root / f"pseudo_labels_fold{fold}_round{round_}.parquet"

    #: Files worth copying to an experiment tracker, in this order.
    TRACKED = (
        "config",
        "labels",
        "summary",
        "warnings",
        "metrics_log",
        "oof_predictions",
        "report",
    )

    def tracked_files(self) -> list[Path]:
        """The artifacts an experiment tracker should keep (those that exist)."""
        return [p for p in (getattr(self, k) for k in self.TRACKED) if p.is_file()]

    # --- folds ---------------------------------------------------------------------------
    def fold_dir(self, fold: int) -> Path:
        return self.root / f"fold-{fold}"

    def fold_model(self, fold: int) -> Path:
        return self.fold_dir(fold) / "model.safetensors"

    def fold_history(self, fold: int) -> Path:
        return self.fold_dir(fold) / "history.json"

    def fold_valid_predictions(self, fold: int) -> Path:
        return self.fold_dir(fold) / "valid_predictions.parquet"

    def fold_checkpoint(self, fold: int) -> Path:
        return self.fold_dir(fold) / "checkpoint.pt"

    def fold_histories(self) -> list[Path]:
        """The folds' ``history.json`` files that exist, in fold order."""
        found = []
        for p in self.root.glob("fold-*/history.json"):
            suffix = p.parent.name.split("-", 1)[1]
            if suffix.isdigit():
                found.append((int(suffix), p))
        return [p for _, p in sorted(found)]

    def trained_folds(self) -> list[int]:
        """Folds whose final weights exist, in order."""
        folds = []
        for p in self.root.glob("fold-*/model.safetensors"):
            suffix = p.parent.name.split("-", 1)[1]
            if suffix.isdigit():
                folds.append(int(suffix))
        return sorted(folds)

    def has_training(self) -> bool:
        """Whether anything was trained here: a finished fold (of any pseudo-labelling round)
        or an epoch checkpoint of an unfinished one."""
        patterns = ("fold-*/model.safetensors", "fold-*/checkpoint.pt")
        roots = [self.root, *sorted((self.root / "pseudo").glob("round-*"))]
        return any(next(r.glob(p), None) is not None for r in roots for p in patterns)

    # --- state ---------------------------------------------------------------------------
    @property
    def is_finished(self) -> bool:
        """A sealed run: its folder has its final name and a config."""
        return not self.is_partial and self.config.is_file()

    # --- reading and the append-only logs ------------------------------------------------
    def read_json(self, path: Path, default: Any = None) -> Any:
        """A JSON artifact of this run, or ``default`` when it does not exist."""
        return json.loads(path.read_text()) if path.is_file() else default

    def read_warnings(self) -> list[str]:
        return list(self.read_json(self.warnings, []))

    def write_warnings(self, messages: Iterable[str]) -> None:
        atomic_write_json(self.warnings, list(messages))

    def add_warning(self, message: str) -> None:
        """Append ``message`` to ``warnings.json`` (once: a repeated message is not doubled)."""
        warns = self.read_warnings()
        if message not in warns:
            warns.append(message)
            self.write_warnings(warns)

    def append_metrics(self, record: Mapping[str, Any]) -> None:
        """One line of ``metrics.jsonl`` (an epoch of a fold)."""
        from stetho.io import append_jsonl

        append_jsonl(self.metrics_log, dict(record))

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_log.is_file():
            return []
        lines = self.metrics_log.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]


@dataclass(frozen=True)
class PipelineFolder:
    """An exported scoring pipeline (``stetho export``): ONNX model plus a torch-free scorer."""

    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def model(self) -> Path:
        return self.root / "model.onnx"

    @property
    def labels(self) -> Path:
        return self.root / "labels.json"

    @property
    def preprocess(self) -> Path:
        return self.root / "preprocess.json"

    @property
    def script(self) -> Path:
        return self.root / "score.py"

    @property
    def requirements(self) -> Path:
        return self.root / "requirements.txt"

    @property
    def readme(self) -> Path:
        return self.root / "README.md"

    @property
    def is_pipeline(self) -> bool:
        return self.model.is_file()


@dataclass(frozen=True)
class ExplanationFolder:
    """What ``stetho explain`` (and the interpretations hook) writes for a set of recordings.

    ```
    index.json               methods, classes, one entry per recording, unreadable files
    <stem>.png               waveform, spectrogram and one overlay per method
    <stem>.<method>.npy      the (n_mels, frames) float32 map
    <stem>.<method>.json     its time and frequency axes, class and probability
    ```
    """

    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def index(self) -> Path:
        return self.root / "index.json"

    def figure(self, stem: str) -> Path:
        return self.root / f"{stem}.png"

    def map_array(self, stem: str, method: str) -> Path:
        return self.root / f"{stem}.{method}.npy"

    def map_axes(self, stem: str, method: str) -> Path:
        return self.root / f"{stem}.{method}.json"

    def read_index(self) -> dict[str, Any] | None:
        """The parsed ``index.json``, or ``None`` when there is none."""
        return json.loads(self.index.read_text()) if self.index.is_file() else None


@dataclass(frozen=True)
class EvaluationFolder:
    """What ``stetho evaluate`` writes for one labelled dataset scored with a run.

    ```
    evaluation.json          metrics, tables, label map, warnings (written last: its presence
                             marks a complete evaluation, and a folder this command owns)
    evaluation.html          the self-contained page
    predictions.csv          one row per recording: truth, mapped target, probabilities, decision
    ```
    """

    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def metrics(self) -> Path:
        return self.root / "evaluation.json"

    @property
    def page(self) -> Path:
        return self.root / "evaluation.html"

    @property
    def predictions(self) -> Path:
        return self.root / "predictions.csv"

    @property
    def owned_files(self) -> tuple[str, ...]:
        """Names of the files an evaluation writes (a folder holding others is not its own)."""
        return (self.metrics.name, self.page.name, self.predictions.name)


@dataclass(frozen=True)
class StudyFolder:
    """A hyperparameter study (``stetho tune``): one run folder per trial, and the best."""

    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    def trial(self, number: int) -> RunFolder:
        """Trial ``number``'s run folder (sealed path; its ``.partial`` while it trains)."""
        return RunFolder(self.root / f"trial-{number}")

    @property
    def storage(self) -> Path:
        """The default Optuna storage file (``sqlite:///<this>``)."""
        return self.root / "tune.db"

    @property
    def best_config(self) -> Path:
        return self.root / "best_config.yaml"

    @property
    def best_trial(self) -> Path:
        return self.root / "best_trial.json"

    @property
    def trials(self) -> Path:
        return self.root / "trials.csv"


@dataclass(frozen=True)
class PretrainFolder:
    """A pretraining run (``stetho pretrain``), rooted at ``root`` (the finished folder's name).

    ```
    <out>/
      config.json          resolved pretraining config (sources, objective, front end, budget)
      environment.json     versions, seed, device, threads, command
      sources.json         each source: root, layout, recordings, hours, labelled per task
      losses.jsonl         one line per step: step, loss, ssl, supervised, lr, seconds
      checkpoint.pt        resume state (tensors only; loaded with weights_only=True)
      backbone.safetensors the pretrained backbone + front-end metadata (the deliverable)
      summary.json         steps, time, steps/s, first/last losses
    ```

    While running the folder is ``<out>.partial``; it becomes ``<out>`` when the backbone is
    written, so an interrupted run never looks finished and ``--resume`` knows where to go on.
    """

    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def partial(self) -> Path:
        return with_partial(self.root)

    def _in(self, name: str, *, finished: bool) -> Path:
        return (self.root if finished else self.partial) / name

    def config(self, *, finished: bool = False) -> Path:
        return self._in("config.json", finished=finished)

    def environment(self, *, finished: bool = False) -> Path:
        return self._in("environment.json", finished=finished)

    def sources(self, *, finished: bool = False) -> Path:
        return self._in("sources.json", finished=finished)

    def losses(self, *, finished: bool = False) -> Path:
        return self._in("losses.jsonl", finished=finished)

    def checkpoint(self, *, finished: bool = False) -> Path:
        return self._in("checkpoint.pt", finished=finished)

    def backbone(self, *, finished: bool = False) -> Path:
        return self._in("backbone.safetensors", finished=finished)

    def summary(self, *, finished: bool = False) -> Path:
        return self._in("summary.json", finished=finished)


def is_run_folder(path: str | Path) -> bool:
    """A finished run folder (it has a resolved config)."""
    return RunFolder(path).config.is_file()
