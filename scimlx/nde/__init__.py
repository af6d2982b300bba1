"""Neural ODEs/SDEs and regularisers of the adaptive solver's heuristics."""

from ._controller import (
    ErrorEstimateController as ErrorEstimateController,
    read_error_estimate as read_error_estimate,
    scaled_error_norm as scaled_error_norm,
)
from ._models import (
    DiagonalLinearDiffusion as DiagonalLinearDiffusion,
    LatentTrajectoryModel as LatentTrajectoryModel,
    MLPVectorField as MLPVectorField,
    NeuralODE as NeuralODE,
    NeuralODEClassifier as NeuralODEClassifier,
    NeuralSDE as NeuralSDE,
    NeuralSDEClassifier as NeuralSDEClassifier,
)
from ._nfe import count_nfe as count_nfe, nfe_formula as nfe_formula
from ._regulariser import (
    AbstractRegulariser as AbstractRegulariser,
    Penalty as Penalty,
    RegularisedProblem as RegularisedProblem,
    RegulariserOutput as RegulariserOutput,
)
from ._regularisers import (
    GlobalErrorEstimate as GlobalErrorEstimate,
    GlobalStiffness as GlobalStiffness,
    KineticJacobian as KineticJacobian,
    LocalErrorEstimate as LocalErrorEstimate,
    RandomEndTime as RandomEndTime,
    TaylorRegulariser as TaylorRegulariser,
)
from ._sampler import StepSamplerSolver as StepSamplerSolver
from ._solve import (
    regularised_diffeqsolve as regularised_diffeqsolve,
    RegularisedSolution as RegularisedSolution,
)
from ._stiffness import (
    read_stiffness as read_stiffness,
    stability_region_size as stability_region_size,
    stiffness_from_stages as stiffness_from_stages,
    StiffnessEstimateSolver as StiffnessEstimateSolver,
)
