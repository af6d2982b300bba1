"""Stable SDE classes and baselines: naive evaluation of the paper's equations, solves, grads."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import scimlx
from scimlx.sde import (
    GridBrownianPath,
    GSDE,
    LatentODE,
    LNSDE,
    LSDE,
    make_path,
    NaiveSDE,
    NeuralCDE,
    ObservationGrid,
)


H = 5
C = 3  # data channels; the path has C + 1 with time


def _lin(layer, x):
    return np.asarray(layer.weight) @ x + np.asarray(layer.bias)


def _relu(x):
    return np.maximum(x, 0.0)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _naive_drift(m, t, z, x):
    """The reference code's drift written out in NumPy."""
    d = m.drift_net
    tau = np.array([np.sin(t), np.cos(t)])
    zin = np.concatenate([tau, z]) if d.use_time else z
    u = _lin(d.emb, np.concatenate([_lin(d.lin_in, zin), _lin(d.x_embed, x)]))
    u = _relu(u)
    for layer in d.mlp.hidden_layers:
        u = _relu(_lin(layer, u))
    u = _lin(d.mlp.out, u)
    if isinstance(m, GSDE):
        return {
            "logistic": np.tanh(u * (1 - _sigmoid(z))),
            "tanh": np.tanh(u * np.tanh(z)),
            "z": z * np.tanh(u),
        }[m.drift_factor]
    return np.tanh(u)


def _naive_diffusion(m, t, z):
    tau = np.array([np.sin(t), np.cos(t)])
    s = _relu(_lin(m.noise.l2, _relu(_lin(m.noise.l1, tau))))
    th = _sigmoid(float(m.theta))
    if isinstance(m, LSDE):
        return np.tanh(th * s)
    g = th * s * z
    return np.tanh(g) if m.bounded else g


def _data(seed=0, L=7):
    rng = np.random.default_rng(seed)
    ts = np.linspace(0.0, 1.0, L)
    ys = rng.normal(size=(L, C))
    ys[rng.random(ys.shape) < 0.3] = np.nan
    return ts, ys


STABLE = [
    lambda k: LSDE(C + 1, H, 2, key=k),
    lambda k: LNSDE(C + 1, H, 2, key=k),
    lambda k: LNSDE(C + 1, H, 2, num_layers=3, bounded=False, key=k),
    lambda k: GSDE(C + 1, H, 2, key=k),
    lambda k: GSDE(C + 1, H, 2, drift_factor="logistic", key=k),
    lambda k: GSDE(C + 1, H, 2, drift_factor="z", key=k),
]


def test_defaults_are_the_reference_codes():
    """GSDE's drift factor is the 2024-11 code's tanh form; the naive SDE's drift sees
    [sin t, cos t] (option (3, 18)); every class has the official readout."""
    k = jr.key(0)
    assert GSDE(C + 1, H, 2, key=k).drift_factor == "tanh"
    naive = NaiveSDE(C + 1, H, 2, key=k)
    assert naive.time_features and naive.lin_in.in_features == H + 2
    assert NaiveSDE(C + 1, H, 2, time_features=False, key=k).lin_in.in_features == H
    for cls in (LSDE, LNSDE, GSDE, NaiveSDE, NeuralCDE, LatentODE):
        assert cls(C + 1, H, 2, key=k).readout.kind == "official"


@pytest.mark.parametrize("time_features", [True, False])
@pytest.mark.parametrize("control", [False, True])
def test_naive_sde_drift_matches_formula(time_features, control, getkey):
    m = NaiveSDE(C + 1, H, 2, control=control, time_features=time_features, key=getkey())
    rng = np.random.default_rng(2)
    t, z, x = 0.7, rng.normal(size=H), rng.normal(size=C + 1)
    parts = ([np.array([np.sin(t), np.cos(t)])] if time_features else []) + [z]
    if control:
        parts.append(_lin(m.x_embed, x))
    u = _relu(_lin(m.lin_in, np.concatenate(parts)))
    for layer in m.mlp.hidden_layers:
        u = _relu(_lin(layer, u))
    np.testing.assert_allclose(
        np.asarray(m.drift(t, jnp.asarray(z), jnp.asarray(x))),
        np.tanh(_lin(m.mlp.out, u)),
        rtol=1e-12,
        atol=1e-12,
    )


@pytest.mark.parametrize("make", STABLE)
def test_vector_fields_match_naive_formulas(make, getkey):
    m = make(getkey())
    rng = np.random.default_rng(1)
    for _ in range(3):
        t = float(rng.uniform(0, 2))
        z = rng.normal(size=H)
        x = rng.normal(size=C + 1)
        np.testing.assert_allclose(
            np.asarray(m.drift(t, jnp.asarray(z), jnp.asarray(x))),
            _naive_drift(m, t, z, x),
            rtol=1e-12,
            atol=1e-12,
        )
        np.testing.assert_allclose(
            np.asarray(m.diffusion(t, jnp.asarray(z))),
            _naive_diffusion(m, t, z),
            rtol=1e-12,
            atol=1e-12,
        )


def test_stability_structure(getkey):
    """LSDE's diffusion ignores z; LNSDE/GSDE's vanish at z = 0; drifts are bounded."""
    k = getkey()
    lsde, lnsde, gsde = (
        LSDE(C + 1, H, 2, key=k),
        LNSDE(C + 1, H, 2, key=k),
        GSDE(C + 1, H, 2, key=k),
    )
    z = jnp.linspace(-50.0, 50.0, H)
    x = jnp.ones(C + 1) * 100.0
    np.testing.assert_allclose(
        np.asarray(lsde.diffusion(0.3, z)), np.asarray(lsde.diffusion(0.3, -z)), atol=0
    )
    for m in (lnsde, gsde):
        np.testing.assert_allclose(np.asarray(m.diffusion(0.3, jnp.zeros(H))), 0.0, atol=0)
    for m in (lsde, lnsde, gsde):
        assert float(jnp.max(jnp.abs(m.drift(0.3, z, x)))) <= 1.0
        assert float(jnp.max(jnp.abs(m.diffusion(0.3, z)))) <= 1.0


def test_scan_and_diffeqsolve_equal_manual_euler_maruyama(getkey):
    m = LNSDE(C + 1, H, 2, key=getkey())
    ts, ys = _data()
    path = make_path(ts, ys)
    key = getkey()
    z_scan = np.asarray(eqx.filter_jit(lambda m: m.solve(path, ts, key=key).value)(m))
    on_grid = ObservationGrid(scan=False)
    z_grid = np.asarray(
        eqx.filter_jit(lambda m: m.solve(path, ts, key=key, stepsize_controller=on_grid).value)(m)
    )
    dw = np.asarray(GridBrownianPath(jnp.asarray(ts), (H,), key=key).increments)
    z = np.asarray(m.encoder(path.evaluate(ts[0])))
    zs = [z]
    for k in range(len(ts) - 1):
        x = np.asarray(path.evaluate(ts[k]))
        dt = ts[k + 1] - ts[k]
        z = z + _naive_drift(m, ts[k], z, x) * dt + _naive_diffusion(m, ts[k], z) * dw[k]
        zs.append(z)
    np.testing.assert_allclose(z_scan, np.stack(zs), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(z_grid, np.stack(zs), rtol=1e-10, atol=1e-10)


def test_diffrax_controllers_and_adjoints_reproduce_the_grid_scan(getkey):
    """`diffrax.StepTo(ts)` and, for an ODE on a uniform grid, `diffrax.ConstantStepSize()`
    take the scan's steps; an adjoint on `ObservationGrid(scan=False)` gives the scan's
    gradient."""
    ts, ys = _data(5)
    path = make_path(ts, ys)
    key = getkey()
    sde_model = LNSDE(C + 1, H, 2, readout="linear", key=getkey())
    ode_model = LatentODE(C + 1, H, 2, readout="linear", key=getkey())

    def loss(m, **options):
        return jnp.sum(m.solve(path, ts, key=key, **options).value ** 2)

    @eqx.filter_jit
    def run(m, o):
        step_to = diffrax.StepTo(ts=jnp.asarray(ts))
        direct = dict(
            stepsize_controller=ObservationGrid(scan=False), adjoint=diffrax.DirectAdjoint()
        )
        return (
            m.solve(path, ts, key=key).value,
            m.solve(path, ts, key=key, stepsize_controller=step_to).value,
            o.solve(path, ts).value,
            o.solve(path, ts, stepsize_controller=diffrax.ConstantStepSize()).value,
            eqx.filter_grad(loss)(m),
            eqx.filter_grad(lambda m: loss(m, **direct))(m),
        )

    z_scan, z_step_to, o_scan, o_constant, g_scan, g_direct = run(sde_model, ode_model)
    np.testing.assert_allclose(np.asarray(z_step_to), np.asarray(z_scan), rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(o_constant), np.asarray(o_scan), rtol=0, atol=1e-12)
    for a, b in zip(jax.tree.leaves(g_scan), jax.tree.leaves(g_direct)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-14)


def test_solve_returns_a_solution_with_result_and_steps(getkey):
    ts, ys = _data(6)
    path = make_path(ts, ys)
    m = LNSDE(C + 1, H, 2, key=getkey())
    key = getkey()
    pid = diffrax.PIDController(rtol=1e-3, atol=1e-5)
    for controller in (ObservationGrid(), ObservationGrid(scan=False), pid):
        sol = m.solve(path, ts, key=key, stepsize_controller=controller)
        assert isinstance(sol, scimlx.Solution) and sol.value.shape == (len(ts), H)
        assert sol.result == scimlx.RESULTS.successful
        steps = int(sol.stats["num_steps"])
        assert steps == int(sol.stats["num_accepted_steps"] + sol.stats["num_rejected_steps"])
        assert steps == len(ts) - 1 if controller is not pid else steps > 0
    one = m.solve(path, ts[:1], key=key)
    assert one.result == scimlx.RESULTS.successful and int(one.stats["num_steps"]) == 0
    # diffrax's failure, as a scimlx.RESULTS item, per series under vmap
    keys = jr.split(key, 2)
    capped = jax.vmap(
        lambda k: m.solve(path, ts, key=k, stepsize_controller=pid, max_steps=2, throw=False)
    )(keys)
    assert capped.result._enumeration is scimlx.RESULTS
    assert bool(jnp.all(capped.result == scimlx.RESULTS.max_steps_reached))
    # a trajectory with NaN is `nonfinite`, and raises with `throw=True`
    bad = eqx.tree_at(lambda m: m.encoder.bias, m, jnp.full((H,), jnp.nan))
    for controller in (ObservationGrid(), ObservationGrid(scan=False)):
        sol = bad.solve(path, ts, key=key, stepsize_controller=controller, throw=False)
        assert sol.result == scimlx.RESULTS.nonfinite
        with pytest.raises(eqx.EquinoxRuntimeError, match="Nonfinite"):
            bad.solve(path, ts, key=key, stepsize_controller=controller)


def test_neural_cde_euler_uses_path_increments(getkey):
    m = NeuralCDE(C + 1, H, 2, key=getkey())
    ts, ys = _data(2)
    path = make_path(ts, ys)
    zs = np.asarray(eqx.filter_jit(lambda m: m.solve(path, ts).value)(m))
    z = np.asarray(m.encoder(path.evaluate(ts[0])))
    for k in range(len(ts) - 1):
        dx = np.asarray(path.evaluate(ts[k + 1]) - path.evaluate(ts[k]))
        z = z + np.asarray(m.vector_field(ts[k], jnp.asarray(z), None)) @ dx
    np.testing.assert_allclose(zs[-1], z, rtol=1e-10, atol=1e-10)


ALL = [LSDE, LNSDE, GSDE, NaiveSDE, NeuralCDE, LatentODE]


@pytest.mark.parametrize("cls", ALL)
def test_batched_classification_grad_padding_and_degenerate_input(cls, getkey):
    """vmap over series of different lengths, incl. a single observation and an all-NaN
    channel: finite loss and gradients; padding does not change a series' logits."""
    m = cls(C + 1, H, 3, key=getkey())
    rng = np.random.default_rng(3)
    B, L = 3, 6
    ts = np.tile(np.linspace(0.0, 1.0, L), (B, 1))
    ys = rng.normal(size=(B, L, C))
    ys[0, :, 1] = np.nan  # an all-NaN channel
    lengths = np.array([6, 1, 4])
    labels = jnp.array([0, 1, 2])
    key = getkey()

    @eqx.filter_jit
    def loss_and_logits(m):
        paths = jax.vmap(make_path)(jnp.asarray(ts), jnp.asarray(ys), jnp.asarray(lengths))
        keys = jr.split(key, B)
        logits = jax.vmap(lambda p, t, n, k: m(p, t, n, key=k))(
            paths, jnp.asarray(ts), jnp.asarray(lengths), keys
        )
        logp = jax.nn.log_softmax(logits)
        # series 2 alone, unpadded (deterministic models: must equal its padded logits)
        single = (
            logits[2]
            if m.is_sde
            else m(make_path(ts[2, :4], ys[2, :4]), jnp.asarray(ts[2, :4]), key=None)
        )
        return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], 1)), (logits, single)

    (loss, (logits, single)), grads = eqx.filter_value_and_grad(loss_and_logits, has_aux=True)(m)
    assert np.isfinite(float(loss))
    leaves = jax.tree.leaves(eqx.filter(grads, eqx.is_inexact_array))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert any(float(jnp.max(jnp.abs(g))) > 0 for g in leaves)
    if not m.is_sde:  # SDE increments are drawn for the padded grid, so only ODE/CDE match
        np.testing.assert_allclose(np.asarray(single), np.asarray(logits[2]), atol=1e-10)


def test_adaptive_solve_matches_a_fine_grid_ito_solve_of_the_same_brownian_path():
    """Adaptive stepping (Heun on the Stratonovich form) against Ito-Milstein on a fine fixed
    grid driven by the same virtual Brownian tree. The noise is strong enough that the
    uncorrected Stratonovich solution lies well outside the tolerance."""
    ts = np.linspace(0.0, 1.0, 5)
    ys = np.random.default_rng(4).normal(size=(5, C))
    path = make_path(ts, ys)
    m = LNSDE(C + 1, H, 2, theta=3.0, readout="linear", key=jr.key(1))
    key, tol = jr.key(7), 1e-4  # fixed: the margins below were measured for these

    @eqx.filter_jit
    def run(m):
        za = m.solve(
            path,
            ts,
            key=key,
            stepsize_controller=diffrax.PIDController(rtol=1e-5, atol=1e-7),
            brownian_tol=tol,
            max_steps=100_000,
        ).value
        vbt = diffrax.VirtualBrownianTree(ts[0], ts[-1], tol=tol, shape=(H,), key=key)
        z0 = m.initial(path, jnp.asarray(ts))

        def fine(solver):
            sol = diffrax.diffeqsolve(
                m.terms(path, vbt),
                solver,
                ts[0],
                ts[-1],
                (ts[-1] - ts[0]) / 1024,
                z0,
                saveat=diffrax.SaveAt(ts=jnp.asarray(ts)),
                max_steps=1100,
            )
            return sol.ys

        return za, fine(diffrax.ItoMilstein()), fine(diffrax.Heun())

    za, ito, stratonovich = (np.asarray(x) for x in run(m))
    gap = np.max(np.abs(stratonovich - ito))
    assert gap > 0.02  # the test can tell the two calculi apart
    assert np.max(np.abs(za - ito)) < gap / 3


def test_milstein_interpolation_and_forecast_readouts(getkey):
    ts, ys = _data(4, L=5)
    key = getkey()
    m = LNSDE(C + 1, H, 2, readout="linear", key=getkey())

    @eqx.filter_jit
    def run(m):
        path = make_path(ts, ys)
        zm = m.solve(path, ts, key=key, solver=diffrax.ItoMilstein()).value
        ze = m.solve(path, ts, key=key).value
        future = jnp.array([1.25, 1.5])
        fut = m.forecast(path, ts, future, key=key)
        # the forecast is the readout of the latent path solved on, and saved at, ts + future
        zf = m.solve(path, jnp.concatenate([jnp.asarray(ts), future]), key=key).value
        return zm, ze, fut, zf

    zm, ze, fut, zf = run(m)
    interp = eqx.filter_jit(lambda m: m.interpolate(make_path(ts, ys), ts, key=key))(m)
    np.testing.assert_allclose(np.asarray(interp), np.asarray(jax.vmap(m.readout)(ze)), atol=1e-12)
    np.testing.assert_allclose(
        np.asarray(fut), np.asarray(jax.vmap(m.readout)(zf[len(ts) :])), atol=1e-12
    )
    # Milstein and Euler share the noise; for this small noise they stay close
    assert float(jnp.max(jnp.abs(zm - ze))) < 0.5


def test_adaptive_neural_cde_matches_a_fine_grid_solve(getkey):
    """Tsit5 with dX/dt against many small Euler steps of the same CDE."""
    ts, ys = _data(4, L=5)
    cde = NeuralCDE(C + 1, H, 2, key=getkey())

    @eqx.filter_jit
    def run(c):
        path = make_path(ts, ys)
        za = c.solve(
            path, ts, stepsize_controller=diffrax.PIDController(rtol=1e-8, atol=1e-8)
        ).value
        fine = jnp.linspace(ts[0], ts[-1], 4 * 512 + 1)
        zf = c.solve(path, fine).value[::512]
        return za, zf

    za, zf = run(cde)
    np.testing.assert_allclose(np.asarray(za), np.asarray(zf), atol=5e-3)
    assert float(jnp.max(jnp.abs(za[-1] - za[0]))) > 0.05  # it moved


def test_model_argument_errors(getkey):
    with pytest.raises(ValueError, match="hidden"):
        LNSDE(3, 0, 2, key=getkey())
    with pytest.raises(ValueError, match="drift_factor"):
        GSDE(3, 4, 2, drift_factor="exp", key=getkey())  # pyright: ignore
    m = LSDE(C + 1, H, 2, key=getkey())
    ts, ys = _data()
    with pytest.raises(ValueError, match="key"):
        m.solve(make_path(ts, ys), ts)
    path = make_path(ts, ys)
    with pytest.raises(TypeError, match="stepsize_controller"):
        m.solve(path, ts, key=getkey(), stepsize_controller="adaptive")  # pyright: ignore
    with pytest.raises(ValueError, match="adjoint"):  # the default scan has no adjoint
        m.solve(path, ts, key=getkey(), adjoint=diffrax.RecursiveCheckpointAdjoint())
    with pytest.raises(ValueError, match="max_steps"):  # ... and takes len(ts) - 1 steps
        m.solve(path, ts, key=getkey(), max_steps=10)
    for controller in (ObservationGrid(), diffrax.StepTo(ts=jnp.asarray(ts))):
        with pytest.raises(ValueError, match="brownian_tol"):  # Brownian motion on the steps
            m.solve(path, ts, key=getkey(), stepsize_controller=controller, brownian_tol=1e-3)
