"""A user's own regularisers, written against the `nde.AbstractRegulariser` hooks, work
like the built-ins: their penalties against analytic values, composition with built-ins,
and clear errors for incomplete or wrong subclasses."""

import pathlib
import re

import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import scimlx.nde as nde


def _docs_example() -> dict:
    """Runs the "Write your own regulariser" example of docs/nde.md verbatim."""
    text = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "nde.md").read_text()
    section = text.split("## Write your own regulariser", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "docs/nde.md has no example under 'Write your own regulariser'"
    code = match.group(1)
    namespace: dict = {}
    exec(compile(code, "docs/nde.md", "exec"), namespace)
    return namespace


DOCS = _docs_example()
Y0 = jnp.array([1.0, -0.5])
CTRL = dfx.PIDController(rtol=1e-9, atol=1e-9)


def _solve(a, regs, **kw):
    return nde.regularised_diffeqsolve(
        dfx.ODETerm(lambda t, y, args: -args * y),
        dfx.Tsit5(),
        0.0,
        1.0,
        0.1,
        Y0,
        a,
        regularisers=regs,
        stepsize_controller=CTRL,
        **kw,
    )


def test_docs_example_penalties_match_analytic_values():
    # y' = -a y: y(1) = y0 e^{-a}, int_0^1 |f|^2 dt = a |y0|^2 (1 - e^{-2a}) / 2.
    sol = DOCS["sol"]
    a, y2 = 2.0, float(Y0 @ Y0)
    final = y2 * np.exp(-2 * a)
    energy = a * y2 * (1 - np.exp(-2 * a)) / 2
    np.testing.assert_allclose(sol.components["final_l2"], final, rtol=1e-6)
    np.testing.assert_allclose(sol.components["energy"], energy, rtol=1e-6)
    assert float(sol.components["error"]) > 0
    c = sol.components
    np.testing.assert_allclose(
        sol.penalty, 0.1 * c["final_l2"] + 0.01 * c["energy"] + c["error"], rtol=1e-14
    )
    # the augmented state is removed from the user's solution
    np.testing.assert_allclose(sol.ys[-1], np.asarray(Y0) * np.exp(-a), rtol=1e-6)


def test_user_penalty_gradient_matches_analytic_derivative():
    reg = DOCS["FinalStateL2"](weight=1.0)
    grad = jax.grad(lambda a: _solve(a, (reg,)).penalty)(jnp.asarray(0.7))
    # d/da |y0|^2 e^{-2a}
    np.testing.assert_allclose(grad, -2 * float(Y0 @ Y0) * np.exp(-1.4), rtol=1e-6)
    energy = DOCS["KineticEnergy"](weight=1.0)
    grad = jax.grad(lambda a: _solve(a, (energy,)).penalty)(jnp.asarray(0.7))
    # d/da a |y0|^2 (1 - e^{-2a}) / 2
    expected = float(Y0 @ Y0) * ((1 - np.exp(-1.4)) / 2 + 0.7 * np.exp(-1.4))
    np.testing.assert_allclose(grad, expected, rtol=1e-6)


class _CountingSolver(dfx.AbstractWrappedSolver):
    """Counts the steps it takes in its state `(inner_state, count)`."""

    solver: dfx.AbstractSolver

    @property
    def term_structure(self):
        return self.solver.term_structure

    @property
    def interpolation_cls(self):  # pyright: ignore
        return self.solver.interpolation_cls

    def order(self, terms):
        return self.solver.order(terms)

    def error_order(self, terms):
        return self.solver.error_order(terms)

    def func(self, terms, t0, y0, args):
        return self.solver.func(terms, t0, y0, args)

    def init(self, terms, t0, t1, y0, args):
        return self.solver.init(terms, t0, t1, y0, args), jnp.array(0)

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        inner, count = solver_state
        y1, err, dense, inner, result = self.solver.step(terms, t0, t1, y0, args, inner, made_jump)
        return y1, err, dense, (inner, count + 1), result


class StepCount(nde.AbstractRegulariser):
    """No penalty; reports the accepted steps its solver wrapper counted."""

    def wrap_solver(self, solver, problem, key):
        return _CountingSolver(solver)

    def penalty(self, problem, output):
        _, count = output.solver_state  # pyright: ignore
        return nde.Penalty(jnp.zeros((), problem.dtype), stats={"counted_steps": count})


@pytest.mark.parametrize("first", [True, False])
def test_user_solver_wrapper_composes_with_a_builtin_wrapper(first):
    """Both wrap the solver, in either order; each reads its own share of the state."""
    stiff = nde.GlobalStiffness(aggregation="max")
    regs = (StepCount(), stiff) if first else (stiff, StepCount())
    a = jnp.asarray(3.0)
    sol = _solve(a, regs)
    alone = _solve(a, (stiff,))
    assert int(sol.stats["counted_steps"]) == int(sol.stats["num_accepted_steps"])
    assert int(sol.stats["num_accepted_steps"]) == int(alone.stats["num_accepted_steps"])
    np.testing.assert_array_equal(sol.components["stiffness"], alone.components["stiffness"])
    np.testing.assert_allclose(sol.components["stiffness"] * nde.stability_region_size(
        dfx.Tsit5()), 3.0, rtol=1e-6)  # fmt: skip


def test_subclass_without_penalty_fails_clearly():
    class NoPenalty(nde.AbstractRegulariser):
        def wrap_solver(self, solver, problem, key):
            return solver

    with pytest.raises(TypeError, match="abstract.*penalty"):
        NoPenalty()


def test_penalty_of_the_wrong_type_and_foreign_regularisers_are_named():
    class ReturnsFloat(nde.AbstractRegulariser):
        def penalty(self, problem, output):  # pyright: ignore
            return 1.0

    with pytest.raises(TypeError, match=r"ReturnsFloat\.penalty must return"):
        _solve(jnp.asarray(1.0), (ReturnsFloat(),))
    with pytest.raises(TypeError, match="regularisers"):
        _solve(jnp.asarray(1.0), (lambda sol: 0.0,))
    with pytest.raises(ValueError, match="final_l2"):
        twin = DOCS["FinalStateL2"]

        class Twin(nde.AbstractRegulariser):
            def penalty(self, problem, output):
                return twin().penalty(problem, output)

        _solve(jnp.asarray(1.0), (twin(), Twin()))


def test_hook_errors_name_the_argument():
    with pytest.raises(ValueError, match="`adjoint`: GlobalErrorEstimate"):
        _solve(jnp.asarray(1.0), (nde.GlobalErrorEstimate(),), adjoint=dfx.BacksolveAdjoint())
    with pytest.raises(ValueError, match="`key` is required by the RandomEndTime"):
        _solve(jnp.asarray(1.0), (nde.RandomEndTime(),))
    with pytest.raises(ValueError, match="`saveat`: KineticEnergy"):
        _solve(jnp.asarray(1.0), (DOCS["KineticEnergy"](),), saveat=dfx.SaveAt(steps=True))
