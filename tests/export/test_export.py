"""``stetho export``: a pipeline that scores like ``stetho predict`` without torch or stetho."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import fixtures_runs
import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
import torch
from conftest import REPO
from fixtures_runs import BAD_FILES, copy_run_with
from typer.testing import CliRunner

from stetho.cli import app
from stetho.config import PredictionConfig
from stetho.data.audio import AudioError, read_audio
from stetho.export import SCORING_DIR, export_hook, export_pipeline
from stetho.runs import load_run
from stetho.scoring.batch import collect_inputs, predict_files
from stetho.scoring.chunking import recording_chunks
from stetho.workflows.hooks import default_after_run

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TEMPLATE = REPO / "src/stetho/export/template/score.py"
#: Modules the pipeline must not need; the torch-free environment makes importing them fail.
BLOCKED = ("torch", "stetho", "pandas")
PARITY = 1e-4

# Shared fixtures (session-scoped, built once per test session).
dynamic_run = fixtures_runs.dynamic_run
one_torch_thread = fixtures_runs.one_torch_thread
scoring_folder = fixtures_runs.scoring_folder
sharp_run = fixtures_runs.sharp_run
tiny_run = fixtures_runs.tiny_run


@pytest.fixture(scope="module")
def score_module():
    """The template ``score.py`` imported as a module (it is a script in the pipeline)."""
    spec = importlib.util.spec_from_file_location("stetho_score_template", TEMPLATE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pipeline(sharp_run, tmp_path_factory):
    return export_pipeline(sharp_run, tmp_path_factory.mktemp("export") / "pipe")


@pytest.fixture(scope="module")
def torch_free_env(tmp_path_factory) -> dict[str, str]:
    """An environment in which ``import torch`` (and stetho, pandas) raise ImportError: a
    folder of stand-in packages first on PYTHONPATH; no user site-packages."""
    blocker = tmp_path_factory.mktemp("blocker")
    for name in BLOCKED:
        (blocker / name).mkdir()
        (blocker / name / "__init__.py").write_text(
            f"raise ImportError('{name} is not available in the scoring environment')\n"
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(PYTHONPATH=str(blocker), PYTHONNOUSERSITE="1")
    return env


def _score_py(pipe: Path, args: list[str], env: dict[str, str], cwd: Path | None = None):
    return subprocess.run(
        [sys.executable, "-s", str(pipe / "score.py"), *args, "--no-progress"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _assert_same_table(torch_df: pd.DataFrame, onnx_csv: Path) -> float:
    """Same rows, paths, labels, decisions, durations and errors; probabilities within PARITY.
    Returns the largest probability difference."""
    got = pd.read_csv(onnx_csv, keep_default_na=False, na_values=[""])
    assert list(got.columns) == list(torch_df.columns)
    assert got["path"].tolist() == torch_df["path"].tolist()
    merged = torch_df.merge(got, on="path", suffixes=("_t", "_o"), validate="one_to_one")
    assert merged["error_o"].fillna("").tolist() == merged["error_t"].tolist()
    assert merged["label_o"].fillna("").tolist() == merged["label_t"].fillna("").tolist()
    assert merged["abnormal_o"].fillna(-1).tolist() == merged["abnormal_t"].fillna(-1).tolist()
    np.testing.assert_allclose(merged["duration_s_o"], merged["duration_s_t"], rtol=1e-12)
    prob_cols = [c for c in torch_df.columns if c.startswith("prob_")]
    diff = np.abs(
        merged[[c + "_o" for c in prob_cols]].to_numpy()
        - merged[[c + "_t" for c in prob_cols]].to_numpy()
    )
    ok = merged["error_t"] == ""
    assert np.isnan(diff[~ok.to_numpy()]).all()
    worst = float(diff[ok.to_numpy()].max())
    assert worst <= PARITY
    return worst


# --- the folder ---------------------------------------------------------------------------


def test_export_writes_a_valid_pipeline(pipeline, sharp_run):
    assert sorted(p.name for p in pipeline.iterdir()) == [
        "README.md",
        "labels.json",
        "model.onnx",
        "preprocess.json",
        "requirements.txt",
        "score.py",
    ]
    onnx.checker.check_model(onnx.load(str(pipeline / "model.onnx")))
    assert (pipeline / "score.py").read_bytes() == TEMPLATE.read_bytes()
    labels = json.loads((pipeline / "labels.json").read_text())
    assert labels["classes"] == ["murmur", "normal"] and labels["folds"] == [0, 1]
    prep = json.loads((pipeline / "preprocess.json").read_text())
    assert prep["sample_rate"] == 2000
    assert prep["inference_chunk_method"] == "Fix" and prep["inference_chunk_seconds"] == 2.0
    assert (prep["min_duration_s"], prep["max_duration_s"]) == (0.5, 600.0)
    assert prep["abnormal"] == {"kind": "not", "class": "normal"}
    reqs = (pipeline / "requirements.txt").read_text().splitlines()
    assert [r.split(">=")[0] for r in reqs if r and not r.startswith("#")] == [
        "numpy",
        "soundfile",
        "soxr",
        "onnxruntime",
    ]
    readme = (pipeline / "README.md").read_text()
    assert "python score.py INPUT... --out preds.csv" in readme and "{{" not in readme
    assert "`murmur`, `normal`" in readme


def test_onnx_graph_equals_torch_ensemble(pipeline, sharp_run):
    run = load_run(sharp_run)
    session = ort.InferenceSession(str(pipeline / "model.onnx"))
    assert [i.name for i in session.get_inputs()] == ["wave"]
    rng = np.random.default_rng(3)
    for n in (4000, 1800, 9001):  # a chunk, and other lengths: the samples axis is dynamic
        x = (0.1 * rng.standard_normal((3, n))).astype(np.float32)
        with torch.no_grad():
            expected = np.mean(
                [torch.softmax(m(torch.from_numpy(x)), -1).numpy() for m in run.models], axis=0
            )
        got = session.run(None, {"wave": x})[0]
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_export_refuses_existing_folder_unless_forced(sharp_run, pipeline, tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["export", str(sharp_run), "--out", str(pipeline)])
    assert res.exit_code == 2 and "already exists" in res.output
    # --force replaces an earlier pipeline (its files only)...
    target = tmp_path / "p"
    shutil.copytree(pipeline, target)
    (target / "model.onnx").write_bytes(b"stale")
    title = "# Heart-sound scoring pipeline: "
    assert (target / "README.md").read_text().startswith(title + sharp_run.name + "\n")
    res = runner.invoke(
        app,
        ["export", str(sharp_run), "--out", str(target), "--force", "--fold", "1"]
        + ["--name", "heart-demo"],
    )
    assert res.exit_code == 0, res.output
    assert (target / "model.onnx").read_bytes() != b"stale"
    assert json.loads((target / "labels.json").read_text())["folds"] == [1]
    # a shipped model's pipeline is titled with the model's name, not its run folder's
    assert (target / "README.md").read_text().startswith(title + "heart-demo\n")
    assert not list(tmp_path.glob(".p.*"))  # no leftovers of the atomic swap
    # ... never a folder it did not write, nor one with files of the user's beside its own.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "stale.txt").write_text("old")
    res = runner.invoke(app, ["export", str(sharp_run), "--out", str(mine), "--force"])
    assert res.exit_code == 2 and "was not written by this command" in res.output
    (target / "notes.txt").write_text("mine")
    res = runner.invoke(app, ["export", str(sharp_run), "--out", str(target), "--force"])
    assert res.exit_code == 2 and "notes.txt" in res.output
    assert (mine / "stale.txt").read_text() == "old" and (target / "notes.txt").is_file()


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("where", ["run", "parent", "dot", "dot-parent", "inside"])
def test_export_never_deletes_the_run(where, tiny_run, tmp_path, monkeypatch):
    # `--out RUN --force` used to delete the trained run and exit 0, `--out` its parent the
    # whole parent; `--out .` failed on an empty name.
    parent = tmp_path / "runs"
    run = parent / "try1"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("scoring"))
    before = _tree(parent)
    out = {"run": run, "parent": parent, "dot": Path("."), "dot-parent": Path(".")}
    out["inside"] = run / "pipe"
    monkeypatch.chdir(run if where == "dot" else parent)
    res = CliRunner().invoke(app, ["export", str(run), "--out", str(out[where]), "--force"])
    assert res.exit_code == 2, res.output
    assert "input" in res.output and "PosixPath" not in res.output
    assert _tree(parent) == before  # nothing deleted, nothing left behind


def test_export_into_dot_writes_the_current_folder(tiny_run, tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path / "empty")
    res = CliRunner().invoke(app, ["export", str(tiny_run), "--out", ".", "--fold", "0"])
    assert res.exit_code == 2 and "already exists" in res.output  # exists: needs --force
    res = CliRunner().invoke(app, ["export", str(tiny_run), "--out", ".", "--force", "--fold", "0"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "empty" / "model.onnx").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


# --- the copied rules ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "prediction",
    [
        PredictionConfig(inference_chunk_method="Fix", inference_chunk_seconds=2.0),
        PredictionConfig(inference_chunk_method="Fix", inference_chunk_seconds=0.7531),
        PredictionConfig(inference_chunk_method="Dynamic", max_inference_chunk_seconds=2.5),
        PredictionConfig(inference_chunk_method="Dynamic", max_inference_chunk_seconds=0.3333),
    ],
)
def test_score_py_chunking_matches_stetho(score_module, prediction):
    prep = prediction.model_dump()
    rng = np.random.default_rng(0)
    lengths = np.concatenate([rng.integers(1, 30_000, 200), [1, 666, 1332, 1333, 4000, 4001]])
    for n in lengths:
        x = rng.standard_normal(int(n)).astype(np.float32)
        expected = recording_chunks(x, sample_rate=2000, prediction=prediction)
        got = score_module.recording_chunks(x, sample_rate=2000, prep=prep)
        assert got.dtype == expected.dtype == np.float32
        np.testing.assert_array_equal(got, expected)


def test_score_py_decoding_matches_stetho(score_module, audio_zoo, scoring_folder):
    paths = sorted(audio_zoo.iterdir()) + [scoring_folder / "d_stereo44k.wav", audio_zoo / "nope"]
    for path in paths:
        limits = {"min_duration_s": 0.5, "max_duration_s": 60.0}
        try:
            expected = read_audio(path, sample_rate=2000, name="x", **limits).samples
        except AudioError as exc:
            with pytest.raises(score_module.AudioError) as caught:
                score_module.read_audio(str(path), sample_rate=2000, name="x", **limits)
            assert caught.value.reason == exc.reason
            continue
        got = score_module.read_audio(str(path), sample_rate=2000, name="x", **limits)
        np.testing.assert_array_equal(got, expected)
    too_long = {"min_duration_s": 0.5, "max_duration_s": 1.0}
    with pytest.raises(AudioError) as a:
        read_audio(scoring_folder / "a_normal.wav", sample_rate=2000, name="x", **too_long)
    with pytest.raises(score_module.AudioError) as b:
        score_module.read_audio(
            str(scoring_folder / "a_normal.wav"), sample_rate=2000, name="x", **too_long
        )
    assert a.value.reason == b.value.reason


def _robustness_zoo(root: Path) -> Path:
    """Files issue #15 taught stetho to refuse, with their reasons, and odd valid ones."""
    import soundfile as sf

    root.mkdir()
    (root / "sub").mkdir()
    rng = np.random.default_rng(3)
    (root / "dangling.wav").symlink_to("gone.wav")
    (root / "loop_a.wav").symlink_to("loop_b.wav")
    (root / "loop_b.wav").symlink_to("loop_a.wav")
    (root / "sub" / "up").symlink_to("..")  # a folder link to its own ancestor
    (root / "notes.txt").symlink_to("gone.txt")  # not audio: not listed
    tone = (0.3 * np.sin(np.arange(9 * 4000) / 3.0)).astype(np.float32)
    sf.write(root / "full.wav", tone, 4000, subtype="PCM_16")
    data = (root / "full.wav").read_bytes()
    (root / "truncated.wav").write_bytes(data[: 44 + (len(data) - 44) // 3 // 2 * 2])
    unfinished = bytearray(data)
    unfinished[40:44] = (0xFFFFFFFF).to_bytes(4, "little")  # streamed: promises nothing
    (root / "unfinished.wav").write_bytes(bytes(unfinished))
    sf.write(root / "hi_rate.flac", tone[:4000], 655350)
    sf.write(root / "one.wav", np.array([0.25], dtype=np.float32), 4000, subtype="FLOAT")
    # Several decode blocks, stereo, a ratio that does not divide: block edges must agree.
    long = 0.1 * rng.standard_normal((200_000, 2)).astype(np.float32)
    sf.write(root / "long_stereo.wav", long, 44100, subtype="FLOAT")
    return root


def test_score_py_refuses_the_robustness_zoo_like_stetho(score_module, tmp_path, monkeypatch):
    from stetho.data.audio import iter_audio_files

    zoo = _robustness_zoo(tmp_path / "zoo")
    # Folder walks list the same entries, broken links and loops included.
    expected_files = iter_audio_files(zoo)
    assert score_module.iter_audio_files(zoo) == expected_files
    assert {"dangling.wav", "loop_a.wav", "up"} <= {p.name for p in expected_files}
    reasons: dict[str, str] = {}
    for limits in (
        {"min_duration_s": 0.5, "max_duration_s": 60.0},
        {"min_duration_s": 0.0, "max_duration_s": None},
    ):
        for path in expected_files:
            try:
                expected = read_audio(path, sample_rate=2000, name="x", **limits).samples
            except AudioError as exc:
                with pytest.raises(score_module.AudioError) as caught:
                    score_module.read_audio(str(path), sample_rate=2000, name="x", **limits)
                assert caught.value.reason == exc.reason, path.name
                reasons[path.name] = exc.reason
                continue
            got = score_module.read_audio(str(path), sample_rate=2000, name="x", **limits)
            np.testing.assert_array_equal(got, expected)
    # Every kind of problem was met (so the comparison above had something to compare).
    assert reasons["dangling.wav"].startswith("dangling symbolic link")
    assert reasons["loop_a.wav"].startswith("symbolic link loop")
    assert reasons["up"].startswith("symbolic link loop: folder link")
    assert reasons["truncated.wav"].startswith("truncated: the header promises 9 s")
    assert reasons["hi_rate.flac"].startswith("sample rate 655350 Hz is above")
    assert reasons["one.wav"].startswith("too short: a single sample")
    assert "unfinished.wav" not in reasons and "long_stereo.wav" not in reasons

    # A refused open (we may run as root, who reads everything): both say permission denied.
    target = str(zoo / "full.wav")
    real_open = os.open

    def refuse(path, *args, **kwargs):
        if os.fspath(path) == target:
            raise PermissionError(13, "Permission denied", target)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(AudioError) as a:
        read_audio(target, sample_rate=2000, name="x")
    with pytest.raises(score_module.AudioError) as b:
        score_module.read_audio(
            target, sample_rate=2000, name="x", min_duration_s=0.5, max_duration_s=60.0
        )
    assert a.value.reason == b.value.reason and a.value.reason.startswith("permission denied")


def test_score_py_output_temporaries_are_named_and_cleaned(score_module, tmp_path, capsys):
    import re as _re
    import socket

    host = _re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:24] or "host"
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    stale = tmp_path / f".preds.csv.{host}-{proc.pid}.abc{score_module.TEMP_SUFFIX}"
    stale.write_text("half")
    score_module.atomic_write(tmp_path / "preds.csv", b"path\n")
    assert (tmp_path / "preds.csv").read_bytes() == b"path\n"
    assert not stale.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["preds.csv"]
    assert stale.name in capsys.readouterr().err
    # The same pattern as stetho.io's, so that either cleans the other's leftovers.
    from stetho.io import TEMP_SUFFIX

    assert score_module.TEMP_SUFFIX == TEMP_SUFFIX


# --- the pipeline, torch-free -------------------------------------------------------------


def test_environment_blocks_torch_and_stetho(torch_free_env):
    for name in BLOCKED:
        res = subprocess.run(
            [sys.executable, "-s", "-c", f"import {name}"],
            env=torch_free_env,
            capture_output=True,
            text=True,
        )
        assert res.returncode != 0 and "not available in the scoring environment" in res.stderr


def test_score_py_matches_predict_without_torch(
    pipeline,
    sharp_run,
    scoring_folder,
    torch_free_env,
    tmp_path,
):
    run = load_run(sharp_run)
    expected = predict_files(run, collect_inputs([scoring_folder]), progress=False)
    out = tmp_path / "preds.csv"
    res = _score_py(pipeline, [str(scoring_folder), "--out", str(out)], torch_free_env)
    assert res.returncode == 1, res.stderr  # the bad files are reported, not fatal
    assert f"{len(BAD_FILES)} recording(s) could not be scored" in res.stderr
    worst = _assert_same_table(expected, out)
    assert worst < 1e-5


def test_score_py_tables_and_relative_paths(
    pipeline,
    sharp_run,
    scoring_folder,
    torch_free_env,
    tmp_path,
):
    # A table of paths relative to it, and a file given relative to the working directory.
    shutil.copytree(scoring_folder, tmp_path / "recs")
    (tmp_path / "list.csv").write_text("path\nrecs/a_normal.wav\nrecs/m_corrupt.wav\nmissing.wav\n")
    args = ["list.csv", "./recs/c_murmur.flac"]
    expected = predict_files(
        load_run(sharp_run),
        [
            *collect_inputs([tmp_path / "list.csv"]),
            *collect_inputs([tmp_path / "recs/c_murmur.flac"]),
        ],
        progress=False,
    )
    expected.loc[3, "path"] = "./recs/c_murmur.flac"  # as given, relative to the cwd
    res = _score_py(pipeline, [*args, "--out", "out.csv"], torch_free_env, cwd=tmp_path)
    assert res.returncode == 1, res.stderr
    _assert_same_table(expected, tmp_path / "out.csv")
    got = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    assert got["path"].tolist() == [
        "recs/a_normal.wav",
        "recs/m_corrupt.wav",
        "missing.wav",
        "./recs/c_murmur.flac",
    ]
    assert got["error"].tolist()[1:3] == [expected.loc[1, "error"], "file not found"]

    res = _score_py(
        pipeline, ["recs/a_normal.wav", "--out", "ok.csv"], torch_free_env, cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr
    (tmp_path / "bad.csv").write_text("file\nx.wav\n")
    res = _score_py(pipeline, ["bad.csv", "--out", "x.csv"], torch_free_env, cwd=tmp_path)
    assert res.returncode == 2 and "no path column" in res.stderr


def test_score_py_dynamic_matches_predict(
    dynamic_run,
    scoring_folder,
    torch_free_env,
    tmp_path,
):
    pipe = export_pipeline(dynamic_run, tmp_path / "pipe")
    assert json.loads((pipe / "preprocess.json").read_text())["inference_chunk_method"] == "Dynamic"
    expected = predict_files(
        load_run(dynamic_run), collect_inputs([scoring_folder]), progress=False
    )
    res = _score_py(pipe, [str(scoring_folder), "--out", str(tmp_path / "d.csv")], torch_free_env)
    assert res.returncode == 1, res.stderr
    _assert_same_table(expected, tmp_path / "d.csv")


# --- after training -----------------------------------------------------------------------


def test_export_hook_follows_build_scoring_pipelines(tiny_run, tmp_path):
    off = copy_run_with(tiny_run, tmp_path / "off", ["training.build_scoring_pipelines=false"])
    export_hook(off)
    assert not (off / SCORING_DIR).exists()
    on = copy_run_with(tiny_run, tmp_path / "on", ["training.build_scoring_pipelines=true"])
    # Registered among stetho train's after-run hooks (each a named hooks.AfterRunHook); run
    # only that one: the others (report, interpretations, ...) are tested by their owners.
    (hook,) = [h for h in default_after_run() if h.fn is export_hook]
    hook(on)
    assert (on / SCORING_DIR / "model.onnx").is_file()
    assert json.loads((on / "warnings.json").read_text()) == json.loads(
        (tiny_run / "warnings.json").read_text()
    )


# --- unusable pipeline files (issue #15) --------------------------------------------------


@pytest.mark.parametrize("kind", ["garbage", "empty", "truncated"])
def test_corrupt_onnx_is_a_clear_error(kind, pipeline, scoring_folder, tmp_path):
    from stetho.io import ArtifactError
    from stetho.scoring.backends import PipelineScorer

    pipe = tmp_path / "pipe"
    shutil.copytree(pipeline, pipe)
    model = pipe / "model.onnx"
    good = model.read_bytes()
    model.write_bytes(
        {"garbage": b"\x08\x07not a protobuf" * 50, "empty": b"", "truncated": good[:1000]}[kind]
    )
    with pytest.raises(ArtifactError) as caught:
        PipelineScorer(pipe)
    assert caught.value.path == model and "re-export" in caught.value.remedy
    res = CliRunner().invoke(app, ["serve", str(pipe)])
    assert res.exit_code == 2 and str(model) in res.output and "re-export" in res.output
    res = subprocess.run(
        [
            sys.executable,
            str(pipe / "score.py"),
            str(scoring_folder / "a_normal.wav"),
            "--out",
            str(tmp_path / "p.csv"),
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and str(model) in res.stderr
    assert "re-export" in res.stderr
    assert not (tmp_path / "p.csv").exists()
