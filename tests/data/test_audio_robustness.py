"""Files a user may point stetho at that must not pass silently: broken links, truncated
and unreadable files, absurd rates; and the block-wise decoder against the one-shot path."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import MISSION_DIR, MakeWav
from typer.testing import CliRunner

from stetho.cli import app
from stetho.data import audio as A

runner = CliRunner()


@pytest.fixture
def linked(tmp_path: Path, make_wav: MakeWav) -> Path:
    """A folder with one good file, a dangling link, two links pointing at each other and a
    folder link to its own ancestor."""
    root = tmp_path / "links"
    make_wav(root / "sub" / "good.wav", 1.0, 4000)
    (root / "dangling.wav").symlink_to("gone.wav")
    (root / "loop_a.wav").symlink_to("loop_b.wav")
    (root / "loop_b.wav").symlink_to("loop_a.wav")
    (root / "sub" / "up").symlink_to("..")
    (root / "notes.txt").symlink_to("gone.txt")  # not audio: none of our business
    return root


def test_broken_links_are_listed_and_reported(linked: Path) -> None:
    files = A.iter_audio_files(linked)
    assert [p.relative_to(linked).as_posix() for p in files] == [
        "dangling.wav",
        "loop_a.wav",
        "loop_b.wav",
        "sub/good.wav",
        "sub/up",
    ]
    good, bad = A.scan_audio(files, progress=False)
    assert [Path(g["path"]).name for g in good] == ["good.wav"]
    reasons = {Path(e.path).name: e.reason for e in bad}
    assert reasons["dangling.wav"] == "dangling symbolic link to 'gone.wav' (which does not exist)"
    assert reasons["loop_a.wav"].startswith("symbolic link loop")
    assert reasons["up"].startswith("symbolic link loop: folder link to its own ancestor")
    assert all(isinstance(e, A.MissingFileError) for e in bad)


def test_folder_links_that_do_not_loop_are_followed(tmp_path: Path, make_wav: MakeWav) -> None:
    make_wav(tmp_path / "elsewhere" / "a.wav", 1.0, 4000)
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "more").symlink_to(tmp_path / "elsewhere")
    assert A.iter_audio_files(tmp_path / "root") == [tmp_path / "root" / "more" / "a.wav"]


def test_data_check_and_analyze_report_links(linked: Path) -> None:
    result = runner.invoke(app, ["data", "check", str(linked), "--no-progress"])
    assert result.exit_code == 1, result.output
    assert "BAD dangling.wav: dangling symbolic link to 'gone.wav'" in result.stdout
    assert "BAD loop_b.wav: symbolic link loop" in result.stdout
    assert "5 file(s) checked: 1 fine, 4 bad" in result.stdout
    # Given explicitly, a broken link is named for what it is, not "no such folder".
    for args, words in (
        (["data", "check", str(linked / "dangling.wav")], "dangling symbolic link to 'gone.wav'"),
        (["data", "check", str(linked / "loop_a.wav")], "symbolic link loop"),
        (["analyze", str(linked / "dangling.wav")], "dangling symbolic link"),
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and words in result.output, result.output
    missing = runner.invoke(app, ["data", "check", str(linked / "nope")])
    assert missing.exit_code == 2 and "no such folder" in missing.output


def _truncate(path: Path, keep: float) -> Path:
    data = path.read_bytes()
    header = 44
    cut = path.with_name("cut_" + path.name)
    cut.write_bytes(data[: header + int((len(data) - header) * keep) // 2 * 2])
    return cut


def test_truncated_wav_is_refused_with_both_durations(make_wav: MakeWav, tmp_path: Path) -> None:
    cut = _truncate(make_wav(tmp_path / "t.wav", 9.0, 4000), 1 / 3)
    with pytest.raises(A.TruncatedError) as info:
        A.read_audio(cut)
    assert "the header promises 9 s (36000 samples), the file holds 3 s (12000)" in str(info.value)
    assert "copy the file again" in info.value.reason


def test_unfinished_header_is_not_truncation(make_wav: MakeWav, tmp_path: Path) -> None:
    """A writer that streamed to a pipe (data size 0xFFFFFFFF) promises nothing: the samples
    that are there are the recording."""
    data = bytearray(make_wav(tmp_path / "t.wav", 2.0, 4000).read_bytes())
    assert data[36:40] == b"data"
    data[40:44] = (0xFFFFFFFF).to_bytes(4, "little")
    (tmp_path / "s.wav").write_bytes(bytes(data))
    assert A.read_audio(tmp_path / "s.wav").duration_s == pytest.approx(2.0)


def test_truncated_flac_names_what_was_promised(make_wav: MakeWav, tmp_path: Path) -> None:
    path = make_wav(tmp_path / "t.flac", 10.0, 4000)
    data = path.read_bytes()
    (tmp_path / "cut.flac").write_bytes(data[: len(data) // 3])
    with pytest.raises(A.AudioError, match="of the 10 s the header promises") as info:
        A.read_audio(tmp_path / "cut.flac")
    assert "truncated or corrupt" in info.value.reason


def test_os_errors_map_to_plain_words() -> None:
    reason = A.os_error_reason(PermissionError(errno.EACCES, "Permission denied"))
    assert reason.startswith("permission denied")
    assert A.os_error_reason(OSError(errno.EPERM, "x")).startswith("permission denied")
    assert A.os_error_reason(OSError(errno.EIO, "x")).startswith("input/output error")
    assert A.os_error_reason(OSError(errno.ELOOP, "x")).startswith("symbolic link loop")
    assert A.os_error_reason(OSError(errno.ENOSPC, "No space left")) == "cannot read: No space left"


def test_refused_open_says_permission_denied(
    make_wav: MakeWav, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The path through read_audio, without needing a real permission failure (we run as
    root): libsndfile would say "System error."."""
    path = make_wav(tmp_path / "t.wav", 1.0, 4000)

    def refuse(*args: object, **kwargs: object) -> int:
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(A.os, "open", refuse)
    with pytest.raises(A.UnreadableFileError, match=r"t\.wav: permission denied"):
        A.read_audio(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file: cannot simulate")
def test_unreadable_file_says_permission_denied(make_wav: MakeWav, tmp_path: Path) -> None:
    path = make_wav(tmp_path / "t.wav", 1.0, 4000)
    path.chmod(0)
    _, bad = A.scan_audio([path], progress=False)
    assert bad[0].reason.startswith("permission denied")


def test_one_sample_is_too_short_not_silent(tmp_path: Path) -> None:
    sf.write(tmp_path / "one.wav", np.array([0.25], dtype=np.float32), 4000, subtype="FLOAT")
    with pytest.raises(A.TooShortError, match=r"too short: 0\.00025 s, minimum is 0\.5 s"):
        A.read_audio(tmp_path / "one.wav")
    with pytest.raises(A.TooShortError, match=r"too short: a single sample \(0\.00025 s\)"):
        A.read_audio(tmp_path / "one.wav", min_duration_s=0.0)


def test_absurd_sample_rate_is_refused_from_the_header(make_wav: MakeWav, tmp_path: Path) -> None:
    make_wav(tmp_path / "hi.flac", 0.6, 655350, freq=50.0)
    with pytest.raises(A.SampleRateError, match=r"sample rate 655350 Hz is above the 384000 Hz"):
        A.read_audio(tmp_path / "hi.flac")
    audio = A.read_audio(
        tmp_path / "hi.flac", min_duration_s=0.0, max_sample_rate_hz=700_000, sample_rate=4000
    )
    assert audio.sample_rate == 4000


def test_blockwise_decode_matches_one_shot_on_long_synthetic(tmp_path: Path) -> None:
    """Several blocks, stereo, a rate ratio that does not divide: block edges are invisible."""
    rng = np.random.default_rng(0)
    n = 3 * A.BLOCK_FRAMES + 1234
    stereo = (0.3 * rng.standard_normal((n, 2))).astype(np.float32)
    sf.write(tmp_path / "s.wav", stereo, 44100, subtype="FLOAT")
    mono = A.to_mono(stereo)
    for rate in (None, 2000, 4000, 22050):
        got = A.read_audio(tmp_path / "s.wav", sample_rate=rate, min_duration_s=0.0).samples
        want = mono if rate is None else A.resample(mono, 44100, rate)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_blockwise_decode_matches_one_shot_on_real_recordings() -> None:
    files = sorted((MISSION_DIR / "set_a").glob("normal*.wav"))[:3]
    files += sorted((MISSION_DIR / "set_b").glob("normal*.wav"))[:3]
    if not files:
        pytest.skip(f"mission dataset not found at {MISSION_DIR}")
    for path in files:
        data, sr = sf.read(path, dtype="float32", always_2d=True)
        mono = A.to_mono(data)
        for rate in (None, 2000, 4000):
            got = A.read_audio(path, sample_rate=rate, min_duration_s=0.0).samples
            want = mono if rate is None else A.resample(mono, sr, rate)
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, atol=1e-6)
