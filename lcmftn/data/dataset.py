"""Read an ingested shot dataset for training and evaluation (pure: pyarrow + NumPy + torch).

Dataset layout (format: :mod:`lcmftn.data.dataset_format`; written by ``workflows.ingest``)::

    OUT/manifest.json                      films (status, checksums, shots, shards), config
    OUT/frames/<film>/part-00000.parquet   one row per frame, FRAME_SCHEMA below

Design decisions:

* Readers see only COMMITTED films: those with ``status == "ok"`` in the manifest, through the
  shard list the manifest records. Shards of a half-ingested film may exist on storage but are
  never listed, so they are never read. A folder of shards without a manifest is read whole
  (handy for hand-made datasets).
* Frames stay PNG-encoded in memory and are decoded on access (``ShotClip.color(i)``): a
  256-px dataset is ~10x smaller as PNG than as pixels.
* Window pairs are sampled at load time from per-shot frame lists (``lcmftn.data.pairs``), so
  window width/stride are a training setting, not an ingest setting (DESIGN §2).
* Augmentation: the short side is resized to ``image_size_px`` (when it differs), then a square
  ``image_size_px`` crop (random when ``augment``, else centred) and a random horizontal flip;
  the SAME crop/flip is applied to all four images of a pair so they stay aligned.
* ``s3://`` URIs get their pyarrow filesystem from ``lcmftn.integrations.storage`` (env-based,
  imported lazily; no boto3 is imported by this module).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import torch

# The format itself (schema, codecs, manifest) lives in lcmftn.data.dataset_format; re-exported.
from lcmftn.data.dataset_format import (  # noqa: E402, F401
    FRAME_SCHEMA,
    FRAMES_DIR,
    MANIFEST_NAME,
    committed_shards,
    decode_color_png,
    decode_lineart_png,
    encode_color_png,
    encode_lineart_png,
    parse_manifest,
    read_manifest,
    read_shard,
    resolve_root,
    shot_id_for,
)


def color_to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """uint8 [H,W,3] -> float32 [3,H,W] in [0,1]."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div_(255.0)


def lineart_to_tensor(gray: np.ndarray) -> torch.Tensor:
    """uint8 [H,W] -> float32 [1,H,W] in [0,1] (1 = paper)."""
    return torch.from_numpy(np.ascontiguousarray(gray)).unsqueeze(0).float().div_(255.0)


def fit_and_crop(
    images: Sequence[np.ndarray], image_size_px: int, augment: bool, rng: np.random.Generator | None
) -> list[np.ndarray]:
    """Resize (short side -> ``image_size_px``), crop a square, maybe flip — identically for all.

    ``images`` share H and W (colour [H,W,3] and line art [H,W] may be mixed)."""
    h, w = images[0].shape[:2]
    for im in images:
        assert im.shape[:2] == (h, w), f"images of one sample differ in size: {im.shape[:2]} vs {(h, w)}"
    out = list(images)
    if min(h, w) != image_size_px:
        s = image_size_px / min(h, w)
        nw, nh = max(image_size_px, round(w * s)), max(image_size_px, round(h * s))
        interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
        out = [cv2.resize(im, (nw, nh), interpolation=interp) for im in out]
        h, w = nh, nw
    if augment:
        assert rng is not None, "augment=True needs an rng"
        y0 = int(rng.integers(0, h - image_size_px + 1))
        x0 = int(rng.integers(0, w - image_size_px + 1))
        flip = bool(rng.random() < 0.5)
    else:
        y0, x0, flip = (h - image_size_px) // 2, (w - image_size_px) // 2, False
    out = [im[y0 : y0 + image_size_px, x0 : x0 + image_size_px] for im in out]
    if flip:
        out = [im[:, ::-1] for im in out]
    return out


def pair_sample(
    s_p: np.ndarray, c_p: np.ndarray, s_n: np.ndarray, c_n: np.ndarray,
    image_size_px: int, augment: bool = False, rng: np.random.Generator | None = None,
) -> dict[str, torch.Tensor]:  # fmt: skip
    """Four aligned arrays -> ``{"s_p","c_p","s_n","c_n"}`` tensors (same crop/flip for all)."""
    s_p, c_p, s_n, c_n = fit_and_crop([s_p, c_p, s_n, c_n], image_size_px, augment, rng)
    return {
        "s_p": lineart_to_tensor(s_p),
        "c_p": color_to_tensor(c_p),
        "s_n": lineart_to_tensor(s_n),
        "c_n": color_to_tensor(c_n),
    }


# ---------------------------------------------------------------------------------------------
# Shots in memory
# ---------------------------------------------------------------------------------------------
@dataclass
class ShotClip:
    """One shot: its frames sorted by frame index, PNG-encoded, decoded on access."""

    film: str
    shot: int
    frames: np.ndarray  # int32 [T], frame indices in the film, increasing
    color_pngs: list[bytes]
    lineart_pngs: list[bytes]
    holds: np.ndarray  # bool [T]; holds[0] is False
    height: int
    width: int

    @property
    def shot_id(self) -> str:
        return shot_id_for(self.film, self.shot)

    def __len__(self) -> int:
        return len(self.frames)

    def color(self, i: int) -> np.ndarray:
        return decode_color_png(self.color_pngs[i], self._where(i))

    def lineart(self, i: int) -> np.ndarray:
        return decode_lineart_png(self.lineart_pngs[i], self._where(i))

    def _where(self, i: int) -> dict:  # multinode hook: decode errors name the frame
        return {"film": self.film, "shot": self.shot, "frame": int(self.frames[i])}

    def unchanged(self, i: int, j: int) -> bool:
        """True when positions i < j show the same drawing (every frame in (i, j] is a hold)."""
        i, j = min(i, j), max(i, j)
        return bool(j > i and self.holds[i + 1 : j + 1].all())


@dataclass
class ShotFrames(Sequence):
    """The shots of a dataset (sorted by ``shot_id``); index by position or by shot id."""

    shots: list[ShotClip]
    manifest: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.shots = sorted(self.shots, key=lambda s: (s.film, s.shot))
        self._by_id = {s.shot_id: s for s in self.shots}

    def __len__(self) -> int:
        return len(self.shots)

    def __getitem__(self, key):  # int | slice | shot_id
        if isinstance(key, str):
            return self._by_id[key]
        return self.shots[key]

    def __iter__(self) -> Iterator[ShotClip]:
        return iter(self.shots)

    @property
    def films(self) -> list[str]:
        return sorted({s.film for s in self.shots})

    @property
    def num_frames(self) -> int:
        return sum(len(s) for s in self.shots)


def shots_from_table(table: pa.Table) -> list[ShotClip]:
    """Group a frames table (FRAME_SCHEMA columns) into ShotClips, frames sorted per shot."""
    if table.num_rows == 0:
        return []
    table = table.sort_by([("film", "ascending"), ("shot", "ascending"), ("frame", "ascending")])
    cols = {n: table.column(n).to_pylist() for n in ("film", "shot", "frame", "hold", "height", "width")}
    color, line = table.column("color_png"), table.column("lineart_png")
    shots: list[ShotClip] = []
    start = 0
    n = table.num_rows
    for i in range(1, n + 1):
        if i == n or cols["film"][i] != cols["film"][start] or cols["shot"][i] != cols["shot"][start]:
            holds = np.asarray(cols["hold"][start:i], dtype=bool)
            holds[0] = False  # first frame of a shot is never a hold of the previous shot
            shots.append(
                ShotClip(
                    film=cols["film"][start], shot=int(cols["shot"][start]),
                    frames=np.asarray(cols["frame"][start:i], dtype=np.int32),
                    color_pngs=[color[k].as_py() for k in range(start, i)],
                    lineart_pngs=[line[k].as_py() for k in range(start, i)],
                    holds=holds, height=int(cols["height"][start]), width=int(cols["width"][start]),
                )  # fmt: skip
            )
            start = i
    return shots


# ---------------------------------------------------------------------------------------------
# Loading a dataset
# ---------------------------------------------------------------------------------------------
def shard_paths(uri: str, filesystem: pafs.FileSystem | None = None) -> tuple[pafs.FileSystem, list[str], dict]:
    """``(fs, absolute shard paths, manifest)`` for a dataset root (manifest-listed if any)."""
    fs, root = resolve_root(uri, filesystem)
    manifest = read_manifest(uri, filesystem)
    if manifest is not None:
        paths = [f"{root}/{rel}" for rel in committed_shards(manifest)]
    else:
        sel = pafs.FileSelector(f"{root}/{FRAMES_DIR}", recursive=True, allow_not_found=True)
        paths = sorted(i.path for i in fs.get_file_info(sel) if i.path.endswith(".parquet"))
        if not paths:
            raise FileNotFoundError(f"{uri}: no {MANIFEST_NAME} and no Parquet shards under {FRAMES_DIR}/")
        manifest = {}
    return fs, paths, manifest


def load_frames(
    uri: str, filesystem: pafs.FileSystem | None = None, films: Sequence[str] | None = None,
    shot_ids: Sequence[str] | None = None,
) -> ShotFrames:
    """Load a dataset's committed frames as shots (frames sorted), PNGs decoded lazily.

    ``films`` / ``shot_ids`` restrict to those films / shots (filtered shard by shard, so only
    the kept rows are ever held)."""
    fs, paths, manifest = shard_paths(uri, filesystem)
    tables = []
    for p in paths:
        try:  # checksums verified: CorruptFrameError names the bad frames
            t = read_shard(p, fs)
        except OSError as exc:
            raise OSError(f"{exc} (dataset {uri})") from exc
        if films is not None:
            t = t.filter(pc.is_in(t["film"], pa.array(list(films), pa.string())))
        if shot_ids is not None:
            t = t.filter(pc.is_in(t["shot_id"], pa.array(list(shot_ids), pa.string())))
        tables.append(t)
    table = pa.concat_tables(tables) if tables else FRAME_SCHEMA.empty_table()
    return ShotFrames(shots_from_table(table), manifest=manifest)


@dataclass
class ShotScan:
    """A dataset's shots without their images: metadata-only ``ShotClip`` s (no PNGs), the
    shards each shot's rows are in, and the bytes of those shards (what an in-memory load
    holds: the PNG columns are stored uncompressed)."""

    shots: ShotFrames
    shards_of: dict[str, tuple[str, ...]]
    shard_bytes: int
    fs: pafs.FileSystem
    manifest: dict


def scan_shots(uri: str, filesystem: pafs.FileSystem | None = None) -> ShotScan:
    """Read the small columns (film, shot, frame, hold) of every committed shard: enough to
    split shots and sample pairs exactly as :func:`load_frames` + :class:`WindowPairDataset`."""
    fs, paths, manifest = shard_paths(uri, filesystem)
    cols = ["film", "shot", "frame", "hold"]
    tables = []
    for k, path in enumerate(paths):
        try:
            t = pq.read_table(path, filesystem=fs, columns=cols)
        except Exception as exc:
            raise OSError(f"cannot read dataset shard {path} of {uri}: {exc}") from exc
        tables.append(t.append_column("shard", pa.array(np.full(t.num_rows, k, np.int32))))
    if not tables:
        return ShotScan(ShotFrames([]), {}, 0, fs, manifest)
    table = pa.concat_tables(tables).sort_by([(c, "ascending") for c in cols[:3]])
    keys = list(zip(table["film"].to_pylist(), table["shot"].to_pylist(), strict=True))
    holds = np.asarray(table["hold"].to_pylist(), dtype=bool)
    frames = np.asarray(table["frame"].to_pylist(), dtype=np.int32)
    shard = np.asarray(table["shard"].to_pylist(), dtype=np.int32)
    clips, shards_of, start = [], {}, 0
    for i in range(1, len(keys) + 1):  # same grouping as shots_from_table, no images
        if i == len(keys) or keys[i] != keys[start]:
            h = holds[start:i].copy()
            h[0] = False
            clip = ShotClip(keys[start][0], int(keys[start][1]), frames[start:i], [], [], h, 0, 0)
            clips.append(clip)
            shards_of[clip.shot_id] = tuple(paths[j] for j in sorted(set(shard[start:i].tolist())))
            start = i
    size = sum(info.size or 0 for info in fs.get_file_info(paths))
    return ShotScan(ShotFrames(clips), shards_of, size, fs, manifest)


def split_shots(shots: Sequence[ShotClip], val_fraction: float, seed: int = 0) -> tuple[ShotFrames, ShotFrames]:
    """Hold out whole shots for validation: ``(train, val)``; deterministic by seed.

    At least one shot goes to validation when ``val_fraction > 0`` and there are >= 2 shots."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    items = sorted(shots, key=lambda s: (s.film, s.shot))
    order = np.random.default_rng(seed).permutation(len(items))
    n_val = round(len(items) * val_fraction)
    if val_fraction > 0 and len(items) >= 2:
        n_val = min(max(n_val, 1), len(items) - 1)
    val_idx = set(order[:n_val].tolist())
    train = [s for i, s in enumerate(items) if i not in val_idx]
    val = [s for i, s in enumerate(items) if i in val_idx]
    return ShotFrames(train), ShotFrames(val)


# ---------------------------------------------------------------------------------------------
# Torch datasets
# ---------------------------------------------------------------------------------------------
def pair_item(shot: ShotClip, p: int, n: int, index: int, image_size_px: int, augment: bool,
              seed: int, epoch: int) -> dict[str, torch.Tensor]:
    """Pair ``index`` (its global index, :mod:`lcmftn.data.schedule`) of ``shot`` as tensors;
    the crop/flip is seeded by ``(seed, epoch, index)``, so every reader gives the same item."""
    rng = np.random.default_rng([seed, epoch, index]) if augment else None
    return pair_sample(shot.lineart(p), shot.color(p), shot.lineart(n), shot.color(n),
                       image_size_px, augment, rng)


class WindowPairDataset(torch.utils.data.Dataset):
    """Window pairs ``(S_p, C_p) -> (S_n, C_n)`` from every shot (paper §4.1).

    Items: ``{"s_p": [1,H,W], "c_p": [3,H,W], "s_n": [1,H,W], "c_n": [3,H,W]}`` float32 in [0,1],
    ``H = W = image_size_px``. Pairs come from :func:`lcmftn.data.pairs.sample_window_pairs` with
    the shot's hold flags (unchanged pairs are skipped when ``window.skip_unchanged``), indexed
    as :func:`lcmftn.data.schedule.build_pair_index` does (item ``i`` = global pair ``i``).
    Augmentation is deterministic in ``(seed, epoch, index)``; call :meth:`set_epoch` per epoch."""

    def __init__(self, shots: Sequence[ShotClip], window, image_size_px: int, augment: bool = True,
                 seed: int = 0, frames_per_block: int = 0):
        from lcmftn.data.schedule import DEFAULT_FRAMES_PER_BLOCK, build_pair_index

        self.shots = list(shots)
        self.window = window
        self.image_size_px = int(image_size_px)
        self.augment = augment
        self.seed = int(seed)
        self.epoch = 0
        self.pair_index = build_pair_index(self.shots, window,
                                           frames_per_block or DEFAULT_FRAMES_PER_BLOCK)
        # (shot position, p, n) per item
        self.index: list[tuple[int, int, int]] = [tuple(r) for r in self.pair_index.pairs.tolist()]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.index)

    def pair_info(self, i: int) -> dict:
        """Where item ``i`` comes from: shot id and the two frame indices in the film."""
        k, p, n = self.index[i]
        shot = self.shots[k]
        return {"shot_id": shot.shot_id, "frame_p": int(shot.frames[p]), "frame_n": int(shot.frames[n])}

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        k, p, n = self.index[i]
        return pair_item(self.shots[k], p, n, i, self.image_size_px, self.augment, self.seed,
                         self.epoch)


PAIR_KEYS = ("s_p", "c_p", "s_n", "c_n")


def read_block_pairs(shot_ids: Sequence[str], pairs: Sequence[Sequence[int]],
                     shard_paths_: Sequence[str], fs: pafs.FileSystem, image_size_px: int,
                     augment: bool, seed: int, epoch: int) -> dict[str, np.ndarray]:
    """One block of the streamed path: read the shards holding ``shot_ids`` (whole shots), keep
    those shots' rows and build ``pairs`` (rows ``(global index, shot id position, p, n)``), in
    order, exactly as :class:`WindowPairDataset` builds them.

    Returns numpy columns ``s_p, c_p, s_n, c_n`` (float32 ``[P,C,H,W]``) and ``index``."""
    wanted = pa.array(list(shot_ids), pa.string())
    tables = [t.filter(pc.is_in(t["shot_id"], wanted))
              for t in (read_shard(p, fs) for p in shard_paths_)]
    by_id = {s.shot_id: s for s in shots_from_table(pa.concat_tables(tables))}
    missing = [s for s in shot_ids if s not in by_id]
    if missing:
        raise OSError(f"shards {list(shard_paths_)}: no rows for shot(s) {missing}")
    out: dict[str, list] = {k: [] for k in PAIR_KEYS}
    for i, k, p, n in pairs:
        item = pair_item(by_id[shot_ids[k]], p, n, i, image_size_px, augment, seed, epoch)
        for key in PAIR_KEYS:
            out[key].append(item[key].numpy())
    cols = {k: np.stack(v) for k, v in out.items()}
    cols["index"] = np.asarray([r[0] for r in pairs], np.int64)
    return cols


@dataclass(frozen=True)
class EvalSequence:
    """A DESIGN §6 sequence: positions ``t0, t0+S, ..., t0+(num_frames-1)S`` in one shot."""

    shot_id: str
    stride: int
    positions: tuple[int, ...]  # positions within the shot
    frames: tuple[int, ...]  # frame indices in the film


def _eval_seed(seed: int, shot_id: str, stride: int) -> int:
    # zlib.crc32 (not hash()) so the choice is stable across processes and runs.
    return (seed * 1_000_003 + zlib.crc32(f"{shot_id}/{stride}".encode())) % (2**31)


def eval_sequences(
    shots: Sequence[ShotClip], strides: Sequence[int] = (1, 5, 10), num_frames: int = 5, seed: int = 0
) -> list[EvalSequence]:
    """The paper protocol's sequences (DESIGN §6): one seeded sequence per shot and stride,
    dropped when a target frame is unchanged from the reference or the shot is too short."""
    from lcmftn.data.pairs import sample_eval_sequences

    out: list[EvalSequence] = []
    for shot in shots:
        for stride in strides:
            pos = sample_eval_sequences(
                len(shot), stride, num_frames=num_frames, seed=_eval_seed(seed, shot.shot_id, stride),
                unchanged=shot.unchanged,
            )  # fmt: skip
            if pos is None:
                continue
            pos = tuple(int(p) for p in pos)
            out.append(EvalSequence(shot.shot_id, int(stride), pos, tuple(int(shot.frames[p]) for p in pos)))
    return out


class EvalSequenceDataset(torch.utils.data.Dataset):
    """Items: ``{"color": [T,3,H,W], "lineart": [T,1,H,W], "stride": int, "shot_id": str,
    "frames": LongTensor[T]}``; position 0 is the colour reference, 1..T-1 the targets.
    Centre crop (no augmentation), so results are comparable across systems."""

    def __init__(
        self, shots: Sequence[ShotClip], image_size_px: int, strides: Sequence[int] = (1, 5, 10),
        num_frames: int = 5, seed: int = 0,
    ):  # fmt: skip
        self.shots = ShotFrames(list(shots))
        self.image_size_px = int(image_size_px)
        self.sequences = eval_sequences(self.shots, strides, num_frames, seed)

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, i: int) -> dict:
        seq = self.sequences[i]
        shot = self.shots[seq.shot_id]
        imgs: list[np.ndarray] = []
        for p in seq.positions:
            imgs += [shot.color(p), shot.lineart(p)]
        imgs = fit_and_crop(imgs, self.image_size_px, augment=False, rng=None)
        return {
            "color": torch.stack([color_to_tensor(im) for im in imgs[0::2]]),
            "lineart": torch.stack([lineart_to_tensor(im) for im in imgs[1::2]]),
            "stride": seq.stride,
            "shot_id": seq.shot_id,
            "frames": torch.tensor(seq.frames, dtype=torch.long),
        }
