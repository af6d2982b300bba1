"""The failure codes every scimlx solve reports, and the one place that handles the
internals of equinox enumerations (codes as integers, names, promotion between the
diffrax, lineax and optimistix families)."""

from collections.abc import Iterator, Sequence
from typing import Any

import diffrax
import jax
import jax.numpy as jnp
import numpy as np


# The class of every equinox enumeration's items (equinox exports `Enumeration` only).
EnumerationItem = type(diffrax.RESULTS.successful)


class _ResultsMeta(type(diffrax.RESULTS)):
    # equinox enumerations have `len()` and `[item]` (the message) but no iteration:
    # `list(RESULTS)` would call `RESULTS[0]`, which equinox rejects.
    def __iter__(cls) -> Iterator[Any]:
        items = sorted(cls._name_to_item.values(), key=lambda item: int(item._value))
        return iter(items)


class RESULTS(diffrax.RESULTS, metaclass=_ResultsMeta):  # pyright: ignore[reportGeneralTypeIssues]
    """Outcome of a scimlx solve or study, extending `diffrax.RESULTS`.

    `diffrax.RESULTS` already contains lineax's and optimistix's codes (`successful`,
    `max_steps_reached`, `singular`, `breakdown`, `stagnation`, `nonfinite`, ...). scimlx
    adds `invalid_input`, and its `breakdown` message says what a breakdown is in scimlx's
    conjugate-gradient and conjugate-direction solves (non-positive curvature). A result
    from diffrax, lineax or optimistix compares with these members directly
    (`lineax_sol.result == scimlx.RESULTS.successful`), and
    [`scimlx.is_successful`][] accepts any of them; [`scimlx.as_result`][] converts one
    into this enumeration. `list(scimlx.RESULTS)` lists every code in order, and
    `scimlx.RESULTS[item]` gives a code's message.

    Solves take `throw: bool = True`. With `throw=True` a failure raises (also under
    `jit`, through `eqx.error_if`). Under `jax.vmap` pass `throw=False` and read
    `sol.result` per batch element, e.g. `scimlx.is_successful(sol.result)`.
    """

    successful = ""
    invalid_input = "An input violated the documented requirements (see the argument's docs)."


# `breakdown` is lineax's code; its message here also says what it means in scimlx's
# solves (set after the class is built: redefining it in the body makes equinox warn).
RESULTS._index_to_message[int(RESULTS.breakdown._value)] = (
    "An iterative linear solve broke down. In a conjugate-gradient or conjugate-direction "
    "solve (`pcg_solve`, `cd_solve`, `dcdm_solve`) a search direction had non-positive "
    "curvature d^T A d <= 0: the operator is not positive definite on the search space, or "
    "the preconditioner or direction map failed. With lineax's GMRES, try increasing "
    "`restart`."
)


def as_result(result: Any) -> Any:
    """`result` as a member of [`scimlx.RESULTS`][].

    **Arguments:**

    - `result`: an item of `scimlx.RESULTS`, `diffrax.RESULTS`, `optimistix.RESULTS` or
      `lineax.RESULTS` (possibly batched or traced).

    **Returns:**

    The same outcome as a `scimlx.RESULTS` item (a subclass enumeration's item is
    returned unchanged).
    """
    if not isinstance(result, EnumerationItem):
        raise TypeError(
            f"`result` must be a RESULTS item of scimlx, diffrax, lineax or optimistix, got "
            f"{type(result).__name__}."
        )
    enumeration = result._enumeration
    if issubclass(enumeration, RESULTS):
        return result
    if issubclass(RESULTS, enumeration):
        return RESULTS.promote(result)
    raise TypeError(
        f"`result` is an item of {enumeration.__module__}.{enumeration.__qualname__}, which "
        "is not a diffrax, lineax or optimistix RESULTS enumeration."
    )


def is_successful(result: Any):
    """`True` (as a boolean array, batched like `result`) where `result` is `successful`.

    **Arguments:**

    - `result`: a `RESULTS` item of scimlx, diffrax, lineax or optimistix (or of any
      equinox enumeration with a `successful` member), or an array of integer codes as
      stored by [`scimlx.ensemble.load_outputs`][] (0 is `successful`).
    """
    if isinstance(result, EnumerationItem):
        success = result._enumeration.successful._value
        with jax.ensure_compile_time_eval():
            return jnp.asarray(result._value == success)
    codes = jnp.asarray(result)
    if not jnp.issubdtype(codes.dtype, jnp.integer):
        raise TypeError(
            "`result` must be a RESULTS item or an array of integer codes, got dtype "
            f"{codes.dtype}."
        )
    return codes == 0


def code_of(result: Any) -> jax.Array:
    """The integer code of a result item (or an int array passed through), as int32."""
    if isinstance(result, EnumerationItem):
        return jnp.asarray(result._value).astype(jnp.int32)
    return jnp.asarray(result).astype(jnp.int32)


def is_result(x: Any) -> bool:
    """Whether `x` is an item of an equinox enumeration (a `RESULTS` of any library)."""
    return isinstance(x, EnumerationItem)


def enumeration_of(result: Any) -> Any:
    """The enumeration class a result item belongs to."""
    return result._enumeration


def code_names(enumeration: Any = RESULTS) -> list[str]:
    """The member names of an equinox enumeration, indexed by integer code."""
    names = [""] * len(enumeration._name_to_item)
    for name, item in enumeration._name_to_item.items():
        names[int(item._value)] = name
    return names


def result_from_codes(codes: Any, names: Sequence[str], enumeration: Any = RESULTS) -> Any:
    """The item of `enumeration` named `names[c]` for each solver code `c`.

    A solver loop records why it stopped as a small integer (its own code `c`, an index
    into `names`); this is the one place where such codes become `RESULTS` items.

    **Arguments:**

    - `codes`: integer array (any shape, possibly traced) of indices into `names`.
    - `names`: the member name for each solver code, e.g.
      `("successful", "max_steps_reached", "breakdown")`.
    - `enumeration`: the enumeration to build items of (default `scimlx.RESULTS`; a lineax
      solver returns `lineax.RESULTS`).
    """
    table = np.array([int(getattr(enumeration, name)._value) for name in names], np.int32)
    with jax.ensure_compile_time_eval():
        value = jnp.asarray(table)[jnp.asarray(codes)]
    return item_with_codes(value, enumeration)


def item_with_codes(codes: Any, enumeration: Any) -> Any:
    """An item of `enumeration` holding the integer `codes` (any shape)."""
    return EnumerationItem(jnp.asarray(codes).astype(jnp.int32), enumeration)  # pyright: ignore


# Cross-family comparisons. equinox compares items of one enumeration only
# ("Can only compare equality between enumerations of the same type"), so that
# `diffrax_sol.result == scimlx.RESULTS.successful` would raise although scimlx.RESULTS
# extends diffrax's codes. equinox offers no public hook for this (items of every
# enumeration are of the one class, and `Enumeration.where`/`promote` build plain items), so
# its comparison is wrapped here. When one side is a scimlx `RESULTS` item and the other an
# item of one of its base enumerations (diffrax, optimistix, lineax), the base item is
# promoted first; every other comparison is left to equinox unchanged.
_eqx_eq = EnumerationItem.__eq__
_eqx_ne = EnumerationItem.__ne__


def _promoted_pair(a: Any, b: Any):
    if not (isinstance(a, EnumerationItem) and isinstance(b, EnumerationItem)):
        return None
    ea, eb = a._enumeration, b._enumeration
    if ea is eb:
        return None
    if issubclass(ea, RESULTS) and issubclass(ea, eb):
        return a, ea.promote(b)
    if issubclass(eb, RESULTS) and issubclass(eb, ea):
        return eb.promote(a), b
    return None


def _eq(self, other):
    pair = _promoted_pair(self, other)
    if pair is None:
        return _eqx_eq(self, other)
    return _eqx_eq(*pair)


def _ne(self, other):
    pair = _promoted_pair(self, other)
    if pair is None:
        return _eqx_ne(self, other)
    return _eqx_ne(*pair)


if not getattr(EnumerationItem, "_scimlx_cross_family", False):
    EnumerationItem.__eq__ = _eq  # pyright: ignore
    EnumerationItem.__ne__ = _ne  # pyright: ignore
    EnumerationItem._scimlx_cross_family = True  # pyright: ignore
