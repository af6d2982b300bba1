"""What the iterative solves share: argument checks, the stop codes of their loops and
how those become a `scimlx.Solution`, and the stagnation rule."""

from typing import Any

import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jaxtyping import Array

from .._core import check_like, result_from_codes, Solution, solution


# Why a loop stopped, as the integer its carry holds: the RESULTS member for each code.
SUCCESSFUL, MAX_STEPS, BREAKDOWN, NONFINITE, STAGNATION = range(5)
_NAMES = ("successful", "max_steps_reached", "breakdown", "nonfinite", "stagnation")
# lineax's enumeration has no `nonfinite`: a lineax solver reports it as `breakdown`
_LINEAX_NAMES = ("successful", "max_steps_reached", "breakdown", "breakdown", "stagnation")


def lineax_result(code: Array) -> lx.RESULTS:
    """A loop's stop code as the `lineax.RESULTS` item a lineax solver returns."""
    return result_from_codes(code, _LINEAX_NAMES, lx.RESULTS)


def loop_solution(value: Array, stats: dict[str, Any], *, throw: bool) -> Solution:
    """The [`scimlx.Solution`][] of a loop whose `stats["code"]` says why it stopped."""
    result = result_from_codes(stats["code"], _NAMES)
    stats = {key: val for key, val in stats.items() if key != "code"}
    return solution(value, result, stats, throw=throw)


def dot(x: Array, y: Array) -> Array:
    return jnp.sum(x * y)


def stagnation_update(rn, ref, since, k, window):
    """Progress bookkeeping: `ref` is the residual norm at the last step that reduced it by at
    least 10 %, `since` that step; stagnation when `window` steps pass without such a step."""
    improved = rn < 0.9 * ref
    ref = jnp.where(improved, rn, ref)
    since = jnp.where(improved, k, since)
    return ref, since, (window > 0) & (k - since >= window)


def single_array_structure(operator: Any, name: str = "operator") -> jax.ShapeDtypeStruct:
    """The input structure of a square lineax operator acting on one array."""
    if not isinstance(operator, lx.AbstractLinearOperator):
        raise TypeError(f"`{name}` must be a lineax operator, got {type(operator)}.")
    struct = operator.in_structure()
    if not isinstance(struct, jax.ShapeDtypeStruct):
        raise ValueError(
            f"`{name}` must act on a single array (got input structure {struct}); "
            "flatten a pytree-valued problem first."
        )
    if operator.out_structure() != struct:
        raise ValueError(
            f"`{name}` must be square with equal input and output structures, got "
            f"{struct} -> {operator.out_structure()}."
        )
    return struct


def check_loop_fields(solver: Any) -> None:
    """The `__check_init__` of the loop solvers' shared fields: `rtol` and `atol` (where they
    are Python numbers) non-negative and not both zero, `max_steps` and `recompute_every`
    positive integers, `stagnation_window` a non-negative integer."""
    for name in ("rtol", "atol"):
        value = getattr(solver, name)
        if isinstance(value, (int, float)) and (value < 0 or value != value):
            raise ValueError(f"`{name}` must be a non-negative number, got {value}.")
    if isinstance(solver.rtol, (int, float)) and isinstance(solver.atol, (int, float)):
        if solver.rtol == 0 and solver.atol == 0:
            raise ValueError("At least one of `rtol` and `atol` must be positive.")
    for name, minimum in (("max_steps", 1), ("recompute_every", 1), ("stagnation_window", 0)):
        value = getattr(solver, name)
        if not isinstance(value, (int, np.integer)) or value < minimum:
            what = "a positive integer" if minimum else "a non-negative integer (0: off)"
            raise ValueError(f"`{name}` must be {what}, got {value!r}.")


def check_problem(operator: Any, b: Any, x0: Any) -> jax.ShapeDtypeStruct:
    """Check a solve's `operator`, `b` and `x0` (those of the operator's input, or `None`);
    return the operator's input structure."""
    struct = single_array_structure(operator)
    check_like("b", b, struct, what="the operator's input")
    if x0 is not None:
        check_like("x0", x0, struct, what="the operator's input, the grid of `b`")
    return struct
