"""Extension points of the multigrid hierarchy: how a level is coarsened, how vectors move.

[`scimlx.linsolve.multigrid`][] builds its levels by asking an
[`scimlx.linsolve.AbstractCoarsening`][] for the next coarser operator and the
[`scimlx.linsolve.AbstractTransfer`][] between the two grids, until the grid is small enough;
the V-cycle then only calls `transfer.restrict` and `transfer.prolong`. The built-in strategies
are [`scimlx.linsolve.BlackBox`][], [`scimlx.linsolve.Rediscretise`][] and
[`scimlx.linsolve.Galerkin`][].
"""

import abc

import equinox as eqx
from jaxtyping import Array

from ._operators import AbstractGridOperator


class AbstractTransfer(eqx.Module):
    """Restriction and prolongation between a fine grid and the next coarser one.

    For the V-cycle to be symmetric (as a CG preconditioner needs), `restrict` must be a
    positive multiple of the transpose of `prolong`.
    """

    @abc.abstractmethod
    def restrict(self, r: Array) -> Array:
        """Fine grid -> coarse grid (a residual)."""

    @abc.abstractmethod
    def prolong(self, e: Array) -> Array:
        """Coarse grid -> fine grid (a correction)."""


class AbstractCoarsening(eqx.Module):
    """How [`scimlx.linsolve.multigrid`][] builds the next coarser level.

    Subclass it, set the class variable `eager`, implement `coarsen`, and pass an instance
    as `multigrid(op, coarse=...)`.

    - `eager` (class variable): build the hierarchy op by op on a concrete operator (for
      decisions that read the operator's values, as semi-coarsening does) rather than as one
      compiled program. A traced operator is always built under the trace.
    """

    eager: eqx.AbstractClassVar[bool]

    @abc.abstractmethod
    def coarsen(
        self, operator: AbstractGridOperator
    ) -> tuple[AbstractGridOperator, AbstractTransfer] | None:
        """The next coarser level of `operator`.

        **Arguments:**

        - `operator`: the current (finest so far) level.

        **Returns:**

        `(coarse_operator, transfer)`, or `None` when this strategy cannot coarsen the
        grid further (`multigrid` then stops if it has enough levels, and raises otherwise).
        """
