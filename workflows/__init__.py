"""Ray jobs, one per file: ``python -m workflows.<ingest|train|tune|colorize|benchmark>``.

Each module is thin glue over ``lcmftn`` with ``main(argv: list[str] | None = None) -> int``.
Importing this package does not import Ray (the GPU machine has none; benchmarks must run there).
"""
