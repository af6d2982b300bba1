"""Tour stage: train a small DCDM direction network in seconds, solve a held-out 64^2 scene."""

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ._cd import cd_solve
from ._dcdm import dcdm_solve, train_dcdm
from ._lanczos import ritz_pairs
from ._networks import LearnedMGNet
from ._operators import poisson
from ._scenes import obstacle_scene, random_rhs


def tour_stage(steps: int = 60, train_n: int = 32, test_n: int = 64, quick: bool = False) -> dict:
    """Train a learned-BPX DCDM direction network on 32^2 scenes, solve an unseen 64^2 scene.

    Two training layouts, 100 Lanczos Ritz vectors each, `steps` Adam steps on the paper's
    loss; then the DCDM loop (k = 2) with this network and plain CG solve a held-out 64^2
    problem to `|r|/|b| <= 1e-6`. (The learned-BPX network is used because a paper CNN
    trained for a few seconds on a CPU is too weak to show anything; see the benchmark.)

    **Arguments:**

    - `steps`: training steps (about 30 s on 2 CPU cores with the defaults).
    - `train_n`, `test_n`: training and test grid sides.
    - `quick`: 20 steps on 16^2 scenes, tested on 32^2.

    **Returns:**

    `{"what", "figure", "ok"}`: `ok` when DCDM reaches the tolerance in at most a third of
    CG's iterations.
    """
    if quick:
        steps, train_n, test_n = 20, 16, 32
    t0 = time.perf_counter()
    shape = (train_n, train_n)
    masks, vecs = [], []
    for s in range(2):
        solid = obstacle_scene(shape, seed=s, split="train")
        m = jnp.asarray(~solid).astype(jnp.float64)
        _, V = ritz_pairs(
            poisson(shape, solid=jnp.asarray(solid)), steps=100, key=jax.random.key(s), mask=m
        )
        masks.append(m)
        vecs.append(V.astype(jnp.float32))
    model = LearnedMGNet(2, key=jax.random.key(0))
    fit = train_dcdm(
        model,
        lambda mask: poisson(shape, solid=mask < 0.5),
        jnp.stack(masks),
        jnp.stack(vecs),
        optimiser=optax.adam(1e-3),
        steps=steps,
        key=jax.random.key(1),
        progress=False,
    )
    t_train = time.perf_counter() - t0
    test = (test_n, test_n)
    solid = jnp.asarray(obstacle_scene(test, seed=0, split="test"))
    op = poisson(test, solid=solid)
    b = random_rhs(solid, key=jax.random.key(0))
    mask = (~solid).astype(b.dtype)
    sol = dcdm_solve(op, b, fit.model, mask=mask, k=2, rtol=1e-6, max_steps=500, throw=False)
    cg = cd_solve(op, b, k=1, rtol=1e-6, max_steps=5000, throw=False)
    res = float(sol.stats["true_residual_norm"] / sol.stats["b_norm"])
    its, its_cg = int(sol.stats["num_steps"]), int(cg.stats["num_steps"])
    ok = res <= 1.01e-6 and 3 * its <= its_cg
    return {
        "what": (
            f"DCDM with a learned-BPX network trained {steps} steps on {train_n}^2 obstacle scenes "
            f"({t_train:.0f} s, loss {float(np.mean(fit.losses[-10:])):.2f}), solving an "
            f"unseen {test_n}^2 scene, {time.perf_counter() - t0:.0f} s total"
        ),
        "figure": f"DCDM {its} its vs CG {its_cg} its, rel. residual {res:.1e}",
        "ok": bool(ok),
    }
