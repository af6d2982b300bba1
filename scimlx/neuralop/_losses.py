"""Relative L2 and H1 errors used to train and evaluate neural operators."""

import jax.numpy as jnp
from jaxtyping import Array, Float


def _check_pair(pred, true):
    if pred.shape != true.shape:
        raise ValueError(
            f"`pred` and `true` must have the same shape, got {pred.shape} and {true.shape}."
        )
    if pred.dtype != true.dtype:
        raise ValueError(
            f"`pred` and `true` must have the same dtype, got {pred.dtype} and {true.dtype}."
        )


def rel_l2(pred: Float[Array, "*shape"], true: Float[Array, "*shape"]) -> Float[Array, ""]:
    """Relative L2 error `||pred - true||_2 / ||true||_2` of one example.

    **Arguments:**

    - `pred`: the prediction, any shape (channels and grid of one example).
    - `true`: the reference, same shape and dtype as `pred`.

    **Returns:**

    A scalar. Average over a batch with `jnp.mean(jax.vmap(rel_l2)(preds, trues))`.
    """
    _check_pair(pred, true)
    return jnp.linalg.norm((pred - true).ravel()) / jnp.linalg.norm(true.ravel())


def _wavenumbers(n: int, dtype) -> Array:
    return jnp.fft.fftfreq(n, d=1.0 / n).astype(dtype)


def rel_h1(
    pred: Float[Array, "*channels x y"], true: Float[Array, "*channels x y"]
) -> Float[Array, ""]:
    """Relative H1 error of one 2-D example, computed in Fourier space.

    This is the "H1" of the FNO and MgNO papers (`HsLoss(k=1)`): with `F` the 2-D discrete
    Fourier transform over the last two axes and integer wavenumbers `(kx, ky)`,
    `||w F(pred - true)||_2 / ||w F(true)||_2` where `w = sqrt(1 + kx^2 + ky^2)`.
    It weights derivatives as if the data were periodic; it is a metric, not a finite-element
    H1 norm.

    **Arguments:**

    - `pred`: the prediction, shape `(..., x, y)`.
    - `true`: the reference, same shape and dtype as `pred`.

    **Returns:**

    A scalar.
    """
    _check_pair(pred, true)
    if pred.ndim < 2:
        raise ValueError(f"`pred` must have at least 2 (spatial) axes, got shape {pred.shape}.")
    nx, ny = pred.shape[-2:]
    kx = _wavenumbers(nx, pred.dtype)
    ky = _wavenumbers(ny, pred.dtype)
    w = jnp.sqrt(1.0 + kx[:, None] ** 2 + ky[None, :] ** 2)
    diff = jnp.fft.fft2(pred - true)
    ref = jnp.fft.fft2(true)
    w = jnp.broadcast_to(w, diff.shape).astype(diff.dtype)
    diff = diff * w
    ref = ref * w
    return jnp.linalg.norm(diff.ravel()) / jnp.linalg.norm(ref.ravel())
