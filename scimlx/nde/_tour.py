"""`scimlx tour` stage: a tiny neural-ODE classifier trained with and without global
error-estimate regularisation; reports the prediction NFE ratio."""

import time


def tour_stage(quick: bool = False) -> dict:
    """Trains a small neural-ODE digits classifier twice (vanilla, global error
    regularisation) for a few dozen Adam steps and compares the prediction NFE.

    The digits are [`scimlx.data.seven_segment_digits`][] (8 x 8 images, generated).
    `quick`: 20 steps instead of 60.

    **Returns:**

    `{"what", "figure", "ok"}` as the tour expects.
    """
    import diffrax as dfx
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import jax.random as jr
    import optax

    from ..data import seven_segment_digits
    from ._models import NeuralODEClassifier
    from ._regularisers import GlobalErrorEstimate

    start = time.perf_counter()
    with jax.enable_x64(True):
        x, y = seven_segment_digits(1800, seed=0)
        x, y = jnp.asarray(x, jnp.float64), jnp.asarray(y)
        steps = 20 if quick else 60
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
                    logits, sol = eqx.combine(p, static)(xtr[idx], regularisers=regs)
                    ce = optax.softmax_cross_entropy_with_integer_labels(logits, ytr[idx])
                    return ce.mean() + sol.penalty

                g = jax.grad(loss)(params)
                upd, state = opt.update(g, state, params)
                return optax.apply_updates(params, upd), state

            for i in range(steps):
                params, state = step(params, state, i)
            logits, sol = eqx.filter_jit(lambda m: m(xte))(eqx.combine(params, static))
            acc = float(jnp.mean(jnp.argmax(logits, -1) == yte))
            return int(sol.stats["nfe"]), acc

        nfe_v, acc_v = run(())
        nfe_r, acc_r = run((GlobalErrorEstimate(weight=0.3),))
    ratio = nfe_r / nfe_v
    return {
        "what": f"neural-ODE digits classifier, {steps} Adam steps, vanilla vs global "
        f"error-estimate regularisation ({time.perf_counter() - start:.0f} s)",
        "figure": f"prediction NFE {nfe_v} -> {nfe_r} ({ratio:.2f}x) with the error-estimate "
        f"penalty; accuracy {acc_v * 100:.0f}% -> {acc_r * 100:.0f}%",
        # chance is 10 %; 20 quick steps reach about 30 %
        "ok": bool(ratio <= 1.0 and acc_r > (0.2 if quick else 0.5)),
    }
