"""Truncated conjugate-direction (flexible CG) solver with an arbitrary direction map."""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
from jaxtyping import Array, Float

from .._core import Solution
from .._core._checks import Tolerance
from ._iterative import (
    BREAKDOWN,
    check_loop_fields,
    check_problem,
    dot,
    lineax_result,
    loop_solution,
    MAX_STEPS,
    NONFINITE,
    single_array_structure,
    STAGNATION,
    stagnation_update,
    SUCCESSFUL,
)
from ._sharding import constrain, GridSharding


def _identity(r: Array) -> Array:
    return r


def _cd_loop(
    mv: Callable[[Array], Array],
    direction: Callable[[Array], Array],
    b: Array,
    x0: Array | None,
    *,
    k: int,
    rtol: float | Array,
    atol: float | Array,
    max_steps: int,
    recompute_every: int,
    stall_tol: float = 0.0,
    stagnation_window: int = 100,
    sharding: GridSharding | None = None,
):
    """The loop itself, on plain arrays. Returns (x, code, stats), `code` (also in
    `stats["code"]`) saying why it stopped: converged, max steps, breakdown (non-positive
    curvature), non-finite or stagnation (the codes of `_iterative`)."""
    dtype = b.dtype
    b = constrain(sharding, b)
    bnorm = jnp.sqrt(dot(b, b))
    tol = jnp.asarray(atol, dtype) + jnp.asarray(rtol, dtype) * bnorm
    if x0 is None:
        x = jnp.zeros_like(b)
        r = b
        n_mv = jnp.array(0, jnp.int32)
    else:
        x = x0.astype(dtype)
        r = b - mv(x)
        n_mv = jnp.array(1, jnp.int32)
    x, r = constrain(sharding, x, r)
    rnorm = jnp.sqrt(dot(r, r))
    kk = max(k, 1)  # buffers of length >= 1 keep shapes static; unused when k == 0
    P, AP = constrain(
        sharding, jnp.zeros((kk,) + b.shape, dtype), jnp.zeros((kk,) + b.shape, dtype)
    )
    pAp = jnp.ones((kk,), dtype)
    hist = jnp.full((max_steps + 1,), jnp.nan, dtype).at[0].set(rnorm)
    code = jnp.where(jnp.isfinite(rnorm), SUCCESSFUL, NONFINITE).astype(jnp.int32)

    def cond_fun(carry):
        it, _, _, rnorm, _, _, _, _, _, _, _, code, _, _ = carry
        return (it < max_steps) & (rnorm > tol) & (code == SUCCESSFUL)

    def body_fun(carry):
        it, x, r, rnorm, P, AP, pAp, hist, n_mv, n_dir, n_fb, code, ref, since = carry
        q = jnp.asarray(direction(r)).astype(dtype)
        if q.shape != b.shape:
            raise ValueError(
                f"`direction` must map a residual of shape {b.shape} to a direction of "
                f"the same shape, got {q.shape}."
            )
        if stall_tol > 0:
            # q.r is unchanged by the A-orthogonalisation (r is orthogonal to the previous
            # directions), so a direction nearly orthogonal to r cannot make progress, and a
            # deterministic map would return it again: take the residual instead.
            qn = jnp.sqrt(dot(q, q))
            stalled = ~(jnp.abs(dot(q, r)) > stall_tol * qn * rnorm)
            q = jnp.where(stalled, r, q)
            n_fb = n_fb + stalled.astype(jnp.int32)
        if k > 0:
            # Gram-Schmidt in the A inner product against the last k directions.
            coeff = jnp.tensordot(AP, q, axes=q.ndim) / pAp
            q = q - jnp.tensordot(coeff, P, axes=1)
        q = constrain(sharding, q)
        Aq = constrain(sharding, mv(q))
        qAq = dot(q, Aq)
        qr = dot(q, r)
        finite = jnp.isfinite(qAq) & jnp.isfinite(qr)
        bad_curv = finite & ~(qAq > 0)
        ok = finite & ~bad_curv
        alpha = jnp.where(ok, qr / jnp.where(ok, qAq, 1.0), 0.0)
        x = x + alpha * q
        r = r - alpha * Aq
        # the true residual every `recompute_every` steps and before declaring convergence
        recompute = ((it + 1) % recompute_every == 0) | (jnp.sqrt(dot(r, r)) <= tol)
        r = jax.lax.cond(recompute, lambda: b - mv(x), lambda: r)
        n_mv = n_mv + 1 + recompute.astype(jnp.int32)
        x, r = constrain(sharding, x, r)
        rnorm_new = jnp.sqrt(dot(r, r))
        if k > 0:
            slot = it % k
            P = P.at[slot].set(jnp.where(ok, q, 0.0))
            AP = AP.at[slot].set(jnp.where(ok, Aq, 0.0))
            P, AP = constrain(sharding, P, AP)
            pAp = pAp.at[slot].set(jnp.where(ok, qAq, 1.0))
        code = jnp.where(
            ~finite | ~jnp.isfinite(rnorm_new),
            NONFINITE,
            jnp.where(bad_curv, BREAKDOWN, SUCCESSFUL),
        )
        ref, since, stagnated = stagnation_update(rnorm_new, ref, since, it + 1, stagnation_window)
        code = jnp.where((code == SUCCESSFUL) & stagnated & (rnorm_new > tol), STAGNATION, code)
        code = code.astype(jnp.int32)
        hist = hist.at[it + 1].set(rnorm_new)
        return (it + 1, x, r, rnorm_new, P, AP, pAp, hist, n_mv, n_dir + 1, n_fb, code, ref, since)

    zero = jnp.array(0, jnp.int32)
    carry = (zero, x, r, rnorm, P, AP, pAp, hist, n_mv, zero, zero, code, rnorm, zero)
    it, x, r, rnorm, _, _, _, hist, n_mv, n_dir, n_fb, code, _, _ = jax.lax.while_loop(
        cond_fun, body_fun, carry
    )
    rtrue = b - mv(x)
    code = jnp.where((code == SUCCESSFUL) & ~(jnp.sqrt(dot(rtrue, rtrue)) <= tol), MAX_STEPS, code)
    stats = {
        "num_steps": it,
        "num_mv": n_mv + 1,
        "num_direction_evals": n_dir,
        "num_fallbacks": n_fb,
        "residual_history": hist,
        "residual_norm": rnorm,
        "true_residual_norm": jnp.sqrt(dot(rtrue, rtrue)),
        "b_norm": bnorm,
        "code": code,
    }
    return x, code, stats


class ConjugateDirection(lx.AbstractLinearSolver):
    r"""Truncated conjugate-direction (flexible CG) solver for SPD operators.

    At step $i$ a direction $q = f(r_i)$ is taken from the `direction` map, made
    $A$-orthogonal to the last `k` directions (kept with their $A$-images in ring buffers,
    so each step costs one operator product), and an exact line search
    $\alpha = q^\top r_i / q^\top A q$ updates $x$ and $r$. The error's $A$-norm never
    increases, whatever $f$ returns: $f$ may be nonlinear (a network). With $f$ the
    identity and $k \geq 1$ this is CG; with $f = M$ a fixed SPD preconditioner it is PCG;
    with a varying $f$ it is flexible CG (Notay's FCG($k$)); with a network on $r/|r|$ and
    $k=2$ it is DCDM (Kaneda et al. 2023).

    Stops when $\|r\|_2 \leq$ `atol` $+$ `rtol` $\|b\|_2$ (no element-wise test, so
    right-hand sides with exact zeros are fine). The residual is recomputed as $b - Ax$
    every `recompute_every` steps. With `stall_tol > 0`, a direction with
    $|q^\top r| \le$ `stall_tol` $\|q\|\|r\|$ (no progress possible; a deterministic
    map would return it again at the unchanged residual) is replaced by $r$ for that step.

    Plugs into `lineax.linear_solve`, which supplies the implicit derivative (a transposed
    solve with this solver) with respect to the operator and the right-hand side. The
    direction map is not differentiated. Options: `y0`, an initial guess.
    """

    rtol: Tolerance
    atol: Tolerance
    direction: Callable[[Array], Array] | None = None
    k: int = eqx.field(static=True, default=2)
    max_steps: int = eqx.field(static=True, default=1000)
    recompute_every: int = eqx.field(static=True, default=50)
    stall_tol: float = eqx.field(static=True, default=0.0)
    stagnation_window: int = eqx.field(static=True, default=100)
    sharding: GridSharding | None = None

    def __check_init__(self):
        check_loop_fields(self)
        if not isinstance(self.k, int) or self.k < 0:
            raise ValueError(f"`k` must be a non-negative integer, got {self.k!r}.")

    def init(self, operator: lx.AbstractLinearOperator, options: dict[str, Any]):
        del options
        single_array_structure(operator)
        if not lx.is_positive_semidefinite(operator):
            raise ValueError(
                "`operator` must be tagged positive (semi)definite for the conjugate-"
                "direction solver (e.g. `tags=(lx.symmetric_tag, lx.positive_semidefinite_tag)`)."
            )
        return lx.linearise(operator)

    def compute(self, state, vector, options: dict[str, Any]):
        operator = state
        direction = _identity if self.direction is None else self.direction
        x0 = options.get("y0", None)
        x, code, stats = _cd_loop(
            operator.mv,
            direction,
            vector,
            x0,
            k=self.k,
            rtol=self.rtol,
            atol=self.atol,
            max_steps=self.max_steps,
            recompute_every=self.recompute_every,
            stall_tol=self.stall_tol,
            stagnation_window=self.stagnation_window,
            sharding=self.sharding,
        )
        return x, lineax_result(code), stats

    def transpose(self, state, options: dict[str, Any]):
        del options
        return state.transpose(), {}

    def conj(self, state, options: dict[str, Any]):
        del options
        return lx.conj(state), {}

    def assume_full_rank(self):
        return True


@eqx.filter_jit
def cd_solve(
    operator: lx.AbstractLinearOperator,
    b: Float[Array, "*shape"],
    *,
    direction: Callable[[Float[Array, "*shape"]], Float[Array, "*shape"]] | None = None,
    k: int = 2,
    rtol: Tolerance = 1e-6,
    atol: Tolerance = 0.0,
    max_steps: int = 1000,
    recompute_every: int = 50,
    x0: Float[Array, "..."] | None = None,  # shape checked below, with a clear message
    stall_tol: float = 0.0,
    throw: bool = True,
    stagnation_window: int = 100,
    sharding: GridSharding | None = None,
) -> Solution:
    r"""Solve $Ax = b$ (A SPD) by truncated conjugate directions with a direction map.

    **Arguments:**

    - `operator`: a lineax operator acting on one array (any shape, e.g. a grid), tagged
      positive semidefinite.
    - `b`: right-hand side, same shape as the operator's input.
    - `direction`: any callable $r \mapsto q$ of the residual (a network, a
      preconditioner's `mv`, ...); `None` is the identity (then this is CG).
    - `k`: number of previous directions to $A$-orthogonalise against (0 = none).
    - `rtol`, `atol`: stop when $\|r\|_2 \leq$ `atol` + `rtol` $\|b\|_2$.
    - `max_steps`: iteration cap (also the residual-history buffer length minus one).
    - `recompute_every`: recompute the true residual $b - Ax$ every this many steps.
    - `x0`: initial guess (default zero).
    - `stall_tol`: if positive, a direction $q$ with $|q^\top r| \le$ `stall_tol`
      $\|q\|_2 \|r\|_2$ is replaced by $r$ for that step (counted in
      `stats["num_fallbacks"]`); this rescues nonlinear direction maps from stagnation.
    - `throw`: raise on failure; pass `False` under `vmap` and read `sol.result`.
    - `stagnation_window`: stop with `RESULTS.stagnation` after this many steps without a
      10 % reduction of $\|r\|_2$ (`0`: off); the residual reached is in `stats`.
    - `sharding`: a [`scimlx.linsolve.GridSharding`][] to split the grid vectors (and the
      stored directions) over a device mesh.

    **Returns:**

    A [`scimlx.Solution`][]. Gradients of `value` with respect to `b` and to the
    operator's arrays are implicit (lineax's rule: a transposed solve). `result` is
    `successful` (the true residual $\|b - Ax\|_2$ meets the tolerance),
    `max_steps_reached`, `breakdown` (non-positive curvature $q^\top A q \leq 0$),
    `stagnation` or `nonfinite`. `stats` holds:

    - `num_steps`: iterations taken;
    - `num_mv`: operator products, including residual recomputations and the final true
      residual;
    - `num_direction_evals`: calls of the direction map;
    - `num_fallbacks`: steps that replaced a stalled direction by $r$ (see `stall_tol`);
    - `residual_history`: $\|r_i\|_2$, length `max_steps + 1`, NaN after the last step;
    - `residual_norm`: the last $\|r\|_2$ of the iteration;
    - `true_residual_norm`: $\|b - Ax\|_2$ of the returned `value`;
    - `b_norm`: $\|b\|_2$.
    """
    check_problem(operator, b, x0)
    solver = ConjugateDirection(
        rtol=rtol,
        atol=atol,
        direction=direction,
        k=k,
        max_steps=max_steps,
        recompute_every=recompute_every,
        stall_tol=stall_tol,
        stagnation_window=stagnation_window,
        sharding=sharding,
    )
    options = {} if x0 is None else {"y0": x0}
    sol = lx.linear_solve(operator, b, solver, options=options, throw=False)
    return loop_solution(constrain(sharding, sol.value), sol.stats, throw=throw)
