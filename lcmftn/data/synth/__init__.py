"""Procedural cel-animation film generator v2 (issue 11); v1 stays in :mod:`lcmftn.data.synthetic`.

``FilmConfigV2`` (knobs), ``generate_film`` / ``write_film`` (H.264 + ``<video>.json`` truth, like
v1), ``iter_layers`` / ``composite`` / ``write_layers`` (background, cels RGBA, artist line art,
effects RGBA per frame, for ingest's cel layers).
"""

from lcmftn.data.synth.config import FilmConfigV2
from lcmftn.data.synth.film import (
    FrameLayers,
    composite,
    film_truth,
    generate_film,
    iter_layers,
    plan_shots,
    write_film,
    write_layers,
)

__all__ = ["FilmConfigV2", "FrameLayers", "composite", "film_truth", "generate_film", "iter_layers",
           "plan_shots", "write_film", "write_layers"]
