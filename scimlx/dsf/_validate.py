"""Argument checks of the DSF layers and the sequence model (messages name the argument)."""

import jax
import numpy as np

from .._core._checks import (
    check_finite,
    check_ordered,
    check_positive,
    check_range,
    error_if_out_of_range,
)


def check_dt_range(dt_min, dt_max) -> None:
    """`0 < dt_min <= dt_max`, both finite (the range the step sizes are drawn from)."""
    for name, value in (("dt_min", dt_min), ("dt_max", dt_max)):
        check_finite(name, value)
        check_positive(name, value)
    check_ordered("dt_min", dt_min, "dt_max", dt_max, strict=False)


def check_radius_range(r_min, r_max) -> None:
    """`0 <= r_min < r_max <= 1`: the LRU's eigenvalue moduli (a stable recurrence)."""
    check_range("r_min", r_min, lower=0.0, upper=1.0)
    check_range("r_max", r_max, lower=0.0, upper=1.0)
    check_ordered("r_min", r_min, "r_max", r_max)


def _declared_width(layer) -> int | None:
    """The model width `d` a built layer holds in its parameters (its `(d,)` skip or bias
    vector, or its `(d, d)` output map), or `None` for a layer with neither."""
    for name in ("D", "b_dt", "a_param", "Wo"):
        leaf = getattr(layer, name, None)
        if leaf is not None and np.ndim(leaf) in (1, 2):
            return int(np.shape(leaf)[-1])
    return None


def check_layer_input(layer, u) -> None:
    """`u` must be one sequence `(L, d_model)` of the width `layer` was built for, so that a
    wrong width is named instead of failing inside XLA. Checked on shapes only (for a layer
    whose width is not in a known parameter, by an abstract trace of `layer.system`)."""
    if np.ndim(u) != 2:
        raise ValueError(
            f"`u` must be one sequence of shape (L, d_model), got shape {np.shape(u)} "
            "(batch with jax.vmap)."
        )
    width = _declared_width(layer)
    if width is not None:
        if np.shape(u)[1] != width:
            raise ValueError(
                f"`u` must have shape (L, {width}) ({type(layer).__name__} was built with "
                f"d_model={width}), got {np.shape(u)}."
            )
        return
    try:
        jax.eval_shape(layer.system, u)
    except Exception as e:
        raise ValueError(
            f"`u` of shape {np.shape(u)} does not fit {type(layer).__name__}: its last axis "
            f"must be the layer's `d_model` ({type(e).__name__}: {e})."
        ) from e


def check_tokens(tokens, vocab_size: int):
    """Token ids: a 1-D integer array with values in `[0, vocab_size)`. Concrete ids are
    checked now (`ValueError`); traced ones raise when run (`eqx.error_if`)."""
    if np.ndim(tokens) != 1:
        raise ValueError(
            f"`tokens` must be one 1-D sequence of ids, got shape {np.shape(tokens)} (batch "
            "with jax.vmap)."
        )
    if not np.issubdtype(np.result_type(tokens), np.integer):
        raise TypeError(f"`tokens` must hold integer ids, got dtype {np.result_type(tokens)}.")
    if not isinstance(tokens, jax.core.Tracer):
        arr = np.asarray(tokens)
        bad = (arr < 0) | (arr >= vocab_size)
        if bad.any():
            raise ValueError(
                f"`tokens` must hold ids in [0, {vocab_size}) (`vocab_size`), got "
                f"{arr[bad][0]} at position {int(np.flatnonzero(bad)[0])}."
            )
        return tokens
    return error_if_out_of_range("tokens", tokens, 0, vocab_size)
