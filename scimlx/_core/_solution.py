"""The value, outcome and statistics of every scimlx solve that is not a diffrax solve."""

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PyTree

from ._results import is_successful, RESULTS


class Solution(eqx.Module):
    """The outcome of a scimlx solve, in the spirit of `lineax.Solution`.

    Every scimlx solve that is not a diffrax solve returns one:
    [`scimlx.linsolve.pcg_solve`][], [`scimlx.linsolve.cd_solve`][],
    [`scimlx.linsolve.dcdm_solve`][], [`scimlx.linsolve.multigrid_solve`][],
    [`scimlx.neuralop.darcy_solve`][] and the latent models' `solve`
    ([`scimlx.sde.AbstractLatentModel.solve`][]). (Neural differential equations return
    diffrax's own `diffrax.Solution`.)

    - `value`: the solution.
    - `result`: a [`scimlx.RESULTS`][] item; `scimlx.is_successful(sol.result)` tells
      whether the solve succeeded (per element under `jax.vmap`).
    - `stats`: a dict of arrays. Every iterative solve reports `num_steps`; the other keys
      (residual norms, operator products, ...) are listed in each solve's docstring.
    """

    value: PyTree[Array]
    result: RESULTS
    stats: dict[str, PyTree[Array]]

    def __check_init__(self):
        if not isinstance(self.result, RESULTS):
            raise TypeError(
                "`result` must be a `scimlx.RESULTS` item (convert a diffrax or lineax one "
                f"with `scimlx.as_result`), got {self.result!r}."
            )


def solution(value: Any, result: Any, stats: dict[str, Any], *, throw: bool) -> Solution:
    """A [`scimlx.Solution`][]; with `throw`, its value raises `result`'s message when the
    computation runs (also under `jit`) unless the solve succeeded."""
    if throw:
        # The check runs on a scalar that `value` then depends on, not on `value` itself:
        # a check's operand is gathered whole onto every device, which would undo the
        # layout of a sharded solve. (The select keeps `value`'s bits.)
        token = result.error_if(jnp.zeros((), jnp.int32), ~is_successful(result))
        value = jax.tree.map(lambda v: jnp.where(token == 0, v, jnp.zeros_like(v)), value)
    return Solution(value=value, result=result, stats=stats)
