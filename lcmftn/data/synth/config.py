"""Configuration and colour helpers of the v2 film generator (DESIGN §7, issue 11)."""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

__all__ = ["FilmConfigV2", "rgb", "shadow_of", "highlight_of", "INK_RGB"]

INK_RGB = (30, 24, 36)  # colour of the drawn lines in the composited frame


@dataclass(frozen=True)
class FilmConfigV2:
    """A v2 synthetic film. v1's knobs (same names, same meaning) plus v2 difficulty knobs.

    seed: everything (cast, palettes, motion, timing, textures) is a function of the seed.
    size: frame height in pixels (width = ``size * aspect`` rounded to even); up to 1080.
    aspect: width / height.
    fps: frames per second written to the video.
    num_shots: number of shots (hard cuts between them).
    seconds: when set, overrides ``num_shots`` with ``max(1, round(seconds * fps / shot_frames))``.
    shot_frames: mean shot length in frames.
    shot_frames_jitter: shot lengths are uniform in ``shot_frames * [1-j, 1+j]``.
    num_characters: characters per shot (taken from the film's cast).
    cast_size: designs in the film's cast (0 = ``max(3, num_characters + 1)``).
    motion: motion scale: walking, turning, gestures, camera moves (0 = stills only).
    hold_prob: probability that a shot is animated on twos or threes (else on ones).
    still_prob: probability that a shot is a still (one drawing held for the whole shot).
    pan_prob: probability of a camera pan in a shot.
    occluder_prob: probability of a foreground prop (crate, post) that occludes characters.
    prop_prob: probability of a thrown ball (cel prop with line art) in a shot.
    zoom: largest relative zoom change over a shot (0 = no zooms; 0.3 = up to 30 %).
    zoom_prob: probability of a zoom in a shot (when ``zoom > 0``), and of a roll.
    rotation_deg: largest camera roll over a shot, degrees (0 = none).
    effects: effects amount in [0, 1]: probability of smoke/sparks in a shot and their density.
    close_up_prob: probability of a close-up shot (one character, large: head and torso fill it).
    medium_prob: probability of a medium shot (characters seen from the knees or waist up).
    line_px: outline width at 256 px frame height (scaled with the height; varies per stroke).
    thin_lines: draw every line 1 px wide at any size (clean artist line art at 1000-2000 px).
    """

    seed: int = 0
    size: int = 256
    aspect: float = 1.0
    fps: float = 24.0
    num_shots: int = 8
    seconds: float | None = None
    shot_frames: int = 48
    shot_frames_jitter: float = 0.0
    num_characters: int = 2
    cast_size: int = 0
    motion: float = 1.0
    hold_prob: float = 0.8
    still_prob: float = 0.3
    pan_prob: float = 0.2
    occluder_prob: float = 0.2
    prop_prob: float = 0.15
    zoom: float = 0.25
    zoom_prob: float = 0.15
    rotation_deg: float = 4.0
    effects: float = 0.3
    close_up_prob: float = 0.3
    medium_prob: float = 0.35
    line_px: float = 1.2
    thin_lines: bool = False

    def __post_init__(self) -> None:
        if self.seconds is not None:
            if self.seconds <= 0 or self.fps <= 0 or self.shot_frames < 2:
                raise ValueError(f"seconds, fps must be > 0 and shot_frames >= 2, got {self.seconds}")
            n = max(1, round(self.seconds * self.fps / self.shot_frames))
            object.__setattr__(self, "num_shots", n)
        if not 16 <= self.size <= 2160:
            raise ValueError(f"size must be in [16, 2160] px, got {self.size}")
        if self.num_shots < 1 or self.shot_frames < 2:
            raise ValueError(f"need num_shots >= 1 and shot_frames >= 2, got {self.num_shots}, {self.shot_frames}")
        if self.num_characters < 0 or self.motion < 0 or self.fps <= 0 or self.aspect <= 0:
            raise ValueError("num_characters, motion must be >= 0 and fps, aspect > 0")
        if not 0.0 <= self.shot_frames_jitter < 1.0:
            raise ValueError(f"shot_frames_jitter must be in [0, 1), got {self.shot_frames_jitter}")
        if self.zoom < 0 or self.rotation_deg < 0 or not 0 <= self.effects <= 1 or self.line_px <= 0:
            raise ValueError("zoom, rotation_deg >= 0, effects in [0, 1], line_px > 0 required")

    @property
    def height(self) -> int:
        return int(self.size)

    @property
    def width(self) -> int:
        return max(2, 2 * round(self.size * self.aspect / 2))

    @property
    def cast_count(self) -> int:
        return self.cast_size or max(3, self.num_characters + 1)


def rgb(h_deg: float, s: float, v: float) -> tuple[int, int, int]:
    """HSV (hue in degrees, s and v in [0,1], clipped) -> uint8 RGB tuple."""
    r, g, b = colorsys.hsv_to_rgb((h_deg % 360) / 360.0, min(max(s, 0), 1), min(max(v, 0), 1))
    return int(r * 255 + 0.5), int(g * 255 + 0.5), int(b * 255 + 0.5)


def shadow_of(c: tuple[int, int, int]) -> tuple[int, int, int]:
    """Cel shadow tone: darker, more saturated, hue pulled toward blue-violet."""
    h, s, v = colorsys.rgb_to_hsv(*(x / 255.0 for x in c))
    hd = h * 360.0
    hd += 0.2 * (((250.0 - hd + 180.0) % 360.0) - 180.0)
    return rgb(hd, min(1.0, s * 1.1 + 0.08), v * 0.7)


def highlight_of(c: tuple[int, int, int]) -> tuple[int, int, int]:
    """Cel highlight tone: lighter, less saturated, hue pulled toward yellow."""
    h, s, v = colorsys.rgb_to_hsv(*(x / 255.0 for x in c))
    hd = h * 360.0
    hd += 0.15 * (((55.0 - hd + 180.0) % 360.0) - 180.0)
    return rgb(hd, s * 0.6, min(1.0, v * 1.18 + 0.1))


def ellipse_poly(cx: float, cy: float, ax: float, ay: float, angle_rad: float = 0.0,
                 n: int = 28, a0: float = 0.0, a1: float = 2 * math.pi) -> list[tuple[float, float]]:
    """Points of an ellipse (or an arc from ``a0`` to ``a1``) as floats."""
    ca, sa = math.cos(angle_rad), math.sin(angle_rad)
    pts = []
    for k in range(n):
        t = a0 + (a1 - a0) * k / (n if a1 - a0 >= 2 * math.pi - 1e-9 else n - 1)
        x, y = ax * math.cos(t), ay * math.sin(t)
        pts.append((cx + ca * x - sa * y, cy + sa * x + ca * y))
    return pts
