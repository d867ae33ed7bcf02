"""Ingest throughput: frames/s of the whole ingest per CPU core vs decode-only frames/s.

    python -m workflows.benchmark ingest                       # 256 px, 2 films, local + SeaweedFS
    python -m workflows.benchmark ingest --frames 96 --size 64 --no-s3   # tiny CPU run

What is measured, on the same generated film (lcmftn.data.synthetic, H.264):

* decode-only: ``lcmftn.data.video.iter_frames(film, size_px)`` in this process (decode +
  resize to the working size, nothing else) -> frames per wall second and per CPU second.
* ingest per core: each Ray task ingests one film on 1 CPU (checksum, decode, line art, holds,
  shots, PNG encoding, Parquet write to the target); frames / task CPU seconds is the per-core
  rate (CPU time, like decode-only, so other load on shared cores does not distort the ratio).
  The job-level figure, frames / (job wall seconds x CPUs), also pays Ray start-up, scheduling
  and the driver's commit/manifest work.
* ratio = ingest per-core rate / decode-only rate (per CPU second). Goal: >= 0.5.
Targets: a local folder and (unless ``--no-s3``) SeaweedFS on 127.0.0.1 (films read from and
dataset written to S3). Results print as JSON (and go to ``--json PATH``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path


def decode_only(path: Path, size_px: int, repeats: int) -> dict:
    from lcmftn.data.video import iter_frames

    best = None
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        n = sum(1 for _ in iter_frames(path, size_px=size_px))
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        if best is None or wall < best["wall_s"]:
            best = {"frames": n, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
                    "fps_wall": round(n / wall, 1), "fps_per_cpu_s": round(n / cpu, 1)}  # fmt: skip
    return best


def ingest_run(films: list[str], out: str, size_px: int, cpus: int) -> dict:
    from workflows import ingest

    t0 = time.perf_counter()
    summary = ingest.run_ingest(films, out, ingest.IngestConfig(size_px=size_px))
    wall = time.perf_counter() - t0
    if summary["failed"]:
        raise RuntimeError(f"benchmark ingest failed: {summary['failures']}")
    manifest = ingest.read_manifest(out)
    entries = [manifest["films"][ingest.film_id_for(f)] for f in films]
    frames = sum(e["frames"] for e in entries)
    task_s = sum(e["seconds"] for e in entries)
    cpu_s = sum(e["cpu_seconds"] for e in entries)
    return {
        "films": len(films), "frames": frames, "job_wall_s": round(wall, 2),
        "task_wall_s": round(task_s, 2), "task_cpu_s": round(cpu_s, 2),
        "fps_per_core_task": round(frames / cpu_s, 1),
        "fps_per_task_wall_s": round(frames / task_s, 1),
        "fps_per_core_job": round(frames / (wall * cpus), 1),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m workflows.benchmark ingest", description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=256, help="working size (short side), px")
    ap.add_argument("--film-size", type=int, default=None, help="height of the generated film (default --size)")
    ap.add_argument("--aspect", type=float, default=16 / 9)
    ap.add_argument("--frames", type=int, default=240, help="frames per film")
    ap.add_argument("--films", type=int, default=2, help="copies of the film ingested in parallel")
    ap.add_argument("--cpus", type=int, default=2, help="CPUs given to the local Ray instance")
    ap.add_argument("--no-s3", action="store_true", help="skip the SeaweedFS target")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)

    import ray

    from lcmftn.data.synthetic import FilmConfig, write_film
    from lcmftn.integrations import storage

    work = Path(tempfile.mkdtemp(prefix="bi", dir="/tmp"))
    results: dict = {"config": vars(args)}
    s3 = None
    try:
        shots = max(1, args.frames // 48)
        cfg = FilmConfig(seed=0, size=args.film_size or args.size, aspect=args.aspect, num_shots=shots,
                         shot_frames=max(2, args.frames // shots))  # fmt: skip
        film = work / "films" / "film0.mp4"
        truth = write_film(film, cfg)
        for i in range(1, args.films):
            shutil.copyfile(film, work / "films" / f"film{i}.mp4")
        results["film"] = {"frames": truth["frames"], "width": truth["width"], "height": truth["height"],
                           "bytes": film.stat().st_size}  # fmt: skip
        results["decode_only"] = decode_only(film, args.size, repeats=2)
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, configure_logging=False,
                 _temp_dir=str(work / "ray"))  # fmt: skip
        films = sorted(str(p) for p in (work / "films").glob("*.mp4"))
        ingest_run(films[:1], str(work / "warmup"), args.size, args.cpus)  # workers + imports warm
        results["local"] = ingest_run(films, str(work / "ds"), args.size, args.cpus)
        if not args.no_s3:
            from infra.local.seaweedfs import LocalS3

            s3 = LocalS3(work / "s3", bucket="bench").start()
            os.environ.update(s3.env())
            s3_films = []
            for f in films:
                storage.upload(f, s3.uri("films", Path(f).name))
                s3_films.append(s3.uri("films", Path(f).name))
            results["s3"] = ingest_run(s3_films, s3.uri("ds"), args.size, args.cpus)
        dec = results["decode_only"]["fps_per_cpu_s"]
        for target in ("local", "s3"):
            if target in results:
                r = results[target]
                r["ratio_task_vs_decode"] = round(r["fps_per_core_task"] / dec, 3)
                r["ratio_job_vs_decode"] = round(r["fps_per_core_job"] / dec, 3)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        if s3 is not None:
            s3.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0
