"""Lanczos with full reorthogonalisation (Ritz pairs) and the DCDM right-hand-side sampler."""

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
from jaxtyping import Array, Float, PRNGKeyArray

from ._iterative import single_array_structure


@eqx.filter_jit
def lanczos(
    operator: lx.AbstractLinearOperator,
    v0: Float[Array, "*shape"],
    *,
    steps: int,
) -> tuple[Float[Array, " m"], Float[Array, " m"], Float[Array, "m n"]]:
    r"""Lanczos tridiagonalisation of a symmetric operator, with full reorthogonalisation.

    Each new vector is orthogonalised (twice, classical Gram-Schmidt) against all previous
    ones, so the basis stays orthonormal to rounding. If the Krylov space is exhausted
    ($\beta_j \approx 0$) the remaining vectors are zero and the remaining couplings zero.

    **Arguments:**

    - `operator`: a symmetric lineax operator on one array.
    - `v0`: starting vector (any nonzero scale).
    - `steps`: number of Lanczos steps `m` (memory: `m` vectors of the operator's size).

    **Returns:**

    `(alpha, beta, Q)`: the diagonal `alpha` (m,), the off-diagonal `beta` (m,)
    (`beta[j]` couples `j` and `j + 1`; the last is the residual norm), and the basis
    `Q` of shape `(m, n)` (flattened vectors).
    """
    struct = single_array_structure(operator)
    if v0.shape != struct.shape:
        raise ValueError(f"`v0` must have shape {struct.shape}, got {v0.shape}.")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"`steps` must be a positive integer, got {steps!r}.")
    n = v0.size
    dtype = struct.dtype
    v = v0.reshape(-1).astype(dtype)
    v = v / jnp.linalg.norm(v)
    Q = jnp.zeros((steps, n), dtype).at[0].set(v)
    alpha = jnp.zeros((steps,), dtype)
    beta = jnp.zeros((steps,), dtype)
    eps = jnp.finfo(dtype).eps

    def body(j, carry):
        Q, alpha, beta, scale = carry
        q = Q[j]
        w = operator.mv(q.reshape(struct.shape)).reshape(-1)
        a = jnp.dot(q, w)
        w = w - Q.T @ (Q @ w)  # full reorthogonalisation (rows > j are zero)
        w = w - Q.T @ (Q @ w)
        b = jnp.linalg.norm(w)
        scale = jnp.maximum(scale, jnp.abs(a) + b)
        ok = b > 100 * eps * scale
        qn = jnp.where(ok, w / jnp.where(ok, b, 1.0), 0.0)
        b = jnp.where(ok, b, 0.0)
        Q = jax.lax.cond(j + 1 < steps, lambda: Q.at[j + 1].set(qn), lambda: Q)
        return Q, alpha.at[j].set(a), beta.at[j].set(b), scale

    Q, alpha, beta, _ = jax.lax.fori_loop(0, steps, body, (Q, alpha, beta, jnp.zeros((), dtype)))
    return alpha, beta, Q


@eqx.filter_jit
def ritz_pairs(
    operator: lx.AbstractLinearOperator,
    *,
    steps: int,
    key: PRNGKeyArray,
    mask: Float[Array, "*shape"] | None = None,
) -> tuple[Float[Array, " m"], Float[Array, " m *shape"]]:
    """Ritz values and vectors of an SPD operator from `steps` Lanczos steps.

    As in the DCDM code, Lanczos starts from `A @ g` with `g` Gaussian (restricted to the
    fluid cells by `mask`, so that the Krylov space, hence every Ritz vector, lives on the
    fluid and excludes the identity rows of solid cells).

    **Arguments:**

    - `operator`: SPD lineax operator on one array of shape `shape`.
    - `steps`: Lanczos steps `m` (keep `m * n * 8` bytes in memory in mind).
    - `key`: PRNG key for the starting vector.
    - `mask`: 1 on the cells the vectors may live on, 0 elsewhere (default: all).

    **Returns:**

    `(values, vectors)`: Ritz values in ascending order (m,) and unit Ritz vectors
    `(m, *shape)`. If the Krylov space is exhausted before `m` steps, the missing pairs
    are placed last with value 0 and zero vectors.
    """
    struct = single_array_structure(operator)
    g = jax.random.normal(key, struct.shape, struct.dtype)
    if mask is not None:
        if mask.shape != struct.shape:
            raise ValueError(f"`mask` must have shape {struct.shape}, got {mask.shape}.")
        g = g * mask.astype(struct.dtype)
    v0 = operator.mv(g)
    if mask is not None:
        v0 = v0 * mask.astype(struct.dtype)
    alpha, beta, Q = lanczos(operator, v0, steps=steps)
    # A zero coupling decouples the rest; the zero rows of Q then give zero Ritz vectors.
    valid = jnp.linalg.norm(Q, axis=1) > 0
    T = jnp.diag(alpha) + jnp.diag(beta[:-1], 1) + jnp.diag(beta[:-1], -1)
    T = jnp.where(valid[:, None] & valid[None, :], T, 0.0)
    vals, S = jnp.linalg.eigh(T)
    V = S.T @ Q
    nrm = jnp.linalg.norm(V, axis=1)
    good = nrm > 0.5
    vals = jnp.where(good, vals, 0.0)
    V = jnp.where(good[:, None], V / jnp.where(good, nrm, 1.0)[:, None], 0.0)
    order = jnp.argsort(jnp.where(good, vals, jnp.inf))
    return vals[order], V[order].reshape((steps,) + struct.shape)


def ritz_rhs(
    vectors: Float[Array, " m *shape"],
    key: PRNGKeyArray,
    *,
    low: int | None = None,
    low_scale: float = 9.0,
) -> Float[Array, "*shape"]:
    r"""One DCDM training right-hand side: a random Ritz combination, weighted low.

    $b = \sum_i c_i v_i / \|\cdot\|_2$ with $c_i \sim N(0, 1)$, multiplied by `low_scale`
    (9 in the paper: 81x the variance) for the `low` lowest Ritz vectors (default
    $m/2 + m/20$, the paper's $m/2 + \theta$ with $\theta = 500$ for $m = 10^4$).

    **Arguments:**

    - `vectors`: Ritz vectors `(m, *shape)`, in ascending order of Ritz value.
    - `key`: PRNG key.
    - `low`: how many of the lowest vectors get the larger weight.
    - `low_scale`: that weight.

    **Returns:**

    A unit-norm right-hand side of shape `shape`.
    """
    m = vectors.shape[0]
    low = m // 2 + m // 20 if low is None else low
    if not 0 <= low <= m:
        raise ValueError(f"`low` must be in [0, {m}], got {low}.")
    c = jax.random.normal(key, (m,), vectors.dtype)
    c = c * jnp.where(jnp.arange(m) < low, low_scale, 1.0).astype(vectors.dtype)
    b = jnp.tensordot(c, vectors, axes=1)
    return b / jnp.linalg.norm(b)
