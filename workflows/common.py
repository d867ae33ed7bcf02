"""Small glue shared by the Ray jobs: connecting to Ray, logging set-up."""

from __future__ import annotations

import logging
import os


def ensure_ray(address: str | None = None) -> None:
    """Connect to Ray once: the running cluster (``RAY_ADDRESS`` / ``ray start``) if there is one,
    else a local instance. A no-op when the caller (a test, a parent job) already did ``ray.init``."""
    import ray  # NOTE: imported lazily so `import workflows` works on machines without Ray.

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    address = address or os.environ.get("RAY_ADDRESS")
    ray.init(address=address, configure_logging=False)
    if not address:  # reliability hook: a local instance ends with this driver, even on SIGKILL
        from lcmftn.integrations import ray_watchdog

        ray_watchdog.start()


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
