"""Recordings in memory, and the torch Dataset that cuts training chunks from them.

A heart-sound dataset is small once resampled to the model's rate (the mission set is ~20 MB
at 2 kHz), so every recording is decoded once per run and kept as float32. Bad files are
reported and skipped, never fatal.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from stetho.config import AugmentationConfig
from stetho.data.audio import AudioError, pad_or_crop, read_audio
from stetho.data.label_groups import Groups, label_targets
from stetho.training.augment import augment_waveform

logger = logging.getLogger(__name__)


@dataclass
class LoadedAudio:
    """Waveforms of a manifest's rows, keyed by path, and the rows that failed."""

    waves: dict[str, np.ndarray] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def load_waveforms(
    paths: list[str],
    *,
    sample_rate: int,
    min_duration_s: float,
    max_duration_s: float,
    progress: bool = True,
) -> LoadedAudio:
    """Decode, mono-mix and resample every path; bad files land in ``errors`` with a reason."""
    out = LoadedAudio()
    for path in tqdm(paths, desc="decoding", unit="file", disable=not progress, leave=False):
        try:
            audio = read_audio(
                path,
                sample_rate=sample_rate,
                min_duration_s=min_duration_s,
                max_duration_s=max_duration_s,
            )
        except AudioError as exc:
            logger.warning("skipped %s", exc)
            out.errors[path] = exc.reason
            continue
        out.waves[path] = audio.samples
    return out


def targets_for(
    labels: list[str | None], classes: list[str], groups: Groups | None = None
) -> np.ndarray:
    """``(n, n_classes)`` float32 targets: one-hot, or uniform over a set label's members
    (:func:`stetho.data.label_groups.label_targets`); an unknown label is an error."""
    return label_targets(labels, classes, groups)


class ChunkDataset(Dataset):
    """Random training chunks with device augmentations.

    Each item's randomness comes from a generator seeded by ``(seed, epoch, index)``, so an
    epoch is identical whatever the number of loader workers, and a resumed run repeats it.
    Set :attr:`epoch` before each epoch.
    """

    def __init__(
        self,
        waves: list[np.ndarray],
        targets: np.ndarray,
        *,
        chunk_samples: int,
        sample_rate: int,
        augmentation: AugmentationConfig,
        seed: int,
        weights: np.ndarray | None = None,
        extras: np.ndarray | None = None,
        partial: np.ndarray | None = None,
    ) -> None:
        if len(waves) != len(targets):
            raise ValueError(f"{len(waves)} waveforms but {len(targets)} targets")
        self.waves = waves
        self.targets = targets.astype(np.float32)
        self.chunk_samples = chunk_samples
        self.sample_rate = sample_rate
        self.augmentation = augmentation
        self.seed = seed
        self.weights = (
            np.ones(len(waves), np.float32) if weights is None else weights.astype(np.float32)
        )
        self.extras = extras
        #: rows whose target is a set label (the loss asks for the set, not its spread)
        self.partial = np.zeros(len(waves), bool) if partial is None else partial.astype(bool)
        self.epoch = 0
        #: the epoch's recordings, position -> row (``None``: every row once); a recording
        #: drawn twice gets two chunks, as each position seeds its own randomness
        self.draws: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.waves) if self.draws is None else len(self.draws)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        i = k if self.draws is None else int(self.draws[k])
        rng = np.random.default_rng([self.seed, self.epoch, k])
        x = pad_or_crop(self.waves[i], self.chunk_samples, rng=rng)
        x = augment_waveform(x, rng, self.augmentation, sample_rate=self.sample_rate)
        item = {
            "wave": torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
            "target": torch.from_numpy(self.targets[i]),
            "weight": torch.tensor(self.weights[i]),
            "partial": torch.tensor(bool(self.partial[i])),
        }
        if self.extras is not None:
            item["extra"] = torch.from_numpy(self.extras[i].astype(np.float32))
        return item


def balance_weights(keys: np.ndarray) -> list[float]:
    """Per-row draw weights under which every distinct key (dataset, source) is equally
    likely and, within a key, every row."""
    _, inverse, counts = np.unique(keys.astype(str), return_inverse=True, return_counts=True)
    return (1.0 / counts[inverse]).tolist()


def sample_rows(df: pd.DataFrame, fraction: float, *, seed: int) -> pd.DataFrame:
    """Hydrogen Torch's ``data_sample``: keep a seeded fraction of rows."""
    if fraction >= 1.0:
        return df
    return df.sample(frac=fraction, random_state=seed).sort_index()
