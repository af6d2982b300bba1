"""Linear systems from PDEs: matrix-free operators, geometric multigrid, learned solvers."""

from ._aggregation import (
    Aggregation as Aggregation,
    AggregationTransfer as AggregationTransfer,
    channel_score as channel_score,
    SparseOperator as SparseOperator,
)
from ._blackbox import (
    BlackBox as BlackBox,
    blackbox_coarsen as blackbox_coarsen,
    BoxTransfer as BoxTransfer,
)
from ._cd import cd_solve as cd_solve, ConjugateDirection as ConjugateDirection
from ._cg import PCG as PCG, pcg_solve as pcg_solve
from ._coarsening import (
    AbstractCoarsening as AbstractCoarsening,
    AbstractTransfer as AbstractTransfer,
)
from ._dcdm import (
    dcdm_loss as dcdm_loss,
    dcdm_solve as dcdm_solve,
    DCDMDirection as DCDMDirection,
    train_dcdm as train_dcdm,
)
from ._lanczos import lanczos as lanczos, ritz_pairs as ritz_pairs, ritz_rhs as ritz_rhs
from ._multigrid import (
    coarsen as coarsen,
    Galerkin as Galerkin,
    galerkin_coarsen as galerkin_coarsen,
    GeometricTransfer as GeometricTransfer,
    multigrid as multigrid,
    multigrid_solve as multigrid_solve,
    Rediscretise as Rediscretise,
    VCycle as VCycle,
)
from ._networks import (
    DCDMNet as DCDMNet,
    LearnedMGNet as LearnedMGNet,
    LearnedVCycleNet as LearnedVCycleNet,
)
from ._operators import (
    AbstractGridOperator as AbstractGridOperator,
    diffusion as diffusion,
    DiffusionOperator as DiffusionOperator,
    parse_boundary as parse_boundary,
    poisson as poisson,
    StencilOperator as StencilOperator,
    to_scipy_sparse as to_scipy_sparse,
)
from ._scenes import (
    divergence_rhs as divergence_rhs,
    obstacle_scene as obstacle_scene,
    random_rhs as random_rhs,
    remove_enclosed as remove_enclosed,
)
from ._sharding import GridSharding as GridSharding
from ._smoothers import (
    AbstractSmoother as AbstractSmoother,
    Chebyshev as Chebyshev,
    estimate_lmax as estimate_lmax,
    Jacobi as Jacobi,
    RedBlackGaussSeidel as RedBlackGaussSeidel,
)
from ._transfer import (
    coarse_shape as coarse_shape,
    conv as conv,
    laplacian_kernel as laplacian_kernel,
    prolong as prolong,
    restrict as restrict,
    tensor_kernel as tensor_kernel,
    vcycle_stencil as vcycle_stencil,
)
