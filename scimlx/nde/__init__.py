"""Neural ODEs/SDEs and regularizers of the adaptive solver's heuristics."""

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
from ._regularizer import (
    AbstractRegularizer as AbstractRegularizer,
    Penalty as Penalty,
    RegularizedProblem as RegularizedProblem,
    RegularizerOutput as RegularizerOutput,
)
from ._regularizers import (
    GlobalErrorEstimate as GlobalErrorEstimate,
    GlobalStiffness as GlobalStiffness,
    KineticJacobian as KineticJacobian,
    LocalErrorEstimate as LocalErrorEstimate,
    RandomEndTime as RandomEndTime,
    TaylorRegularizer as TaylorRegularizer,
)
from ._sampler import StepSamplerSolver as StepSamplerSolver
from ._solve import (
    regularized_diffeqsolve as regularized_diffeqsolve,
    RegularizedSolution as RegularizedSolution,
)
from ._stiffness import (
    read_stiffness as read_stiffness,
    stability_region_size as stability_region_size,
    stiffness_from_stages as stiffness_from_stages,
    StiffnessEstimateSolver as StiffnessEstimateSolver,
)
