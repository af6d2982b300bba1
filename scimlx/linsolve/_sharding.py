"""Grids split over a device mesh: where each grid array lives during a solve."""

import equinox as eqx
import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec


class GridSharding(eqx.Module):
    """Split the grid of a linear solve over the devices of a mesh.

    Each grid axis is split over the mesh axis named at its position in `axes` (`None`:
    not split). The solvers ([`scimlx.linsolve.pcg_solve`][],
    [`scimlx.linsolve.cd_solve`][], [`scimlx.linsolve.multigrid_solve`][]) and the V-cycle
    ([`scimlx.linsolve.multigrid`][]) constrain every grid vector of every iteration to this
    layout, and JAX's partitioner (GSPMD) compiles the rest: stencil products exchange one
    layer of halo cells with the neighbouring devices (collective permutes), inner products
    are partial sums reduced across devices, and nothing the size of the whole grid is
    gathered on one device. Coarse multigrid levels whose side along a split axis falls
    below `min_cells` cells per device are kept whole on every device (the few coarsest
    levels are small), so the hierarchy never splits a level thinner than the halo.

    Results equal the single-device solve: the same iteration counts, values to rounding
    (the inner products are summed in another order).

    For memory to scale down with the device count, build the operator inside the same
    `jax.jit` as the solve, from cell arrays placed with [`scimlx.linsolve.GridSharding.place`][] (a
    diffusion operator's face arrays have one more cell than the grid along their axis,
    which `jax.device_put` cannot split evenly, but a jitted program can).

    **Fields:**

    - `mesh`: a `jax.sharding.Mesh` (e.g. `jax.make_mesh((8,), ("x",))`); its axes are used
      as `jax.sharding.AxisType.Auto` (the layouts are constraints for the partitioner).
    - `axes`: one mesh-axis name or `None` per grid axis, e.g. `("x", None, None)` or
      `("x", "y")` on a two-axis mesh.
    - `min_cells`: the fewest cells per device along a split axis; a level with fewer is
      not split along that axis (default 4).
    """

    mesh: Mesh = eqx.field(static=True)
    axes: tuple[str | None, ...] = eqx.field(static=True)
    min_cells: int = eqx.field(static=True, default=4)

    def __init__(self, mesh: Mesh, axes: tuple[str | None, ...], min_cells: int = 4):
        # The solvers' layouts are hints to the partitioner: the mesh's axes are made
        # `Auto` (a mesh from `jax.make_mesh` is `Explicit` by default, whose typed
        # shardings refuse the uneven slices of stencils and transfers).
        auto = (AxisType.Auto,) * len(mesh.axis_names)
        self.mesh = Mesh(mesh.devices, mesh.axis_names, axis_types=auto)
        self.axes = tuple(axes)
        self.min_cells = min_cells

    def __check_init__(self):
        names = [a for a in self.axes if a is not None]
        for a in names:
            if a not in self.mesh.shape:
                raise ValueError(
                    f"`axes` names the mesh axis {a!r}, but the mesh has {tuple(self.mesh.shape)}."
                )
        if len(set(names)) != len(names):
            raise ValueError(f"`axes` names a mesh axis twice: {self.axes}.")
        if self.min_cells < 1:
            raise ValueError(f"`min_cells` must be >= 1; got {self.min_cells}.")

    def spec(self, grid_shape: tuple[int, ...]) -> PartitionSpec:
        """The partition of a grid of this shape (axes too short to split are whole)."""
        if len(grid_shape) != len(self.axes):
            raise ValueError(
                f"`axes` has {len(self.axes)} entries but the grid {tuple(grid_shape)} has "
                f"{len(grid_shape)} axes."
            )
        parts = []
        for n, a in zip(grid_shape, self.axes):
            split = a is not None and n // self.mesh.shape[a] >= self.min_cells
            parts.append(a if split else None)
        return PartitionSpec(*parts)

    def constrain(self, x: jax.Array) -> jax.Array:
        """`x` (a grid array, possibly with leading axes) constrained to the layout."""
        nd = len(self.axes)
        if x.ndim < nd:
            return x
        spec = PartitionSpec(*((None,) * (x.ndim - nd)), *self.spec(x.shape[x.ndim - nd :]))
        return jax.lax.with_sharding_constraint(x, NamedSharding(self.mesh, spec))

    def place(self, x: jax.Array) -> jax.Array:
        """`x` (a grid array) put on the mesh in this layout, outside `jit`. With several
        processes (after `jax.distributed.initialize`) each process passes the same `x`.

        Raises `ValueError` if a split axis does not divide evenly over its mesh axis.
        """
        nd = len(self.axes)
        if x.ndim < nd:
            raise ValueError(f"`x` must have at least {nd} axes (the grid's); got {x.shape}.")
        grid = x.shape[x.ndim - nd :]
        spec = self.spec(grid)
        for n, a in zip(grid, spec):
            if a is not None and n % self.mesh.shape[a]:
                raise ValueError(
                    f"grid axis of size {n} does not split evenly over the {self.mesh.shape[a]} "
                    f"devices of mesh axis {a!r}; choose a size divisible by "
                    f"{self.mesh.shape[a]} (or build the array inside `jax.jit` and use "
                    "`constrain`)."
                )
        sharding = NamedSharding(self.mesh, PartitionSpec(*((None,) * (x.ndim - nd)), *spec))
        # Each device takes its block of `x`; with several processes (`jax.distributed`)
        # every process passes the same whole `x` and fills its own devices' blocks.
        host = np.asarray(x)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def constrain(sharding: GridSharding | None, *xs):
    """Each of `xs` constrained to `sharding` (unchanged when it is `None`)."""
    if sharding is None:
        return xs if len(xs) != 1 else xs[0]
    out = tuple(sharding.constrain(x) for x in xs)
    return out if len(out) != 1 else out[0]
