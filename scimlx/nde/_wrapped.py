"""A diffrax solver wrapper base that forwards everything but `init`/`step`."""

import diffrax as dfx


class AbstractForwardingSolver(dfx.AbstractWrappedSolver):
    """Forwards the term structure, interpolation, orders and `func` to the wrapped
    `solver`; subclasses define `init` and `step` (and the `solver` field)."""

    @property
    def term_structure(self):
        return self.solver.term_structure

    @property
    def interpolation_cls(self):  # pyright: ignore
        return self.solver.interpolation_cls

    @property
    def term_compatible_contr_kwargs(self):
        return self.solver.term_compatible_contr_kwargs

    def order(self, terms):
        return self.solver.order(terms)

    def strong_order(self, terms):
        return self.solver.strong_order(terms)

    def error_order(self, terms):
        return self.solver.error_order(terms)

    def func(self, terms, t0, y0, args):
        return self.solver.func(terms, t0, y0, args)
