"""Ingest films into a shot dataset with Ray Data: films -> shots -> holds -> line art -> Parquet.

    python -m workflows.ingest --films films/*.mp4 --out datasets/v1 --size 256 --lineart xdog
    python -m workflows.ingest --films s3://studio/films/ --out s3://studio/datasets/v1
    ray job submit --working-dir . -- python -m workflows.ingest --films s3://... --out s3://...
    tiny CPU run: python -m lcmftn.cli synth /tmp/f.mp4 --seed 1 && \
                  python -m workflows.ingest --films /tmp/f.mp4 --out /tmp/ds --size 64

Dataset layout (read by ``lcmftn.data.dataset.load_frames`` / ``workflows.data``)::

    OUT/manifest.json                                 the commit record (written last)
    OUT/frames/<film>/<version>/part-00000.parquet    FRAME_SCHEMA rows, sorted by frame
    OUT/_staging/<film>/<version>/...                 work in progress (never read)

Design decisions:

* Work units on Ray Data (``ray.data.from_items(units, one block each).map(ingest_unit_row)``,
  1 CPU each). A film up to ``--segment-frames`` (default 4800) is ONE unit: decoded once,
  streaming, at the working size; every frame goes through line art, hold test and PNG encoding
  as it is decoded and also feeds the shot detector. A longer local film is planned first (one
  Ray task per film: checksum + keyframe probe by demuxing) and cut into segments starting at
  keyframes; each segment is a unit (decode from one frame before it: the context the shot
  features and the hold test need), and when all segments of a film are in, one assemble task
  replays the shot detector over the stitched features and writes the shards — byte-identical
  to the one-unit run (``lcmftn/ingest_segments.py`` documents the overlap per detector). Units
  run in parallel across the cluster; Ray retries a task whose worker died. Ray Data fits the
  units (independent rows, one block each); the per-film plan and assemble steps are plain Ray
  tasks because they are a barrier per film (a Ray Data groupby would wait for ALL films).
* ``<version>`` = ``<sha256[:12]>-<config hash[:8]>``: content-addressed, so a changed film or
  config never overwrites committed shards in place.
* Atomicity: a task writes its shards under ``_staging/``; the DRIVER then commits the film
  (local: one directory rename; S3: server-side copy + delete) and rewrites ``manifest.json``
  atomically (local temp file + rename; S3 single PUT). Readers only read shards the manifest
  lists for ``status == "ok"`` films, so a crash at any point leaves no half film visible: the
  next run clears stale staging and re-does unfinished films.
* Idempotence: a film whose manifest entry is ``ok`` with the same sha256 and config hash (and
  whose shards exist) is skipped; the checksum is always recomputed (a changed file re-ingests).
* Bad input (missing/empty/truncated/non-video file, unreadable S3 object): the film gets
  ``status: "failed"`` with a reason naming the file and the problem; other films go on; the
  summary line counts failures and the exit status is 1 when any film failed.
* S3 credentials/endpoint come only from the AWS_* variables of the DRIVER; the driver builds
  the pyarrow filesystem and hands it to the tasks (workers' env is fixed at raylet start).
"""


from __future__ import annotations

import argparse
import json
import logging
import pickle
import sys
import time
from dataclasses import asdict

import lcmftn
from lcmftn.data.dataset_format import (  # noqa: F401
    MANIFEST_VERSION,
    SPLITS,
    STAGING_DIR,
    collect_garbage,
    commit_film,
    tag_film_entry,
    write_manifest,
)
from lcmftn.data.lineart import LINEART_METHODS, LineArtConfig
from lcmftn.data.shots import DETECTORS
from lcmftn.ingest import (  # noqa: F401 - re-exported for callers of the job module
    IngestConfig,
    discover_films,
    film_id_for,
    read_manifest,
    stage_film,
    summarize,
)
from lcmftn.ingest_segments import DEFAULT_SEGMENT_FRAMES, assemble_film, plan_film, stage_segment
from lcmftn.integrations import lease, storage
from workflows import args as cli_args
from workflows.common import limit_threads

log = logging.getLogger("workflows.ingest")


def ingest_film_row(row: dict, out_root: str, fs_out, fs_in, cfg_dict: dict) -> dict:
    """Ray Data row mapper: ``{"film", "source", "prev"} -> {"film", "entry": manifest JSON}``."""
    import ray

    limit_threads()  # this task's CPUs, not every core of the node
    entry = stage_film(row, out_root, fs_out, fs_in, cfg_dict)
    entry.setdefault("node_id", ray.get_runtime_context().get_node_id())  # multinode hook: where it ran
    return {"film": row["film"], "entry": json.dumps(entry)}


def ingest_unit_row(row: dict, out_root: str, fs_out, fs_in, cfg_dict: dict) -> dict:
    """Ray Data row mapper over work units (``lcmftn.ingest_segments.plan_film``):
    ``{"film", "unit": pickle} -> {"film", "kind", "result": pickle}``; "whole" -> the manifest
    entry of ``stage_film``, "done" -> the planner's entry, "segment" -> ``stage_segment``."""
    import ray

    limit_threads()  # this task's CPUs, not every core of the node
    unit = pickle.loads(row["unit"])
    if unit["kind"] == "whole":
        result = stage_film(unit, out_root, fs_out, fs_in, cfg_dict)
        result.setdefault("node_id", ray.get_runtime_context().get_node_id())  # multinode hook: where it ran
    elif unit["kind"] == "done":
        result = unit["entry"]
    else:
        result = {**stage_segment(unit, out_root, fs_out, cfg_dict, fs_in), "unit": unit}
    return {"film": row["film"], "kind": unit["kind"], "result": pickle.dumps(result)}


def _plan_units(ray, items: list[dict], root: str, fs_out, cfg_dict: dict, segment_frames: int,
                max_retries: int, fs_in=None) -> list[dict]:  # fmt: skip
    """Every film's work units, planned in parallel (one Ray task per film: checksum + keyframe
    probe of the films longer than ``segment_frames``; ``s3://`` films too, through ``fs_in``)."""
    plan = ray.remote(num_cpus=1, max_retries=max_retries)(plan_film)
    plans = ray.get([plan.remote(it, root, fs_out, cfg_dict, segment_frames, fs_in) for it in items])
    return [{"film": u["film"], "unit": pickle.dumps(u)} for units in plans for u in units]


# ---------------------------------------------------------------------------------------------
# The job
# ---------------------------------------------------------------------------------------------
def run_ingest(films: list[str], out: str, cfg: IngestConfig, max_retries: int = 2,
               segment_frames: int = DEFAULT_SEGMENT_FRAMES, split: str | None = None,
               cast: list[str] | None = None) -> dict:  # fmt: skip
    """Ingest ``films`` (URIs/globs) into ``out``; returns the summary dict. A local film longer
    than ``segment_frames`` (local or ``s3://``) is split into segments processed in parallel (0 = never split).
    ``split`` / ``cast`` tag every film's manifest entry (``tag_film_entry``; None keeps earlier tags)."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"--split must be one of {SPLITS}, got {split!r}")
    import ray  # 1. Ray is glue only: imported here, the per-film work is plain Python

    from lcmftn.progress import Progress  # progress hook
    from workflows.common import ensure_ray, is_verbose, map_with_retries

    out = storage.normalize(out)
    storage.check_reachable(out)
    fs_out, root = storage.filesystem_for(out)
    found, unmatched = discover_films(films)
    s3_films = [s for s in found.values() if storage.is_s3(s)]
    fs_in = storage.filesystem_for(s3_films[0])[0] if s3_films else None
    manifest = read_manifest(out) or {"version": MANIFEST_VERSION, "films": {}}
    cfg_dict = asdict(cfg)
    manifest.update(version=MANIFEST_VERSION, lcmftn_version=lcmftn.__version__, config=cfg_dict,
                    config_hash=cfg.content_hash())  # fmt: skip
    items = [{"film": f, "source": s, "prev": json.dumps(manifest["films"][f]) if f in manifest["films"] else ""}
             for f, s in sorted(found.items())]  # fmt: skip
    t0 = time.perf_counter()
    done: dict[str, dict] = {}
    skipped: list[str] = []
    if items:
        ensure_ray()
        # 2. plan: a unit per short film, a unit per segment of a long one (split at keyframes)
        units = _plan_units(ray, items, root, fs_out, cfg_dict, segment_frames, max_retries, fs_in)
        n_units = {}
        for u in units:
            n_units[u["film"]] = n_units.get(u["film"], 0) + 1
        assemble = ray.remote(num_cpus=1, max_retries=max_retries)(assemble_film)
        segs: dict[str, list[dict]] = {}
        # 3. one block per unit so units spread over the cluster's CPUs
        ds = ray.data.from_items(units, override_num_blocks=len(units))
        # 4. a task per unit; Ray re-runs it when its worker dies (staging is cleared first)
        # NOTE: Ray Data's default is max_retries=-1 (forever): a film that always kills its
        # worker (e.g. out of memory) must end as "failed", not hang the job.
        ds = map_with_retries(ds, ingest_unit_row, max_retries, num_cpus=1,  # no deprecation warning
                              fn_kwargs={"out_root": root, "fs_out": fs_out, "fs_in": fs_in, "cfg_dict": cfg_dict})  # fmt: skip
        bar = Progress("ingest", len(items), "films", enabled=not is_verbose())  # progress hook
        try:
            for row in ds.iter_rows():  # 5. commit each film as it finishes, manifest last
                film, entry = row["film"], pickle.loads(row["result"])
                if row["kind"] == "segment":  # 6. all segments in: stitch shots, write shards
                    segs.setdefault(film, []).append(entry)
                    if len(segs[film]) < n_units[film]:
                        continue
                    entry = ray.get(assemble.remote(entry["unit"], [{k: v for k, v in r.items() if k != "unit"}
                                                                    for r in segs.pop(film)], root, fs_out, cfg_dict))  # fmt: skip
                if entry["status"] == "ok" and not entry.get("skipped"):
                    try:
                        commit_film(fs_out, root, entry)
                    except OSError as exc:
                        entry = {"source": entry["source"], "status": "failed", "sha256": entry["sha256"],
                                 "reason": f"{entry['source']}: commit to {out} failed: {exc}"}  # fmt: skip
                elif entry.pop("skipped", False):
                    skipped.append(film)
                prev = manifest["films"].get(film, {})
                tag_film_entry(entry, split, cast, prev)
                if entry["status"] != "ok" and (prev.get("status") == "ok" or "last_ok" in prev):
                    # keep what was committed before: shards stay on storage, restorable
                    entry["last_ok"] = prev if prev.get("status") == "ok" else prev["last_ok"]
                manifest["films"][film] = entry
                done[film] = entry
                write_manifest(out, manifest)
                log.info("film %s: %s", film, entry["status"] if entry["status"] == "ok" else entry["reason"])
                bar.update(1, frames=sum(int(e.get("frames", 0) or 0) for e in done.values()))  # progress hook
        except Exception as exc:  # the dataset itself failed (e.g. a task crashed repeatedly)
            for it in items:
                if it["film"] not in done:
                    entry = {"source": it["source"], "status": "failed", "sha256": None,
                             "reason": f"{it['source']}: ingest task failed ({type(exc).__name__}: {exc})"}  # fmt: skip
                    manifest["films"][it["film"]] = entry
                    done[it["film"]] = entry
            write_manifest(out, manifest)
        bar.close()  # progress hook
        collect_garbage(fs_out, root, manifest, list(done))
    write_manifest(out, manifest)
    return summarize(manifest, done, skipped, unmatched, out, time.perf_counter() - t0)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m workflows.ingest", description=__doc__.split("\n")[0])
    ap.add_argument("--films", nargs="+", required=True, metavar="URI",
                    help="video files, image folders, folders/prefixes of videos, globs; local or s3://")
    ap.add_argument("--out", required=True, metavar="URI", help="dataset root (local folder or s3://bucket/prefix)")
    ap.add_argument("--size", type=int, default=256, help="short side of the working frames, px")
    ap.add_argument("--crop", choices=("none", "center"), default="none")
    # NOTE: choices, so a typo is a usage error (exit 2) before Ray starts, not N failed films.
    ap.add_argument("--lineart", default="xdog", choices=sorted(LINEART_METHODS), help="line-art method")
    ap.add_argument("--detector", default="content", choices=sorted(DETECTORS),
                    help="shot detector (see lcmftn shots --help)")
    ap.add_argument("--threshold", type=float, default=None, help="shot detector threshold")
    ap.add_argument("--min-shot-frames", type=int, default=None)
    ap.add_argument("--rows-per-shard", type=int, default=512)
    ap.add_argument("--segment-frames", type=int, default=DEFAULT_SEGMENT_FRAMES,
                    help="split a local film longer than this into segments of about this many frames "
                         "(cut at keyframes) processed in parallel; 0 = one task per film")
    ap.add_argument("--max-retries", type=int, default=2, help="retries of a film task whose worker died")
    ap.add_argument("--split", choices=SPLITS, default=None,
                    help="tag these films train|test in the manifest (film-level split; default: keep)")
    ap.add_argument("--cast", default=None, help="comma-separated cast ids of these films (manifest tag)")
    cli_args.add_verbose(ap)
    return ap  # fmt: skip


def check_uris(films: list[str], out: str) -> None:
    """Usage check before anything starts: every ``s3://`` URI must name a bucket
    (``s3://`` and ``s3:///x`` do not). ValueError naming the option and the URI."""
    for opt, uri in [*(("--films", f) for f in films), ("--out", out)]:
        if storage.is_s3(uri):
            try:
                storage.split_s3(uri)
            except ValueError:
                raise ValueError(f"{opt} {uri!r}: s3 URI without a bucket "
                                 "(expected s3://BUCKET/PREFIX)") from None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_uris(args.films, args.out)
    except ValueError as exc:
        parser.error(str(exc))  # usage error: exit 2, before Ray starts
    from workflows.common import setup_logging

    setup_logging(args.verbose)
    cfg = IngestConfig(size_px=args.size, crop=args.crop, lineart=LineArtConfig(method=args.lineart),
                       detector=args.detector, threshold=args.threshold,
                       min_shot_frames=args.min_shot_frames, rows_per_shard=args.rows_per_shard)  # fmt: skip
    try:  # reliability hooks: some film matches, --out writable and ours (lcmftn.integrations.lease)
        if not discover_films(args.films)[0]:
            raise storage.StorageError(" ".join(args.films), "no film matches; nothing written")
        held = lease.guard_output(args.out, owner="ingest")
    except storage.StorageError as exc:
        print(f"ingest: {exc}", file=sys.stderr)
        return 2
    try:
        with held:
            summary = run_ingest(args.films, args.out, cfg, max_retries=args.max_retries,
                                 segment_frames=args.segment_frames, split=args.split,
                                 cast=[c.strip() for c in args.cast.split(",") if c.strip()] if args.cast else None)
    except storage.StorageError as exc:
        print(f"ingest: {exc}", file=sys.stderr)
        return 2
    for name, reason in summary["failures"].items():
        print(f"FAILED {name}: {reason}", file=sys.stderr)
    print(f"ingest: {summary['ok']} of {summary['films']} films ok ({summary['skipped']} already "
          f"done), {summary['failed']} failed; {summary['frames']} frames in {summary['seconds']} s "
          f"-> {summary['out']}", file=sys.stderr)  # fmt: skip
    print(json.dumps(summary))
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
