"""Stable neural SDEs for irregularly sampled time series with missing values.

LSDE, LNSDE and GSDE (Oh, Lim, Kim, ICLR 2024) and the baselines they are compared with, on
controlled paths built from observations with NaNs, solved with diffrax.
"""

from ._brownian import GridBrownianPath as GridBrownianPath
from ._models import (
    AbstractLatentModel as AbstractLatentModel,
    GSDE as GSDE,
    LatentODE as LatentODE,
    LNSDE as LNSDE,
    LSDE as LSDE,
    NaiveSDE as NaiveSDE,
    NeuralCDE as NeuralCDE,
)
from ._path import (
    check_observations as check_observations,
    ControlPath as ControlPath,
    fill_nans as fill_nans,
    hermite_coefficients as hermite_coefficients,
    make_path as make_path,
    natural_cubic_coefficients as natural_cubic_coefficients,
    observation_mask as observation_mask,
)
from ._stepping import ObservationGrid as ObservationGrid
from ._train import (
    calibrate_readout as calibrate_readout,
    classification_loss as classification_loss,
    default_batch_size as default_batch_size,
    evaluate as evaluate,
    evaluation_loss as evaluation_loss,
    PathBatch as PathBatch,
    paths_from_data as paths_from_data,
    predict_proba as predict_proba,
    reference_optimiser as reference_optimiser,
    train_classifier as train_classifier,
)
