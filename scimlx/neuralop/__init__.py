"""Neural operators: MgNO (multigrid-parameterised layers), the FNO baseline, losses, data."""

from ._data import (
    darcy_cached as darcy_cached,
    darcy_coefficient as darcy_coefficient,
    darcy_dataset as darcy_dataset,
    darcy_operator as darcy_operator,
    darcy_solve as darcy_solve,
    DarcyData as DarcyData,
    grf as grf,
)
from ._fno import FNO as FNO, Pointwise as Pointwise, SpectralConv2d as SpectralConv2d
from ._losses import rel_h1 as rel_h1, rel_l2 as rel_l2
from ._mgno import (
    cell_prolong as cell_prolong,
    cell_restrict as cell_restrict,
    count_params as count_params,
    level_shapes as level_shapes,
    MgNO as MgNO,
    MgNOSmoother as MgNOSmoother,
    MgNOVCycle as MgNOVCycle,
)
from ._train import (
    evaluate as evaluate,
    Normalised as Normalised,
    normalised as normalised,
    onecycle_schedule as onecycle_schedule,
    operator_loss as operator_loss,
    reference_optimiser as reference_optimiser,
    train_operator as train_operator,
)
