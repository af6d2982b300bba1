"""A solver wrapper that picks one accepted step (or the step containing a time) during
the solve, for the local regulariser: no per-step buffers."""

from typing import Literal

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, Float, PRNGKeyArray

from ._wrapped import AbstractForwardingSolver


class StepSamplerSolver(AbstractForwardingSolver):
    """Wraps any solver and remembers one step `(t_j, y_j, Δt_j)` of the solve.

    - `sampling="biased"`: uniform over the *accepted* steps by reservoir sampling (the
      `n`-th accepted step replaces the sample with probability `1/n`, drawn from
      `fold_in(key, n)`); `(t_j, y_j)` is the start of the step.
    - `sampling="unbiased"`: the accepted step containing `t_reg`; `y_j` is the solver's
      dense interpolant at `t_reg` and `t_j = t_reg`.

    Since diffrax keeps the solver state of accepted steps only, rejected steps are
    never sampled. The sample is stored in the solver state
    `(inner_state, count, t_j, y_j, Δt_j)`; read it with `SaveAt(solver_state=True)`.

    **Arguments:**

    - `solver`: any diffrax solver.
    - `sampling`: `"unbiased"` or `"biased"`.
    - `t_reg`: the time to sample at (unbiased).
    - `key`: PRNG key for the reservoir (biased).
    """

    solver: dfx.AbstractSolver
    sampling: Literal["unbiased", "biased"] = eqx.field(static=True)
    t_reg: Float[Array, ""]
    key: PRNGKeyArray

    def __check_init__(self):
        if self.sampling not in ("unbiased", "biased"):
            raise ValueError(f"`sampling` must be 'unbiased' or 'biased', got {self.sampling!r}.")

    def init(self, terms, t0, t1, y0, args):
        tdtype = jnp.result_type(jnp.asarray(t0), jnp.asarray(t1))
        zero_t = jnp.zeros((), tdtype)
        y_s = jtu.tree_map(jnp.zeros_like, y0)
        inner = self.solver.init(terms, t0, t1, y0, args)
        return (inner, jnp.array(0, jnp.int32), zero_t, y_s, zero_t)

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        inner, count, t_s, y_s, dt_s = solver_state
        y1, y_error, dense_info, inner, result = self.solver.step(
            terms, t0, t1, y0, args, inner, made_jump
        )
        t0a = jnp.asarray(t0, t_s.dtype)
        t1a = jnp.asarray(t1, t_s.dtype)
        count = count + 1
        if self.sampling == "biased":
            u = jax.random.uniform(jax.random.fold_in(self.key, count), dtype=t_s.dtype)
            take = u * count.astype(t_s.dtype) < 1
            new_t, new_y = t0a, y0
        else:
            t_reg = jnp.asarray(self.t_reg, t_s.dtype)
            take = (t0a <= t_reg) & (t_reg <= t1a)
            t_eval = jnp.clip(t_reg, t0a, t1a)
            interp = self.solver.interpolation_cls(t0=t0, t1=t1, **dense_info)
            new_t = t_eval
            new_y = interp.evaluate(t_eval)
        new_y = jtu.tree_map(lambda a, b: jnp.asarray(a, b.dtype), new_y, y_s)
        t_s = jnp.where(take, new_t, t_s)
        dt_s = jnp.where(take, t1a - t0a, dt_s)
        y_s = jtu.tree_map(lambda a, b: jnp.where(take, a, b), new_y, y_s)
        return y1, y_error, dense_info, (inner, count, t_s, y_s, dt_s), result
