"""Learning-rate schedules: the paper's cosine, the reference YAML's restarts, warm-up."""

from __future__ import annotations

import math

import pytest

from clipdenoise.training import LRSchedule, load_experiment_config


def test_cosine_schedule_matches_the_paper():
    schedule = LRSchedule("cosine", lr=3e-4, num_iters=300_000, min_lr=1e-6)
    assert schedule.lr_at(0) == pytest.approx(3e-4)
    assert schedule.lr_at(150_000) == pytest.approx((3e-4 + 1e-6) / 2)
    assert schedule.lr_at(300_000) == pytest.approx(1e-6)


def test_cosine_restart_schedule_matches_the_reference_yaml():
    config = load_experiment_config("synthetic-gaussian15")
    schedule = config.train.lr_schedule()
    # first period: eta_min = lr, so flat at 3e-4 for 92k iterations
    assert [schedule.lr_at(i) for i in (0, 1, 50_000, 91_999)] == pytest.approx([3e-4] * 4)
    assert schedule.lr_at(92_000) == pytest.approx(3e-4)
    assert schedule.lr_at(92_000 + 104_000) == pytest.approx((3e-4 + 1e-6) / 2)
    assert schedule.lr_at(299_999) == pytest.approx(1e-6, abs=1e-10)
    # a period includes its last iteration (the reference's get_position_from_periods)
    steep = LRSchedule(
        "cosine_restart", lr=1.0, num_iters=20, periods=(10, 10), period_min_lrs=(0.5, 0.0)
    )
    assert steep.lr_at(10) == pytest.approx(0.5) and steep.lr_at(11) == pytest.approx(
        0.5 * (1 + math.cos(math.pi / 10))
    )
    with pytest.raises(ValueError, match="periods sum to 1000"):
        LRSchedule("cosine_restart", num_iters=2000, periods=(1000,), period_min_lrs=(0.0,))


def test_warmup_ramps_linearly():
    schedule = LRSchedule("constant", lr=1e-3, num_iters=100, warmup_iters=4)
    assert [schedule.lr_at(i) for i in range(5)] == pytest.approx(
        [2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3]
    )
