"""`scimlx tour` stage: train a small MgNO on 32x32 Darcy flow and report its test error."""

import time

import jax
import jax.numpy as jnp


def tour_stage(quick: bool = False) -> dict:
    """Generate 32x32 Darcy data, train a small MgNO (~40 s on 2 cores), report test rel. L2.

    `quick`: 128 training pairs at 16x16, 60 steps.

    **Returns:**

    `{"what": ..., "figure": ..., "ok": bool}`; `ok` when the test error is below 15%
    (predicting the training mean gives about 30%); when quick, below the mean predictor's.
    """
    from ._data import darcy_dataset
    from ._losses import rel_h1
    from ._mgno import count_params, MgNO
    from ._train import evaluate, normalised, reference_optimiser, train_operator

    t0 = time.perf_counter()
    res, n_train, steps = (16, 128, 60) if quick else (32, 256, 200)
    # one batch size for both sets: one compiled solver program, not two
    train = darcy_dataset(n_train, res, seed=0, rtol=1e-6, batch_size=64)
    test = darcy_dataset(64, res, seed=1, rtol=1e-6, batch_size=64)
    a, u = train.a.astype(jnp.float32), train.u.astype(jnp.float32)
    model = MgNO(1, 1, 12, 3, [(1, 0), (1, 0), (2, 0)], dtype=jnp.float32, key=jax.random.key(0))
    model = normalised(model, a, u)
    out = train_operator(
        model,
        a,
        u,
        optimiser=reference_optimiser(steps, learning_rate=2e-3),
        steps=steps,
        key=jax.random.key(1),
        batch_size=16,
        loss=rel_h1,
        progress=False,
    )
    err = evaluate(out.model, test.a.astype(jnp.float32), test.u.astype(jnp.float32))
    base = float(
        jnp.mean(
            jnp.linalg.norm((test.u - jnp.mean(u)).reshape(64, -1), axis=1)
            / jnp.linalg.norm(test.u.reshape(64, -1), axis=1)
        )
    )
    secs = time.perf_counter() - t0
    return {
        "what": (
            f"MgNO ({count_params(model)} params) trained {steps} steps on {n_train} Darcy "
            f"{res}x{res} pairs "
            f"generated with multigrid-preconditioned CG ({secs:.0f} s)"
        ),
        "figure": f"test rel. L2 {err['rel_l2']:.3f} (mean predictor {base:.3f})",
        "ok": bool(err["rel_l2"] < (base if quick else 0.15)),
    }
