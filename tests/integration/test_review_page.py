"""The colorize review page (report.html) in a real browser: headless Debian Chromium driven by
Playwright, on the output of real small colorize runs (in-process, a synthetic 3-shot film, the
non-learned flow-warp system so the frames look like frames).

Checks: no console errors / page errors / failed requests; shot and frame counts match
report.json; shots and frames worst first; keyboard navigation, play and the toggles; every
shown image decodes. Screenshots go to the test's tmp folder (path printed)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import cv2
import pytest

from lcmftn import report as rpt
from lcmftn.checkpoint import save_checkpoint
from lcmftn.data.lineart import extract_lineart
from lcmftn.data.synthetic import FilmConfig, write_film
from lcmftn.data.video import read_frames, write_video
from lcmftn.models.registry import build_generator, generator_config
from workflows import colorize as job

pytestmark = pytest.mark.integration
CHROMIUM = os.environ.get("LCMFTN_CHROMIUM", "/usr/bin/chromium")


def make_outputs(root: Path, size: int = 96, system: str = "flow-warp") -> dict[str, Path]:
    """Line-art mode (keyframe = first frame of each shot, plus one mid-shot key) and evaluation
    mode outputs of one synthetic film; returns {"demo": OUT, "eval": OUT/chain}."""
    cfg = FilmConfig(seed=5, size=size, aspect=4 / 3, num_shots=3, shot_frames=14, hold_prob=0.5, still_prob=0.0)
    truth = write_film(root / "film.mp4", cfg)
    color = read_frames(root / "film.mp4")
    write_video(root / "lineart.mp4", [extract_lineart(f) for f in color], cfg.fps, crf=0)
    keys = root / "keys"
    keys.mkdir(exist_ok=True)
    for s in truth["shots"]:
        cv2.imwrite(str(keys / f"{s['start']:06d}.png"), cv2.cvtColor(color[s["start"]], cv2.COLOR_RGB2BGR))
    shots = root / "shots.json"
    shots.write_text(json.dumps([[s["start"], s["end"]] for s in truth["shots"]]))
    ckpt = save_checkpoint(root / "ckpt", build_generator(system, "tiny"), system,
                           dataclasses.asdict(generator_config(system, "tiny")))
    common = ["--model", str(ckpt), "--size", str(size), "--shots", str(shots), "--local"]
    assert job.main(["--lineart", str(root / "lineart.mp4"), "--refs", str(keys), "--out", str(root / "demo"),
                     "--mode", "auto", *common]) == 0
    assert job.main(["--from-color", str(root / "film.mp4"), "--out", str(root / "eval"), "--eval-modes", "chain",
                     *common]) == 0
    return {"demo": root / "demo", "eval": root / "eval" / "chain"}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    return make_outputs(tmp_path_factory.mktemp("review"))


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} missing: apt-get install -y chromium (.ci/run installs it)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--allow-file-access-from-files"])
        yield b
        b.close()


class Page:
    """A loaded review page that records console errors, page errors and failed requests."""

    def __init__(self, browser, html: Path) -> None:
        self.problems: list[str] = []
        self.page = browser.new_page(viewport={"width": 1500, "height": 900})
        self.page.on("console", lambda m: m.type in ("error", "warning") and self.problems.append(f"console {m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        # NOTE: a load cancelled because the page moved on (src changed) is ERR_ABORTED, not a fault
        self.page.on("requestfailed", lambda r: r.failure != "net::ERR_ABORTED"
                     and self.problems.append(f"request failed: {r.url} ({r.failure})"))
        self.page.goto(html.as_uri())
        self.page.wait_for_selector("#shot-list li.current")

    def key(self, k: str) -> None:
        self.page.keyboard.press(k)

    def js(self, code: str):
        return self.page.evaluate(code)

    def current(self) -> dict:
        return self.js("""() => ({shot: document.querySelector('#shot-list li.current').dataset.id,
            src: document.getElementById('img-color').getAttribute('src'),
            thumbs: [...document.querySelectorAll('#strip .thumb')].map(t => Number(t.dataset.i)),
            cur: Number(document.querySelector('#strip .thumb.current').dataset.i)})""")

    def visible(self, sel: str) -> bool:
        return self.page.is_visible(sel)

    def broken_images(self) -> list[str]:
        self.page.wait_for_load_state("networkidle")
        return self.js("""() => [...document.images].filter(i => i.getAttribute('src') && !i.hidden
            && i.offsetParent !== null && i.complete && i.naturalWidth === 0).map(i => i.src)""")


def _worst_first(rep: dict, evaluated: bool) -> list[dict]:
    done = [s for s in rep["shots"] if s["status"] == "done"]
    key = (lambda s: (s["psnr"], s["start"])) if evaluated else (lambda s: (s["confidence"], -len(s["flagged"]), s["start"]))
    return sorted(done, key=key)


def _frame_order(shot: dict, evaluated: bool) -> list[int]:
    def score(f):
        if f["kind"] == "key":
            return float("inf")
        return f["psnr"] if evaluated else f["conf"]
    return [f["i"] for f in sorted(shot["per_frame"], key=lambda f: (score(f), f["i"]))]


def _walk_and_check(pg: Page, rep: dict, evaluated: bool) -> None:
    order = _worst_first(rep, evaluated)
    assert pg.js("document.querySelectorAll('#shot-list li').length") == rep["totals"]["shots_done"] == len(order)
    seen_frames = 0
    for n, shot in enumerate(order):
        cur = pg.current()
        assert cur["shot"] == shot["id"], f"shot {n}: expected {shot['id']} (worst first), got {cur['shot']}"
        assert len(cur["thumbs"]) == shot["end"] - shot["start"]
        assert cur["thumbs"] == _frame_order(shot, evaluated)  # frames worst first
        assert cur["src"] == f"frames/{rpt.frame_name(cur['thumbs'][0])}"
        seen_frames += len(cur["thumbs"])
        pg.key("ArrowDown")
    assert seen_frames == rep["totals"]["frames_written"]
    pg.key("Home")  # ArrowDown on the last shot stays there; back to the worst shot
    for _ in order:
        pg.key("ArrowUp")
    assert pg.current()["shot"] == order[0]["id"]


def test_review_page_demo_mode(browser, outputs, tmp_path):
    rep = json.loads((outputs["demo"] / "report.json").read_text())
    pg = Page(browser, outputs["demo"] / "report.html")
    _walk_and_check(pg, rep, evaluated=False)
    first = pg.current()
    pg.key("ArrowRight")
    assert pg.current()["cur"] == first["thumbs"][1] and pg.current()["src"].endswith(rpt.frame_name(first["thumbs"][1]))
    pg.key("ArrowLeft")
    assert pg.current()["cur"] == first["thumbs"][0]
    kinds = {f["i"]: f["kind"] for s in rep["shots"] for f in s.get("per_frame", [])}
    assert kinds[first["thumbs"][0]] == "model"  # the worst frame of the worst shot is a model frame
    assert not pg.visible("#img-lineart") and not pg.visible("#ov-conf")
    pg.key("l")
    pg.key("c")
    assert pg.visible("#img-lineart") and pg.visible("#ov-conf")
    assert pg.js("document.getElementById('img-lineart').getAttribute('src')") == f"lineart/{rpt.frame_name(first['cur'])}"
    assert pg.js("document.getElementById('img-conf').getAttribute('src')") == f"confidence/{rpt.frame_name(first['cur'])}"
    assert not pg.visible("#p-truth") and not pg.visible("#p-error")  # evaluation only
    assert pg.broken_images() == []
    shot_png = tmp_path / "review-demo.png"
    pg.page.screenshot(path=str(shot_png), full_page=False)
    pg.key("o")  # time order, then play: the flip-book advances by itself
    cur = pg.current()
    assert cur["thumbs"] == sorted(cur["thumbs"])
    pg.key(" ")
    pg.page.wait_for_timeout(400)
    pg.key(" ")
    assert pg.current()["cur"] != cur["cur"]
    pg.key("l")
    assert not pg.visible("#img-lineart")
    assert pg.js("document.getElementById('video-link').getAttribute('href')") == "episode.mp4"
    assert (outputs["demo"] / "episode.mp4").is_file()
    assert pg.problems == []
    print(f"\nreview page screenshot (demo mode): {shot_png}")


def test_review_page_evaluation_mode(browser, outputs, tmp_path):
    rep = json.loads((outputs["eval"] / "report.json").read_text())
    assert rep["evaluation"]["frames"] == rep["totals"]["frames_written"] - rep["totals"]["key"]
    pg = Page(browser, outputs["eval"] / "report.html")
    _walk_and_check(pg, rep, evaluated=True)
    cur = pg.current()
    assert pg.visible("#p-truth") and pg.visible("#p-error")
    assert pg.js("document.getElementById('img-error').getAttribute('src')") == f"error/{rpt.frame_name(cur['cur'])}"
    assert pg.js("document.getElementById('img-truth').getAttribute('src')") == f"truth/{rpt.frame_name(cur['cur'])}"
    assert pg.broken_images() == []
    shot_png = tmp_path / "review-eval.png"
    pg.page.screenshot(path=str(shot_png), full_page=False)
    pg.key("t")
    assert not pg.visible("#p-truth") and pg.visible("#p-error")
    pg.key("e")
    assert not pg.visible("#p-error")
    pg.key("End")  # keyframes sort last: no error map for them
    assert pg.js("document.getElementById('cap-color').textContent") == "keyframe (given)"
    assert pg.problems == []
    print(f"\nreview page screenshot (evaluation mode): {shot_png}")
    if os.environ.get("LCMFTN_SCREENSHOT_DIR"):
        dst = Path(os.environ["LCMFTN_SCREENSHOT_DIR"])
        dst.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot_png, dst)
