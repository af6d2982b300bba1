"""`scimlx tour` stage: a tiny neural-ODE classifier trained with and without global
error-estimate regularization; reports the prediction NFE ratio."""

import time


def tour_stage() -> dict:
    """Trains a small neural-ODE digits classifier twice (vanilla, global error
    regularization) for a few dozen Adam steps and compares the prediction NFE.

    **Returns:**

    `{"what", "figure", "ok"}` as the tour expects.
    """
    import diffrax as dfx
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import jax.random as jr
    import optax
    from sklearn.datasets import load_digits

    from ._models import NeuralODEClassifier
    from ._regularizers import GlobalErrorEstimate

    start = time.perf_counter()
    with jax.enable_x64(True):
        x, y = load_digits(return_X_y=True)
        x = jnp.asarray(x / 16.0)
        y = jnp.asarray(y)
        xtr, ytr, xte, yte = x[:1400], y[:1400], x[1400:], y[1400:]
        ctrl = dfx.PIDController(rtol=1e-6, atol=1e-6)

        def run(regs):
            model = NeuralODEClassifier(
                64,
                10,
                dim=16,
                width=32,
                key=jr.key(0),
                stepsize_controller=ctrl,
                t1=2.0,
                max_steps=512,
            )
            opt = optax.adam(5e-3)
            params, static = eqx.partition(model, eqx.is_inexact_array)
            state = opt.init(params)

            @jax.jit
            def step(params, state, i):
                idx = jr.choice(jr.fold_in(jr.key(1), i), xtr.shape[0], (128,), replace=False)

                def loss(p):
                    logits, sol = eqx.combine(p, static)(xtr[idx], regularizers=regs)
                    ce = optax.softmax_cross_entropy_with_integer_labels(logits, ytr[idx])
                    return ce.mean() + sol.penalty

                g = jax.grad(loss)(params)
                upd, state = opt.update(g, state, params)
                return optax.apply_updates(params, upd), state

            for i in range(60):
                params, state = step(params, state, i)
            logits, sol = eqx.filter_jit(lambda m: m(xte))(eqx.combine(params, static))
            acc = float(jnp.mean(jnp.argmax(logits, -1) == yte))
            return int(sol.stats["nfe"]), acc

        nfe_v, acc_v = run(())
        nfe_r, acc_r = run((GlobalErrorEstimate(weight=0.3),))
    ratio = nfe_r / nfe_v
    return {
        "what": "neural-ODE digits classifier, 60 Adam steps, vanilla vs global "
        f"error-estimate regularization ({time.perf_counter() - start:.0f} s)",
        "figure": f"prediction NFE {nfe_v} -> {nfe_r} (ratio {ratio:.2f}), "
        f"test acc {acc_v * 100:.1f}% -> {acc_r * 100:.1f}%",
        "ok": bool(ratio <= 1.0 and acc_r > 0.5),
    }
