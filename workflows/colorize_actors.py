"""The colorize job's Ray actors (issue 8: Ray glue only; the per-shot work is
:func:`lcmftn.jobs.colorize_jobs`).

:class:`ShotPredictor` loads the checkpoint once and colours lists of shots in lockstep, reading
each shot's frames from the source and writing its files itself; :func:`iter_results` spreads
the pending shots over actors (one pump thread per actor's stream), replaces an actor lost with
its node (:func:`lcmftn.jobs.resubmit_on_loss`, a replacement avoiding that node) and yields one
small record per finished shot. ``--local`` runs the same actor class in-process.
"""

from __future__ import annotations

import os
import queue
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from lcmftn.episode import LineartSource
from lcmftn.jobs import LossBudget, RunSettings, colorize_jobs, resubmit_on_loss, split_jobs

ACTOR_DELAY_ENV = "LCMFTN_COLORIZE_ACTOR_SHOT_DELAY_S"  # test hook: an actor pauses after each shot
log = __import__("logging").getLogger("workflows.colorize")


class ShotPredictor:
    """Ray actor: loads the checkpoint once, colours lists of shots in lockstep and streams
    each finished shot back (``colorize`` is a generator method -> ObjectRefGenerator)."""

    def __init__(self, model_files: dict[str, bytes], settings: dict) -> None:
        import torch

        from lcmftn.checkpoint import load_checkpoint

        if settings.get("threads"):  # Ray actors: their CPU share; --local: the defaults
            torch.set_num_threads(max(1, int(settings["threads"])))
            from workflows.common import limit_threads

            limit_threads(int(settings["threads"]))  # OpenCV + video decoder too
        self.settings = dict(settings)
        with tempfile.TemporaryDirectory(prefix="lcmftn-model-") as tmp:
            for name, data in model_files.items():
                Path(tmp, name).write_bytes(data)
            self.system, _ = load_checkpoint(tmp, map_location="cpu")

    def node_id(self) -> str:
        """The Ray node this actor runs on (a replacement for a lost actor avoids that node)."""
        import ray

        return ray.get_runtime_context().get_node_id()

    def colorize(self, jobs: list[dict], src: LineartSource, out_uri: str, board=None,
                 on_frames=None) -> Iterator[dict]:
        """Read each shot's frames from ``src``, write them to ``out_uri``; yield small results.
        Progress hook: frames written are counted into ``board`` (a Ray actor handle of
        :class:`workflows.progress.ProgressBoard`) or passed to ``on_frames(n)`` (``--local``)."""
        delay_s = float(os.environ.get(ACTOR_DELAY_ENV, "0") or 0)  # test hook (node-loss window)
        counter = None
        if board is not None:
            import uuid

            from workflows.progress import FrameCounter, board_part

            counter = FrameCounter(board_part(board, uuid.uuid4().hex))
            on_frames = counter.add
        for res in colorize_jobs(self.system, jobs, self.settings, src, out_uri, on_frames):
            if counter is not None:
                counter.flush()  # the shot's frames are all counted when its record arrives
            yield res
            time.sleep(delay_s)


def resolve_device(rs: RunSettings) -> str:
    """``cpu`` or ``cuda``: where the model runs (``auto``: CUDA when this process, or with Ray
    the cluster, has a GPU). Asking for CUDA where there is none is an error, not a fallback."""
    if rs.local:
        import torch

        has_gpu = torch.cuda.is_available()
    else:
        import ray

        from workflows.common import ensure_ray

        ensure_ray()  # 1. attach to the cluster (or start a local one)
        has_gpu = ray.cluster_resources().get("GPU", 0) >= max(rs.gpus_per_actor, 1e-6)
    if rs.device == "cuda" and not has_gpu:
        raise ValueError("--device cuda: " + ("no CUDA device in this process" if rs.local else "the Ray cluster has no GPU"))
    return "cuda" if has_gpu and rs.device != "cpu" else "cpu"


def _is_worker_loss(err: BaseException) -> bool:
    """An actor or its node died (not an error raised by the shot code: that is a
    ``RayTaskError`` and is reported as it is)."""
    from ray import exceptions as rx

    return isinstance(err, (rx.RayActorError, rx.NodeDiedError, rx.WorkerCrashedError,
                            rx.LocalRayletDiedError, rx.ObjectLostError))


def _avoid_nodes(lost_nodes: set[str], cpus: float) -> dict:
    """Actor options: soft affinity to a live node with the CPUs that no actor was lost on
    (none when nothing was lost, or no such node: the scheduler decides)."""
    if not lost_nodes:
        return {}
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    ok = [n["NodeID"] for n in ray.nodes() if n.get("Alive") and n["NodeID"] not in lost_nodes
          and n.get("Resources", {}).get("CPU", 0) >= cpus]
    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(ok[0], soft=True)} if ok else {}


def iter_results(jobs: list[dict], settings: dict, model_files: dict[str, bytes], rs: RunSettings,
                  src: LineartSource, out_uri: str, budget: LossBudget,
                  progress=None) -> Iterator[dict]:
    """Results of all jobs, as they finish: in-process (``--local``) or over Ray actors. The
    workers read the frames from ``src`` and write them to ``out_uri`` themselves: only small
    per-shot records come back. An actor lost with its node is replaced (``budget``).
    ``progress``: :func:`frames_progress`'s bar (frames written)."""
    if rs.local:
        actor = ShotPredictor(model_files, settings)
        yield from actor.colorize(jobs, src, out_uri, on_frames=getattr(progress, "add", None))
        return
    import ray

    from workflows.common import ensure_ray

    ensure_ray()  # 1. attach to the cluster (or start a local one); a no-op after resolve_device
    cluster = ray.cluster_resources()
    gpus = (rs.gpus_per_actor or 1.0) if settings["device"] == "cuda" else 0.0
    cpus = rs.cpus_per_actor
    n = rs.actors or (int(cluster.get("GPU", 0) // gpus) if gpus else int(max(1, cluster.get("CPU", 1) // max(cpus, 1e-3))))
    groups = split_jobs(jobs, max(1, min(n, len(jobs))))
    actor_settings = dict(settings, threads=max(1, int(cpus)), finalize_threads=2 if gpus else 0)
    files_ref = ray.put(model_files)  # 2. the checkpoint travels once through the object store
    # metadata (a --from-color evaluation's frames travel here too); no frame index: each job
    # carries its shot's window of it (lcmftn.jobs.add_index_windows)
    src_ref = ray.put(src.without_index())
    Actor = ray.remote(num_cpus=cpus, num_gpus=gpus)(ShotPredictor)
    log.info("colouring %d shots on %d actor(s) (%.2g CPU, %.2g GPU each, batch %d)",
             len(jobs), len(groups), cpus, gpus, settings["batch_size"])
    results: queue.Queue = queue.Queue(maxsize=2 * len(groups))
    stop = threading.Event()
    actors: list = []  # every actor started (replacements too), killed at the end

    lost_nodes: set[str] = set()

    def stream(pending: list[dict]) -> Iterator[dict]:
        """One (new) actor colours ``pending``; killed once done, freeing its CPU/GPU for a
        replacement of a lost one. A replacement prefers a node no actor was lost on: until the
        GCS marks a dead node dead (seconds), the scheduler may still place actors there."""
        if stop.is_set():  # the driver gave up (an error, a crash hook): no replacement actors
            raise RuntimeError("colorize stopped: no replacement actor started")
        actor = Actor.options(**_avoid_nodes(lost_nodes, cpus)).remote(files_ref, actor_settings)
        actors.append(actor)
        node = None
        try:
            node = ray.get(actor.node_id.remote())
            for ref in actor.colorize.remote(pending, src_ref, out_uri, getattr(progress, "board", None)):
                yield dict(ray.get(ref), node_id=node)  # node_id: for the report, not the marker
        except Exception as err:
            if node and _is_worker_loss(err):
                lost_nodes.add(node)
            raise
        finally:  # done, or lost: an "unavailable" actor may still run; it must not hold a CPU
            ray.kill(actor)

    def pump(group) -> None:  # 3. one thread drains each group's stream of finished shots
        try:  # a lost actor (node loss): its unfinished shots go to a replacement actor
            for res in resubmit_on_loss(group, stream, _is_worker_loss, budget):
                if stop.is_set():
                    return
                results.put(res)
        except BaseException as err:  # noqa: BLE001 - handed to the driver thread
            results.put(err)
        finally:
            results.put(None)

    threads = [threading.Thread(target=pump, args=(g,), daemon=True) for g in groups]
    for t in threads:
        t.start()
    try:
        open_streams = len(threads)
        while open_streams:
            item = results.get()
            if item is None:
                open_streams -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        stop.set()
        for a in list(actors):
            ray.kill(a)
        while not results.empty():  # unblock pumps waiting on a full queue
            results.get_nowait()
