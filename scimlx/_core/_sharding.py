"""Where `fit` puts its training state and batches across devices: JAX's own sharding."""

import abc
from typing import Any

import equinox as eqx
import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec


class AbstractSharding(eqx.Module):
    """How [`scimlx.fit`][] lays its training out over devices.

    `fit` never asks which layout it has: it calls `place_state` on the trained leaves,
    the optimiser state and the rest of the model before the first step (and after
    loading a checkpoint), `place_batch` on every batch, and `constrain_state` inside the
    compiled step on the updated leaves and optimiser state, so that they come out laid
    out as they went in. JAX and XLA do the rest: the step is one `equinox.filter_jit`
    whose inputs carry their shardings, and XLA inserts the collectives (e.g. the
    all-reduce of the gradients over a sharded batch).

    A subclass (e.g. one that shards large parameters as well) implements these three
    methods; [`scimlx.DataParallel`][] is the data-parallel one.
    """

    @abc.abstractmethod
    def place_state(self, tree: Any) -> Any:
        """Put a pytree of the training state (host or device arrays; non-array leaves
        pass through) onto the devices. Called outside `jit`."""

    @abc.abstractmethod
    def place_batch(self, batch: Any) -> Any:
        """Put one step's batch (as `batch(step, key)` returned it on this process)
        onto the devices as global arrays. Called outside `jit`."""

    @abc.abstractmethod
    def constrain_state(self, tree: Any) -> Any:
        """Inside the compiled step: constrain the updated state to its layout (e.g.
        with `jax.lax.with_sharding_constraint`)."""


def _place(x, sharding: NamedSharding):
    if not eqx.is_array_like(x) or isinstance(x, (bool, int, float, complex)):
        return x
    if jax.process_count() == 1:
        return jax.device_put(x, sharding)
    # Several processes: every one holds the same value (a replicated state); each puts
    # its own devices' copies. Works for NumPy and JAX arrays, PRNG keys included.
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        data = jax.random.key_data(x)
        impl = jax.random.key_impl(x)
        placed = _place(data, sharding)
        return jax.random.wrap_key_data(placed, impl=impl)
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


class DataParallel(AbstractSharding):
    """Data parallelism for [`scimlx.fit`][]: every leaf of the batch is split along its
    leading axis over the mesh axis `axis`; the model and the optimiser state are
    replicated on every device of the mesh.

    The loss is the same function of the global batch as on one device (a `jnp.mean`
    over the batch is a mean over all of it), so a run on 8 devices takes the same steps
    as one on 1 device, up to the order of floating-point sums.

    With several processes (after `jax.distributed.initialize`), `batch(step, key)`
    returns this process's rows of the global batch, and they are assembled into one
    global array with `jax.make_array_from_process_local_data`: with a mesh over
    `jax.devices()` (the default), process `p` of `P` holds the `p`-th of `P` contiguous
    blocks of the global batch.

    **Arguments:**

    - `mesh`: a `jax.sharding.Mesh` (default: a one-axis mesh named `axis` over all
      devices, `jax.devices()`, of every process); its axes are used as
      `jax.sharding.AxisType.Auto`.
    - `axis`: the name of the mesh axis that splits the batch. Other axes of the mesh,
      if any, hold replicas.
    - `shard_state`: also split the training state (parameters, optimiser state, best
      parameters) over `axis`, each array along its leading axis when that divides evenly
      over the devices (smaller or indivisible arrays stay whole on every device), so that
      each device holds about `1/n` of a large model's state (as in ZeRO-3 / FSDP); XLA
      gathers a parameter where the step needs it whole. The steps are the same as with a
      replicated state, up to the order of floating-point sums. Default `False`.

    !!! example

        ```python
        mesh = jax.make_mesh((jax.device_count(),), ("batch",))
        result = scimlx.fit(loss, model, optax.adam(1e-3), steps=1000, key=key,
                            batch=batch, sharding=scimlx.DataParallel(mesh, "batch"))
        ```
    """

    mesh: Mesh = eqx.field(static=True)
    axis: str = eqx.field(static=True)
    shard_state: bool = eqx.field(static=True)

    def __init__(self, mesh: Mesh | None = None, axis: str = "batch", shard_state: bool = False):
        if not isinstance(axis, str):
            raise TypeError(f"`axis` must be the name of a mesh axis (a str), got {axis!r}.")
        m = Mesh(np.asarray(jax.devices()), (axis,)) if mesh is None else mesh
        if not isinstance(m, Mesh):
            raise TypeError(f"`mesh` must be a `jax.sharding.Mesh`, got {type(m).__name__}.")
        if axis not in m.axis_names:
            raise ValueError(
                f"`axis`={axis!r} is not an axis of `mesh` (its axes are {m.axis_names})."
            )
        # Layouts are hints to the partitioner: the axes are used as `Auto` (a mesh from
        # `jax.make_mesh` is `Explicit` by default, whose typed shardings refuse some of the
        # scatters and slices inside solvers and models).
        self.mesh = Mesh(m.devices, m.axis_names, axis_types=(AxisType.Auto,) * len(m.axis_names))
        self.axis = axis
        if not isinstance(shard_state, bool):
            raise TypeError(f"`shard_state` must be a bool, got {shard_state!r}.")
        self.shard_state = shard_state

    @property
    def n_devices(self) -> int:
        """The number of devices the batch is split over (the size of `axis`)."""
        return int(self.mesh.shape[self.axis])

    def _replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec())

    def _split(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec(self.axis))

    def _state_sharding(self, x) -> NamedSharding:
        """Where one array of the state lives: split along its leading axis when
        `shard_state` and that axis divides over the devices, else whole everywhere."""
        shape = np.shape(x)
        split = (
            self.shard_state
            and len(shape) >= 1
            and shape[0] >= self.n_devices
            and shape[0] % self.n_devices == 0
            and not jax.dtypes.issubdtype(getattr(x, "dtype", np.float64), jax.dtypes.prng_key)
        )
        return self._split() if split else self._replicated()

    def place_state(self, tree: Any) -> Any:
        return jax.tree.map(lambda x: _place(x, self._state_sharding(x)), tree)

    def place_batch(self, batch: Any) -> Any:
        sharding = self._split()
        n_proc = jax.process_count()
        # This process's rows are split over its own positions along `axis`.
        at = self.mesh.axis_names.index(self.axis)
        me = jax.process_index()
        local = len({i[at] for i, d in np.ndenumerate(self.mesh.devices) if d.process_index == me})

        def put(path, x):
            if not eqx.is_array_like(x) or isinstance(x, (bool, int, float, complex)):
                return x
            shape = np.shape(x)
            where = f"`batch`{jax.tree_util.keystr(path)}"
            if len(shape) == 0:
                raise ValueError(
                    f"{where} is a scalar; with `sharding=DataParallel(...)` every array of "
                    "the batch is split along its leading axis."
                )
            if shape[0] % local != 0:
                rows = "rows" if n_proc == 1 else "rows on this process"
                raise ValueError(
                    f"{where} has {shape[0]} {rows}, which do not divide evenly over the "
                    f"{local} devices of mesh axis {self.axis!r}: give `batch` a leading size "
                    f"that is a multiple of {local}."
                )
            if n_proc == 1:
                return jax.device_put(x, sharding)
            return jax.make_array_from_process_local_data(sharding, np.asarray(x))

        return jax.tree_util.tree_map_with_path(put, batch)

    def constrain_state(self, tree: Any) -> Any:
        def constrain(x):
            if not eqx.is_array(x):
                return x
            return jax.lax.with_sharding_constraint(x, self._state_sharding(x))

        return jax.tree.map(constrain, tree)


def to_host(tree: Any) -> Any:
    """Gather a pytree of (possibly sharded, possibly multi-process) arrays to NumPy on
    every process. A collective when some array spans devices of other processes and is
    not replicated: every process must call it."""

    def gather(x):
        if not isinstance(x, jax.Array):
            return x
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return x
        if x.is_fully_addressable or x.is_fully_replicated:
            return np.asarray(x)
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))

    return jax.tree.map(gather, tree)
