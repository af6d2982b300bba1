"""The data sets, the models and the protocol's settings (batch size, learning rate,
epochs, early stopping) of the stable SDE benchmark."""

import numpy as np

from scimlx import steps_per_epoch
from scimlx.data import drop_values, from_series, load_uea_ucr, paper_split, standardise
from scimlx.sde import default_batch_size, GSDE, LatentODE, LNSDE, LSDE, NaiveSDE, NeuralCDE


RATES = (0.0, 0.3, 0.5, 0.7)
LR_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)  # the paper searches log-uniform [1e-4, 1e-2]
MODELS = {
    "LSDE": LSDE,
    "LNSDE": LNSDE,
    "GSDE": GSDE,
    "naive SDE": NaiveSDE,
    "neural CDE": NeuralCDE,
    "neural ODE": LatentODE,
}
STABLE = ("LSDE", "LNSDE", "GSDE")
TORCH = "LNSDE (PyTorch ref.)"
HIDDEN = 32
LAYERS = 2
QUICK_DATASETS = ["BasicMotions"]
DATASETS = ["BasicMotions", "JapaneseVowels", "ArrowHead", "GunPoint", "ItalyPowerDemand"]
# Per-data-set accuracies of the paper (its appendix) could not be retrieved (methods notes,
# section 2): no paper figure is printed beside ours.
PAPER = {}


def load(name: str):
    """A bundled UEA/UCR set, train and test merged, as a `TimeSeriesData`."""
    series, labels, _ = load_uea_ucr(name)
    return from_series(series, labels)


def protocol(base, epochs: int, early_stop: bool) -> dict:
    """The paper's settings for a data set: batch size from the whole set's size, the
    learning rate `1e-3 * batch / 16`, the optimiser's steps per epoch, at most `epochs`
    epochs and (with `early_stop`) the reference's early-stopping rule."""
    bs = default_batch_size(len(base))
    n_train = int(np.floor(0.7 * len(base)))
    return {
        "bs": bs,
        "spe": steps_per_epoch(n_train, bs),
        "lr": 1e-3 * bs / 16,
        "epochs": epochs,
        "early_stop": early_stop,
    }


def split(base, seed: int, raw_paths: bool = False):
    """The seed's stratified 70/15/15 split, and the set standardised with the training
    split's mean and std (unless `raw_paths`, as the reference code builds its paths)."""
    idx = paper_split(base.labels, seed)
    return idx, (base if raw_paths else standardise(base, base[idx[0]]))


def masked(clean, seed: int, rate: float):
    """`clean` with `rate` of its values dropped per channel; the mask's seed is
    `1000 * seed + index of rate in RATES`, whichever rates a run covers."""
    return drop_values(clean, rate, seed=1000 * seed + RATES.index(rate))
