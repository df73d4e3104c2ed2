"""The web page in headless Chromium (Debian's ``/usr/bin/chromium``, driven by Playwright)
against a real uvicorn server on 127.0.0.1: upload a recording and see the result, stream a
recording live, stream the (fake) microphone; play the upload back; long file names and a
phone-sized screen.

Set ``STETHO_SCREENSHOT_DIR=docs`` to write ``web.png`` (the upload result) there, and
``web-phone.png`` (the result on a 390 x 844 phone screen). The page's
Content-Security-Policy forbids ``eval``, so the tests wait on selectors, not on JS predicates.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn
from conftest import CHROMIUM, CHROMIUM_ARGS

from stetho.serve import ServeSettings, create_app

pytestmark = pytest.mark.browser

#: A synthetic microphone (a beep) that needs no permission prompt.
FAKE_MICROPHONE = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
MURMUR = "murmur__122_1306325762831_C.wav"
#: A long name without spaces, as devices and archives produce them.
LONG_NAME = "ward-7_bed-12_patient-0042_" + "x" * 60 + "_2026-12-01T09-15-00_murmur.wav"
PHONE = {"width": 390, "height": 844}

#: Resolves with the player's duration once the browser has decoded the file's header.
PLAYER_DURATION = """() => new Promise((resolve, reject) => {
    const p = document.getElementById('player');
    if (p.readyState >= 1) return resolve(p.duration);
    p.addEventListener('loadedmetadata', () => resolve(p.duration));
    p.addEventListener('error', () => reject(new Error('player cannot decode the upload')));
})"""

#: Muted, so no autoplay policy stands in the way.
PLAY_MUTED = (
    "() => { const p = document.getElementById('player'); p.muted = true; return p.play(); }"
)

#: Horizontal overflow of the whole page, and the boxes of the shown S1/S2 labels.
LAYOUT = """() => ({
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
    marks: Number(document.getElementById('wave-labels').dataset.marks),
    wave: document.getElementById('wave').getBoundingClientRect().toJSON(),
    labels: [...document.querySelectorAll('#wave-labels .mark-label')].map((e) => ({
        text: e.textContent, ...e.getBoundingClientRect().toJSON() })),
})"""


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, *FAKE_MICROPHONE]
        )
        yield b
        b.close()


@pytest.fixture(scope="module")
def base_url(mission_run: Path) -> Iterator[str]:
    """A real server on a free loopback port, serving a tiny run trained on 6 + 6 recordings."""
    app = create_app(ServeSettings(model_path=mission_run, alert_windows=2))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@contextmanager
def open_page(browser: object, base_url: str, **context_args: object) -> Iterator[object]:
    context = browser.new_context(**context_args)  # type: ignore[attr-defined]
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    # Nothing but the server itself may be contacted: the page must work offline.
    outside: list[str] = []
    pg.on(
        "request",
        lambda req: (
            None
            if req.url.startswith((base_url, "ws://127.0.0.1", "blob:", "data:"))
            else outside.append(req.url)
        ),
    )
    pg.goto(base_url + "/")
    yield pg
    assert errors == [], f"JavaScript errors: {errors}"
    assert outside == [], f"requests outside the server: {outside}"
    context.close()


@pytest.fixture
def page(browser: object, base_url: str) -> Iterator[object]:
    with open_page(browser, base_url, viewport={"width": 1200, "height": 900}) as pg:
        yield pg


@pytest.fixture
def phone(browser: object, base_url: str) -> Iterator[object]:
    with open_page(
        browser, base_url, viewport=PHONE, device_scale_factor=3, is_mobile=True, has_touch=True
    ) as pg:
        yield pg


def long_named_copy(mission_dir: Path, tmp_path: Path) -> Path:
    path = tmp_path / LONG_NAME
    shutil.copy(mission_dir / "set_b" / MURMUR, path)
    return path


def assert_fits(pg: object, selector: str) -> None:
    """The element shows its content inside its own box (wrapped, not cut or overflowing)."""
    box = pg.evaluate(  # type: ignore[attr-defined]
        "(s) => { const e = document.querySelector(s); "
        "return [e.scrollWidth, e.clientWidth, e.getBoundingClientRect().right]; }",
        selector,
    )
    scroll_width, client_width, right = box
    assert scroll_width <= client_width + 1, f"{selector} overflows its box: {box}"
    assert right <= pg.evaluate("() => window.innerWidth"), f"{selector} leaves the screen"  # type: ignore[attr-defined]


def test_upload_shows_the_result(page: object, mission_dir: Path) -> None:
    pg = page
    pg.wait_for_selector("#model-info:has-text('murmur')")
    pg.set_input_files("#file", str(mission_dir / "set_b" / MURMUR))
    pg.wait_for_selector("#result:not(.hidden)", timeout=30_000)
    assert pg.inner_text("#res-label").lower() in ("murmur", "normal")
    assert "abnormal probability" in pg.inner_text("#res-abnormal")
    assert pg.inner_text("#res-hr").endswith("bpm")
    assert pg.inner_text("#res-duration") == "5.6 s"
    bars = pg.query_selector_all("#res-bars .bar")
    assert [b.get_attribute("data-cls") for b in bars] == ["murmur", "normal"]
    # The recording can be played back: the uploaded file itself, from an object URL.
    assert pg.get_attribute("#player", "src").startswith("blob:")
    assert pg.evaluate(PLAYER_DURATION) == pytest.approx(5.6, abs=0.05)
    pg.evaluate(
        "() => { const p = document.getElementById('player'); p.muted = true; return p.play(); }"
    )
    pg.wait_for_selector("#playhead:not(.hidden)", timeout=10_000)
    # The waveform and the spectrogram were drawn (non-blank pixels).
    for canvas in ("wave", "spec"):
        inked = pg.evaluate(
            """(id) => {
                const c = document.getElementById(id);
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
                return n / (c.width * c.height);
            }""",
            canvas,
        )
        assert inked > 0.01, f"{canvas} canvas is blank"
    assert pg.is_hidden("#record-error")
    shots = os.environ.get("STETHO_SCREENSHOT_DIR")
    if shots:
        pg.screenshot(path=str(Path(shots) / "web.png"), full_page=True)


def test_long_file_name_is_shown_whole(page: object, mission_dir: Path, tmp_path: Path) -> None:
    pg = page
    pg.set_input_files("#file", str(long_named_copy(mission_dir, tmp_path)))
    pg.wait_for_selector("#result:not(.hidden)", timeout=30_000)
    for selector in ("#file-name", "#res-file"):
        assert LONG_NAME in pg.inner_text(selector).replace("\n", "")
        assert pg.get_attribute(selector, "title") == LONG_NAME
        assert_fits(pg, selector)


def test_phone_screen_fits_and_labels_do_not_overlap(
    phone: object, mission_dir: Path, tmp_path: Path
) -> None:
    pg = phone
    pg.wait_for_selector("#model-info:has-text('murmur')")
    pg.set_input_files("#file", str(long_named_copy(mission_dir, tmp_path)))
    pg.wait_for_selector("#result:not(.hidden)", timeout=30_000)
    shots = os.environ.get("STETHO_SCREENSHOT_DIR")
    if shots:
        pg.screenshot(path=str(Path(shots) / "web-phone.png"), full_page=True)
    layout = pg.evaluate(LAYOUT)
    assert layout["innerWidth"] == PHONE["width"]
    assert layout["scrollWidth"] <= layout["innerWidth"], "the page scrolls sideways"
    for selector in ("#file-name", "#res-file", "#res-label", "#res-bars"):
        assert_fits(pg, selector)
    labels = sorted(layout["labels"], key=lambda b: b["left"])
    assert {b["text"] for b in labels} == {"S1", "S2"}
    assert len(labels) <= layout["marks"]
    for a, b in zip(labels, labels[1:], strict=False):
        assert a["right"] <= b["left"], f"labels overlap: {a} {b}"
    wave = layout["wave"]
    assert all(wave["left"] <= b["left"] and b["right"] <= wave["right"] + 6 for b in labels)


def test_upload_of_non_audio_shows_the_reason(page: object, tmp_path: Path) -> None:
    pg = page
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio\n" * 10)
    pg.set_input_files("#file", str(bad))
    pg.wait_for_selector("#record-error:not(.hidden)", timeout=15_000)
    text = pg.inner_text("#record-error")
    assert "415" in text and "cannot decode" in text


def test_live_stream_of_a_recording_gives_predictions(page: object, mission_dir: Path) -> None:
    pg = page
    pg.click("#tab-live")
    pg.select_option("#live-source", "file")
    pg.set_input_files("#live-file", str(mission_dir / "set_b" / MURMUR))
    pg.check("#live-fast")
    pg.click("#live-start")
    pg.wait_for_selector("#events li >> nth=3", timeout=30_000)
    assert pg.inner_text("#live-label").lower() in ("murmur", "normal")
    assert pg.query_selector_all("#live-bars .bar")
    state = pg.get_attribute("#alert-state", "class")
    assert "raised" in state or "ok" in state
    pg.click("#live-stop")
    pg.wait_for_selector("#live-start:not([disabled])")
    assert "stream ended" in pg.inner_text("#events")
    assert pg.is_hidden("#live-error")


def test_live_stream_from_the_microphone(page: object) -> None:
    pg = page
    pg.click("#tab-live")
    pg.click("#live-start")  # microphone is the default source
    pg.wait_for_selector("#events li:has-text('abnormal')", timeout=30_000)
    assert "stream ready at" in pg.inner_text("#events")
    pg.click("#live-stop")
    pg.wait_for_selector("#live-start:not([disabled])")
    assert pg.is_hidden("#live-error")
