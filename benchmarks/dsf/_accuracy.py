"""Float32 accuracy of the chunked form's parameter gradients (section 1d)."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

import scimlx.dsf as dsf

from ._problems import F32, GRAD_FAMILIES, strong_decays


def _max_leaf_rel_err(tree, ref):
    """(error, leaf): the largest over leaves of max|g - g_ref| / max|g_ref|."""
    worst = (0.0, None)
    for (path, a), b in zip(
        jax.tree_util.tree_flatten_with_path(tree)[0], jax.tree.leaves(ref), strict=True
    ):
        b = np.asarray(b)
        diff, scale = np.max(np.abs(np.asarray(a, np.float64) - b)), np.max(np.abs(b))
        # a parameter the output does not depend on (qLSTM's alpha without reversed sigmoid)
        e = float(diff / scale) if scale > 0 else (0.0 if diff == 0 else math.inf)
        if e >= worst[0]:
            worst = (e, jax.tree_util.keystr(path))
    return worst


def grad_accuracy_section(L: int = 256, d: int = 16, n: int = 8, families=GRAD_FAMILIES):
    """Gradient of a fixed linear functional of the output, sum(w * y), with respect to every
    parameter of each scalar-decay layer: the chunked form in float32 (default block length)
    against the recurrence in float64, at the initial parameters ("ordinary" decays) and with
    strong decays. The float32 recurrence's own error is the floor beside it."""
    print("== 1d. parameter gradients of the chunked form, float32 vs float64 ==", flush=True)
    u64 = jr.normal(jr.key(2), (L, d), jnp.float64)
    w64 = jr.normal(jr.key(3), (L, d), jnp.float64)
    u32, w32 = u64.astype(F32), w64.astype(F32)

    def loss(layer, u, w, method):
        return jnp.sum(w * layer(u, method=method))

    grad = eqx.filter_jit(eqx.filter_grad(loss))
    rec, chunked = dsf.Recurrence(), dsf.Chunked()
    rows = []
    for name in families:
        i = GRAD_FAMILIES.index(name)
        base = dsf.make_mixer(
            name, d, d_state=n, n_heads=2, dtype=jnp.float64, key=jr.fold_in(jr.key(4), i)
        )
        for decays in ("ordinary", "strong"):
            layer = base if decays == "ordinary" else strong_decays(name, base)
            system, _ = dsf.to_dsf(layer, u64)
            ll = np.asarray(system.log_lam)
            head = jax.tree.map(lambda a: a[0], system) if ll.ndim == 4 else system
            ref = grad(layer, u64, w64, rec)
            layer32 = jax.tree.map(lambda a: a.astype(F32) if eqx.is_inexact_array(a) else a, layer)
            err_c, leaf_c = _max_leaf_rel_err(grad(layer32, u32, w32, chunked), ref)
            err_r, leaf_r = _max_leaf_rel_err(grad(layer32, u32, w32, rec), ref)
            rows.append(
                dict(
                    family=name,
                    decays=decays,
                    log_decay_min=float(ll.min()),
                    log_decay_max=float(ll.max()),
                    chunk_size=dsf.choose_chunk_size(head),
                    grad_rel_err_chunked=err_c,
                    worst_leaf_chunked=leaf_c,
                    grad_rel_err_recurrence=err_r,
                    worst_leaf_recurrence=leaf_r,
                )
            )
            print(
                f"  {name:15s} {decays:8s} log-decay [{ll.min():6.1f}, {ll.max():5.1f}]: "
                f"chunked {err_c:.1e} ({leaf_c}), recurrence {err_r:.1e}",
                flush=True,
            )
    return rows
