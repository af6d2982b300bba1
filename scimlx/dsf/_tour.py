"""`scimlx tour` stage for the DSF: every evaluation mode of S6 and linear attention agrees."""

import time

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr

from ._auto import choose_method
from ._evaluation import Chunked, Matrix, Recurrence, Scan
from ._layers import LinearAttention, S6


MODES = (Recurrence(), Scan(), Chunked(), Matrix())


def _name(mode) -> str:
    return type(mode).__name__.lower()


def tour_stage(quick: bool = False) -> dict:
    """Evaluate S6 and linear attention (d = 8, n = 8, L = 512, float32; `quick`: L = 128) in
    all four modes.

    **Returns:** `{"what", "figure", "ok"}`: `ok` when every mode agrees with the recurrence to a
    relative 1e-4 (float32); the figure gives the largest discrepancy and `Auto`'s choice.
    """
    t0 = time.perf_counter()
    L, d, n = (128 if quick else 512), 8, 8
    key = jr.key(0)
    u = jr.normal(jr.fold_in(key, 0), (L, d), jnp.float32)
    layers = {
        "S6": S6(d, n, dtype=jnp.float32, key=jr.fold_in(key, 1)),
        "linear attention": LinearAttention(d, 1, n, dtype=jnp.float32, key=jr.fold_in(key, 2)),
    }
    worst = 0.0
    choices = []
    for name, layer in layers.items():
        ys = eqx.filter_jit(lambda m, u: [m(u, method=k) for k in MODES])(layer, u)
        ref = ys[0]
        scale = float(jnp.max(jnp.abs(ref)))
        for y in ys[1:]:
            worst = max(worst, float(jnp.max(jnp.abs(y - ref))) / scale)
        system, _ = layer.system(u)
        if jax.tree.leaves(system)[0].ndim == 4:  # multi-head: first head
            system = jax.tree.map(lambda a: a[0], system)
        choices.append(
            f"{name}: fwd {_name(choose_method(system, L, training=False))}, "
            f"train {_name(choose_method(system, L, training=True))}"
        )
    ok = worst < 1e-4
    return {
        "what": f"S6 and linear attention (L={L}, d={d}, n={n}, float32) by recurrence, "
        f"associative scan, chunked and Phi matrix ({time.perf_counter() - t0:.1f} s)",
        "figure": f"max rel. mode discrepancy {worst:.1e}; auto: " + "; ".join(choices),
        "ok": ok,
    }
