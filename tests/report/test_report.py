"""report.html: written at the end of training, self-contained, every section, re-generated
from the run folder alone (``stetho report``)."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from fixtures_runs import TINY_BASE
from typer.testing import CliRunner

from stetho.config import load_config
from stetho.explain import interpretations_hook
from stetho.report import (
    AUDIO_RATE_HZ,
    render_report,
    report_hook,
    single_source_classes,
    wav_data_uri,
)
from stetho.training.experiment import run_experiment

SR = 2000
SECTIONS = (
    "summary",
    "warnings",
    "config",
    "data",
    "metrics",
    "roc",
    "pr",
    "confusion",
    "calibration",
    "decisions",
    "learning",
    "sources",
    "worst",
    "environment",
)
OVERRIDES = [
    *TINY_BASE,
    "training.epochs=2",
    "training.evaluation_epochs=1",
    "training.batch_size=4",
    "training.run_interpretations=true",
    "logging.number_of_audios=2",
]


#: Tiny models run ~100x faster on one thread than on two when other processes share the two
#: cores (the shared fixture restores the count afterwards).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write_dataset(root: Path, *, n_per_class: int = 6, seed: int = 0) -> Path:
    """``root/normal/*.wav`` (heart-sound-like thumps) and ``root/murmur/*.wav`` (thumps plus
    a 150-400 Hz noise band between them), 3 s at 2 kHz."""
    rng = np.random.default_rng(seed)
    t = np.arange(3 * SR) / SR
    for label in ("normal", "murmur"):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            x = 0.01 * rng.standard_normal(len(t))
            for beat in np.arange(rng.uniform(0.1, 0.4), 3.0, 0.8):
                x += 0.5 * np.exp(-0.5 * ((t - beat) / 0.02) ** 2) * np.sin(2 * np.pi * 60 * t)
            if label == "murmur":
                noise = np.convolve(rng.standard_normal(len(t)), np.hanning(9), "same")
                x += 0.1 * noise * np.sin(2 * np.pi * 280 * t)
            sf.write(root / label / f"{label}_{i}.wav", x.astype(np.float32), SR, subtype="FLOAT")
    return root


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny finished run, trained with the interpretations and report hooks."""
    root = tmp_path_factory.mktemp("report")
    data = write_dataset(root / "data")
    run_experiment(
        load_config(None, OVERRIDES),
        out_dir=root / "run",
        data=data,
        progress=False,
        after_run=[interpretations_hook, report_hook],
    )
    return root / "run"


def _data_uris(page: str, kind: str) -> list[bytes]:
    return [
        base64.b64decode(m)
        for m in re.findall(rf'src="data:{kind};base64,([A-Za-z0-9+/=]+)"', page)
    ]


def test_report_is_written_at_the_end_of_training(run_dir: Path) -> None:
    assert not run_dir.with_name("run.partial").exists()
    page = (run_dir / "report.html").read_text()
    # Every section, in the navigation and as a section with a heading.
    for sid in SECTIONS:
        assert f'<section id="{sid}"><h2>' in page
        assert f'href="#{sid}"' in page
    pngs = _data_uris(page, "image/png")
    assert len(pngs) >= 8 + 2  # 9 run figures + one per worst-classified recording
    assert len(pngs) >= 13 + 2  # and the decisions section's five
    assert all(p[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    # The worst-classified figures are the interpretations the hook wrote.
    index = json.loads((run_dir / "interpretations" / "index.json").read_text())
    for rec in index["recordings"]:
        assert (run_dir / "interpretations" / rec["png"]).read_bytes() in pngs
    # The resolved config, the run's numbers and its environment are in the page.
    assert "every <code>Auto</code> filled in" in page
    assert "stft_window_size: 128" in page
    summary = json.loads((run_dir / "summary.json").read_text())
    assert f"{summary['pooled']['macro_auc']:.3f}" in page
    for fold, m in summary["per_fold"].items():
        assert f"<td>fold {fold}</td><td>{m['n']}</td><td>{m['macro_auc']:.3f}</td>" in page
    env = json.loads((run_dir / "environment.json").read_text())
    assert f"<td>{env['packages']['torch']}</td>" in page


def test_decisions_section_shows_the_shipped_rule_cross_fitted(run_dir: Path) -> None:
    page = (run_dir / "report.html").read_text()
    block = json.loads((run_dir / "summary.json").read_text())["decision"]
    section = page.split('<section id="decisions">', 1)[1].split("</section>", 1)[0]
    for fig in (
        "fig-reliability-before",
        "fig-reliability-after",
        "fig-operating-point",
        "fig-decision-confusion",
        "fig-risk-coverage",
    ):
        assert f'id="{fig}"' in section, fig
    assert f"<b>{block['rule']['threshold']:.3f}</b>" in section
    cal = block["calibration"]
    assert f"<td>{cal['before']['ece']:.3f}</td><td>{cal['after']['ece']:.3f}</td>" in section
    rec = block["recording"]
    lo, hi = rec["sensitivity_ci"]
    assert f"[{lo:.3f}, {hi:.3f}]" in section
    assert f"patients ({block['patients']['aggregation']})" in section
    assert "cross-fitted" in section


def test_report_is_self_contained(run_dir: Path) -> None:
    page = (run_dir / "report.html").read_text()
    refs = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', page)
    assert refs and all(r.startswith(("data:", "#")) for r in refs)
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert "url(" not in page and "http://" not in page and "https://" not in page


def test_audio_players_embed_the_recordings(run_dir: Path) -> None:
    page = (run_dir / "report.html").read_text()
    wavs = _data_uris(page, "audio/wav")
    assert len(wavs) == page.count("<audio controls") == 2  # logging.number_of_audios
    for wav in wavs:
        x, rate = sf.read(io.BytesIO(wav))
        info = sf.info(io.BytesIO(wav))
        assert rate == AUDIO_RATE_HZ and info.subtype == "PCM_16"
        assert len(x) == 3 * AUDIO_RATE_HZ  # the whole 3 s recording
        assert np.abs(x).max() == pytest.approx(0.89, abs=1e-3)


def test_wav_data_uri_resamples_clips_and_normalises() -> None:
    x = 0.01 * np.sin(2 * np.pi * 50 * np.arange(5 * SR) / SR)
    uri, seconds = wav_data_uri(x, SR, max_s=2.0)
    assert uri.startswith("data:audio/wav;base64,") and seconds == pytest.approx(2.0)
    y, rate = sf.read(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert rate == 8000 and len(y) == 16000
    assert np.abs(y).max() == pytest.approx(0.89, abs=2e-3)


def test_single_source_classes() -> None:
    manifest = pd.DataFrame(
        {
            "label": ["artifact", "normal", "normal", "extrastole", None],
            "source": ["set_a", "set_a", "set_b", "set_b", "set_a"],
        }
    )
    assert single_source_classes(manifest) == {"artifact": "set_a", "extrastole": "set_b"}
    assert single_source_classes(manifest.assign(source="one")) == {}


def test_report_warns_about_a_class_found_in_one_source(run_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    manifest = pd.read_parquet(copy / "manifest.parquet")
    manifest["source"] = "phone"
    manifest.loc[manifest["label"] == "normal", "source"] = ["phone", "stethoscope"] * 3
    manifest.to_parquet(copy / "manifest.parquet", index=False)
    page, _ = render_report(copy)
    sources = page.split('<section id="sources">', 1)[1].split("</section>", 1)[0]
    assert "Class &#x27;murmur&#x27; occurs only in source &#x27;phone&#x27;" in sources
    assert "normal&#x27; occurs only" not in sources


def test_report_regenerates_without_interpretations(run_dir: Path, tmp_path: Path) -> None:
    """``stetho report`` on a copy without interpretations/ explains the worst recordings
    itself; a recording whose audio is gone is reported, not fatal."""
    from stetho.cli import app

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    shutil.rmtree(copy / "interpretations")
    oof = pd.read_parquet(copy / "oof_predictions.parquet")
    p_true = [row[f"prob_{row['label']}"] for _, row in oof.iterrows()]
    worst = int(np.argmin(p_true))
    oof.loc[worst, "path"] = str(tmp_path / "moved.wav")
    oof.to_parquet(copy / "oof_predictions.parquet", index=False)
    out = tmp_path / "again.html"
    result = CliRunner().invoke(app, ["report", str(copy), "--out", str(out), "--worst", "2"])
    assert result.exit_code == 0, result.output
    assert "report: " in result.output and not (copy / "interpretations").exists()
    page = out.read_text()
    assert "moved.wav could not be read" in page
    assert page.count("<audio controls") == 1
    worst_section = page.split('<section id="worst">', 1)[1].split("</section>", 1)[0]
    assert len(_data_uris(worst_section, "image/png")) == 1
    bad = CliRunner().invoke(app, ["report", str(tmp_path / "nothing")])
    assert bad.exit_code == 2 and "not a stetho run folder" in bad.output


def test_report_explains_within_its_budget_and_logs_the_final_path(
    run_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Re-reported without interpretations/, with a budget that only lets the first recording
    be explained; the folder is still <name>.partial, and the log names the sealed path."""
    import logging

    from stetho.report import write_report

    copy = tmp_path / "run.partial"
    shutil.copytree(run_dir, copy)
    shutil.rmtree(copy / "interpretations")
    with caplog.at_level(logging.INFO, logger="stetho.report"):
        path = write_report(copy, n_worst=2, explain_budget_s=1e-6)
    assert path == copy / "report.html"
    page = path.read_text()
    worst_section = page.split('<section id="worst">', 1)[1].split("</section>", 1)[0]
    assert len(_data_uris(worst_section, "image/png")) == 1
    assert "time budget for explanations" in worst_section
    logged = " ".join(m for m in caplog.messages if m.startswith("report:"))
    assert str(tmp_path / "run" / "report.html") in logged and ".partial" not in logged
