"""Regularizers of the solver's heuristics and their competitors, one API."""

from typing import Literal

import equinox as eqx
from jaxtyping import Array, Float

from .._core._checks import check_finite, check_positive, check_weight


class AbstractRegularizer(eqx.Module):
    """Base class of the regularizers accepted by
    [`scimlx.nde.regularized_diffeqsolve`][]."""


class GlobalErrorEstimate(AbstractRegularizer):
    r"""Global error-estimate regularization (ERNODE, Pal et al. 2021).

    $R_E = \sum_j \mathrm{EEst}_j |\Delta t_j|$ over the accepted steps, with
    $\mathrm{EEst}_j$ the controller's scaled error norm, accumulated by an
    [`scimlx.nde.ErrorEstimateController`][] in the same solve. Needs a discrete adjoint
    (`diffrax.RecursiveCheckpointAdjoint`, `diffrax.DirectAdjoint`).

    **Arguments:**

    - `weight`: multiplies $R_E$ in `penalty` (an array, so it can be annealed).
    - `reduction`: `"sum"` (the paper) or `"mean"` (over accepted steps; the reference
        code).

    ??? cite "Reference"

        ```bibtex
        @inproceedings{pal2021opening,
          title={Opening the Blackbox: Accelerating Neural Differential Equations by
                 Regularizing Internal Solver Heuristics},
          author={Pal, Avik and Ma, Yingbo and Shah, Viral and Rackauckas, Christopher},
          booktitle={ICML}, year={2021}}
        ```
    """

    weight: float | Float[Array, ""] = 1.0
    reduction: Literal["sum", "mean"] = eqx.field(static=True, default="sum")

    def __check_init__(self):
        check_weight("weight", self.weight)
        if self.reduction not in ("sum", "mean"):
            raise ValueError(f"`reduction` must be 'sum' or 'mean', got {self.reduction!r}.")


class GlobalStiffness(AbstractRegularizer):
    r"""Global stiffness regularization (SRNODE, Pal et al. 2021).

    $\mathrm{SEst}_j = |\hat\lambda_j| / r$ from the last two stages of Tsit5/Dopri5
    ($r$ the real stability-interval length), aggregated as
    $\sum_j \mathrm{SEst}_j|\Delta t_j|$ (`"sum"`, the paper) or $\max_j \mathrm{SEst}_j$
    (`"max"`, the reference code). Needs a discrete adjoint.

    **Arguments:**

    - `weight`: multiplies the penalty.
    - `aggregation`: `"sum"` or `"max"`.
    - `stability_size`: override $r$ (default: computed from the tableau, 3.5068 for
        Tsit5).
    """

    weight: float | Float[Array, ""] = 1.0
    aggregation: Literal["sum", "max"] = eqx.field(static=True, default="sum")
    stability_size: float | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        check_weight("weight", self.weight)
        if self.stability_size is not None:
            check_finite("stability_size", self.stability_size)
            check_positive("stability_size", self.stability_size)
        if self.aggregation not in ("sum", "max"):
            raise ValueError(f"`aggregation` must be 'sum' or 'max', got {self.aggregation!r}.")


class LocalErrorEstimate(AbstractRegularizer):
    r"""Local error-estimate regularization (Pal, Edelman, Rackauckas 2023).

    One extra solver step from a sampled state, penalty $\mathrm{EEst}\cdot|\Delta t|$.
    The sampled time, state and step size are constants for autodiff (as in the
    reference code), so the penalty is differentiable under every adjoint, including
    `diffrax.BacksolveAdjoint`.

    **Arguments:**

    - `weight`: multiplies the penalty.
    - `sampling`: `"unbiased"` ($t \sim U[t_0, t_1]$, state from the dense
        interpolant) or `"biased"` (uniform over the accepted steps, by reservoir
        sampling inside the solve).
    - `step_size`: `"solver"` (the accepted step that contains / starts at the sampled
        time; default) or `"initial"` (the controller's initial-step heuristic, as the
        reference code).

    ??? cite "Reference"

        ```bibtex
        @inproceedings{pal2023locally,
          title={Locally Regularized Neural Differential Equations: Some Black Boxes
                 Were Meant to Remain Closed!},
          author={Pal, Avik and Edelman, Alan and Rackauckas, Christopher},
          booktitle={ICML}, year={2023}}
        ```
    """

    weight: float | Float[Array, ""] = 1.0
    sampling: Literal["unbiased", "biased"] = eqx.field(static=True, default="unbiased")
    step_size: Literal["solver", "initial"] = eqx.field(static=True, default="solver")

    def __check_init__(self):
        check_weight("weight", self.weight)
        if self.sampling not in ("unbiased", "biased"):
            raise ValueError(f"`sampling` must be 'unbiased' or 'biased', got {self.sampling!r}.")
        if self.step_size not in ("solver", "initial"):
            raise ValueError(f"`step_size` must be 'solver' or 'initial', got {self.step_size!r}.")


class RandomEndTime(AbstractRegularizer):
    r"""STEER (Ghosh et al. 2020): integrate to a random end time
    $T \sim U[t_1 - b, t_1 + b]$ during training. Adds no penalty.

    **Arguments:**

    - `half_width`: $b$ (must be smaller than $t_1 - t_0$).
    """

    half_width: float = 0.5

    def __check_init__(self):
        check_finite("half_width", self.half_width)
        check_positive("half_width", self.half_width, allow_zero=True)


class KineticJacobian(AbstractRegularizer):
    r"""RNODE (Finlay et al. 2020): $\int \|f\|^2\,dt$ and $\int \|\nabla_y f\|_F^2\,dt$,
    the Frobenius norm by Hutchinson's estimator $\|\epsilon^\top \nabla_y f\|^2$
    ($\epsilon \sim N(0, I)$ drawn once per solve), integrated in an augmented state.
    ODEs only.

    **Arguments:**

    - `weight_kinetic`, `weight_jacobian`: multiply the two integrals in `penalty`.
    """

    weight_kinetic: float | Float[Array, ""] = 1.0
    weight_jacobian: float | Float[Array, ""] = 1.0

    def __check_init__(self):
        check_weight("weight_kinetic", self.weight_kinetic)
        check_weight("weight_jacobian", self.weight_jacobian)


class TaylorRegularizer(AbstractRegularizer):
    r"""TayNODE (Kelly et al. 2020): $R_K = \int \|d^K y / dt^K\|^2 dt$, the $K$-th
    total derivative of the solution computed by Taylor-mode AD
    (`jax.experimental.jet`), integrated in an augmented state. ODEs only.

    **Arguments:**

    - `weight`: multiplies $R_K$.
    - `order`: $K \geq 2$.
    """

    weight: float | Float[Array, ""] = 1.0
    order: int = eqx.field(static=True, default=2)

    def __check_init__(self):
        check_weight("weight", self.weight)
        if self.order < 2:
            raise ValueError(f"`order` must be >= 2, got {self.order}.")
