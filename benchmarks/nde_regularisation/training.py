"""Training an arm with `scimlx.fit`, and the compiled predictions that are timed."""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax

import scimlx


class ArmFailed(Exception):
    pass


def safe(fn, *args, **kwargs):
    """Runs one arm's stage; a failure (a solver's max_steps, a non-finite loss) fails the
    arm, not the run."""
    try:
        return fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001
        raise ArmFailed(f"{type(e).__name__}: {str(e).splitlines()[0][:150]}") from e


@functools.cache
def optimiser(spec):
    """`("adam", lr)` or `("adam_cosine", lr, steps)` (cosine decay to lr / 100). One object
    per spec, so that `fit`'s compiled step is shared by the arms and seeds that use it."""
    if spec[0] == "adam":
        return optax.adam(spec[1])
    if spec[0] == "adam_cosine":
        return optax.adam(optax.cosine_decay_schedule(spec[1], spec[2], alpha=0.01))
    raise ValueError(spec)


def ce(logits, y):
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


class TaskLoss(eqx.Module):
    """`loss(model, (x, y), key)` for `scimlx.fit`: the task's data term plus the
    regularisers' penalty. The regularisers' weights are array leaves, so every weight of one
    regulariser type shares one compiled step.

    `kind`: `"cls"` (NODE classifier), `"sde"` (NSDE classifier), `"spiral"` (the windows
    solved at their times, L1) or `"spiral_end"` (STEER: each window solved to its random end
    only)."""

    kind: str = eqx.field(static=True)
    regs: tuple

    def __call__(self, model, batch, key):
        xb, yb = batch
        if self.kind == "cls":
            logits, sol = model(xb, regularisers=self.regs, key=key)
            return ce(logits, yb) + sol.penalty
        if self.kind == "sde":
            logits, sol = model(xb, key=key, regularisers=self.regs)
            return ce(logits, yb) + sol.penalty
        if self.kind == "spiral":
            y0, ts = xb
            sol = model(y0, ts=ts, regularisers=self.regs, key=key)
            return jnp.mean(jnp.abs(sol.ys - yb)) + sol.penalty
        if self.kind == "spiral_end":
            y0, _ = xb
            sol = model(y0, regularisers=self.regs, key=key)
            return jnp.mean(jnp.abs(sol.ys[-1] - yb[-1])) + sol.penalty
        raise ValueError(self.kind)


def train(model, kind, regs, steps, opt_spec, key, batch_fn):
    """`scimlx.fit` of `TaskLoss(kind, regs)` (`opt_spec`: see `optimiser`; `batch_fn(i)`
    the batch of step `i`); returns the model, the training time excluding the first
    (compiling) step, and that first step's time."""
    out = scimlx.fit(
        TaskLoss(kind, tuple(regs)),
        model,
        optimiser(opt_spec),
        steps=steps,
        key=key,
        batch=lambda step, _: batch_fn(step),
        progress=False,
    )
    return out.model, out.seconds - out.first_step_seconds, out.first_step_seconds


def batches(x, y, batch, seed):
    """`batch_fn(i)`: `batch` rows of `(x, y)` without replacement, drawn in turn from one
    NumPy generator of `seed` (`fit` asks for the batches of steps 0, 1, ... in order)."""
    rng = np.random.default_rng(seed)
    n = x.shape[0]

    def fn(i):
        idx = rng.choice(n, size=batch, replace=False)
        return x[idx], y[idx]

    return fn


@eqx.filter_jit
def predict_cls(model, x):
    return model(x)


@eqx.filter_jit
def predict_sde(model, x, paths):
    keys = jr.split(jr.key(7), paths)
    logits, sol = jax.vmap(lambda k: model(x, key=k))(keys)
    return logits.mean(0), sol


@eqx.filter_jit
def predict_node(node, y0, ts):
    return node(y0, ts=ts)
