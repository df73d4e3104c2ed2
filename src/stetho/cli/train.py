"""``stetho train``: run an experiment from a YAML config (ours or Hydrogen Torch's)."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from stetho.cli.common import cli_errors, resolve_data_dir
from stetho.runs.folder import RunFolder

console = Console(stderr=True)


def train(
    config: Path = typer.Argument(
        ..., help="YAML config (configs/heartbeat.yaml, or a Hydrogen Torch one)."
    ),
    overrides: list[str] = typer.Argument(None, help="Config overrides: section.key=value ..."),
    data: Path = typer.Option(
        None, "--data", "-d", help="Dataset folder or table (default: the mission set)."
    ),
    out: Path = typer.Option(
        None, "--out", "-o", help="Run folder to create [default: runs/<experiment_name>-<time>]."
    ),
    layout: str = typer.Option(
        "auto",
        "--layout",
        help="Dataset layout of --data: pascal, physionet2016, circor, table, folder "
        "(default: detected).",
    ),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue a killed run in OUT.partial with its stored config; only overrides "
        "that do not change what is trained (reports, export, logging, workers) apply.",
    ),
    patient_regex: str = typer.Option(
        None,
        "--patient-regex",
        help="Take each recording's patient id from its file name: a regex with one group or "
        "a group named 'patient', e.g. '^(\\d+)_' (folds then keep a patient's recordings "
        "together).",
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bars."),
    nproc: int = typer.Option(
        1,
        "--nproc",
        min=1,
        help="Train in N processes on this machine (DistributedDataParallel via torchrun; "
        "batch_size is per process). Several machines: run torchrun yourself.",
    ),
) -> None:
    """Train and validate (patient-grouped k-fold), then write the run folder."""
    from stetho.config import load_config
    from stetho.training.distributed import env_rank
    from stetho.training.experiment import run_experiment
    from stetho.workflows.hooks import default_after_run
    from stetho.workflows.tracking import check_available, epoch_logger

    t0 = time.monotonic()
    with cli_errors():
        cfg = load_config(config, overrides or [])
        check_available(cfg)  # a missing tracker fails now, not after the first epoch
        if out is None:
            out = Path("runs") / f"{cfg.experiment_name}-{time.strftime('%Y%m%d-%H%M%S')}"
        defaults_to_mission = data is None and not (
            cfg.dataset.train_dataframe or cfg.dataset.sources
        )
        data_dir = resolve_data_dir(data) if data is not None or defaults_to_mission else None
        if nproc > 1:
            argv = [str(config), *(overrides or []), "--out", str(out)]
            argv += ["--data", str(data_dir)] if data_dir is not None else []
            argv += ["--layout", layout, *(["--resume"] if resume else [])]
            argv += ["--patient-regex", patient_regex] if patient_regex is not None else []
            argv += ["--progress" if progress else "--no-progress"]
            summary = _launch(nproc, argv, out=out)
        else:
            tracker = epoch_logger(cfg, out_dir=out)
            summary = run_experiment(
                cfg,
                out_dir=out,
                data=data_dir,
                layout=layout,
                patient_regex=patient_regex,
                resume=resume,
                progress=progress,
                after_run=default_after_run(),
                callbacks=[tracker] if tracker is not None else [],
            ).summary
    if env_rank() != 0:  # under torchrun, rank 0 reports
        return
    n = summary["pooled"]["n"]
    table = Table(title=f"{out} (pooled out-of-fold, {n} recordings)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in final_table(summary, command_seconds=time.monotonic() - t0):
        table.add_row(name, value)
    Console().print(table)
    for w in RunFolder(out).read_warnings():
        console.print(f"[yellow]warning:[/yellow] {w}")


def final_table(summary: dict[str, Any], *, command_seconds: float) -> list[tuple[str, str]]:
    """The closing table's rows: pooled out-of-fold metrics, the decision rule's cross-fitted
    figures, and the two times.

    ``training`` is ``summary["seconds"]``: data loading and the folds' training, summed over
    every segment of a resumed run. ``this command`` is the wall time of this invocation,
    including the steps after training (report, interpretations, export, tracking).
    """
    pooled = summary["pooled"]
    rows = [(f"AUC {c}", _fmt(v["auc"])) for c, v in pooled["per_class"].items()]
    rows += [
        ("macro AUC", _fmt(pooled["macro_auc"])),
        ("balanced accuracy", _fmt(pooled["balanced_accuracy"])),
    ]
    recording = summary.get("decision", {}).get("recording")
    if recording is not None:
        # The run's rule is fitted on all folds: scored on those folds it would flatter itself,
        # so the honest figures are the cross-fitted ones (each fold decided by a rule fitted
        # on the others).
        rows.append(("MAcc normal/abnormal (rule, cross-fitted)", _fmt(recording["macc"])))
        rows.append(
            (
                "sensitivity / specificity (cross-fitted)",
                f"{_fmt(recording['sensitivity'])} / {_fmt(recording['specificity'])}",
            )
        )
    elif "physionet2016" in pooled:
        rows.append(("MAcc normal/abnormal", _fmt(pooled["physionet2016"]["macc"])))
    if "per_dataset" in summary:
        # Several datasets: how each recorder fares matters more than the pooled multi-class
        # figures (with leave_source_out, each source scored by the model that never heard it).
        aucs = {
            source: m["physionet2016"]["auc"]
            for source, m in summary.get("per_source", {}).items()
            if "physionet2016" in m and not math.isnan(m["physionet2016"]["auc"])
        }
        rows += [(f"normal vs abnormal AUC, {s} (out-of-fold)", _fmt(a)) for s, a in aucs.items()]
        if aucs:
            mean = sum(aucs.values()) / len(aucs)
            rows.append(("normal vs abnormal AUC, mean over sources", _fmt(mean)))
    rows.append(("training time (all segments)", f"{summary['seconds']:.0f} s"))
    rows.append(("wall time of this command (incl. report, export)", f"{command_seconds:.0f} s"))
    return rows


def _fmt(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def _launch(nproc: int, argv: list[str], *, out: Path) -> dict[str, Any]:
    """Run ``stetho train ARGV`` in ``nproc`` processes with torch's launcher (torchrun's
    ``--standalone`` single-node rendezvous) and return the finished run's summary."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    args = get_args_parser().parse_args(
        # --tee 3: every line of each rank's output is shown, prefixed with its rank.
        ["--standalone", f"--nproc-per-node={nproc}", "--tee", "3"]
        + ["--module", "stetho", "train", *argv]
    )
    try:
        run(args)
    except ChildFailedError as exc:
        raise RuntimeError(f"distributed training failed: {exc}") from None
    folder = RunFolder(out)
    return dict(folder.read_json(folder.summary))


def register(app: typer.Typer) -> None:
    app.command("train")(train)
