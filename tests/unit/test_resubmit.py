"""Colorize survives a lost shot worker (issue 9): :func:`lcmftn.jobs.resubmit_on_loss` sends
the shots a dead worker had not returned to a replacement, each result once, within a bound."""

from __future__ import annotations

import threading

import pytest

from lcmftn.jobs import ActorsLostError, LossBudget, resubmit_on_loss


class Lost(Exception):
    pass


def _jobs(n: int) -> list[dict]:
    return [{"id": f"s{i}"} for i in range(n)]


def _worker(die_after: list[int], calls: list[list[str]]):
    """A fake worker: the k-th one returns ``die_after[k]`` results, then dies (None: never)."""

    def start(pending: list[dict]):
        calls.append([j["id"] for j in pending])
        limit = die_after[len(calls) - 1] if len(calls) <= len(die_after) else None
        for n, job in enumerate(pending):
            if limit is not None and n == limit:
                raise Lost(f"worker {len(calls)} died\nsecond line")
            yield {"id": job["id"]}

    return start


def test_unfinished_shots_go_to_a_replacement_each_result_once():
    calls: list[list[str]] = []
    budget = LossBudget(3)
    out = list(resubmit_on_loss(_jobs(5), _worker([2, 0, None], calls), lambda e: isinstance(e, Lost), budget))
    assert [r["id"] for r in out] == ["s0", "s1", "s2", "s3", "s4"]
    assert calls == [["s0", "s1", "s2", "s3", "s4"], ["s2", "s3", "s4"], ["s2", "s3", "s4"]]
    assert len(budget.events) == 2 and "3 unfinished shot(s) resubmitted: s2, s3, s4" in budget.events[0]
    assert "second line" not in budget.events[0]


def test_more_losses_than_allowed_is_a_named_error():
    calls: list[list[str]] = []
    with pytest.raises(ActorsLostError, match="3 shot workers lost, more than the 2 allowed"):
        list(resubmit_on_loss(_jobs(3), _worker([1, 0, 0, None], calls), lambda e: isinstance(e, Lost),
                              LossBudget(2)))
    assert len(calls) == 3  # no 4th worker started


def test_an_error_of_the_shot_code_is_not_retried():
    def start(pending):
        yield {"id": pending[0]["id"]}
        raise ValueError("bad frame")

    budget = LossBudget(3)
    with pytest.raises(ValueError, match="bad frame"):
        list(resubmit_on_loss(_jobs(2), start, lambda e: isinstance(e, Lost), budget))
    assert budget.events == []


def test_a_stream_missing_shots_is_an_error_not_a_silent_gap():
    def start(pending):
        yield {"id": pending[0]["id"]}

    with pytest.raises(RuntimeError, match=r"without shots \['s1'\]"):
        list(resubmit_on_loss(_jobs(2), start, lambda e: isinstance(e, Lost), LossBudget(3)))


def test_the_budget_is_shared_by_concurrent_streams():
    budget = LossBudget(1)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            list(resubmit_on_loss(_jobs(2), _worker([1, None], []), lambda e: isinstance(e, Lost), budget))
        except ActorsLostError as e:
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(budget.events) == 2 and len(errors) == 1  # the second loss is one too many


def test_a_worker_lost_after_its_last_shot_costs_nothing():
    def start(pending):
        yield from ({"id": j["id"]} for j in pending)
        raise Lost("died while finishing")

    budget = LossBudget(0)
    assert [r["id"] for r in resubmit_on_loss(_jobs(2), start, lambda e: isinstance(e, Lost), budget)] == ["s0", "s1"]
    assert budget.events == []
