"""report.html in a real browser: headless Chromium (Debian's ``chromium``) driven by Playwright.

The page must load with no console error and no request beyond the file itself, show every
main section, decode every figure, and play its audio. Skipped only when no Chromium binary is
installed (CI installs one: ``apt-get install chromium``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import CHROMIUM, CHROMIUM_ARGS

from stetho.config import load_config
from stetho.explain import interpretations_hook
from stetho.report import report_hook
from stetho.training.experiment import run_experiment

#: One torch thread: tiny models run ~100x faster so when other processes share the cores.
pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("one_torch_thread")]

ARGS = [*CHROMIUM_ARGS, "--autoplay-policy=no-user-gesture-required"]
HEADINGS = (
    "Summary",
    "Warnings",
    "Configuration",
    "Data",
    "Metrics",
    "ROC curves",
    "Precision-recall",
    "Confusion matrix",
    "Calibration",
    "Decisions",
    "Learning curves",
    "Per source",
    "Worst-classified",
    "Environment",
)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from test_report import OVERRIDES, write_dataset

    root = tmp_path_factory.mktemp("browser")
    run_experiment(
        load_config(None, OVERRIDES),
        out_dir=root / "run",
        data=write_dataset(root / "data", seed=1),
        progress=False,
        after_run=[interpretations_hook, report_hook],
    )
    return root / "run" / "report.html"


@pytest.mark.skipif(not CHROMIUM.is_file(), reason="no chromium binary (apt-get install chromium)")
def test_report_opens_cleanly_in_chromium(report: Path, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    errors: list[str] = []
    remote: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("requestfailed", lambda r: errors.append(f"failed: {r.url}"))

        def route(r) -> None:  # anything but the file itself and data: URIs is a leak
            if r.request.url.startswith(("file://", "data:")):
                r.continue_()
            else:
                remote.append(r.request.url)
                r.abort()

        page.route("**/*", route)
        page.goto(report.as_uri(), wait_until="load")

        for name in HEADINGS:
            assert page.get_by_role("heading", name=name, exact=True).is_visible(), name
        assert page.locator("nav a").count() == len(HEADINGS)
        images = page.eval_on_selector_all(
            "img", "els => els.map(e => e.complete && e.naturalWidth > 0)"
        )
        assert len(images) >= 10 and all(images)
        # The decisions section's figures render too (reliability, operating point, ...).
        for fig in ("fig-reliability-after", "fig-operating-point", "fig-risk-coverage"):
            assert page.locator(f"#{fig} img").is_visible(), fig

        players = page.locator("audio")
        assert players.count() == 2
        for i in range(players.count()):
            state = players.nth(i).evaluate(
                """async a => {
                    if (a.readyState < 1) {
                        await new Promise((ok, bad) => {
                            a.addEventListener('loadedmetadata', ok, {once: true});
                            a.addEventListener('error', () => bad(a.error && a.error.message));
                        });
                    }
                    a.muted = true;
                    await a.play();
                    await new Promise(ok => setTimeout(ok, 400));
                    a.pause();
                    return {duration: a.duration, time: a.currentTime, error: a.error};
                }"""
            )
            assert state["error"] is None
            assert state["duration"] == pytest.approx(3.0, abs=0.01)
            assert state["time"] > 0  # it played
        page.screenshot(path=str(tmp_path / "report.png"))
        browser.close()
    assert errors == []
    assert remote == []
    assert (tmp_path / "report.png").stat().st_size > 10_000
