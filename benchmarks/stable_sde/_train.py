"""One training run of a scimlx model under the paper's protocol, through
`scimlx.sde.train_classifier` (that is, `scimlx.fit`), and its test accuracy."""

import functools

import equinox as eqx
import jax.random as jr
import numpy as np

from scimlx import steps_per_epoch
from scimlx.sde import evaluate, reference_optimiser, train_classifier

from ._setup import HIDDEN, LAYERS


# The reference's early-stopping rule `(e > 20) & (patient > 10)` (0-based epoch `e`,
# `patient` epochs in a row without a lower validation loss), as `train_classifier`'s
# `patience` and `min_epochs` (1-based).
PATIENCE = 11
MIN_EPOCHS = 22


@functools.cache
def optimiser(lr: float, spe: int):
    """The paper's optimiser (Adam, weight decay lr/100, StepLR(10, 0.5)); one object per
    setting, so that runs at one setting share the compiled training step."""
    return reference_optimiser(lr, spe)


def train_run(cls, in_ch: int, n_cls: int, P, idx, cfg: dict, seed: int) -> dict:
    """Train `cls` on the split `idx` of the paths `P`, keep the best-validation weights,
    and measure the test accuracy (one SDE sample per series).

    `cfg` holds the protocol's `bs`, `spe`, `lr`, `epochs`, `early_stop`, and optionally a
    tuned `hidden` and `layers`. Returns `acc`, `best_val_loss`, `epochs_run`, `step_s`
    (the run's wall time per step after the first, per-epoch validation included),
    `compile_s` (the first step, compile included unless an earlier run compiled it) and
    `diverged` (a non-finite loss or latent state: the run stops, no accuracy).
    """
    tr, va, te = idx
    key = jr.key(seed)
    model = cls(
        in_ch, cfg.get("hidden", HIDDEN), n_cls, num_layers=cfg.get("layers", LAYERS), key=key
    )
    spe = steps_per_epoch(len(tr), cfg["bs"])
    try:
        res = train_classifier(
            model,
            P[tr],
            P[va],
            optimiser=optimiser(cfg["lr"], cfg["spe"]),
            steps=cfg["epochs"] * spe,
            batch_size=cfg["bs"],
            key=key,
            patience=PATIENCE if cfg["early_stop"] else None,
            min_epochs=MIN_EPOCHS,
            progress=False,
        )
    except (FloatingPointError, eqx.EquinoxRuntimeError):
        return {"diverged": True, "acc": np.nan, "step_s": np.nan, "compile_s": np.nan}
    acc = evaluate(res.model, P[te], key=jr.key(2 * 10**6 + seed))["accuracy"]
    later = res.step - 1
    return {
        "diverged": False,
        "acc": float(acc),
        "step_s": (res.seconds - res.first_step_seconds) / later if later else np.nan,
        "compile_s": res.first_step_seconds,
        "epochs_run": -(-res.step // spe),
        "best_val_loss": res.best_validation,
    }
