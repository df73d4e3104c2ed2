"""How long explanations may take, and telling the user how far they are (issue #16).

An explanation of one recording can take minutes (a large backbone on long chunks), so a
batch of them reports progress with an ETA after every recording and stops starting new ones
once its time budget would be exceeded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from stetho.config import Config

logger = logging.getLogger(__name__)

#: Seconds all after-training explanations of a run may take together (the interpretations
#: hook and the report's own explanations each get this much); ``None`` is no limit.
DEFAULT_BUDGET_S: float | None = 600.0


def budget_from_config(config: Config) -> float | None:
    """``training.interpretation_budget_s`` of a run's config (``None``: no limit)."""
    value = config.training.interpretation_budget_s
    return None if value is None else float(value)


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


@dataclass
class Budget:
    """A time budget for a batch of explanations, with progress and ETA.

    Call :meth:`allows_next` before each item and :meth:`done` after it. An item is not
    started when the time spent plus the mean time per item so far would pass ``seconds``
    (the first item always runs: there is nothing to estimate from).

    Attributes:
        total: items planned.
        seconds: the budget, ``None`` for no limit.
        what: the noun used in log lines ("recordings").
        clock: the time source (``time.monotonic``).
    """

    total: int
    seconds: float | None = DEFAULT_BUDGET_S
    what: str = "recordings"
    clock: Callable[[], float] = time.monotonic
    progress_bar: bool = False
    completed: int = 0
    skipped: int = 0
    _start: float = field(default=0.0, init=False)
    _bar: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.seconds is not None and not self.seconds > 0:
            raise ValueError(f"budget seconds={self.seconds}: expected a positive number or None")
        self._start = self.clock()
        if self.progress_bar:
            self._bar = tqdm(total=self.total, desc=f"explaining {self.what}", unit="rec")

    @property
    def elapsed_s(self) -> float:
        return self.clock() - self._start

    @property
    def mean_s(self) -> float | None:
        """Mean seconds per item so far; ``None`` before the first one."""
        return self.elapsed_s / self.completed if self.completed else None

    def eta_s(self) -> float | None:
        """Seconds the remaining items should take at the pace so far."""
        mean = self.mean_s
        return None if mean is None else mean * (self.total - self.completed - self.skipped)

    def allows_next(self) -> bool:
        """Whether the next item fits in the budget; ``False`` marks every item left skipped."""
        mean = self.mean_s
        if self.seconds is None or mean is None or self.elapsed_s + mean <= self.seconds:
            return True
        self.skipped = self.total - self.completed
        return False

    def done(self, name: str, where: Any = None) -> None:
        """Record one finished item and log progress, ETA and where its output is."""
        self.completed += 1
        if self._bar is not None:
            self._bar.update(1)
        eta = self.eta_s() or 0.0
        left = self.total - self.completed - self.skipped
        logger.info(
            "explained %d/%d %s: %s in %s total%s%s",
            self.completed,
            self.total,
            self.what,
            name,
            _minutes(self.elapsed_s),
            f"; ETA {_minutes(eta)} for {left} more" if left else "",
            f" -> {where}" if where is not None else "",
        )

    def close(self) -> str | None:
        """End the batch; a warning text when the budget left items unexplained."""
        if self._bar is not None:
            self._bar.close()
        if not self.skipped:
            return None
        message = (
            f"explanations: the time budget of {_minutes(self.seconds or 0.0)} ran out after "
            f"{self.completed} of {self.total} {self.what} "
            f"({_minutes(self.mean_s or 0.0)} each); {self.skipped} not explained. Raise "
            "training.interpretation_budget_s or explain them with 'stetho explain'."
        )
        logger.warning("%s", message)
        return message
