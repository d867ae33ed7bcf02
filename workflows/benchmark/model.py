"""Model benchmark: per-system latency/throughput and fused-vs-naive CMFT (time, peak memory).

    PYTHONPATH=. python -m workflows.benchmark model --quick                 # CPU, 64 and 128 px
    PYTHONPATH=. python -m workflows.benchmark.model --device cuda --bf16    # GPU, 256 px, paper size

Needs only torch, numpy and OpenCV (no Ray, MLflow, PyAV or pyarrow): it imports
``lcmftn.models`` only, so it runs on a bare GPU machine.

What it measures (printed as Markdown tables; ``--json PATH`` also writes the numbers):
1. For each system at each input size: per-frame latency at batch 1 and
   the best throughput over a list of batch sizes (frames/s), each the fastest of its repeats,
   ``torch.inference_mode``,
   optional bf16 autocast (``--bf16``, CUDA). The model size preset is ``--model-size``
   (default ``small`` on CPU, ``paper`` on CUDA).
2. CMFT fused (SDPA) vs naive (explicit N×M matrix) at 32², 64², 128² positions (N = M), with
   the channel counts of the preset's CMFT^2 (query/key = RU^1 + E_s^2 widths, value = E_c^2):
   time and peak memory, and their naive/fused ratios. Peak memory: on CUDA
   ``torch.cuda.max_memory_allocated`` above the inputs; on CPU each case runs in a fresh
   subprocess and reports the rise of the process's peak RSS over its RSS just
   before the call (inputs already allocated) — an OS-level measurement, since PyTorch keeps
   no CPU allocator statistics. (VmHWM of /proc/self/status, reset via clear_refs; glibc's
   mmap threshold is fixed so freed tensors leave the RSS.) The size of the naive N×M matrix is printed for reference.
3. CMFT^3 at 256² (65536 positions) fused, with the preset's CMFT^3 channels; the naive
   version is only estimated (two N×M matrices: logits and softmax).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from lcmftn.models import registry
from lcmftn.models.cmft import cmft, cmft_naive


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda}, torch {torch.__version__})"
    model = platform.processor() or "cpu"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"CPU {model}, {torch.get_num_threads()} torch threads, {os.cpu_count()} visible cores (torch {torch.__version__})"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# "wall" = time.perf_counter; "cpu" = process CPU time with one torch thread (see --timer).
TIMER: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = TIMER["wall"]


def time_call(fn: Callable[[], Any], device: torch.device, warmup: int, repeats: int) -> float:
    """Fastest of ``repeats`` calls, in seconds. NOTE: the minimum, not the median: on shared
    CPUs other processes only ever add time, so the minimum is the least-disturbed estimate."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = _clock()
        fn()
        _sync(device)
        times.append(_clock() - t0)
    return min(times)


def _autocast(device: torch.device, bf16: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)


# ----------------------------------------------------------------------------- systems


def bench_systems(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    rows = []
    for system in args.systems:
        G = registry.build_generator(system, args.model_size).to(device).eval()
        params = registry.count_parameters(G)
        for size in args.sizes:
            def run(B: int, G=G, size=size) -> None:
                s = torch.rand(B, 1, size, size, device=device)
                c = torch.rand(B, 3, size, size, device=device)
                with torch.inference_mode(), _autocast(device, args.bf16):
                    G(s, c, s)

            try:
                latency = time_call(lambda run=run: run(1), device, args.warmup, args.repeats)
            except torch.cuda.OutOfMemoryError:
                rows.append({"system": system, "size_px": size, "params": params, "error": "OOM at batch 1"})
                continue
            best = (1, 1.0 / latency)
            for B in args.batches:
                if B == 1:
                    continue
                try:
                    t = time_call(lambda run=run, B=B: run(B), device, 1, max(1, args.repeats // 2))
                except torch.cuda.OutOfMemoryError:
                    torch.cuda.empty_cache()
                    break
                if B / t > best[1]:
                    best = (B, B / t)
                if t > args.max_call_s:  # larger batches would only take longer
                    break
            row = {"system": system, "size_px": size, "params": params, "latency_ms": 1000 * latency,
                   "best_batch": best[0], "throughput_fps": best[1]}
            rows.append(row)
            print(f"  {system:14s} {size:4d}px  {row['latency_ms']:9.1f} ms/frame  "
                  f"{row['throughput_fps']:8.1f} frames/s (batch {best[0]})", flush=True)
        del G
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


# ----------------------------------------------------------------------------- CMFT


def cmft_channels(model_size: str, level: int) -> tuple[int, int]:
    """(query/key channels, value channels) of LCMFTN's CMFT^level (2 or 3) at ``model_size``."""
    cfg = registry.generator_config("lcmftn", model_size)
    c3, c2, _, _ = cfg.enc_channels
    if level == 2:
        return c2 + cfg.sketch_channels[1], c2  # ca(RU^1 (c2), E_s^2), value E_c^2
    return c3 + cfg.sketch_channels[0], c3


def _proc_status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # kB
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak_rss() -> None:
    """Linux >= 4.0: writing 5 to clear_refs resets VmHWM to the current RSS."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass  # fresh process anyway: VmHWM then also covers start-up, a (small) overestimate


def _cmft_case(impl: str, side: int, c: int, cv: int, dtype: torch.dtype, device: torch.device,
               warmup: int, repeats: int) -> dict[str, float]:
    """Time and peak memory of one CMFT call with N = M = side² positions, batch 1."""
    g = torch.Generator(device="cpu").manual_seed(0)
    q, k = (torch.randn(1, c, side, side, generator=g).to(device, dtype) * c**-0.5 for _ in range(2))
    v = torch.randn(1, cv, side, side, generator=g).to(device, dtype)
    fn = {"fused": cmft, "naive": cmft_naive}[impl]
    with torch.inference_mode():
        # Lazy set-up (thread pools, cuBLAS workspaces, kernel caches) must not count as the op's memory.
        fn(*(t[..., :8, :8].contiguous() for t in (q, k, v)))
        if device.type == "cuda":
            _sync(device)
            base = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
            fn(q, k, v)
            _sync(device)
            peak = torch.cuda.max_memory_allocated(device) - base
        else:
            # NOTE: not ru_maxrss: Linux carries it over fork+exec from the parent's RSS.
            _reset_peak_rss()
            before = _proc_status_bytes("VmRSS")
            fn(q, k, v)
            peak = max(0, _proc_status_bytes("VmHWM") - before)
        seconds = time_call(lambda: fn(q, k, v), device, warmup, repeats)
    return {"seconds": seconds, "peak_bytes": float(peak)}


def _cmft_case_subprocess(impl: str, side: int, c: int, cv: int, dtype: str, warmup: int,
                          repeats: int, threads: int) -> dict[str, float]:
    """CPU: run one case in a fresh interpreter so its peak RSS is that case's own."""
    cmd = [sys.executable, "-m", "workflows.benchmark.model", "--_cmft-case",
           json.dumps([impl, side, c, cv, dtype, warmup, repeats, threads]),
           "--timer", "cpu" if _clock is TIMER["cpu"] else "wall"]
    # NOTE: a fixed mmap threshold makes glibc return every large tensor to the OS when freed,
    # so RSS follows the live allocations instead of the malloc arena's high-water mark.
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "MALLOC_MMAP_THRESHOLD_": "131072"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        return {"seconds": float("nan"), "peak_bytes": float("nan"), "error": out.stderr.strip()[-300:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_cmft(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    dname = "bfloat16" if args.bf16 else "float32"
    elem = 2 if args.bf16 else 4
    c, cv = cmft_channels(args.model_size, 2)
    rows = []
    for side in args.cmft_sides:
        n = side * side
        row: dict[str, Any] = {"positions": f"{side}x{side}", "N": n, "channels_qk": c, "channels_v": cv,
                               "naive_matrix_bytes": float(n * n * elem)}
        for impl in ("fused", "naive"):
            if device.type == "cuda":
                res = _cmft_case(impl, side, c, cv, dtype, device, args.warmup, args.repeats)
            else:
                res = _cmft_case_subprocess(impl, side, c, cv, dname, args.warmup, args.repeats,
                                            torch.get_num_threads())
            row[impl] = res
        row["time_ratio_naive_over_fused"] = row["naive"]["seconds"] / row["fused"]["seconds"]
        fused_mem = max(row["fused"]["peak_bytes"], 1.0)
        row["memory_ratio_naive_over_fused"] = row["naive"]["peak_bytes"] / fused_mem
        rows.append(row)
        print(f"  CMFT {side}x{side}: fused {1000 * row['fused']['seconds']:.2f} ms "
              f"{row['fused']['peak_bytes'] / 2**20:.1f} MiB | naive {1000 * row['naive']['seconds']:.2f} ms "
              f"{row['naive']['peak_bytes'] / 2**20:.1f} MiB", flush=True)
    result: dict[str, Any] = {"dtype": dname, "cases": rows}
    if not args.skip_cmft3:
        c3, cv3 = cmft_channels(args.model_size, 3)
        side = 256
        if device.type == "cuda":
            res = _cmft_case("fused", side, c3, cv3, dtype, device, 1, max(1, args.repeats // 2))
        else:
            res = _cmft_case_subprocess("fused", side, c3, cv3, dname, 0, 1, torch.get_num_threads())
        n = side * side
        result["cmft3_256"] = {"channels_qk": c3, "channels_v": cv3, "fused": res,
                               "naive_estimated_bytes": float(2 * n * n * elem)}
        print(f"  CMFT^3 256x256 fused: {res['seconds']:.3f} s, {res['peak_bytes'] / 2**20:.1f} MiB "
              f"(naive would need ~{2 * n * n * elem / 2**30:.0f} GiB)", flush=True)
    return result


# ----------------------------------------------------------------------------- report


def _mib(b: float) -> str:
    return f"{b / 2**20:.1f}"


def format_report(res: dict[str, Any]) -> str:
    lines = [f"Device: {res['device']}; model size `{res['model_size']}`; "
             f"{'bf16 autocast' if res['bf16'] else 'fp32'}; timer {res['timer']}; load average at start "
             f"{res['load_average_1min']:.1f}; command: `{res['command']}`", "",
             "| system | params | size | latency (ms/frame, batch 1) | best throughput (frames/s) | at batch |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in res["systems"]:
        if "error" in r:
            lines.append(f"| {r['system']} | {r['params']:,} | {r['size_px']} | {r['error']} | | |")
        else:
            lines.append(f"| {r['system']} | {r['params']:,} | {r['size_px']} | {r['latency_ms']:.1f} | "
                         f"{r['throughput_fps']:.1f} | {r['best_batch']} |")
    cm = res.get("cmft")
    if cm:
        lines += ["", f"CMFT fused (SDPA) vs naive (explicit matrix), batch 1, {cm['dtype']}, "
                  f"N = M positions:", "",
                  "| positions | C (q/k) | Cv | fused ms | naive ms | time naive/fused | fused peak MiB | "
                  "naive peak MiB | memory naive/fused | N×M matrix MiB |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in cm["cases"]:
            lines.append(
                f"| {r['positions']} | {r['channels_qk']} | {r['channels_v']} | {1000 * r['fused']['seconds']:.2f} | "
                f"{1000 * r['naive']['seconds']:.2f} | {r['time_ratio_naive_over_fused']:.2f}x | "
                f"{_mib(r['fused']['peak_bytes'])} | {_mib(r['naive']['peak_bytes'])} | "
                f"{r['memory_ratio_naive_over_fused']:.1f}x | {_mib(r['naive_matrix_bytes'])} |")
        if "cmft3_256" in cm:
            c3 = cm["cmft3_256"]
            lines += ["", f"CMFT^3 at 256x256 (65536 positions, C={c3['channels_qk']}, Cv={c3['channels_v']}) fused: "
                      f"{c3['fused']['seconds']:.3f} s, peak {_mib(c3['fused']['peak_bytes'])} MiB; naive would "
                      f"allocate ~{c3['naive_estimated_bytes'] / 2**30:.0f} GiB (logits + softmax)."]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m workflows.benchmark model", description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto", help="cpu | cuda | auto (cuda when available)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (systems) and bf16 CMFT inputs")
    p.add_argument("--sizes", default=None, help="input sizes in px, comma-separated (CPU 64,128; CUDA 256)")
    p.add_argument("--model-size", default=None, choices=registry.SIZES, help="preset (CPU small, CUDA paper)")
    p.add_argument("--systems", default=",".join(registry.SYSTEMS))
    p.add_argument("--batches", default=None, help="throughput batch sizes (CPU 1,4,8,16; CUDA 1,8,32,64,128)")
    p.add_argument("--cmft-sides", default="32,64,128", help="CMFT benchmark sides: N = side² positions")
    p.add_argument("--skip-cmft", action="store_true")
    p.add_argument("--skip-cmft3", action="store_true")
    p.add_argument("--quick", action="store_true", help="fewer repeats and batch sizes")
    p.add_argument("--max-call-s", type=float, default=None, help="stop growing the batch past this")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--timer", choices=tuple(TIMER), default="wall",
                   help="wall clock, or (CPU only) process CPU time with 1 torch thread: the "
                        "figure to use on a shared, oversubscribed machine")
    p.add_argument("--_cmft-case", dest="cmft_case", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(raw)
    global _clock
    _clock = TIMER[args.timer]
    if args.timer == "cpu":
        torch.set_num_threads(1)  # CPU time of one thread ~ its uncontended wall time
    if args.cmft_case:  # child process of a CPU CMFT case
        impl, side, c, cv, dtype, warmup, repeats, threads = json.loads(args.cmft_case)
        torch.set_num_threads(threads)
        res = _cmft_case(impl, side, c, cv, getattr(torch, dtype), torch.device("cpu"), warmup, repeats)
        print(json.dumps(res))
        return 0
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    if args.timer == "cpu" and device.type != "cpu":
        print("--timer cpu measures CPU time; use it with --device cpu", file=sys.stderr)
        return 2
    if device.type == "cuda" and not torch.cuda.is_available():
        print("--device cuda: CUDA is not available on this machine", file=sys.stderr)
        return 2
    gpu = device.type == "cuda"
    args.model_size = args.model_size or ("paper" if gpu else "small")
    args.sizes = [int(s) for s in (args.sizes or ("256" if gpu else "64,128")).split(",")]
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    for s in args.systems:
        if s not in registry.SYSTEMS:
            print(f"unknown system {s!r}; choose from {', '.join(registry.SYSTEMS)}", file=sys.stderr)
            return 2
    default_batches = ("1,8,32,64,128" if gpu else "1,4,8,16") if not args.quick else ("1,16,64" if gpu else "1,4,8")
    args.batches = [int(b) for b in (args.batches or default_batches).split(",")]
    args.cmft_sides = [int(s) for s in args.cmft_sides.split(",")]
    args.warmup, args.repeats = (1, 3) if args.quick else (3, 10)
    args.max_call_s = args.max_call_s if args.max_call_s is not None else (2.0 if args.quick else 10.0)
    torch.manual_seed(0)
    res: dict[str, Any] = {"device": device_name(device), "model_size": args.model_size, "bf16": args.bf16,
                           "timer": args.timer,
                           "load_average_1min": os.getloadavg()[0],
                           "command": "python -m workflows.benchmark model " + " ".join(raw)}
    print(f"# model benchmark on {res['device']}", flush=True)
    res["systems"] = bench_systems(args, device)
    if not args.skip_cmft:
        res["cmft"] = bench_cmft(args, device)
    print()
    print(format_report(res))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
