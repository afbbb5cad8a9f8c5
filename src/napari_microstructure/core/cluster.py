"""Running many independent tasks on a ``dask.distributed`` cluster, with a model shipped once.

EBSD maps (blocks of patterns) and probability maps (tiles of a micrograph) are
both "one model, many independent pieces of work". This module is the one
place that sends such work to a cluster:

- :func:`connect` turns what the user gave (a ``distributed.Client``, a
  scheduler address such as ``"tcp://10.0.0.5:8786"``, ``"local"`` or
  ``"local:N"`` for worker processes on this machine, or nothing) into a
  client, and closes a client (and a local cluster) it opened itself.
- :func:`run_tasks` ships the shared object (the fitted classifier and its
  settings) to every worker **once**, as a worker plugin
  (:class:`._worker_cache.SharedObjectPlugin`) that installs it in each
  worker process, including workers that join later; every task then names
  it, so only the small payloads (a block of patterns, a tile of an image)
  travel per task. A worker process unpickles the model once and reuses it
  for all of its tasks (and keeps per-process caches such as the traced
  network). The plugin is removed when the map ends. At most ``max_in_flight``
  tasks are submitted at a time and results are handed to ``on_result`` in
  this process as they complete, so memory stays bounded on both sides
  whatever the size of the map.

Without a cluster nothing here is imported: ``distributed`` is an optional
dependency (``pip install napari-microstructure[cluster]``).

What happens when a worker dies
-------------------------------
The scheduler notices the lost worker, and re-runs the tasks it was running
(and any finished results it held that were not yet collected) on the other
workers; the map completes with the same result. A task that kills every
worker it runs on (more than ``distributed.scheduler.allowed-failures``
times, 3 by default) makes the map fail with :class:`ClusterError`; outputs
are only moved into place after the whole map is done, so nothing is
half-written.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Callable, Iterable, Iterator, Optional, Union

from .errors import MicrostructureError
from .nn.progress import CancelToken, check_cancel

#: Environment variable naming a scheduler address used when no client is given.
SCHEDULER_ENV = "NAPARI_MICROSTRUCTURE_SCHEDULER"
#: The "address" of worker processes on this machine: ``"local"`` (one per core) or ``"local:N"``.
LOCAL = "local"

ClientLike = Union[None, str, Any]


class ClusterError(MicrostructureError):
    """The cluster could not be reached, or a task could not be completed on it."""


def _import_distributed():
    try:
        import distributed
    except ImportError as exc:
        raise ClusterError(
            "a dask scheduler was given but the 'distributed' package is not installed; "
            "install it with `pip install napari-microstructure[cluster]` (or `pip install distributed`), "
            "or leave the scheduler empty to compute in this process"
        ) from exc
    return distributed


@contextlib.contextmanager
def connect(client: ClientLike = None, timeout_s: float = 10.0) -> Iterator[Optional[Any]]:
    """The ``distributed.Client`` to run on, or None to compute in this process.

    Parameters
    ----------
    client : distributed.Client, str or None
        A client (used as it is, not closed); a scheduler address such as
        ``"tcp://host:8786"`` (a client is opened for the call and closed
        after it); ``"local"`` or ``"local:N"``: a cluster of worker
        processes on this machine (one per core, or N; one thread each),
        started for the call (a few seconds) and closed after it; meant for
        work that keeps a core busy per task (band-profile EBSD maps) on
        machines whose cores each add compute (on the project's two-vCPU
        machine it measured slower than one process, docs/scaling.md);
        or None: the default client if one was created in this
        process (``distributed.Client(...)``), else the scheduler named by the
        environment variable ``NAPARI_MICROSTRUCTURE_SCHEDULER``, else None.
    timeout_s : float
        Seconds to wait for a scheduler address to answer.

    Raises
    ------
    ClusterError
        ``distributed`` is not installed, or the scheduler does not answer.
    """
    if client is None:
        found = _default_client()
        if found is not None:
            yield found
            return
        client = os.environ.get(SCHEDULER_ENV, "").strip() or None
        if client is None:
            yield None
            return
    if not isinstance(client, str):
        if not (hasattr(client, "submit") and hasattr(client, "scatter")):
            raise ClusterError(
                f"client={client!r} is neither a distributed.Client nor a scheduler address; "
                "give e.g. 'tcp://host:8786' or distributed.Client(...)"
            )
        yield client
        return
    address = client.strip()
    if not address:
        yield None
        return
    distributed = _import_distributed()
    if address.split(":")[0].strip().lower() == LOCAL:
        with _local_client(distributed, address) as own:
            yield own
        return
    try:
        own = distributed.Client(address, timeout=timeout_s, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ClusterError(
            f"could not reach a dask scheduler at {address!r} within {timeout_s:g} s ({exc}); check the "
            "address (e.g. tcp://host:8786, as printed by `dask scheduler`) and that the scheduler is running"
        ) from exc
    try:
        yield own
    finally:
        own.close()


#: At most this many local worker processes per core (each is a Python process with its own memory).
MAX_LOCAL_WORKERS_PER_CORE = 4


def local_workers(spec: str) -> int:
    """Worker processes named by ``"local"`` (one per core) or ``"local:N"``; a clear error otherwise.

    ``N`` is a whole number from 1 to :data:`MAX_LOCAL_WORKERS_PER_CORE` times the cores; any
    other address (``"localhost:8786"`` is a scheduler, not a local cluster) is refused.
    """
    head, _, count = spec.strip().partition(":")
    if head.strip().lower() != LOCAL:
        raise ClusterError(f"{spec!r} is not a local cluster; give 'local' (one worker process per core) or "
                           "'local:N', or pass a scheduler address such as tcp://host:8786 as the client")
    cores = max(1, os.cpu_count() or 1)
    if not count.strip():
        return cores
    try:
        n = int(count)
    except ValueError:
        n = 0
    if n < 1:
        raise ClusterError(f"{spec!r}: give 'local' (one worker process per core) or 'local:N' with N >= 1 "
                           "worker processes")
    limit = MAX_LOCAL_WORKERS_PER_CORE * cores
    if n > limit:
        raise ClusterError(f"{spec!r} asks for {n} worker processes but this machine has {cores} cores; give "
                           f"'local' (one worker process per core) or 'local:N' with N <= {limit}")
    return n


@contextlib.contextmanager
def _local_client(distributed: Any, spec: str) -> Iterator[Any]:
    """A client of a new cluster of worker processes on this machine (one thread each), closed after use."""
    import logging

    n = local_workers(spec)
    cluster = distributed.LocalCluster(n_workers=n, processes=True, threads_per_worker=1,
                                       dashboard_address=None, silence_logs=logging.ERROR)
    try:
        own = distributed.Client(cluster, set_as_default=False)
        try:
            yield own
        finally:
            own.close()
    finally:
        cluster.close()


def _default_client() -> Optional[Any]:
    """The client created in this process, if ``distributed`` is loaded and one exists."""
    import sys

    if "distributed" not in sys.modules:
        return None
    try:
        return sys.modules["distributed"].default_client()
    except ValueError:
        return None


def n_threads(client: Any) -> int:
    """Total worker threads of the cluster (at least 1)."""
    try:
        return max(1, sum(client.nthreads().values()))
    except Exception:  # pragma: no cover - a client without nthreads
        return 1


def run_tasks(
    client: Any,
    fn: Callable[[Any, Any], Any],
    shared: Any,
    payloads: Iterable[Any],
    on_result: Callable[[int, Any], None],
    *,
    max_in_flight: Optional[int] = None,
    cancel: Optional[CancelToken] = None,
) -> int:
    """Run ``fn(shared, payload)`` for every payload on the cluster; results go to ``on_result``.

    Parameters
    ----------
    client : distributed.Client
    fn : callable
        ``fn(shared, payload) -> result``; a module-level function (it is
        pickled by reference).
    shared : object
        Installed on every worker once (a worker plugin) and passed to every task.
    payloads : iterable
        Consumed lazily, ``max_in_flight`` ahead of the results. A NumPy
        array travels with its task; a dask collection (e.g. one block of a
        dask array, ``array.blocks[i, j]``), alone or as an item of a tuple
        payload, is computed on the cluster and reaches ``fn`` as an array.
    on_result : callable
        ``on_result(index, result)`` in this process, in order of completion;
        ``index`` counts the payloads from 0.
    max_in_flight : int, optional
        Tasks submitted but not yet collected; default twice the cluster's
        threads (at least 2).
    cancel : threading.Event, optional
        Checked after every result; outstanding tasks are cancelled and
        :class:`~.errors.TrainingCancelled` is raised.

    Returns
    -------
    int
        The number of tasks run.

    Raises
    ------
    ClusterError
        When a task kept killing the workers it ran on, or the cluster went away.
    """
    distributed = _import_distributed()
    import uuid

    from distributed import as_completed

    from ._worker_cache import SharedObjectPlugin, call_with_shared

    window = int(max_in_flight) if max_in_flight else max(2, 2 * n_threads(client))
    name = f"napari-microstructure-{type(shared).__name__}-{uuid.uuid4().hex[:12]}"
    client.register_plugin(SharedObjectPlugin(name, shared), name=name)
    pending: dict[Any, int] = {}
    inputs: dict[Any, Any] = {}
    it = iter(enumerate(payloads))
    done = 0

    def submit_next(ac=None) -> bool:
        try:
            index, payload = next(it)
        except StopIteration:
            return False
        parts = payload if isinstance(payload, tuple) else (payload,)
        computed = [client.compute(p) if hasattr(p, "__dask_graph__") else p for p in parts]
        arg = tuple(computed) if isinstance(payload, tuple) else computed[0]
        fut = client.submit(call_with_shared, fn, name, arg, pure=False)
        pending[fut] = index
        held = [c for c, p in zip(computed, parts) if c is not p]
        if held:
            inputs[fut] = held
        if ac is not None:
            ac.add(fut)
        return True

    ac = None
    try:
        for _ in range(window):
            if not submit_next():
                break
        ac = as_completed(list(pending), loop=client.loop)
        for fut in ac:
            index = pending.pop(fut)
            inputs.pop(fut, None)
            try:
                result = fut.result()
            except distributed.KilledWorker as exc:
                raise ClusterError(
                    f"task {index} could not be completed: the workers running it died ({exc}); the "
                    "usual cause is too little worker memory: give the workers more memory or use a "
                    "smaller chunk_size / tile_size. Nothing was written"
                ) from exc
            except distributed.client.FutureCancelledError as exc:  # scheduler restarted or closed
                raise ClusterError(
                    f"task {index} was cancelled by the cluster ({exc}); the scheduler may have been "
                    "restarted or closed. Nothing was written"
                ) from exc
            fut.release()
            on_result(index, result)
            done += 1
            check_cancel(cancel)
            submit_next(ac)
    finally:
        left = list(pending) + [f for held in inputs.values() for f in held]
        if left:
            client.cancel(left)
        if ac is not None:
            ac.clear()
        try:
            client.unregister_worker_plugin(name)
        except Exception:  # pragma: no cover - the cluster went away
            pass
    return done
