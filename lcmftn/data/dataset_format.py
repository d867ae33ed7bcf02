"""The shot-dataset format, in ONE place: schema, PNG codecs, shard writer, manifest I/O.

Layout (written by ``workflows.ingest``, read by :mod:`lcmftn.data.dataset` / ``workflows.data``)::

    ROOT/manifest.json                                 the commit record (written last)
    ROOT/frames/<film>/<version>/part-00000.parquet    FRAME_SCHEMA rows, sorted by frame
    ROOT/_staging/<film>/<version>/...                 work in progress (never read)

Everything that writes a dataset (the ingest job, ``tests.helpers.datasets``, the training
benchmark) goes through :func:`frame_table`, :func:`write_shards` and :func:`write_manifest`;
a unit test (``tests/unit/test_dataset_format.py``) fails when another module writes Parquet
shards or the manifest by hand.

Pure: pyarrow + NumPy + OpenCV. Storage goes through a pyarrow ``FileSystem`` handed in by the
caller, or (``s3://`` manifests) :mod:`lcmftn.integrations.storage`, imported lazily; this
module imports no boto3 / Ray / MLflow.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from lcmftn.integrations.storage import retry_transient

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1  # format version; part of ``IngestConfig.content_hash``
FRAMES_DIR = "frames"
STAGING_DIR = "_staging"

FRAME_SCHEMA = pa.schema(
    [
        ("film", pa.string()),  # film id
        ("shot", pa.int32()),  # shot index in the film
        ("shot_id", pa.string()),  # "<film>/<shot:04d>"
        ("frame", pa.int32()),  # frame index in the film video
        ("color_png", pa.binary()),  # RGB PNG at the working size
        ("lineart_png", pa.binary()),  # grey PNG, black lines on white (255 = paper)
        ("hold", pa.bool_()),  # drawing unchanged from the previous frame of the shot
        ("height", pa.int32()),
        ("width", pa.int32()),
        # CRC-32 of the exact PNG bytes above, written by frame_table, verified on read
        # (verify_frames). Nullable: shards written before the column existed read as null
        # (= not verifiable), so old datasets still load and MANIFEST_VERSION is unchanged.
        ("color_crc32", pa.uint32()),
        ("lineart_crc32", pa.uint32()),
    ]
)
CHECKSUM_COLUMNS = {"color_png": "color_crc32", "lineart_png": "lineart_crc32"}


class CorruptFrameError(ValueError):
    """Frames whose PNG bytes fail their checksum or do not decode: deterministic (the bytes on
    storage are wrong), so jobs must not retry it; re-ingest the named film instead.

    ``frames``: ``[{"film", "shot", "frame", "column", "shard", "problem"}, ...]``."""

    def __init__(self, frames: list[dict]):
        self.frames = list(frames)
        head = "; ".join(frame_location(f) + f": {f['problem']}" for f in self.frames[:5])
        more = f" (+{len(self.frames) - 5} more)" if len(self.frames) > 5 else ""
        super().__init__(f"{len(self.frames)} corrupt frame(s) in the dataset: {head}{more}; "
                         "re-ingest the film(s) named (lcmftn.data.dataset_format)")

    def __reduce__(self):  # picklable across Ray processes with its frame list
        return (CorruptFrameError, (self.frames,))


def frame_location(f: dict) -> str:
    """``film F shot S frame N (column) in SHARD`` — how a corrupt frame is named."""
    where = f"film {f.get('film')} shot {f.get('shot')} frame {f.get('frame')}"
    if f.get("column"):
        where += f" ({f['column']})"
    return where + (f" in {f['shard']}" if f.get("shard") else "")


def png_crc32(data: bytes) -> int:
    """The checksum stored beside each PNG (zlib CRC-32, unsigned)."""
    return zlib.crc32(data) & 0xFFFFFFFF


SPLITS = ("train", "test")
"""Values of a manifest film entry's optional ``split`` (film-level split, DESIGN §6): set by
``ingest --split``; ``cast`` (optional list of str) names the film's characters, so a split can
be checked for shared casts (``lcmftn.harness.split_from_manifest``)."""


def tag_film_entry(entry: dict, split: str | None, cast: Sequence[str] | None, prev: dict | None = None) -> dict:
    """Set ``split`` / ``cast`` on a manifest film entry (``None`` keeps ``prev``'s); returns it.
    ``ValueError`` for a split other than :data:`SPLITS`."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    for key, value in (("split", split), ("cast", list(cast) if cast is not None else None)):
        if value is not None:
            entry[key] = value
        elif prev and key in prev:
            entry[key] = prev[key]
    return entry


def shot_id_for(film: str, shot: int) -> str:
    return f"{film}/{shot:04d}"


# ---------------------------------------------------------------------------------------------
# PNG codecs (the project's only cv2.imencode / cv2.imdecode of PNG bytes)
# ---------------------------------------------------------------------------------------------
# Ingest settings: Z_RLE + the "sub" filter is 2x faster than zlib's default strategy with
# adaptive filters at +10% size on flat-colour cels (measured: 1.6 vs 3.6 ms per 256x456
# frame); line art (mostly paper) is smallest AND fastest unfiltered.
PNG_FAST_COLOR = (cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE,
                  cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_SUB)  # fmt: skip
PNG_FAST_LINEART = (cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE,
                    cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE)  # fmt: skip


def encode_png(img: np.ndarray, params: Sequence[int] = ()) -> bytes:
    """uint8 RGB ``[H,W,3]``, RGBA ``[H,W,4]`` or grey ``[H,W]`` -> PNG bytes (OpenCV ``params``;
    none = its defaults)."""
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA if img.shape[2] == 4 else cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", img, list(params))
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def encode_color_png(rgb: np.ndarray, compression: int = 1) -> bytes:
    return encode_png(rgb, [cv2.IMWRITE_PNG_COMPRESSION, compression])


def encode_lineart_png(gray: np.ndarray, compression: int = 1) -> bytes:
    return encode_png(gray, [cv2.IMWRITE_PNG_COMPRESSION, compression])


def decode_color_png(data: bytes, where: dict | None = None) -> np.ndarray:
    """PNG bytes -> uint8 [H,W,3] RGB; an RGBA PNG (a cel layer's colour) is composited over white
    paper. ``where`` (``{"film", "shot", "frame", "shard"}``) names the frame in the error:
    ``CorruptFrameError`` when given, else ``ValueError``."""
    buf = np.frombuffer(data or b"", np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if img is not None and img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 4:
        a = img[..., 3:].astype(np.float32) * (1 / 255)
        bgr = img[..., :3].astype(np.float32) * a + 255.0 * (1 - a)
        return cv2.cvtColor(np.clip(bgr + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_BGR2RGB)
    if img is not None and not (img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3):
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR)  # grey / 16-bit PNGs: OpenCV's conversion
    if img is None:
        _undecodable("colour", "color_png", where)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def decode_lineart_png(data: bytes, where: dict | None = None) -> np.ndarray:
    """PNG bytes -> uint8 [H,W] (255 = paper); ``where`` as in :func:`decode_color_png`."""
    img = cv2.imdecode(np.frombuffer(data or b"", np.uint8), cv2.IMREAD_GRAYSCALE)
    if img is None:
        _undecodable("line-art", "lineart_png", where)
    return img


def _undecodable(kind: str, column: str, where: dict | None) -> None:
    if where is None:
        raise ValueError(f"undecodable {kind} PNG")
    raise CorruptFrameError([{**where, "column": column, "problem": f"undecodable {kind} PNG"}])


# ---------------------------------------------------------------------------------------------
# Shards
# ---------------------------------------------------------------------------------------------
def frame_table(film: str, shot_of: Sequence[int] | np.ndarray, color_pngs: Sequence[bytes],
                lineart_pngs: Sequence[bytes], holds: Sequence[bool] | np.ndarray,
                height: int, width: int, frames: Sequence[int] | np.ndarray | None = None) -> pa.Table:
    """One film's rows as a FRAME_SCHEMA table (``frames`` default: 0..n-1)."""
    n = len(color_pngs)
    shot_of = np.asarray(shot_of, dtype=np.int32)
    frame_idx = np.arange(n, dtype=np.int32) if frames is None else np.asarray(frames, dtype=np.int32)
    if not (len(shot_of) == len(lineart_pngs) == len(holds) == len(frame_idx) == n):
        raise ValueError(f"film {film}: column lengths differ")
    return pa.table(
        {
            "film": pa.array([film] * n, pa.string()),
            "shot": pa.array(shot_of, pa.int32()),
            "shot_id": pa.array([shot_id_for(film, int(k)) for k in shot_of], pa.string()),
            "frame": pa.array(frame_idx, pa.int32()),
            "color_png": pa.array(list(color_pngs), pa.binary()),
            "lineart_png": pa.array(list(lineart_pngs), pa.binary()),
            "hold": pa.array(np.asarray(holds, dtype=bool), pa.bool_()),
            "height": pa.array(np.full(n, height, np.int32), pa.int32()),
            "width": pa.array(np.full(n, width, np.int32), pa.int32()),
            "color_crc32": pa.array([png_crc32(b) for b in color_pngs], pa.uint32()),
            "lineart_crc32": pa.array([png_crc32(b) for b in lineart_pngs], pa.uint32()),
        },
        schema=FRAME_SCHEMA,
    )


def write_shards(table: pa.Table, fs: pafs.FileSystem, folder: str, rows_per_shard: int) -> list[str]:
    """Write ``table`` as ``part-%05d.parquet`` files under ``folder``; returns their names."""
    retry_transient(fs, fs.create_dir, folder, recursive=True)
    return [write_shard(table.slice(start, rows_per_shard), fs, folder, i)
            for i, start in enumerate(range(0, table.num_rows, rows_per_shard))]


def write_shard(rows: pa.Table, fs: pafs.FileSystem, folder: str, i: int) -> str:
    """Shard ``i`` (``part-%05d.parquet``) of a dataset folder; returns its name."""
    name = f"part-{i:05d}.parquet"
    # PNGs are already compressed: no Parquet compression on them (saves CPU, not bytes).
    retry_transient(fs, pq.write_table, rows, f"{folder}/{name}", filesystem=fs, compression="none",
                    row_group_size=64)  # one whole object: a retry rewrites it
    return name


def write_film_shards(rows: Iterator[tuple[bytes, bytes]], film: str, shot_of: np.ndarray,
                           holds: np.ndarray, height: int, width: int, fs: pafs.FileSystem, folder: str,
                           rows_per_shard: int) -> list[str]:
    """:func:`write_shards` of the film's :func:`frame_table`, built one shard at a time from
    ``rows`` (colour PNG, line-art PNG) in frame order (issue 8: the ingest tasks hold one shard
    plus what feeds ``rows``, not the film). Same files, byte for byte, as
    ``write_shards(frame_table(...))``. ``ValueError`` when ``rows`` holds another count."""
    n = len(shot_of)
    names: list[str] = []
    color: list[bytes] = []
    line: list[bytes] = []
    seen = 0

    def flush() -> None:
        a = len(names) * rows_per_shard
        b = a + len(color)
        part = frame_table(film, shot_of[a:b], color, line, holds[a:b], height, width,
                           frames=np.arange(a, b, dtype=np.int32))
        names.append(write_shard(part, fs, folder, len(names)))
        color.clear()
        line.clear()

    retry_transient(fs, fs.create_dir, folder, recursive=True)
    for c, la in rows:
        seen += 1
        if seen > n:
            break
        color.append(c)
        line.append(la)
        if len(color) == rows_per_shard:
            flush()
    if seen != n:
        raise ValueError(f"film {film}: {n} frames planned, the staged PNGs hold {'more' if seen > n else seen}")
    if color:
        flush()
    return names


def read_shard(path: str, fs: pafs.FileSystem, verify: bool = True) -> pa.Table:
    """One shard as a FRAME_SCHEMA table (``OSError`` naming it when unreadable); with
    ``verify``, ``CorruptFrameError`` naming every frame whose PNG fails its checksum."""
    try:
        table = pq.read_table(path, filesystem=fs, schema=FRAME_SCHEMA)
    except Exception as exc:
        raise OSError(f"cannot read dataset shard {path}: {exc}") from exc
    if verify:
        bad = verify_frames(table, path)
        if bad:
            raise CorruptFrameError(bad)
    return table


def verify_frames(rows, shard: str | None = None) -> list[dict]:
    """The frames of ``rows`` (a FRAME_SCHEMA ``pa.Table`` or a dict of columns, e.g. a Ray Data
    numpy batch; an optional ``path`` column names the shard) whose PNG bytes do not match their
    stored CRC-32. Null checksums (shards older than the column) are not verifiable and pass."""
    cols = rows.to_pydict() if isinstance(rows, pa.Table) else rows
    bad: list[dict] = []
    for png_col, crc_col in CHECKSUM_COLUMNS.items():
        if crc_col not in cols:
            continue
        for i, (data, crc) in enumerate(zip(cols[png_col], cols[crc_col], strict=True)):
            if crc is None or (isinstance(crc, float) and np.isnan(crc)):
                continue
            got = png_crc32(data or b"")
            if got != int(crc):
                bad.append({"film": str(cols["film"][i]), "shot": int(cols["shot"][i]),
                            "frame": int(cols["frame"][i]), "column": png_col,
                            "shard": str(cols["path"][i]) if "path" in cols else shard,
                            "problem": f"checksum mismatch (crc32 {got:08x}, stored {int(crc):08x})"})
    return bad


# ---------------------------------------------------------------------------------------------
# Manifest
# ---------------------------------------------------------------------------------------------
def resolve_root(uri: str, filesystem: pafs.FileSystem | None = None) -> tuple[pafs.FileSystem, str]:
    """``(pyarrow filesystem, root path in it)`` of a dataset URI (``s3://`` via storage)."""
    uri = str(uri)
    if filesystem is not None:
        return filesystem, uri.removeprefix("s3://").rstrip("/")
    if uri.startswith("s3://"):
        from lcmftn.integrations.storage import filesystem_for  # lazy; boto3 is not imported

        return filesystem_for(uri)
    return pafs.LocalFileSystem(), str(Path(uri).resolve())


def manifest_bytes(manifest: dict) -> bytes:
    """The manifest's serialised form (``manifest.json``)."""
    return json.dumps(manifest, indent=1).encode()


def parse_manifest(data: bytes, where: str) -> dict:
    """``manifest.json`` bytes -> dict; ``ValueError`` naming ``where`` when corrupt."""
    try:
        manifest = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"dataset manifest {where}: not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("films", {}), dict):
        raise ValueError(f"dataset manifest {where}: expected a JSON object with a 'films' object")
    return manifest


def read_manifest(uri: str, filesystem: pafs.FileSystem | None = None) -> dict | None:
    """The dataset's manifest, or None when there is none.

    A manifest that is not a JSON object raises ``ValueError`` naming the file (never read as
    "no manifest": that would silently fall back to reading every shard, uncommitted ones too)."""
    fs, root = resolve_root(uri, filesystem)
    path = f"{root}/{MANIFEST_NAME}"
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return None
    with fs.open_input_stream(path) as f:
        data = f.read()
    return parse_manifest(data, f"{str(uri).rstrip('/')}/{MANIFEST_NAME}")


def write_manifest(uri: str, manifest: dict) -> None:
    """Write ``ROOT/manifest.json`` atomically (local: tmp + fsync + rename; s3: one PUT) via
    ``lcmftn.integrations.storage.write_bytes_atomic``; errors are ``StorageError`` naming it."""
    from lcmftn.integrations import storage  # lazy: storage imports boto3 only for s3 calls

    storage.write_bytes_atomic(storage.join(uri, MANIFEST_NAME), manifest_bytes(manifest))


def committed_shards(manifest: dict) -> list[str]:
    """Shard paths (relative to the dataset root) of the films with status ``ok``."""
    out: list[str] = []
    for film_id in sorted(manifest.get("films", {})):
        film = manifest["films"][film_id]
        if film.get("status") == "ok":
            out += list(film.get("shards", []))
    return out


def write_film(root: str | Path, film: str, table: pa.Table, rows_per_shard: int = 0,
               version: str | None = None) -> tuple[list[str], list[str]]:
    """Write one film's shards straight (no staging) under a LOCAL ``root``: returns
    ``(shard paths relative to root, their sha256)``. For generated datasets (tests,
    benchmarks); ``rows_per_shard`` 0 = one shard; ``version`` = sub-folder (None: none)."""
    import hashlib

    fs, base = pafs.LocalFileSystem(), str(Path(root).resolve())
    rel_dir = f"{FRAMES_DIR}/{film}" + (f"/{version}" if version else "")
    names = write_shards(table, fs, f"{base}/{rel_dir}", rows_per_shard or max(table.num_rows, 1))
    rels = [f"{rel_dir}/{n}" for n in names]
    return rels, [hashlib.sha256(Path(base, r).read_bytes()).hexdigest() for r in rels]


# ---------------------------------------------------------------------------------------------
# Staging and commit (the driver moves a staged film into frames/, then writes the manifest)
# ---------------------------------------------------------------------------------------------
def delete_dir(fs: pafs.FileSystem, path: str) -> None:
    def delete() -> None:
        if fs.get_file_info(path).type != pafs.FileType.NotFound:
            fs.delete_dir(path)

    retry_transient(fs, delete)



def commit_film(fs: pafs.FileSystem, root: str, entry: dict) -> None:
    """Move a staged film into ``frames/`` (local: one rename; S3: copy + delete per shard)."""
    staged, final = entry.pop("staged"), entry["shards"]
    dst_dir = f"{root}/{final[0].rsplit('/', 1)[0]}"
    delete_dir(fs, dst_dir)  # an uncommitted leftover of a crash between commit and manifest
    if isinstance(fs, pafs.LocalFileSystem):
        fs.create_dir(dst_dir.rsplit("/", 1)[0], recursive=True)
        fs.move(f"{root}/{staged[0].rsplit('/', 1)[0]}", dst_dir)
        return
    for s, f in zip(staged, final, strict=True):
        fs.copy_file(f"{root}/{s}", f"{root}/{f}")
    for s in staged:
        fs.delete_file(f"{root}/{s}")



def collect_garbage(fs: pafs.FileSystem, root: str, manifest: dict, films: list[str]) -> None:
    """Delete staging leftovers and shard versions the manifest no longer lists (``films`` only)."""
    staging = f"{root}/{STAGING_DIR}"
    for film in films:
        delete_dir(fs, f"{root}/{STAGING_DIR}/{film}")
        entry = manifest["films"].get(film, {})
        if entry.get("status") != "ok":
            continue  # keep older versions of a film that failed now: no data lost
        sel = pafs.FileSelector(f"{root}/{FRAMES_DIR}/{film}", allow_not_found=True)
        for info in fs.get_file_info(sel):
            if info.type == pafs.FileType.Directory and info.base_name != entry["version"]:
                fs.delete_dir(info.path)
    sel = pafs.FileSelector(staging, recursive=True, allow_not_found=True)
    if not any(i.type == pafs.FileType.File for i in fs.get_file_info(sel)):
        delete_dir(fs, staging)  # no empty folder (or S3 folder marker) left behind

