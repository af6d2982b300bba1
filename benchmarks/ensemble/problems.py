"""The studies' members: a Lotka-Volterra rate sweep (ODE) and an Ornstein-Uhlenbeck Monte
Carlo (SDE), each as a plain `diffeqsolve` and as a `DiffEqMember` for the lane-refill schedule,
with their reducers and exact answers."""

import diffrax
import jax.numpy as jnp
import numpy as np

from scimlx import ensemble


RTOL, ATOL = 1e-6, 1e-8
T1 = 20.0
Y0 = (10.0, 10.0)
BETA, DELTA = 0.1, 0.075


def lv_params(n, seed=0):
    """(alpha, gamma) log-uniform on [0.3, 3]: the cost per member varies about 10x."""
    rng = np.random.default_rng(seed)
    return np.exp(rng.uniform(np.log(0.3), np.log(3.0), (n, 2)))


def lv_field(t, y, p):
    x, z = y[0], y[1]
    return jnp.stack([p[0] * x - BETA * x * z, DELTA * x * z - p[1] * z])


def lv_solve(p, rtol=RTOL, atol=ATOL, max_steps=16384):
    return diffrax.diffeqsolve(
        diffrax.ODETerm(lv_field),
        diffrax.Tsit5(),
        0.0,
        T1,
        0.01,
        jnp.asarray(Y0),
        args=p,
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        saveat=diffrax.SaveAt(t1=True),
        max_steps=max_steps,
        throw=False,
    )


def lv_member(p):
    return lv_solve(p)


def lv_problem(p):
    return ensemble.DiffEqProblem(
        diffrax.ODETerm(lv_field), jnp.asarray(Y0), args=p, t0=0.0, t1=T1, dt0=0.01
    )


# The same solve as `lv_member`, described for the lane-refill schedule.
LV_REFILL = ensemble.DiffEqMember(
    lv_problem, diffrax.Tsit5(), diffrax.PIDController(rtol=RTOL, atol=ATOL), max_steps=16384
)


def lv_final(sol):
    return sol.ys[-1]


def lv_pilot(p):
    """A cheap loose-tolerance pilot solve: its step count estimates the member's cost.

    rtol 1e-3 (1000x looser than the study): the step counts correlate at 0.98 with the
    study's. At rtol 1e-2 the pilot goes unstable for some members and runs to max_steps,
    costing more than ordering saves.
    """
    return lv_solve(p, rtol=1e-3, atol=1e-5, max_steps=512).stats["num_steps"]


def lv_user_estimate(ps):
    """A free estimate: the oscillation is faster (more steps) for larger rates."""
    return np.sqrt(ps[:, 0] * ps[:, 1]) + 0.5 * (ps[:, 0] + ps[:, 1])


LV_REDUCERS = {
    "mean": ensemble.Mean(of=lv_final),
    "std": ensemble.Std(of=lv_final),
    "min": ensemble.Min(of=lv_final),
    "max": ensemble.Max(of=lv_final),
    "quantiles": ensemble.Quantiles([0.05, 0.5, 0.95], of=lv_final, range=(0.0, 200.0), bins=4000),
}

# Ornstein-Uhlenbeck dX = theta (mu - X) dt + sigma dW, Euler-Maruyama, 100 steps.
OU_THETA, OU_MU, OU_SIGMA, OU_X0, OU_T1, OU_DT = 1.5, 1.0, 0.4, 0.0, 1.0, 0.01


def _ou_terms(key):
    bm = diffrax.UnsafeBrownianPath(shape=(), key=key)
    return diffrax.MultiTerm(
        diffrax.ODETerm(lambda t, y, args: OU_THETA * (OU_MU - y)),
        diffrax.ControlTerm(lambda t, y, args: jnp.asarray(OU_SIGMA, y.dtype), bm),
    )


def ou_path(key):
    return diffrax.diffeqsolve(
        _ou_terms(key),
        diffrax.Euler(),
        0.0,
        OU_T1,
        OU_DT,
        jnp.asarray(OU_X0),
        saveat=diffrax.SaveAt(t1=True),
        adjoint=diffrax.DirectAdjoint(),
        max_steps=int(round(OU_T1 / OU_DT)) + 1,
        throw=False,
    )


def ou_problem(key):
    return ensemble.DiffEqProblem(_ou_terms(key), jnp.asarray(OU_X0), t0=0.0, t1=OU_T1, dt0=OU_DT)


# The same fixed-step path for the lane-refill schedule (every member takes 100 steps, so
# there is no slowest member to wait for: this row measures refill's overhead).
OU_REFILL = ensemble.DiffEqMember(
    ou_problem,
    diffrax.Euler(),
    max_steps=int(round(OU_T1 / OU_DT)) + 1,
    adjoint=diffrax.DirectAdjoint(),
)


def ou_final(sol):
    return sol.ys[-1]


def ou_exact():
    """Mean and variance at t1 of the Euler-Maruyama chain itself (no discretisation bias),
    X_{k+1} = a X_k + theta mu dt + sigma sqrt(dt) Z_k with a = 1 - theta dt."""
    n = int(round(OU_T1 / OU_DT))
    a = 1.0 - OU_THETA * OU_DT
    mean = OU_MU + (OU_X0 - OU_MU) * a**n
    var = OU_SIGMA**2 * OU_DT * (1 - a ** (2 * n)) / (1 - a**2)
    return mean, var


OU_REDUCERS = {"mean": ensemble.Mean(of=ou_final), "var": ensemble.Variance(of=ou_final)}


def cheap_member(p):
    """A fixed-step solve (20 Heun steps): cheap, so the memory test is about the runner."""
    return diffrax.diffeqsolve(
        diffrax.ODETerm(lv_field),
        diffrax.Heun(),
        0.0,
        2.0,
        0.1,
        jnp.asarray(Y0),
        args=p,
        saveat=diffrax.SaveAt(t1=True),
        max_steps=32,
        throw=False,
    ).ys[-1]
