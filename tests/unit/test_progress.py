"""lcmftn.progress: a few plain lines off a TTY (never one per item), one redrawn line on a TTY."""

from __future__ import annotations

import io

from lcmftn.progress import Progress, summary_block


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_text_prints_a_few_lines_not_one_per_item():
    out = io.StringIO()
    bar = Progress("colorize", 1000, "shots", stream=out)
    for _ in range(1000):
        bar.update(1, loss=0.5)
    bar.close("done")
    lines = out.getvalue().splitlines()
    assert len(lines) == 5, lines  # start, 25/50/75 %, end
    assert lines[0] == "colorize: 0/1000 shots"
    assert "1000/1000 shots 100%" in lines[-1] and lines[-1].endswith("— done")
    assert "50%" in lines[2] and "eta" in lines[2] and "loss 0.5" in lines[2]


def test_plain_text_small_totals_and_unknown_total():
    out = io.StringIO()
    bar = Progress("ingest", 2, "films", stream=out)
    bar.update()
    bar.update()
    bar.close()
    assert len(out.getvalue().splitlines()) == 2  # few items: start and end only
    out = io.StringIO()
    bar = Progress("x", 0, "items", stream=out)
    for _ in range(50):
        bar.update()
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[-1].startswith("x: 50 items")


def test_tty_redraws_in_place_and_ends_with_one_line():
    out = _Tty()
    bar = Progress("train", 10, "steps", stream=out, min_interval_s=0.0)
    for _ in range(10):
        bar.update()
    bar.close()
    text = out.getvalue()
    assert text.count("\n") == 1 and text.count("\r") == 11
    assert text.rstrip("\n").rsplit("\r", 1)[-1].endswith("10/10 steps 100% (0s)")


def test_disabled_writes_nothing_and_summary_block_aligns():
    out = io.StringIO()
    bar = Progress("x", 3, stream=out, enabled=False)
    bar.update(3)
    bar.close()
    assert out.getvalue() == ""
    text = summary_block("done:", {"a": 1, "long key": "x"}, out)
    assert text == "done:\n  a         1\n  long key  x\n" == out.getvalue()


def test_board_sums_parts_and_counter_posts_throttled_then_flushes():
    import threading

    from workflows.progress import FrameCounter, ProgressBoard

    board = ProgressBoard()
    board.post_part("a", 5)
    board.post_part("b", 3)
    board.post_part("a", 4)  # a late, older post of part a: the count never goes back
    assert board.read()[0] == 8
    posts: list[int] = []
    counter = FrameCounter(posts.append, min_interval_s=3600.0)
    threads = [threading.Thread(target=lambda: [counter.add() for _ in range(250)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert posts == [1]  # the first add posts, the next ones wait for the interval
    counter.flush()
    assert counter.done == 1000 and posts[-1] == 1000
    FrameCounter(None).add()  # no post: counts only
