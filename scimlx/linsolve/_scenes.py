"""Random obstacle scenes and right-hand sides for pressure-like Poisson problems."""

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from ._operators import parse_boundary


def remove_enclosed(solid, boundary="dirichlet") -> np.ndarray:
    """Mark as solid every fluid region that touches no Dirichlet side.

    Such pockets (pure Neumann) make the operator singular; removing them keeps it SPD.

    **Arguments:**

    - `solid`: boolean mask of solid cells (numpy or JAX).
    - `boundary`: boundary specification (see [`scimlx.linsolve.diffusion`][]).

    **Returns:**

    The new solid mask (numpy bool array).
    """
    solid = np.asarray(solid, dtype=bool)
    bnd = parse_boundary(boundary, solid.ndim)
    fluid = ~solid
    seed = np.zeros_like(fluid)
    for d, (lo, hi) in enumerate(bnd):
        for side, idx in ((lo, 0), (hi, solid.shape[d] - 1)):
            if side == "dirichlet":
                sl = [slice(None)] * solid.ndim
                sl[d] = idx
                seed[tuple(sl)] = True
    reach = seed & fluid
    while True:
        grown = reach.copy()
        for d, (lo, _) in enumerate(bnd):
            per = lo == "periodic"
            for s in (1, -1):
                if per:
                    grown |= np.roll(reach, s, axis=d)
                else:
                    sh = np.zeros_like(reach)
                    src = [slice(None)] * reach.ndim
                    dst = [slice(None)] * reach.ndim
                    if s == 1:
                        src[d], dst[d] = slice(0, -1), slice(1, None)
                    else:
                        src[d], dst[d] = slice(1, None), slice(0, -1)
                    sh[tuple(dst)] = reach[tuple(src)]
                    grown |= sh
        grown &= fluid
        if np.array_equal(grown, reach):
            break
        reach = grown
    return ~reach


def obstacle_scene(
    shape: Sequence[int],
    *,
    seed: int,
    fraction: float = 0.175,
    boundary="dirichlet",
    split: str = "test",
    max_radius: float = 0.12,
) -> np.ndarray:
    """A random obstacle layout: balls and boxes covering about `fraction` of the cells.

    Obstacles are drawn until the solid fraction reaches `fraction`; then fluid pockets that
    touch no Dirichlet side are filled (see [`scimlx.linsolve.remove_enclosed`][]). The same
    `(shape, seed, split)` always gives the same scene; `split="train"` and `split="test"`
    draw from disjoint random streams, so training and held-out layouts never coincide.

    **Arguments:**

    - `shape`: grid shape (2 or 3 axes).
    - `seed`: non-negative integer seed.
    - `fraction`: target solid fraction in `(0, 0.6)`.
    - `boundary`: boundary specification, used to find enclosed pockets.
    - `split`: `"train"` or `"test"`.
    - `max_radius`: largest obstacle half-size, as a fraction of the smallest grid side.

    **Returns:**

    A numpy boolean mask of solid cells.
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) not in (2, 3):
        raise ValueError(f"`shape` must have 2 or 3 axes; got {shape}.")
    if not (0.0 < fraction < 0.6):
        raise ValueError(f"`fraction` must be in (0, 0.6); got {fraction}.")
    if split not in ("train", "test"):
        raise ValueError(f"`split` must be 'train' or 'test'; got {split!r}.")
    if seed < 0:
        raise ValueError(f"`seed` must be non-negative; got {seed}.")
    rng = np.random.default_rng([int(seed), 0 if split == "train" else 1, len(shape)])
    grids = np.meshgrid(*[np.arange(n) + 0.5 for n in shape], indexing="ij")
    solid = np.zeros(shape, bool)
    side = min(shape)
    total = float(np.prod(shape))
    for _ in range(10_000):
        if solid.sum() / total >= fraction:
            break
        centre = [rng.uniform(0.1 * n, 0.9 * n) for n in shape]
        r = rng.uniform(0.03, max_radius) * side
        if rng.uniform() < 0.5:
            dist2 = sum((g - c) ** 2 for g, c in zip(grids, centre))
            new = dist2 <= r**2
        else:
            halves = [r * rng.uniform(0.5, 1.5) for _ in shape]
            new = np.ones(shape, bool)
            for g, c, hw in zip(grids, centre, halves):
                new &= np.abs(g - c) <= hw
        solid |= new
    return remove_enclosed(solid, boundary)


def random_rhs(
    solid: Bool[Array, "*grid"], *, key: PRNGKeyArray, dtype=None
) -> Float[Array, "*grid"]:
    """Right-hand side `b ~ N(0, 1)` on fluid cells, zero on solid cells.

    **Arguments:**

    - `solid`: boolean mask of solid cells.
    - `key`: PRNG key.
    - `dtype`: floating dtype (default JAX's default float).

    **Returns:**

    The grid-shaped right-hand side.
    """
    solid = jnp.asarray(solid)
    dtype = jnp.zeros((), dtype if dtype is not None else float).dtype
    b = jax.random.normal(key, solid.shape, dtype)
    return jnp.where(solid, jnp.zeros_like(b), b)


@eqx.filter_jit
def divergence_rhs(
    solid: Bool[Array, "*grid"],
    *,
    key: PRNGKeyArray,
    modes: int = 4,
    dtype=None,
) -> Float[Array, "*grid"]:
    """Right-hand side from the divergence of a smooth random velocity field.

    Each face-normal velocity component is a random sum of low Fourier modes (wavenumbers up to
    `modes`); velocities on faces touching a solid cell or the domain boundary are set to zero
    (no flux through walls), and `b` is the discrete divergence on fluid cells (zero on solids),
    as in a pressure projection.

    **Arguments:**

    - `solid`: boolean mask of solid cells.
    - `key`: PRNG key.
    - `modes`: highest wavenumber per axis.
    - `dtype`: floating dtype.

    **Returns:**

    The grid-shaped right-hand side.
    """
    solid = jnp.asarray(solid)
    dtype = jnp.zeros((), dtype if dtype is not None else float).dtype
    shape = solid.shape
    ndim = len(shape)
    fluid = ~solid
    div = jnp.zeros(shape, dtype)
    keys = jax.random.split(key, ndim)
    for d in range(ndim):
        fshape = list(shape)
        fshape[d] += 1
        coords = jnp.meshgrid(
            *[
                (jnp.arange(m, dtype=dtype) + (0.0 if a == d else 0.5)) / shape[a]
                for a, m in enumerate(fshape)
            ],
            indexing="ij",
        )
        k1, k2 = jax.random.split(keys[d])
        ks = jnp.arange(1, modes + 1, dtype=dtype)
        amps = jax.random.normal(k1, (modes,) * ndim, dtype)
        phases = jax.random.uniform(k2, (ndim,) + (modes,) * ndim, dtype) * (2 * np.pi)
        v = jnp.zeros(fshape, dtype)
        for idx in np.ndindex(*((modes,) * ndim)):
            arg = sum(2 * np.pi * ks[i] * coords[a] + phases[(a,) + idx] for a, i in enumerate(idx))
            decay = 1.0 / (1.0 + sum(float(i) ** 2 for i in idx))
            v = v + amps[idx] * decay * jnp.cos(arg)
        # zero flux through walls and solid faces
        n = shape[d]
        pad = [(0, 0)] * ndim
        pad[d] = (1, 1)
        fpad = jnp.pad(fluid, pad)
        left = jax.lax.slice_in_dim(fpad, 0, n + 1, axis=d)
        right = jax.lax.slice_in_dim(fpad, 1, n + 2, axis=d)
        v = jnp.where(left & right, v, jnp.zeros_like(v))
        div = div + (
            jax.lax.slice_in_dim(v, 1, n + 1, axis=d) - jax.lax.slice_in_dim(v, 0, n, axis=d)
        )
    return jnp.where(solid, jnp.zeros_like(div), div)
