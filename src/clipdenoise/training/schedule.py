"""Learning-rate schedules of the training recipes, as pure functions of the iteration.

The learning rate of an iteration is computed from its index alone (no hidden scheduler state),
so resuming at iteration ``k`` reproduces the schedule exactly.

* ``cosine`` — the paper (Sec. 4.1): cosine decay from ``lr`` to ``min_lr`` over all iterations.
* ``cosine_restart`` — the reference YAMLs (``CosineAnnealingRestartCyclicLR``): consecutive
  cosine periods (92k and 208k iterations), each decaying from ``lr × restart_weight`` to its own
  minimum (3e-4 and 1e-6). With a first minimum equal to ``lr`` the first period is flat at 3e-4.
* ``constant`` — ``lr`` throughout.

An optional linear warm-up (``warmup_iters``; the reference uses none) ramps from 0 to the
scheduled rate over the first iterations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

ScheduleKind = Literal["cosine", "cosine_restart", "constant"]


@dataclass(frozen=True)
class LRSchedule:
    """A learning-rate schedule over ``num_iters`` iterations.

    Attributes:
        kind: ``cosine``, ``cosine_restart`` or ``constant``.
        lr: Base (peak) learning rate.
        num_iters: Total iterations of the run (the cosine period of ``cosine``).
        min_lr: Final learning rate of ``cosine``.
        periods: Lengths of the ``cosine_restart`` periods; they must sum to at least
            ``num_iters``.
        period_min_lrs: Minimum learning rate of each ``cosine_restart`` period.
        restart_weights: Peak of each period as a fraction of ``lr``.
        warmup_iters: Linear warm-up iterations (0 = none).
    """

    kind: ScheduleKind = "cosine"
    lr: float = 3e-4
    num_iters: int = 300_000
    min_lr: float = 1e-6
    periods: tuple[int, ...] = ()
    period_min_lrs: tuple[float, ...] = ()
    restart_weights: tuple[float, ...] = ()
    warmup_iters: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("cosine", "cosine_restart", "constant"):
            raise ValueError(
                f"unknown schedule {self.kind!r}; valid: cosine, cosine_restart, constant"
            )
        if self.num_iters <= 0:
            raise ValueError(f"num_iters must be positive, got {self.num_iters}")
        if self.kind == "cosine_restart":
            if not self.periods or any(p <= 0 for p in self.periods):
                raise ValueError(f"cosine_restart needs positive periods, got {self.periods}")
            if len(self.period_min_lrs) != len(self.periods):
                raise ValueError(
                    f"cosine_restart needs one minimum per period: {len(self.periods)} periods, "
                    f"{len(self.period_min_lrs)} minima"
                )
            if self.restart_weights and len(self.restart_weights) != len(self.periods):
                raise ValueError("cosine_restart needs one restart weight per period")
            if sum(self.periods) < self.num_iters:
                raise ValueError(
                    f"cosine_restart periods sum to {sum(self.periods)}, fewer than "
                    f"num_iters={self.num_iters}"
                )

    def lr_at(self, iteration: int) -> float:
        """Learning rate used by the optimizer step of ``iteration`` (0-based)."""
        rate = self._scheduled(iteration)
        if self.warmup_iters > 0 and iteration < self.warmup_iters:
            rate *= (iteration + 1) / self.warmup_iters
        return rate

    def _scheduled(self, iteration: int) -> float:
        if self.kind == "constant":
            return self.lr
        if self.kind == "cosine":
            progress = min(iteration, self.num_iters) / self.num_iters
            return cosine_between(self.lr, self.min_lr, progress)
        return self._restart(iteration)

    def _restart(self, iteration: int) -> float:
        weights = self.restart_weights or (1.0,) * len(self.periods)
        start = 0
        for period, floor, weight in zip(self.periods, self.period_min_lrs, weights):
            # a period includes its last iteration, as the reference's get_position_from_periods
            if iteration <= start + period:
                progress = (iteration - start) / period
                return floor + weight * (cosine_between(self.lr, floor, progress) - floor)
            start += period
        return self.period_min_lrs[-1]


def cosine_between(start: float, end: float, progress: float) -> float:
    """Half-cosine from ``start`` (progress 0) to ``end`` (progress 1)."""
    return end + 0.5 * (start - end) * (1.0 + math.cos(math.pi * progress))


def schedule_values(schedule: LRSchedule, iterations: Sequence[int]) -> list[float]:
    """Learning rates at ``iterations`` (for plots and documentation)."""
    return [schedule.lr_at(i) for i in iterations]


__all__ = ["LRSchedule", "ScheduleKind", "cosine_between", "schedule_values"]
