"""Pretraining data: many datasets, random excerpts, source-balanced batches, two device views.

A *source* is one ``--source ROOT[:layout]``: a dataset read by its registered reader
(:func:`stetho.data.readers.read_dataset`). :func:`load_sources` joins them into one table
with a ``dataset`` column, the ``layout`` and one ``target_<task>`` column per supervised task
(:data:`~stetho.pretrain.objective.MASKED` where the dataset does not define it).

The mission set (the PASCAL heartbeat-sounds recordings every stetho model is judged on) is
guarded: its **labels are never used**, and its audio only when asked (``mission_audio``):
``"unlabelled"`` keeps only the recordings that carry no label (the challenge's unlabelled
test files, which no validation fold holds), ``"all"`` every recording's audio.

:class:`PretrainBatches` makes batch ``k`` from ``(seed, k)`` alone: each item picks a
balancing group uniformly (``balance_by="dataset"``: every ``--source`` equally likely;
``"source"``: every recording device of the manifests' ``source`` column equally likely),
a recording of it uniformly, two random excerpts of fixed length (or one, :data:`CROPS`)
and a device view of each. With ``rhythm`` each excerpt is a spliced one and carries a
beat-timing target (:mod:`stetho.pretrain.rhythm`).
Because nothing depends on earlier batches, a resumed run sees exactly the batches an
uninterrupted one would, and DataLoader workers can make batches in any order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from stetho.data.audio import AudioError, pad_or_crop, read_audio
from stetho.data.readers import detect_layout, list_readers, read_dataset
from stetho.pretrain.objective import MASKED, TASKS, task_targets
from stetho.pretrain.rhythm import FADE_S, cycle_samples, splice_excerpt
from stetho.pretrain.views import DeviceViewConfig, device_view, view_pair

logger = logging.getLogger(__name__)

#: Layouts and folder names of the mission set.
MISSION_LAYOUTS = ("pascal",)
MISSION_FOLDER_NAMES = ("heartbeat-sounds",)
BALANCE_BY = ("dataset", "source")
#: ``independent``: the two views are cut at two random offsets of one recording, so that
#: matching them needs what the heart sounds like, not where its beats fall in the excerpt
#: (with ``same`` crops the contrastive loss falls to ~0.2 within 150 steps by lining up the
#: beats); ``same``: both views of one excerpt; ``mixed``: each pair, with even odds, either
#: ``independent`` or two excerpts of one window 1.5 excerpts long (offsets at most half an
#: excerpt apart, so they share at least half their beats). Independent pairs teach what
#: stays the same across a recording (a murmur's timbre) and throw away where beats fall;
#: the overlapping ones ask the embedding to keep the rhythm of the beats they share (an
#: early or extra beat), without the fixed alignment that made ``same`` trivial. (It kept
#: a little: benchmarks/results/backbone.md, fourth measurement.)
CROPS = ("independent", "same", "mixed")
#: Length of the shared window of a ``mixed`` overlapping pair, in excerpts.
OVERLAP_WINDOW = 1.5
#: ``none``: the mission set is refused; ``unlabelled``: only its recordings without a label
#: (in no fold, so a backbone that heard them was never scored on audio it heard);
#: ``all``: every recording's audio, labelled ones included (their labels are still dropped).
MISSION_AUDIO = ("none", "unlabelled", "all")


def crop_pair(
    audio: np.ndarray, length: int, rng: np.random.Generator, *, crops: str = "independent"
) -> tuple[np.ndarray, np.ndarray]:
    """The two excerpts (``length`` samples each) of one positive pair, cut as ``crops`` says.

    ``independent`` cuts both anywhere in ``audio``; ``mixed`` does that or, with even odds,
    cuts both from one window of :data:`OVERLAP_WINDOW` excerpts. ``same`` has one excerpt and
    is cut by the caller.
    """
    if crops not in ("independent", "mixed"):
        raise ValueError(f"crop_pair: crops={crops!r}, expected independent or mixed")
    span = audio
    if crops == "mixed" and rng.random() < 0.5:
        span = pad_or_crop(audio, int(round(OVERLAP_WINDOW * length)), rng=rng)
    return pad_or_crop(span, length, rng=rng), pad_or_crop(span, length, rng=rng)


class MissionSetError(ValueError):
    """The mission set was given as a pretraining source with ``mission_audio="none"``."""


@dataclass(frozen=True)
class Source:
    """One pretraining dataset: its ``root``, reader ``layout`` and ``name`` in the tables."""

    root: Path
    layout: str = "auto"
    name: str = ""

    @classmethod
    def parse(cls, text: str) -> Source:
        """``ROOT`` or ``ROOT:layout`` (the part after the last ``:`` if it names a layout)."""
        root, sep, layout = text.rpartition(":")
        if not sep or layout not in (*list_readers(), "auto"):
            root, layout = text, "auto"
        if not root:
            raise ValueError(f"--source {text!r}: expected ROOT or ROOT:layout")
        return cls(root=Path(root).expanduser(), layout=layout)

    def resolved(self) -> Source:
        """With ``layout`` detected and ``name`` defaulted to the root's folder name."""
        layout = detect_layout(self.root) if self.layout == "auto" else self.layout
        return Source(root=self.root, layout=layout, name=self.name or self.root.resolve().name)

    def to_dict(self) -> dict[str, str]:
        return {"root": str(self.root), "layout": self.layout, "name": self.name}


def is_mission_set(source: Source) -> bool:
    """True for the mission set: read as ``pascal`` or stored in a ``heartbeat-sounds`` folder."""
    return source.layout in MISSION_LAYOUTS or any(
        part in MISSION_FOLDER_NAMES for part in source.root.resolve().parts
    )


def load_sources(
    sources: list[Source], *, use_labels: bool, mission_audio: str = "none"
) -> pd.DataFrame:
    """One table of every recording of ``sources`` (module doc); labels only if ``use_labels``."""
    if mission_audio not in MISSION_AUDIO:
        raise ValueError(f"mission_audio={mission_audio!r}: expected one of {MISSION_AUDIO}")
    if not sources:
        raise ValueError("no pretraining sources: pass at least one --source ROOT[:layout]")
    frames = []
    names: set[str] = set()
    for raw in sources:
        source = raw.resolved()
        if source.name in names:
            raise ValueError(
                f"two sources are both named {source.name!r}; point --source at distinct folders"
            )
        names.add(source.name)
        mission = is_mission_set(source)
        if mission and mission_audio == "none":
            raise MissionSetError(
                f"{source.root} is the mission set (PASCAL heartbeat-sounds): stetho's models "
                "are judged on it, so pretraining leaves it out; pass --mission-audio "
                "unlabelled (its recordings without a label, which no fold holds) or "
                "--mission-audio all to use its audio (its labels are never used)"
            )
        frame = read_dataset(source.root, layout=source.layout)
        if mission and mission_audio == "unlabelled":
            # unlabelled as training reads it: no label, so in no fold
            frame = frame[frame["label"].isna()]
            if frame.empty:
                raise ValueError(
                    f"{source.root}: --mission-audio unlabelled, but every recording there "
                    "has a label; point --source at the unlabelled recordings or leave it out"
                )
            frame = frame.reset_index(drop=True)
        frame["dataset"] = source.name
        frame["layout"] = source.layout
        frame["mission"] = mission
        if mission:
            frame["label"] = None  # dropped here so nothing downstream can read them
        for task in TASKS:
            frame[f"target_{task}"] = MASKED
        if use_labels and not mission:
            targets = [task_targets(source.layout, label) for label in frame["label"]]
            for task in TASKS:
                frame[f"target_{task}"] = [t[task] for t in targets]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def source_summary(frame: pd.DataFrame, sources: list[Source]) -> list[dict[str, Any]]:
    """Per dataset: root, layout, recordings, hours, devices and labelled count per task."""
    roots = {s.resolved().name: str(s.root) for s in sources}
    out = []
    for name, part in frame.groupby("dataset", sort=False):
        out.append(
            {
                "dataset": name,
                "root": roots.get(str(name)),
                "layout": str(part["layout"].iloc[0]),
                "mission_set_audio_only": bool(part["mission"].iloc[0]),
                "recordings": len(part),
                "hours": round(float(part["duration_s"].sum()) / 3600, 3),
                "devices": sorted(str(s) for s in part["source"].unique()),
                "labelled": {
                    task: int((part[f"target_{task}"] != MASKED).sum())
                    for task in TASKS
                    if (part[f"target_{task}"] != MASKED).any()
                },
            }
        )
    return out


class PretrainBatches(Dataset):
    """Map-style dataset whose item ``k`` is the whole batch of step ``k`` (module doc).

    Items are dicts: ``view1``, ``view2`` (``(B, samples)`` float32), ``target_<task>``
    (``(B,)`` int64, for ``tasks``) and ``group`` (``(B,)`` int64 balancing-group index);
    with ``rhythm``, also ``rhythm1``, ``rhythm2`` (``(B,)`` int64: each view's splice,
    :data:`~stetho.pretrain.rhythm.REGULAR` or ``IRREGULAR``, :data:`MASKED` unspliced).
    Decoded recordings are cached in memory (4 bytes per sample at ``sample_rate``; each
    DataLoader worker keeps its own cache).
    """

    def __init__(
        self,
        frame: pd.DataFrame,
        *,
        sample_rate: int,
        excerpt_seconds: float,
        batch_size: int,
        seed: int,
        tasks: tuple[str, ...] = (),
        views: DeviceViewConfig | None = None,
        balance_by: str = "dataset",
        crops: str = "independent",
        rhythm: bool = False,
    ) -> None:
        if crops not in CROPS:
            raise ValueError(f"crops={crops!r}: expected one of {CROPS}")
        if rhythm and crops != "independent":
            raise ValueError(
                f"crops={crops!r} with the rhythm task: each spliced view is cut on its own, so "
                "the pairs are independent crops; use crops='independent'"
            )
        if balance_by not in BALANCE_BY:
            raise ValueError(f"balance_by={balance_by!r}: expected one of {BALANCE_BY}")
        if batch_size < 2:
            raise ValueError(f"batch_size={batch_size}: the contrastive loss needs at least 2")
        if excerpt_seconds <= 0:
            raise ValueError(f"excerpt_seconds={excerpt_seconds}: expected > 0")
        if frame.empty:
            raise ValueError("no recordings to pretrain on")
        self.paths = frame["path"].astype(str).tolist()
        keys = frame[balance_by].astype(str)
        self.groups = sorted(keys.unique())
        self.members = [np.flatnonzero((keys == g).to_numpy()) for g in self.groups]
        self.targets = {t: frame[f"target_{t}"].to_numpy(dtype=np.int64) for t in tasks}
        self.sample_rate = sample_rate
        self.excerpt = max(16, int(round(excerpt_seconds * sample_rate)))
        self.batch_size = batch_size
        self.seed = seed
        self.views = views or DeviceViewConfig()
        self.crops = crops
        self.rhythm = rhythm
        self.fade = max(1, int(round(FADE_S * sample_rate)))
        self._cache: dict[int, np.ndarray] = {}
        self._cycles: dict[int, int | None] = {}
        self._bad: set[int] = set()

    def __len__(self) -> int:
        return 2**31 - 1  # steps are unbounded; the loop's budget decides when to stop

    def audio(self, index: int) -> np.ndarray | None:
        """Recording ``index`` at the front end's rate, or ``None`` if it cannot be decoded."""
        if index in self._bad:
            return None
        if index not in self._cache:
            try:
                self._cache[index] = read_audio(
                    self.paths[index],
                    sample_rate=self.sample_rate,
                    min_duration_s=0.0,
                    max_duration_s=None,
                ).samples
            except AudioError as exc:
                logger.warning("pretraining skips %s", exc)
                self._bad.add(index)
                return None
        return self._cache[index]

    def cycle(self, index: int) -> int | None:
        """Recording ``index``'s cardiac cycle in samples (``None``: no usable estimate)."""
        if index not in self._cycles:
            audio = self.audio(index)
            self._cycles[index] = None if audio is None else cycle_samples(audio, self.sample_rate)
        return self._cycles[index]

    def _spliced(
        self, index: int, audio: np.ndarray, rng: np.random.Generator, *, irregular: bool
    ) -> tuple[np.ndarray, int]:
        """One excerpt of the rhythm task and its target (module doc)."""
        cycle = self.cycle(index)
        excerpt = (
            None
            if cycle is None
            else splice_excerpt(
                audio, self.excerpt, cycle, rng, irregular=irregular, fade=self.fade
            )
        )
        if excerpt is None:
            return pad_or_crop(audio, self.excerpt, rng=rng), MASKED
        return excerpt, int(irregular)

    def _draw(self, rng: np.random.Generator) -> tuple[int, int, np.ndarray]:
        for _ in range(100):
            group = int(rng.integers(len(self.groups)))
            index = int(rng.choice(self.members[group]))
            audio = self.audio(index)
            if audio is not None:
                return group, index, audio
        raise RuntimeError("100 recordings in a row could not be decoded; run `stetho data check`")

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, int(step)])
        v1, v2, groups, rows, rhythm = [], [], [], [], []
        for _ in range(self.batch_size):
            group, index, audio = self._draw(rng)
            if self.crops == "same":
                excerpt = pad_or_crop(audio, self.excerpt, rng=rng)
                a, b = view_pair(excerpt, self.sample_rate, rng, self.views)
            else:
                if self.rhythm:
                    # One kind of splice for both views (each its own offset and cut): were
                    # they to differ, the contrastive loss would teach the embedding to ignore it.
                    irregular = bool(rng.random() < 0.5)
                    first, r1 = self._spliced(index, audio, rng, irregular=irregular)
                    second, r2 = self._spliced(index, audio, rng, irregular=irregular)
                    rhythm.append((r1, r2))
                else:
                    first, second = crop_pair(audio, self.excerpt, rng, crops=self.crops)
                a = device_view(first, self.sample_rate, rng, self.views)
                b = device_view(second, self.sample_rate, rng, self.views)
            v1.append(a)
            v2.append(b)
            groups.append(group)
            rows.append(index)
        batch = {
            "view1": torch.from_numpy(np.stack(v1)),
            "view2": torch.from_numpy(np.stack(v2)),
            "group": torch.tensor(groups, dtype=torch.int64),
        }
        for task, values in self.targets.items():
            batch[f"target_{task}"] = torch.from_numpy(values[rows])
        if self.rhythm:
            pairs = torch.tensor(rhythm, dtype=torch.int64)
            batch["rhythm1"], batch["rhythm2"] = pairs[:, 0], pairs[:, 1]
        return batch
