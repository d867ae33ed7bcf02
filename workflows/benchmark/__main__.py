"""Run a benchmark: ``python -m workflows.benchmark {model,ingest,scale-ingest,train,colorize,compare,data,attention,confidence,scale-train,scale,ceiling} [options]``.

Each sub-benchmark lives in its own module with ``main(argv) -> int``; ``model`` and the
single-process parts of ``train``/``colorize`` import no Ray, so they run on a bare GPU machine
with ``PYTHONPATH=. python -m workflows.benchmark model --device cuda``.
"""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = ("model", "ingest", "scale-ingest", "train", "colorize", "compare", "data", "attention",
              "confidence", "scale-train", "scale", "ceiling")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in BENCHMARKS:
        print(f"usage: python -m workflows.benchmark {{{','.join(BENCHMARKS)}}} [options]", file=sys.stderr)
        return 2
    module = importlib.import_module(f"workflows.benchmark.{argv[0].replace('-', '_')}")
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
