"""The tasks' data: scikit-learn's 8x8 digits (B1, B2) and the spiral ODE y' = A y^3 (B3),
with the spiral's own solver cost as a reference."""

import diffrax as dfx
import equinox as eqx
import jax.numpy as jnp
import jax.random as jr

import scimlx.nde as nde


TIGHT = 1.4e-8  # the papers' tolerance
LOOSE = 1e-5

PAPER = {
    "b3_nfe_vanilla": "1083.0 +- 57.55 (Pal et al. 2021, Fig. 2, spiral, Tsit5)",
    "b3_nfe_er_sr": "676.2 +- 68.20 (same, error+stiffness regularised)",
}


def digits_split():
    """scikit-learn's digits scaled to [0, 1], a stratified 80 / 20 split (seed 0)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)
    return (jnp.asarray(xtr), jnp.asarray(ytr), jnp.asarray(xte), jnp.asarray(yte))


def spiral_data(n=1000, t1=25.0):
    """torchdiffeq's ode_demo spiral: `n` points on `[0, t1]` from `y0 = (2, 0)`."""
    a = jnp.array([[-0.1, 2.0], [-2.0, -0.1]])
    ts = jnp.linspace(0.0, t1, n)
    sol = dfx.diffeqsolve(
        dfx.ODETerm(lambda t, y, args: (y**3) @ a),
        dfx.Tsit5(),
        0.0,
        t1,
        0.01,
        jnp.array([2.0, 0.0]),
        saveat=dfx.SaveAt(ts=ts),
        stepsize_controller=dfx.PIDController(rtol=1e-10, atol=1e-10),
        max_steps=100000,
    )
    return ts, sol.ys


class SpiralField(eqx.Module):
    """torchdiffeq ode_demo's ODEFunc: Linear(2, 50) -> tanh -> Linear(50, 2) on y**3."""

    l1: eqx.nn.Linear
    l2: eqx.nn.Linear

    def __init__(self, key):
        k1, k2 = jr.split(key)
        self.l1 = eqx.nn.Linear(2, 50, key=k1, dtype=jnp.float64)
        self.l2 = eqx.nn.Linear(50, 2, key=k2, dtype=jnp.float64)

    def __call__(self, t, y, args=None):
        return self.l2(jnp.tanh(self.l1(y**3)))


def _spiral_solve(tol, scale=1.0, damping=0.1):
    a = jnp.array([[-damping, 2.0], [-2.0, -damping]])
    sol = dfx.diffeqsolve(
        dfx.ODETerm(lambda t, y, args: scale * (y**3) @ a),
        dfx.Tsit5(),
        0.0,
        25.0,
        0.01,
        jnp.array([2.0, 0.0]),
        saveat=dfx.SaveAt(ts=jnp.linspace(0.0, 25.0, 1000)),
        stepsize_controller=dfx.PIDController(rtol=tol, atol=tol),
        max_steps=100000,
    )
    return sol.ys, int(nde.count_nfe(dfx.Tsit5(), sol.stats["num_steps"])[0])


def spiral_true_nfe(tol):
    """NFE of the data-generating ODE itself over the prediction span, at `tol`: a
    model that reproduces the data closely needs about as many steps."""
    return _spiral_solve(tol)[1]


def spiral_perturbations(tol):
    """NFE and MSE against the data of perturbed true systems (more damping `d`, slower
    field `c`): how much cheaper a nearby spiral is, and how far from the data."""
    ref, _ = _spiral_solve(tol)
    out = []
    for kw in [dict(damping=d) for d in (0.12, 0.15, 0.2, 0.3)] + [
        dict(scale=c) for c in (0.95, 0.9, 0.8, 0.65)
    ]:
        ys, nfe = _spiral_solve(tol, **kw)
        out.append(dict(kw, nfe=nfe, mse=float(jnp.mean((ys - ref) ** 2))))
    return out
