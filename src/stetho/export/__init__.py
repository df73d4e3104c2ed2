"""Export a trained run as a standalone scoring pipeline: numpy, soundfile, soxr, onnxruntime.

```
<pipeline>/
  model.onnx         wave (batch, samples) float32 at sample_rate -> probs (batch, n_classes):
                     the log-mel front end, every fold model and the softmax/sigmoid inside,
                     the folds' probabilities averaged in the graph
  labels.json        {"classes": [...], "loss_function": ..., "folds": [...]}
  preprocess.json    sample rate, chunking, the acceptance rule (duration limits) and the
                     decision rule (stetho.decision.DecisionRule.to_dict, as "decision")
  score.py           the command line (``python score.py INPUT... --out preds.csv``)
  requirements.txt   numpy, soundfile, soxr, onnxruntime
  README.md          the call, the columns, the settings
```

``score.py`` is ``stetho/export/template/score.py`` copied unchanged; it holds its own copies
of the decoding, validation and chunking rules, so the pipeline never imports torch or stetho,
and its probabilities (within 1e-4) and decisions equal ``stetho predict``'s (checked at
export on synthetic input, and by the tests on real recordings).
"""

from __future__ import annotations

import logging
import os
import shutil
import warnings
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from stetho.config import load_config
from stetho.io import (
    atomic_write_json,
    atomic_write_text,
    check_replaceable_dir,
    temporary_dir,
)
from stetho.runs import Run, load_run
from stetho.runs.folder import PipelineFolder, RunFolder
from stetho.scoring.chunking import logits_to_probs
from stetho.scoring.core import run_acceptance, run_rule

logger = logging.getLogger(__name__)

#: The folder ``training.build_scoring_pipelines`` writes inside the run folder.
SCORING_DIR = RunFolder(".").scoring.root.name
TEMPLATE_DIR = Path(__file__).resolve().parent / "template"
MODEL_FILE = PipelineFolder(".").model.name
INPUT_NAME = "wave"
OUTPUT_NAME = "probs"
#: Opset 17 runs on every onnxruntime since 1.14, hospital installs included.
ONNX_OPSET = 17
#: The exported graph must reproduce the torch ensemble to this (absolute, probability).
VERIFY_TOLERANCE = 1e-4


class EnsembleProbs(nn.Module):
    """``(batch, samples)`` waveform -> ``(batch, n_classes)`` mean probability of the folds.

    Each fold model carries its own front end; probabilities (not logits) are averaged, as
    :func:`stetho.scoring.chunking.predict_recordings` does.
    """

    def __init__(self, models: Sequence[nn.Module], *, loss_function: str) -> None:
        super().__init__()
        if not models:
            raise ValueError("EnsembleProbs: expected at least one fold model")
        self.models = nn.ModuleList(models)
        self.loss_function = loss_function

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        probs = [logits_to_probs(m(wave), self.loss_function) for m in self.models]
        return torch.stack(probs).mean(dim=0)


def _trace_samples(run: Run) -> int:
    """Length of the example input used for tracing: one ``Fix`` chunk (the front end's
    padding mode is fixed at trace time, so it must be longer than half an STFT window)."""
    p = run.config.prediction
    seconds = p.inference_chunk_seconds
    if p.inference_chunk_method == "Dynamic":
        seconds = min(seconds, p.max_inference_chunk_seconds)
    n_fft = int(run.config.audio.stft_window_size)
    return max(round(seconds * run.sample_rate), n_fft)


def export_onnx(run: Run, path: str | Path) -> None:
    """Write the fold ensemble of ``run`` as one ONNX graph and check it with ``onnx.checker``.

    Input ``wave``: ``(batch, samples)`` float32 at ``run.sample_rate`` Hz, both axes dynamic.
    Output ``probs``: ``(batch, n_classes)``.
    """
    import onnx

    if run.n_extra_features:
        raise ValueError(
            f"{run.path}: the run uses {run.n_extra_features} rhythm features per recording "
            "(training.rhythm_features); the torch-free pipeline cannot compute them, score "
            "with `stetho predict` instead"
        )
    model = EnsembleProbs(run.models, loss_function=run.config.training.loss_function).eval()
    example = torch.from_numpy(_probe_waves(2, _trace_samples(run)))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # The legacy exporter warns about itself and about the front end's padding branch,
        # which is fixed at trace time on purpose (see _trace_samples).
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=UserWarning)
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch", 1: "samples"}, OUTPUT_NAME: {0: "batch"}},
        )
    onnx.checker.check_model(onnx.load(str(path)))


def _probe_waves(n: int, samples: int, seed: int = 0) -> np.ndarray:
    """``(n, samples)`` float32 test signals: beats (tone bursts) in noise, not plain noise,
    so the attention pooling and normalisation see something like a heart sound."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples)
    x = 0.02 * rng.standard_normal((n, samples))
    period = max(8, samples // 7)
    x += 0.5 * np.sin(2 * np.pi * t / 37.0) * ((t % period) < period // 8)
    return x.astype(np.float32)


def verify_onnx(run: Run, path: str | Path, *, lengths: Sequence[int]) -> float:
    """Max absolute difference of probabilities between torch and onnxruntime on probe
    waveforms of the given lengths (samples); ``RuntimeError`` above :data:`VERIFY_TOLERANCE`."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ensemble = EnsembleProbs(run.models, loss_function=run.config.training.loss_function).eval()
    worst = 0.0
    for i, n in enumerate(lengths):
        x = _probe_waves(3, n, seed=i)
        with torch.no_grad():
            expected = ensemble(torch.from_numpy(x)).numpy()
        got = session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
        worst = max(worst, float(np.abs(expected - got).max()))
    if not worst <= VERIFY_TOLERANCE:
        raise RuntimeError(
            f"{path}: onnxruntime differs from torch by {worst:.3g} (tolerance "
            f"{VERIFY_TOLERANCE:g}); the model has an operation the exporter does not reproduce"
        )
    return worst


def preprocess_settings(run: Run) -> dict[str, Any]:
    """What ``score.py`` needs besides the graph: rates, chunking, the acceptance rule and the
    decision rule (:class:`stetho.decision.DecisionRule`, as ``decision``).

    ``min_duration_s``/``max_duration_s`` are the acceptance rule; ``probability_threshold``
    and ``abnormal`` restate the decision rule's threshold and normal class for readers.
    """
    p = run.config.prediction
    rule = run_rule(run)
    acceptance = run_acceptance(run)
    normal = rule.normal_class
    return {
        "sample_rate": run.sample_rate,
        "mono": "mean of channels",
        "resample": "soxr HQ",
        "inference_chunk_method": p.inference_chunk_method,
        "inference_chunk_seconds": float(p.inference_chunk_seconds),
        "max_inference_chunk_seconds": float(p.max_inference_chunk_seconds),
        "min_duration_s": acceptance.min_duration_s,
        "max_duration_s": acceptance.max_duration_s,
        "probability_threshold": rule.threshold,
        "abnormal": None if normal is None else {"kind": "not", "class": normal},
        "decision": rule.to_dict(),
        "model": MODEL_FILE,
        "input": INPUT_NAME,
        "output": OUTPUT_NAME,
    }


def _readme(run: Run, prep: dict[str, Any], name: str | None = None) -> str:
    template = (TEMPLATE_DIR / "README.md").read_text(encoding="utf-8")
    rule = prep["abnormal"]
    if rule is None:
        abnormal = "no `abnormal` column: the classes hold neither `normal` nor two classes."
    else:
        abnormal = (
            f"`abnormal` = 1 when `abnormal_prob` = `1 - prob_{rule['class']}` >= threshold; "
            "`outcome` is `normal`, `abnormal` or `re-record` (inside the abstain band)"
        )
    chunking = (
        f"Fix: chunks of {prep['inference_chunk_seconds']:g} s, probabilities averaged"
        if prep["inference_chunk_method"] == "Fix"
        else f"Dynamic: the whole recording in one pass, in chunks of "
        f"{prep['max_inference_chunk_seconds']:g} s when longer"
    )
    values = {
        "run": name or RunFolder(run.path).name,
        "classes": ", ".join(f"`{c}`" for c in run.classes),
        "folds": ", ".join(str(k) for k in run.folds),
        "sample_rate": str(prep["sample_rate"]),
        "chunking": chunking,
        "min_duration_s": f"{prep['min_duration_s']:g}",
        "max_duration_s": f"{prep['max_duration_s']:g}",
        "threshold": f"{prep['probability_threshold']:g}",
        "abnormal": abnormal,
        "stetho_version": _version("stetho"),
    }
    for key, value in values.items():
        template = template.replace("{{" + key + "}}", value)
    return template


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


def pipeline_files(folder: PipelineFolder) -> list[Path]:
    """Every file :func:`export_pipeline` writes into a pipeline folder."""
    return [
        folder.model,
        folder.labels,
        folder.preprocess,
        folder.script,
        folder.requirements,
        folder.readme,
    ]


def export_pipeline(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    folds: list[int] | None = None,
    overwrite: bool = False,
    inputs: Sequence[str | Path] | None = None,
    name: str | None = None,
) -> Path:
    """Write the scoring pipeline of a finished run (all folds, or ``folds``) to ``out_dir``.

    The folder is assembled beside ``out_dir`` and renamed into place when complete, so a
    failed export never leaves a half pipeline (a killed one leaves a temporary that the
    next export into that folder removes: :func:`stetho.io.temporary_dir`). An existing
    ``out_dir`` is refused unless ``overwrite``, and even then unless it is a pipeline
    folder holding nothing but a pipeline's files; ``out_dir`` may never be, hold or lie
    inside ``inputs`` (default: the run folder; the after-training hook, which writes inside
    the run, names the run's files instead). ``name`` titles the pipeline's README (default:
    the run folder's name; a shipped model is better known by its own). Returns ``out_dir``.
    """
    out_dir = Path(out_dir)
    if out_dir.name in ("", ".", ".."):  # `--out .`: name the folder, to name its siblings
        out_dir = out_dir.resolve()
    owned = PipelineFolder(out_dir)
    check_replaceable_dir(
        out_dir,
        inputs=[run_dir] if inputs is None else inputs,
        owned_marker=owned.preprocess.name,
        owned_files=[p.name for p in pipeline_files(owned)],
    )
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir} already exists: choose another --out or pass --force")
    run = load_run(run_dir, folds=folds)
    work = temporary_dir(out_dir)
    try:
        export_onnx(run, work / MODEL_FILE)
        prep = preprocess_settings(run)
        lengths = [_trace_samples(run)]
        if prep["inference_chunk_method"] == "Dynamic":
            lengths.append(lengths[0] * 3 // 2 + 7)  # another length: the axis is dynamic
        worst = verify_onnx(run, work / MODEL_FILE, lengths=lengths)
        logger.info("ONNX graph matches torch within %.2g", worst)
        labels = {
            "classes": run.classes,
            "loss_function": run.config.training.loss_function,
            "folds": run.folds,
        }
        folder = PipelineFolder(work)
        atomic_write_json(folder.labels, labels)
        atomic_write_json(folder.preprocess, prep)
        shutil.copyfile(TEMPLATE_DIR / "score.py", folder.script)
        shutil.copyfile(TEMPLATE_DIR / "requirements.txt", folder.requirements)
        atomic_write_text(folder.readme, _readme(run, prep, name))
        # Readable by the service account that will run it, not only by whoever exported it.
        os.chmod(work, 0o755)
        for f in work.iterdir():
            os.chmod(f, 0o644)
        if out_dir.exists():
            # The old folder is moved onto an empty temporary (a rename may replace an empty
            # folder), so that a kill between the renames leaves a removable temporary.
            trash = temporary_dir(out_dir)
            out_dir.rename(trash)
            work.rename(out_dir)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            work.rename(out_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    logger.info("scoring pipeline written to %s", out_dir)
    return out_dir


def export_hook(run_dir: str | Path) -> None:
    """After-training hook: write ``scoring/`` into the run folder when the run's config says
    ``training.build_scoring_pipelines: true``; otherwise do nothing."""
    rf = RunFolder(run_dir)
    config = load_config(rf.config)
    if not config.training.build_scoring_pipelines:
        return
    # The pipeline goes inside the run folder: guard what the export reads, not the folder.
    reads = [rf.config, rf.labels, rf.decision, *map(rf.fold_model, rf.trained_folds())]
    export_pipeline(
        rf.root, rf.scoring.root, overwrite=True, inputs=[p for p in reads if p.exists()]
    )
