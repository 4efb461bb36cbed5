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
    running on the machine is never joined by accident. Workers import the driver's ``thresher``
    (local Ray) or their node's (a cluster), never a ``thresher/`` in the driver's working
    directory: see :func:`_import_thresher_from`.
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
        # Ray starts its workers at nice 15 (its ``worker_niceness``) so that they never slow its
        # own daemons; on a machine shared with anything else, that starves the run: on 2 cores
        # with other work running, the embedded Ray did less than one --local process (issue #22).
        # The run's workers are this user's foreground work, at the driver's priority.
        kwargs["_system_config"] = {"worker_niceness": 0}
        kwargs["runtime_env"] = {"worker_process_setup_hook": _import_thresher_from(_package_parent())}
    elif not address.startswith("ray://") and not _job_sets_setup_hook():
        # A cluster's workers run the code installed on (or shipped to, ``--working-dir``) their
        # node; only the driver's working directory must not override it. (A ``ray://`` client
        # does not put its working directory on the workers' path.)
        kwargs["runtime_env"] = {"worker_process_setup_hook": _import_thresher_from(None)}
    if quiet:
        kwargs["logging_level"] = logging.WARNING
    logger.info("starting Ray (address=%s)", address)
    ray.init(**kwargs)
    ray.data.DataContext.get_current().enable_progress_bars = progress and not quiet


def _package_parent() -> str:
    """The folder the driver's ``thresher`` package was imported from."""
    import thresher

    return os.path.dirname(os.path.dirname(os.path.abspath(thresher.__file__)))


def _job_sets_setup_hook() -> bool:
    """True inside a submitted job whose runtime env has its own worker setup hook (Ray refuses
    to merge two)."""
    import json

    from ray._private.runtime_env.constants import RAY_JOB_CONFIG_JSON_ENV_VAR

    job = json.loads(os.environ.get(RAY_JOB_CONFIG_JSON_ENV_VAR) or "{}")
    return bool((job.get("runtime_env") or {}).get("worker_process_setup_hook"))


def _import_thresher_from(parent: str | None):
    """A Ray worker setup hook that imports ``thresher`` from ``parent`` (None: from the worker's
    own ``sys.path``) before the worker runs anything.

    Why: at its first task a worker puts the driver's working directory first on ``sys.path``
    (Ray 2.x, ``JobConfig._py_driver_sys_path``), so a driver started inside another checkout
    would have its workers import that checkout's ``thresher/`` (two versions of the code in one
    run, seen as ``ModelNotFound`` on every document). The hook runs before that, and once
    ``thresher`` is in ``sys.modules`` its submodules come from the same folder.

    It is a closure so that Ray pickles it by value: unpickling it must not import ``thresher``.
    """

    def import_drivers_thresher() -> None:
        import sys

        if "thresher" in sys.modules:
            return
        if parent is not None:
            sys.path.insert(0, parent)
        try:
            import thresher  # noqa: F401
        finally:
            if parent is not None:
                sys.path.remove(parent)

    return import_drivers_thresher
