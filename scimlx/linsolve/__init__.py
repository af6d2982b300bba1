"""Linear systems from PDEs: matrix-free operators, geometric multigrid, learned solvers."""

from ._blackbox import (
    blackbox_coarsen as blackbox_coarsen,
    BoxTransfer as BoxTransfer,
)
from ._cd import cd_solve as cd_solve, ConjugateDirection as ConjugateDirection
from ._cg import PCG as PCG, pcg_solve as pcg_solve
from ._dcdm import (
    dcdm_loss as dcdm_loss,
    dcdm_solve as dcdm_solve,
    DCDMDirection as DCDMDirection,
    load_model as load_model,
    save_model as save_model,
    train_dcdm as train_dcdm,
)
from ._lanczos import lanczos as lanczos, ritz_pairs as ritz_pairs, ritz_rhs as ritz_rhs
from ._multigrid import (
    coarsen as coarsen,
    galerkin_coarsen as galerkin_coarsen,
    multigrid as multigrid,
    multigrid_solve as multigrid_solve,
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
from ._smoothers import (
    chebyshev as chebyshev,
    estimate_lmax as estimate_lmax,
    jacobi as jacobi,
    red_black_gauss_seidel as red_black_gauss_seidel,
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
