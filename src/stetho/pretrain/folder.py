"""The pretraining run folder: every artifact's path, in one place.

```
<out>/
  config.json          resolved pretraining config (sources, objective, front end, budget)
  environment.json     versions, seed, device, threads, command
  sources.json         each source: root, layout, recordings, hours, labelled per task
  losses.jsonl         one line per step: step, loss, ssl, supervised, lr, seconds
  checkpoint.pt        resume state (tensors only; loaded with weights_only=True)
  backbone.safetensors the pretrained backbone + front-end metadata (the deliverable)
  summary.json         steps, time, steps/s, first/last losses
```

While running the folder is ``<out>.partial``; it becomes ``<out>`` when the backbone is
written, so an interrupted run never looks finished and ``--resume`` knows where to go on.
(To move into :mod:`stetho.runs.folder` beside ``RunFolder`` when that lands.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PretrainFolder:
    """Paths of a pretraining run rooted at ``root`` (the finished folder's name)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def partial(self) -> Path:
        return self.root.with_name(self.root.name + ".partial")

    def _in(self, name: str, *, finished: bool) -> Path:
        return (self.root if finished else self.partial) / name

    def config(self, *, finished: bool = False) -> Path:
        return self._in("config.json", finished=finished)

    def environment(self, *, finished: bool = False) -> Path:
        return self._in("environment.json", finished=finished)

    def sources(self, *, finished: bool = False) -> Path:
        return self._in("sources.json", finished=finished)

    def losses(self, *, finished: bool = False) -> Path:
        return self._in("losses.jsonl", finished=finished)

    def checkpoint(self, *, finished: bool = False) -> Path:
        return self._in("checkpoint.pt", finished=finished)

    def backbone(self, *, finished: bool = False) -> Path:
        return self._in("backbone.safetensors", finished=finished)

    def summary(self, *, finished: bool = False) -> Path:
        return self._in("summary.json", finished=finished)
