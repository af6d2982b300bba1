"""The benchmark's sizes, models and Darcy data."""

import time

import jax
import jax.numpy as jnp

from scimlx.neuralop import cell_restrict, darcy_cached, FNO, MgNO, rel_l2


F32 = jnp.float32
QUARTER = "MgNO, 1/4 of FNO 12/32"

# `--rows` ids -> row names
ROW_IDS = {
    "mgno": "MgNO",
    "fno_matched": "FNO matched",
    "fno_12_32": "FNO 12 modes, width 32",
    "mgno_quarter": QUARTER,
}


def configs(quick, size=None, epochs=None, lr=None):
    """The run's sizes: `quick`, `size="cpu"` (32 x 32, 14 epochs: about 40 minutes on a
    2-core CPU), `size="cpu64"` (the issue's 64 x 64 grid on a CPU budget of a few epochs, no
    data-generation timing) or the issue's full size (`None`: 64 x 64, 30 epochs, for a GPU).
    `epochs` and `lr` (the peak learning rate) replace the size's own."""
    small = dict(
        res=32,
        n_train=200,
        n_test=50,
        batch=16,
        epochs=6,
        lr=1e-3,
        mgno=dict(channels=16, n_layers=4, iterations=[(1, 0), (1, 0), (2, 0)]),
        fno_matched=dict(modes=6, width=16),
        # at most a quarter of FNO(12 modes, width 32)'s 2,368,001 parameters: 566,937
        mgno_quarter=dict(channels=30, n_layers=4, iterations=[(1, 0)] * 3 + [(2, 0)]),
        datagen_res=128,
        datagen_n=8,
    )
    if quick:
        cfg = small
    elif size == "cpu":
        cfg = dict(small, size="cpu", n_train=1000, n_test=200, epochs=14, lr=2e-3, datagen_n=16)
    elif size == "cpu64":
        cfg = dict(
            small,
            size="cpu64",
            res=64,
            n_train=1000,
            n_test=200,
            batch=8,
            epochs=3,
            lr=2e-3,
            mgno=dict(channels=16, n_layers=4, iterations=[(1, 0)] * 3 + [(2, 0)]),
        )
    else:
        cfg = dict(
            small,
            res=64,
            n_train=1000,
            n_test=200,
            batch=8,
            epochs=30,
            mgno=dict(channels=16, n_layers=4, iterations=[(1, 0)] * 3 + [(2, 0)]),
            datagen_n=32,
        )
    if epochs is not None:
        cfg = dict(cfg, epochs=epochs)
    if lr is not None:
        cfg = dict(cfg, lr=lr)
    return cfg


def models(cfg, key, rows=None):
    """The benchmark's models, by row name; `rows` (ids of `ROW_IDS`) keeps a subset."""
    res = cfg["res"]
    k1, k2, k3, k4 = jax.random.split(key, 4)
    keep = None if not rows else {ROW_IDS[r] for r in rows}
    out = {
        "MgNO": MgNO(1, 1, grid_shape=(res, res), dtype=F32, key=k1, **cfg["mgno"]),
        "FNO matched": FNO(1, 1, dtype=F32, key=k2, **cfg["fno_matched"]),
        "FNO 12 modes, width 32": FNO(1, 1, 12, 32, dtype=F32, key=k3),
        QUARTER: MgNO(1, 1, grid_shape=(res, res), dtype=F32, key=k4, **cfg["mgno_quarter"]),
    }
    return {k: m for k, m in out.items() if keep is None or k in keep}


def darcy_data(cfg, cache):
    """Training pairs at the training resolution, test pairs at it and at twice it (the same
    coefficient fields), cached under `cache`, in float32; and the gap between the two test
    truths (relative L2 of the 2x solutions' cell averages against the 1x solutions)."""
    res = cfg["res"]
    t0 = time.perf_counter()
    kw = dict(variant="smooth", n_modes=res, batch_size=50, progress=True)
    train = darcy_cached(
        f"{cache}/train_{res}_{cfg['n_train']}.npz", cfg["n_train"], res, seed=1000, **kw
    )
    test = darcy_cached(
        f"{cache}/test_{res}_{cfg['n_test']}.npz", cfg["n_test"], res, seed=2000, **kw
    )
    test2 = darcy_cached(
        f"{cache}/test_{2 * res}_{cfg['n_test']}.npz", cfg["n_test"], 2 * res, seed=2000, **kw
    )
    print(f"data ready in {time.perf_counter() - t0:.1f} s")
    # the 2x truths are the same coefficient fields solved on the finer grid: their cell
    # averages differ from the training-grid solutions by the discretisation error
    truth_gap = float(
        jnp.mean(jax.vmap(rel_l2)(jax.vmap(cell_restrict)(test2.u), test.u.astype(test2.u.dtype)))
    )
    print(f"test truths, 2x grid averaged vs 1x grid: rel L2 {truth_gap:.4f}")
    data = {
        "train": (train.a.astype(F32), train.u.astype(F32)),
        "test": (test.a.astype(F32), test.u.astype(F32)),
        "test_2x": (test2.a.astype(F32), test2.u.astype(F32)),
    }
    return data, truth_gap
