"""Train a neural-ODE digits classifier with and without global / local error-estimate
regularisation for a sweep of the weight, and plot test accuracy against the prediction
NFE (the number of vector-field evaluations the adaptive solver needs).

    python examples/nde_regularisation.py [--quick] [--steps 200] [--out PATH]

`--quick` trains 25 steps per model and sweeps two weights (0.1, 1) instead of three.
"""

import argparse
import os

import jax


jax.config.update("jax_enable_x64", True)

import diffrax as dfx  # noqa: E402
import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import jax.random as jr  # noqa: E402
import matplotlib  # noqa: E402


matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import optax  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

import scimlx.nde as nde  # noqa: E402


STEPS = int(os.environ.get("NDE_EXAMPLE_STEPS", 200))  # training steps per model
WEIGHTS = (0.01, 0.1, 1.0)
QUICK_STEPS, QUICK_WEIGHTS = 25, (0.1, 1.0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and weights")
    parser.add_argument("--steps", type=int, default=None, help=f"steps per model ({STEPS})")
    parser.add_argument(
        "--out",
        default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "nde_regularisation.png"),
        help="where to save the plot",
    )
    cli = parser.parse_args()
    steps = cli.steps or (QUICK_STEPS if cli.quick else STEPS)
    weights = QUICK_WEIGHTS if cli.quick else WEIGHTS
    x, y = load_digits(return_X_y=True)
    xtr, xte, ytr, yte = map(
        jnp.asarray, train_test_split(x / 16.0, y, test_size=0.2, stratify=y, random_state=0)
    )
    ctrl = dfx.PIDController(rtol=1e-6, atol=1e-6)
    opt = optax.adam(3e-3)

    # One compiled step per regulariser type: the weight is an array argument.
    @eqx.filter_jit
    def step(params, static, state, i, regs):
        k = jr.fold_in(jr.key(1), i)
        idx = jr.choice(k, xtr.shape[0], (256,), replace=False)

        def loss(p):
            logits, sol = eqx.combine(p, static)(xtr[idx], regularisers=regs, key=k)
            ce = optax.softmax_cross_entropy_with_integer_labels(logits, ytr[idx])
            return ce.mean() + sol.penalty

        g = jax.grad(loss)(params)
        upd, state = opt.update(g, state, params)
        return optax.apply_updates(params, upd), state

    @eqx.filter_jit
    def predict(model):
        return model(xte)

    def train(regs):
        model = nde.NeuralODEClassifier(
            64,
            10,
            dim=32,
            width=64,
            key=jr.key(0),
            stepsize_controller=ctrl,
            t1=2.0,
            max_steps=1024,
        )
        params, static = eqx.partition(model, eqx.is_inexact_array)
        state = opt.init(params)
        for i in range(steps):
            params, state = step(params, static, state, jnp.asarray(i), regs)
        logits, sol = predict(eqx.combine(params, static))
        return float(jnp.mean(jnp.argmax(logits, -1) == yte)) * 100, int(sol.stats["nfe"])

    results = {"vanilla": [train(())]}
    for name, make in [
        ("global error", lambda w: nde.GlobalErrorEstimate(weight=w)),
        ("local unbiased", lambda w: nde.LocalErrorEstimate(weight=w)),
    ]:
        results[name] = [train((make(jnp.asarray(w)),)) for w in weights]
        for w, (acc, nfe) in zip(weights, results[name]):
            print(f"{name:15s} weight {w:5g}: test acc {acc:5.1f}%  prediction NFE {nfe}")
    print(f"vanilla: test acc {results['vanilla'][0][0]:.1f}%  NFE {results['vanilla'][0][1]}")

    fig, ax = plt.subplots(figsize=(5, 4))
    for (name, pts), marker in zip(results.items(), "os^"):
        ax.plot([p[1] for p in pts], [p[0] for p in pts], marker=marker, label=name)
    ax.set_xlabel("prediction NFE (test batch)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Regularising the solver's error estimate")
    ax.legend()
    fig.tight_layout()
    fig.savefig(cli.out, dpi=120)
    print(f"wrote {cli.out}")


if __name__ == "__main__":
    main()
