"""Peak memory of decoding long and high-rate files: block-wise ``read_audio`` vs one shot.

Two files a user may point stetho at (written into a scratch folder on first use):

* ``long.flac``: 2 h of a quiet 16-bit tone at 44.1 kHz, a small FLAC that decodes to
  317 M samples (the "1.2 MB FLAC holding 2 h" case, duration limit raised);
* ``ultrasonic.flac``: 119 s at 655 350 Hz, FLAC's highest rate (the ``analyze`` case).

Each measurement runs in a fresh process and reports its peak resident memory (``ru_maxrss``)
above what the imports took, and the wall time::

    python benchmarks/bench_audio_memory.py [--scratch DIR] [--one-shot]

``--one-shot`` also measures the former path (``sf.read`` of the whole file, mono mix, one
``soxr.resample`` call) for comparison; it needs several GB of memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

CASES = {"long": (44100, 7200.0), "ultrasonic": (655350, 119.0)}


def _write(path: Path, rate: int, seconds: float) -> None:
    n = int(rate * seconds)
    block = 1 << 20
    t = np.arange(block) / rate
    with sf.SoundFile(path, "w", samplerate=rate, channels=1, subtype="PCM_16") as fh:
        for start in range(0, n, block):
            k = min(block, n - start)
            fh.write((0.05 * np.sin(2 * np.pi * 50.0 * (t[:k] + start / rate))).astype(np.float32))


def _measure(path: Path, mode: str, rate: int | None) -> dict[str, float]:
    from stetho.data.audio import read_audio, resample, to_mono

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    if mode == "blocks":
        audio = read_audio(
            path, sample_rate=rate, max_duration_s=None, max_sample_rate_hz=1_000_000
        )
        n = len(audio.samples)
    else:
        data, sr = sf.read(path, dtype="float32", always_2d=True)
        x = to_mono(data)
        if rate is not None:
            x = resample(x, sr, rate)
        n = len(x)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "peak_mb": (peak - base) / 1024,
        "output_mb": n * 4 / 2**20,
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scratch", type=Path, default=Path(tempfile.gettempdir()) / "stetho-bench"
    )
    parser.add_argument("--one-shot", action="store_true", help="Also measure the one-shot path.")
    parser.add_argument(
        "--measure", nargs=3, metavar=("FILE", "MODE", "RATE"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.measure:
        path, mode, rate = args.measure
        print(json.dumps(_measure(Path(path), mode, None if rate == "native" else int(rate))))
        return
    args.scratch.mkdir(parents=True, exist_ok=True)
    modes = ["blocks", "one-shot"] if args.one_shot else ["blocks"]
    for name, (rate, seconds) in CASES.items():
        path = args.scratch / f"{name}.flac"
        if not path.exists():
            _write(path, rate, seconds)
        size = path.stat().st_size / 2**20
        for target in ("native", "4000"):
            for mode in modes:
                out = subprocess.run(
                    [sys.executable, __file__, "--measure", str(path), mode, target],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                r = json.loads(out.stdout)
                print(
                    f"{name}.flac ({size:.1f} MB, {seconds:g} s at {rate} Hz) -> {target} Hz, "
                    f"{mode}: peak {r['peak_mb']:.0f} MB above imports (output "
                    f"{r['output_mb']:.0f} MB), {r['seconds']:.1f} s"
                )


if __name__ == "__main__":
    main()
