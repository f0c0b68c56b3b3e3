"""npvae/engine/threads.py: how work is split over threads, and a failing thread never hangs a
run."""
from __future__ import annotations

import pytest

from npvae.engine.threads import Team, split


@pytest.mark.parametrize("n", [1, 2, 7, 20, 784])
@pytest.mark.parametrize("T", [1, 2, 3, 8])
def test_split_covers_every_row_once_in_near_equal_ranges(n, T):
    ranges = split(n, T)
    assert len(ranges) == min(n, T)
    assert ranges[0][0] == 0 and ranges[-1][1] == n
    assert all(b == c for (_, b), (c, _) in zip(ranges[:-1], ranges[1:]))
    sizes = [b - a for a, b in ranges]
    assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1


def test_team_runs_items_on_their_threads_and_returns_in_order():
    team = Team(3)
    seen = team.run(lambda t, item, bar: (bar.wait(), (t, item))[1], ["a", "b", "c"])
    assert seen == [(0, "a"), (1, "b"), (2, "c")]


def test_an_error_in_one_thread_is_raised_and_frees_the_others():
    team = Team(2)

    def work(t, item, barrier):
        if t == 1:
            raise RuntimeError("thread 1 failed")
        barrier.wait()                   # would wait forever without the abort
        return item

    with pytest.raises(RuntimeError, match="thread 1 failed"):     # the cause, not its echo
        team.run(work, [0, 1])
    assert team.run(lambda t, item, bar: (bar.wait(), item)[1], [5, 6]) == [5, 6]  # reusable


def test_npvae_threads_sets_the_fast_engines_default_thread_count(monkeypatch):
    """The sweep gives each worker process its share of the cores through $NPVAE_THREADS."""
    from npvae import Config
    from npvae.core.config import ConfigError
    from npvae.engine.mixture import FastModel
    from npvae.engine.threads import THREADS_ENV, available_cores

    monkeypatch.delenv(THREADS_ENV, raising=False)
    cores = available_cores()
    monkeypatch.setenv(THREADS_ENV, "1")
    assert available_cores() == 1
    model = FastModel(Config(hidden_dims=(8,), decoder_dims=(8,), classifier_dims=(4,)))
    assert model.threads == model.train_threads == 1
    monkeypatch.setenv(THREADS_ENV, "3")
    assert available_cores() == 3
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv(THREADS_ENV, bad)
        with pytest.raises(ConfigError, match=THREADS_ENV):
            available_cores()
    monkeypatch.delenv(THREADS_ENV)
    assert available_cores() == cores
