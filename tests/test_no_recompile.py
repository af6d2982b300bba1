"""A second call of a public entry point with new array values (right-hand side,
coefficients, tolerances passed as arrays, initial conditions) compiles nothing: JAX's
backend-compile event is counted around it."""

import contextlib

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import pytest
from jax import monitoring

import scimlx
from scimlx import linsolve, nde, neuralop, sde


_COUNT = {"on": False, "n": 0, "names": []}


def _listener(event, duration, **kwargs):
    if _COUNT["on"] and event == "/jax/core/compile/backend_compile_duration":
        _COUNT["n"] += 1
        _COUNT["names"].append(kwargs.get("fun_name", ""))


monitoring.register_event_duration_secs_listener(_listener)


@contextlib.contextmanager
def count_compiles():
    _COUNT.update(on=True, n=0, names=[])
    box = {}
    try:
        yield box
    finally:
        _COUNT["on"] = False
        box["n"] = _COUNT["n"]
        box["names"] = list(_COUNT["names"])


def _twice(fn, first, second):
    """Run `fn(*first)` (compiles), then count compilations of `fn(*second)`."""
    jax.block_until_ready(fn(*first))
    with count_compiles() as c:
        out = jax.block_until_ready(fn(*second))
    return c["n"], out


def test_pcg_solve_new_rhs():
    shape = (32, 32)
    solid = jnp.asarray(linsolve.obstacle_scene(shape, seed=0, split="test"))
    op = linsolve.poisson(shape, solid=solid)
    prec = linsolve.multigrid(op)
    b1 = linsolve.random_rhs(solid, key=jr.key(0))
    b2 = linsolve.random_rhs(solid, key=jr.key(1))

    def solve(b, rtol):
        return linsolve.pcg_solve(op, b, preconditioner=prec, rtol=rtol, throw=False).value

    n, x = _twice(solve, (b1, 1e-8), (b2, 1e-8))
    assert n == 0
    assert jnp.linalg.norm(b2 - op.mv(x)) <= 1e-8 * jnp.linalg.norm(b2) * 1.01
    # a tolerance passed as an array is a value, not part of the program
    n, x = _twice(solve, (b1, jnp.asarray(1e-6)), (b2, jnp.asarray(1e-9)))
    assert n == 0
    assert jnp.linalg.norm(b2 - op.mv(x)) <= 1e-9 * jnp.linalg.norm(b2) * 1.01


def test_multigrid_setup_new_coefficients():
    shape = (32, 32)
    k1 = jnp.exp(jr.normal(jr.key(2), shape))
    k2 = jnp.exp(jr.normal(jr.key(3), shape))

    def setup_and_apply(k):
        op = linsolve.diffusion(k)
        return linsolve.multigrid(op).mv(jnp.ones(shape))

    n, _ = _twice(setup_and_apply, (k1,), (k2,))
    assert n == 0


def test_darcy_solve_new_coefficients():
    a1 = 1.0 + jr.uniform(jr.key(4), (32, 32))
    a2 = 1.0 + jr.uniform(jr.key(5), (32, 32))
    n, sol = _twice(lambda a: neuralop.darcy_solve(a, throw=False), (a1,), (a2,))
    assert n == 0 and int(sol.stats["num_steps"]) > 0


def test_neural_ode_new_initial_condition():
    model = nde.NeuralODE(
        nde.MLPVectorField(2, 8, key=jr.key(6)),
        2,
        t1=1.0,
        stepsize_controller=dfx.PIDController(rtol=1e-5, atol=1e-5),
    )
    y1, y2 = jnp.array([1.0, 1.0]), jnp.array([0.3, -1.2])
    n, sol = _twice(lambda y0: model(y0).ys, (y1,), (y2,))
    assert n == 0 and bool(jnp.all(jnp.isfinite(sol)))


def test_mgno_forward_new_input():
    model = neuralop.MgNO(1, 1, 4, 2, [(1, 0), (1, 0)], key=jr.key(7))
    f = eqx.filter_jit(lambda m, x: m(x))
    x1, x2 = jr.normal(jr.key(8), (2, 1, 16, 16))
    n, _ = _twice(lambda x: f(model, x), (x1,), (x2,))
    assert n == 0


@pytest.mark.parametrize("controller", ["scan", "grid", "adaptive"])
def test_latent_sde_solve_new_path_and_key(controller):
    t = jnp.linspace(0.0, 1.0, 12)
    p1, p2 = (sde.make_path(t, jr.normal(jr.key(i), (12, 2))) for i in (9, 10))
    model = sde.LNSDE(3, 8, 2, key=jr.key(11))

    def solve(path, key):
        # a fresh controller object per call, as a user writes it
        stepsize_controller = {
            "scan": sde.ObservationGrid(),
            "grid": sde.ObservationGrid(scan=False),
            "adaptive": dfx.PIDController(rtol=1e-3, atol=1e-5),
        }[controller]
        return model.solve(path, t, key=key, stepsize_controller=stepsize_controller)

    n, sol = _twice(solve, (p1, jr.key(12)), (p2, jr.key(13)))
    assert n == 0 and sol.value.shape == (12, 8) and bool(scimlx.is_successful(sol.result))


def test_darcy_dataset_last_batch_is_padded():
    # 10 samples in batches of 4: the last batch (2 samples) is padded to 4, so the whole
    # set runs one compiled program; a second set of another size compiles nothing new
    neuralop.darcy_dataset(4, 8, seed=0, batch_size=4)
    with count_compiles() as c:
        data = neuralop.darcy_dataset(10, 8, seed=1, batch_size=4)
    assert data.a.shape == (10, 1, 8, 8)
    one = neuralop.darcy_dataset(1, 8, seed=1, batch_size=1)
    # the padding changes nothing: the first sample equals the one generated alone
    assert jnp.allclose(data.u[0], one.u[0], rtol=1e-12, atol=1e-14)
    # the solver program compiles nothing (small eager ops on new shapes may)
    assert not [name for name in c["names"] if "_generate_batch" in name], c["names"]
