"""Starting or joining Ray the same way from the CLI, the driver script, tests and the DAG."""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)


def init_ray(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    object_store_memory: int | None = None,
    quiet: bool = False,
    progress: bool = True,
) -> None:
    """Join the cluster at ``address`` (or $RAY_ADDRESS); otherwise start an embedded local Ray.

    ``address="local"`` is passed explicitly for the embedded case so that a stray cluster left
    running on the machine is never joined by accident.
    """
    import ray
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = progress and not quiet
    ctx.print_on_execution_start = not quiet
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    kwargs: dict = {"address": address, "ignore_reinit_error": True, "log_to_driver": not quiet}
    if address == "local":
        kwargs.update(num_cpus=num_cpus, object_store_memory=object_store_memory, include_dashboard=False)
    if quiet:
        kwargs["logging_level"] = logging.WARNING
    logger.info("starting Ray (address=%s)", address)
    ray.init(**kwargs)
    ray.data.DataContext.get_current().enable_progress_bars = progress and not quiet
