"""Hold detection on line art: unit behaviour, generator truth through H.264, the anime clip."""

from __future__ import annotations

import numpy as np
import pytest

from lcmftn.data.holds import HoldConfig, changed_fraction, detect_holds, is_hold
from lcmftn.data.lineart import LineArtConfig, extract_lineart
from lcmftn.data.synthetic import FilmConfig, write_film
from lcmftn.data.video import read_frames


def _drawing(x: int, size: int = 64) -> np.ndarray:
    import cv2

    img = np.full((size, size), 255, np.uint8)
    # 2-px strokes: the default ink map blurs (σ=1) away isolated 1-px specks and hairlines
    cv2.circle(img, (x, size // 2), size // 5, 0, 2, cv2.LINE_AA)
    cv2.line(img, (5, 5), (size - 5, 10), 0, 2, cv2.LINE_AA)
    return img


def test_same_drawing_is_a_hold_moved_drawing_is_not():
    a = _drawing(30)
    assert is_hold(a, a.copy())
    assert changed_fraction(a, a) == 0.0
    assert is_hold(a, np.roll(a, 1, axis=1))  # 1-px jitter (codec ringing/AA) is tolerated
    assert not is_hold(a, _drawing(40))  # the circle moved 10 px
    assert not is_hold(a, np.full_like(a, 255))  # strokes removed count too
    assert not is_hold(np.full_like(a, 255), a)  # ... and strokes added


def test_detect_holds_flags_and_threshold():
    frames = [_drawing(30), _drawing(30), _drawing(34), _drawing(34), _drawing(34), _drawing(20)]
    assert detect_holds(frames).tolist() == [False, True, False, True, True, False]
    lax = HoldConfig(max_changed_fraction=1.0)
    assert detect_holds(frames, lax).tolist() == [False] + [True] * 5
    assert detect_holds([]).tolist() == []


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="line art"):
        detect_holds([np.zeros((8, 8, 3), np.uint8)])
    with pytest.raises(ValueError, match="differ in size"):
        changed_fraction(np.zeros((8, 8), np.uint8), np.zeros((8, 9), np.uint8))


@pytest.mark.parametrize("method", ["xdog", "canny"])
def test_generator_truth_holds_after_h264(tmp_path, method):
    """Frames held on twos/threes (and stills) are found on the DECODED video's line art;
    new drawings are not called holds except the rare near-identical drawing."""
    tp = fp = fn = 0
    for seed in range(2):
        truth = write_film(tmp_path / "f.mp4", FilmConfig(seed=seed, size=128, num_shots=4, shot_frames=24))
        la = [extract_lineart(f, LineArtConfig(method=method)) for f in read_frames(tmp_path / "f.mp4")]
        found = detect_holds(la)
        true = np.zeros(len(la), bool)
        true[truth["holds"]] = True
        inside = np.ones(len(la), bool)
        inside[[0, *truth["cuts"]]] = False  # a shot's first frame is never a hold
        tp += int(np.sum(found & true & inside))
        fp += int(np.sum(found & ~true & inside))
        fn += int(np.sum(~found & true & inside))
    assert tp > 50
    assert fn == 0, f"{fn} true holds missed"
    # NOTE: the few false holds are real but tiny changes (an idle character's sway of < 0.2 %
    # of the frame between two drawings), below the default max_changed_fraction.
    assert fp / (tp + fp) <= 0.1, f"precision {tp / (tp + fp):.3f}"


@pytest.mark.real_data
def test_anime_clip_is_mostly_holds(real_data):
    frames = read_frames(real_data / "anime" / "onepiece_demo.mp4", size_px=128)
    holds = detect_holds([extract_lineart(f) for f in frames])
    assert len(holds) == 181
    assert 0.78 <= holds[1:].mean() <= 0.92  # SOURCES.md: about 86 % of pairs are near-identical
    assert not holds[100]  # the hard cut


# ---------------------------------------------------------------------------------------------
# Thin line art at high resolution (issue 11)
# ---------------------------------------------------------------------------------------------
def _sparse_page(size: int, eye_y: int) -> np.ndarray:
    """A small 1-px sketch on a big empty page; ``eye_y`` moves one short stroke (a blink)."""
    import cv2

    img = np.full((size, size), 255, np.uint8)
    c = size // 2
    cv2.circle(img, (c, c), size // 10, 0, 1, cv2.LINE_AA)
    cv2.ellipse(img, (c, c + size // 6), (size // 14, size // 8), 0, 0, 360, 0, 1, cv2.LINE_AA)
    cv2.line(img, (c - 30, eye_y), (c - 10, eye_y), 0, 1, cv2.LINE_AA)
    return img


def test_thin_preset_keeps_hairlines_and_sees_small_changes_on_sparse_pages():
    size = 2000
    a, b = _sparse_page(size, size // 2 - 20), _sparse_page(size, size // 2 - 12)
    thin = HoldConfig.for_thin_lines()
    from lcmftn.data.holds import ink_map

    assert ink_map(a).sum() < 0.2 * ink_map(a, thin).sum()  # the σ=1 blur fades 1-px lines
    assert is_hold(a, a.copy(), thin) and is_hold(a, np.roll(a, 1, axis=0), thin)
    assert not is_hold(a, b, thin), "a moved stroke on a sparse page is a new drawing"
    assert is_hold(a, b), "the frame-relative default calls it held (the gap this preset closes)"
    speck = a.copy()
    speck[tuple(np.random.default_rng(0).integers(0, size, (2, 40)))] = 0  # isolated codec specks
    assert is_hold(a, speck, thin)


def test_holds_on_generated_thin_line_art_at_1024px():
    from lcmftn.data.synth import FilmConfigV2, generate_film

    tp = fp = fn = 0
    for seed in (1,):
        la: list[np.ndarray] = []
        film = generate_film(FilmConfigV2(seed=seed, size=1024, num_shots=3, shot_frames=8, thin_lines=True,
                                          hold_prob=0.8, still_prob=0.2), lineart_out=la)
        for _ in film.frames:
            pass
        assert np.mean(la[0] < 128) < 0.03  # thin, sparse drawing
        found = detect_holds(la, HoldConfig.for_thin_lines())
        true = np.zeros(len(la), bool)
        true[film.truth["lineart_holds"]] = True
        inside = np.ones(len(la), bool)
        inside[[0, *film.truth["cuts"]]] = False
        tp += int(np.sum(found & true & inside))
        fp += int(np.sum(found & ~true & inside))
        fn += int(np.sum(~found & true & inside))
    assert tp >= 10
    assert tp / (tp + fp) >= 0.95 and tp / (tp + fn) >= 0.95, (tp, fp, fn)
