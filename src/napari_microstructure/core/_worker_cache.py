"""The worker side of :mod:`.cluster`: objects installed once per worker process by a plugin.

Imported only when a cluster is used (it needs ``distributed``). A
:class:`SharedObjectPlugin` carries one object (the fitted classifier and the
map settings); registering it runs :meth:`~SharedObjectPlugin.setup` on every
worker, and on every worker that joins later (a replacement for one that
died), which keeps the unpickled object in :data:`REGISTRY` under a name.
Tasks carry only that name. Unlike a scattered future, whose replicas the
scheduler's memory manager may drop and send again, the object is
deserialised exactly once per worker process.
"""

from __future__ import annotations

from typing import Any, Callable

from distributed.diagnostics.plugin import WorkerPlugin

from .errors import MicrostructureError

#: Objects installed on this worker process, by name.
REGISTRY: dict[str, Any] = {}


class SharedObjectPlugin(WorkerPlugin):
    """Installs ``obj`` in :data:`REGISTRY` as ``name`` on each worker; removes it on unregistering."""

    def __init__(self, name: str, obj: Any) -> None:
        self.name = name
        self.obj = obj

    def setup(self, worker: Any = None) -> None:
        REGISTRY[self.name] = self.obj

    def teardown(self, worker: Any = None) -> None:
        REGISTRY.pop(self.name, None)


def call_with_shared(fn: Callable[[Any, Any], Any], name: str, payload: Any) -> Any:
    """The task: ``fn(shared object, payload)`` with the object installed on this worker."""
    try:
        shared = REGISTRY[name]
    except KeyError:
        raise MicrostructureError(
            f"the model for this map ({name}) is not installed on this worker; the map was probably "
            "cancelled or finished while the task was queued. Run the map again"
        ) from None
    return fn(shared, payload)
