"""Darcy-flow data (as in the FNO paper), generated locally and cached with a verified header."""

import json
import math
import os
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._core import (
    CorruptedFileError,
    DataParallel,
    is_successful,
    read_arrays,
    Solution,
    write_arrays,
)
from .._core._checks import Tolerance
from ..linsolve import Chebyshev, DiffusionOperator, multigrid, pcg_solve


# variant -> (alpha, tau). "smooth" is the FNO paper's data (`piececonst_r421_N1024_smooth`),
# covariance proportional to (-Laplacian + 9 I)^-2. "rough" follows the name of the rougher data
# set of the MgNO/HANO papers (`darcy_alpha2_tau5`): an inference, not a verified recipe.
VARIANTS = {"smooth": (2.0, 3.0), "rough": (2.0, 5.0)}


def grf(
    key: PRNGKeyArray,
    resolution: int,
    *,
    alpha: float = 2.0,
    tau: float = 3.0,
    n_modes: int | None = None,
    dtype=None,
) -> Float[Array, "n n"]:
    """Gaussian random field `N(0, tau^(2 alpha - 2) (-Laplacian + tau^2 I)^-alpha)` on `(0, 1)^2`.

    Cosine (zero-Neumann) eigenfunctions, as the FNO paper's `GRF.m`: coefficients
    `tau^(alpha - 1) (pi^2 |k|^2 + tau^2)^(-alpha / 2) xi_k`, `xi_k ~ N(0, 1)`, mean mode zero,
    evaluated at the `resolution x resolution` cell centres by an orthonormal inverse DCT-II.

    **Arguments:**

    - `key`: PRNG key.
    - `resolution`: cells per axis.
    - `alpha`, `tau`: covariance parameters.
    - `n_modes`: number of modes per axis drawn from `key` (default `resolution`). Fields
      drawn with the same `key` and `n_modes` at two resolutions are the same continuum field
      (truncated to `min(n_modes, resolution)` modes), which is how the 2x test sets are made.
    - `dtype`: output dtype.

    **Returns:**

    The field, shape `(resolution, resolution)`.
    """
    if resolution < 2:
        raise ValueError(f"`resolution` must be >= 2, got {resolution}.")
    dtype = jnp.zeros(()).dtype if dtype is None else dtype
    m = resolution if n_modes is None else int(n_modes)
    xi = jax.random.normal(key, (m, m), dtype)
    k = jnp.arange(m, dtype=dtype)
    lam = math.pi**2 * (k[:, None] ** 2 + k[None, :] ** 2) + tau**2
    coef = tau ** (alpha - 1.0) * lam ** (-alpha / 2.0)
    coef = coef.at[0, 0].set(0.0)
    L = float(m) * coef * xi
    if m >= resolution:
        L = L[:resolution, :resolution]
    else:
        L = jnp.pad(L, ((0, resolution - m), (0, resolution - m)))
    # the orthonormal transform scales like 1/n: keep the field resolution-independent
    L = L * (resolution / m)
    return jax.scipy.fft.idctn(L, type=2, norm="ortho")


def darcy_coefficient(
    mu: Float[Array, "n n"], high: float = 12.0, low: float = 3.0
) -> Float[Array, "n n"]:
    """Threshold a field: `high` where `mu >= 0`, `low` elsewhere (the FNO paper's 12 / 3)."""
    return jnp.where(mu >= 0, jnp.asarray(high, mu.dtype), jnp.asarray(low, mu.dtype))


def darcy_operator(a: Float[Array, "n n"]) -> DiffusionOperator:
    """5-point `-div(a grad u)` on `n x n` cells of `(0, 1)^2`, `u = 0` on the boundary.

    Face coefficients are arithmetic averages `(a_i + a_j) / 2` of the two cells (the FNO
    paper's `solve_gwf.m` rule); the boundary faces see the cell's own `a` with the
    antisymmetric ghost `u_ghost = -u_c` (Dirichlet on the wall). Returned as a
    [`scimlx.linsolve.DiffusionOperator`][], so linsolve's multigrid applies.

    **Arguments:**

    - `a`: positive cell coefficients, shape `(n, n)`.

    **Returns:**

    The operator on arrays of shape `(n, n)`.
    """
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"`a` must be a square 2-D array, got shape {a.shape}.")
    n = a.shape[0]
    faces = []
    for d in range(2):
        lo = jax.lax.slice_in_dim(a, 0, 1, axis=d)
        hi = jax.lax.slice_in_dim(a, n - 1, n, axis=d)
        inner = 0.5 * (
            jax.lax.slice_in_dim(a, 0, n - 1, axis=d) + jax.lax.slice_in_dim(a, 1, n, axis=d)
        )
        faces.append(jnp.concatenate([2.0 * lo, inner, 2.0 * hi], axis=d))
    solid = jnp.zeros(a.shape, bool)
    bnd = (("dirichlet", "dirichlet"),) * 2
    return DiffusionOperator(tuple(faces), solid, bnd, (1.0 / n, 1.0 / n))


@eqx.filter_jit
def darcy_solve(
    a: Float[Array, "n n"],
    f: Float[Array, "n n"] | None = None,
    *,
    rtol: Tolerance = 1e-10,
    max_steps: int = 200,
    throw: bool = True,
) -> Solution:
    """Solve `-div(a grad u) = f` (`f = 1` by default) with multigrid-preconditioned CG.

    The operator is [`scimlx.neuralop.darcy_operator`][]; the preconditioner is one
    symmetric V-cycle of [`scimlx.linsolve.multigrid`][]; CG is
    [`scimlx.linsolve.pcg_solve`][].

    **Arguments:**

    - `a`: cell coefficients `(n, n)`.
    - `f`: right-hand side (default ones).
    - `rtol`: relative residual tolerance.
    - `max_steps`: CG iteration limit.
    - `throw`: raise on failure; under `jax.vmap` pass `False` and read `result`.

    **Returns:**

    A [`scimlx.Solution`][]: the one of [`scimlx.linsolve.pcg_solve`][], with its `result`
    codes and `stats` keys (`stats["num_steps"]` holds the CG iterations).
    """
    op = darcy_operator(a)
    if f is None:
        f = jnp.ones_like(a)
    vc = multigrid(op, smoother=Chebyshev(), pre=1, post=1, max_coarse=16)
    return pcg_solve(op, f, preconditioner=vc, rtol=rtol, max_steps=max_steps, throw=throw)


class DarcyData(eqx.Module):
    """A Darcy data set: inputs `a` `(N, 1, n, n)` and solutions `u` `(N, 1, n, n)`."""

    a: Float[Array, "N 1 n n"]
    u: Float[Array, "N 1 n n"]


@eqx.filter_jit
def _generate_batch(keys, resolution, n_modes, alpha, tau, high, low, rtol):
    def one(k):
        mu = grf(k, resolution, alpha=alpha, tau=tau, n_modes=n_modes)
        a = darcy_coefficient(mu, high, low)
        sol = darcy_solve(a, rtol=rtol, throw=False)
        return a, sol.value, sol.result

    return jax.vmap(one)(keys)


def darcy_dataset(
    n_samples: int,
    resolution: int,
    *,
    seed: int,
    variant: str = "smooth",
    n_modes: int | None = None,
    high: float = 12.0,
    low: float = 3.0,
    rtol: Tolerance | None = None,
    batch_size: int = 64,
    progress: bool = False,
    sharding: DataParallel | None = None,
) -> DarcyData:
    """Generate Darcy-flow pairs `(a, u)`, `-div(a grad u) = 1`, `u = 0` on the boundary.

    Coefficients are [`scimlx.neuralop.grf`][] samples thresholded to `high` / `low`
    (FNO paper). Solves are batched with `jax.vmap` of [`scimlx.neuralop.darcy_solve`][].
    Sample `i` uses `jax.random.fold_in(jax.random.key(seed), i)`; with the same `seed` and
    `n_modes`, two resolutions give the same fields (for super-resolution tests).

    **Arguments:**

    - `n_samples`: number of pairs.
    - `resolution`: cells per axis.
    - `seed`: integer seed.
    - `variant`: `"smooth"` (alpha 2, tau 3: the FNO data) or `"rough"` (alpha 2, tau 5).
    - `n_modes`: GRF modes per axis (default `resolution`).
    - `high`, `low`: coefficient values.
    - `rtol`: solver tolerance (default 1e-10 in float64, 1e-5 in float32).
    - `batch_size`: samples solved per vmapped call. The last batch is padded to this size
      (the padding is solved and dropped), so every call runs one compiled program.
    - `progress`: show a progress bar.
    - `sharding`: a [`scimlx.DataParallel`][] to split each batch's samples over the
      devices of its mesh (each device solves its own samples; one process). `batch_size`
      (or `n_samples`, if smaller) must be a multiple of the device count.

    **Returns:**

    A [`scimlx.neuralop.DarcyData`][] (float64 when x64 is enabled, else float32).
    """
    if variant not in VARIANTS:
        raise ValueError(f"`variant` must be one of {sorted(VARIANTS)}, got {variant!r}.")
    if n_samples < 1:
        raise ValueError(f"`n_samples` must be >= 1, got {n_samples}.")
    alpha, tau = VARIANTS[variant]
    if rtol is None:
        rtol = 1e-10 if jax.config.jax_enable_x64 else 1e-5  # pyright: ignore
    if sharding is not None and not isinstance(sharding, DataParallel):
        raise TypeError(f"`sharding` must be a scimlx.DataParallel or None, got {sharding!r}.")
    batch_size = min(batch_size, n_samples)
    base = jax.random.key(seed)
    # keys for whole batches: the padding of the last batch repeats its last sample
    n_padded = -(-n_samples // batch_size) * batch_size
    index = jnp.minimum(jnp.arange(n_padded), n_samples - 1)
    keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(index)
    As, Us = [], []
    from contextlib import nullcontext

    from .._core import ProgressBar

    ctx = ProgressBar(n_samples, f"darcy {resolution}x{resolution}") if progress else nullcontext()
    with ctx as bar:
        for start in range(0, n_samples, batch_size):
            kb = keys[start : start + batch_size]
            if sharding is not None:
                kb = sharding.place_batch(kb)
            a, u, res = _generate_batch(kb, resolution, n_modes, alpha, tau, high, low, rtol)
            real = min(batch_size, n_samples - start)
            a, u, res = jax.tree.map(lambda x: x[:real], (a, u, res))
            ok = np.asarray(is_successful(res))
            if not ok.all():
                raise RuntimeError(
                    f"Darcy solve failed (not converged to rtol={rtol}) for samples "
                    f"{start + np.flatnonzero(~ok)}."
                )
            As.append(a)
            Us.append(u)
            if bar is not None:
                bar.update(real)
    a = jnp.concatenate(As)[:, None]
    u = jnp.concatenate(Us)[:, None]
    return DarcyData(a, u)


_FORMAT = "scimlx.neuralop.darcy/1"


def darcy_cached(path: str | os.PathLike, n_samples: int, resolution: int, **kwargs) -> DarcyData:
    """[`scimlx.neuralop.darcy_dataset`][] with an on-disk cache.

    The file (`.npz`) holds the arrays, a JSON header with the generator, its parameters and
    the seed, and the SHA-256 of its content. On load the header must equal the requested one,
    else the data are regenerated and the file atomically replaced. A truncated, altered or
    foreign file (checksum mismatch) is regenerated the same way, with a warning naming it.

    **Arguments:**

    - `path`: cache file.
    - `n_samples`, `resolution`, `**kwargs`: as in [`scimlx.neuralop.darcy_dataset`][]
      (`seed` is required).

    **Returns:**

    A [`scimlx.neuralop.DarcyData`][].
    """
    if "seed" not in kwargs:
        raise ValueError("`seed` is required.")
    params = {"n_samples": int(n_samples), "resolution": int(resolution)}
    for k, v in sorted(kwargs.items()):
        if k in ("progress", "batch_size"):
            continue
        params[k] = v
    dtype = str(jnp.zeros(()).dtype)
    header = {"format": _FORMAT, "generator": "darcy_dataset", "params": params, "dtype": dtype}
    path = os.fspath(path)
    try:
        z = read_arrays(path)
        if json.loads(str(z["header"])) == header:
            return DarcyData(jnp.asarray(z["a"]), jnp.asarray(z["u"]))
    except FileNotFoundError:
        pass
    except (CorruptedFileError, KeyError, ValueError) as e:
        warnings.warn(f"The Darcy cache {e} Regenerating it.", stacklevel=2)
    data = darcy_dataset(n_samples, resolution, **kwargs)
    write_arrays(
        path,
        {
            "header": np.asarray(json.dumps(header)),
            "a": np.asarray(data.a),
            "u": np.asarray(data.u),
        },
    )
    return data
