"""The peers: a scipy `solve_ivp` loop for the ODE sweep, a NumPy Euler-Maruyama loop for the
SDE paths (both timed on a sample of members)."""

import time

import numpy as np

from .._harness import optional_import
from .problems import (
    ATOL,
    BETA,
    DELTA,
    OU_DT,
    OU_MU,
    OU_SIGMA,
    OU_T1,
    OU_THETA,
    OU_X0,
    RTOL,
    T1,
    Y0,
)


def scipy_loop(ps, idx):
    """`solve_ivp` with RK45 (Dormand-Prince 5(4), the same order class as Tsit5 5(4)) at
    the same rtol/atol, on the members `idx` (a uniform random sample of the study).

    Returns `None` without scipy, else (members per second, the members' final states, their
    mean step count, the best process CPU seconds of a pass)."""
    scipy_integrate = optional_import("scipy.integrate")
    if scipy_integrate is None:
        return None

    def f(t, y, a, g):
        return [a * y[0] - BETA * y[0] * y[1], DELTA * y[0] * y[1] - g * y[1]]

    dt, dc = float("inf"), float("inf")
    for _ in range(2):  # best of two passes over the sample
        t0, c0 = time.perf_counter(), time.process_time()
        finals, steps = [], []
        for a, g in ps[idx]:
            sol = scipy_integrate.solve_ivp(
                f, (0.0, T1), list(Y0), method="RK45", rtol=RTOL, atol=ATOL, args=(a, g)
            )
            finals.append(sol.y[:, -1])
            steps.append(len(sol.t) - 1)
        dt = min(dt, time.perf_counter() - t0)
        dc = min(dc, time.process_time() - c0)
    return len(idx) / dt, np.asarray(finals), float(np.mean(steps)), dc


def numpy_em_loop(sample, seed=0):
    """Members per second of a Python loop of Euler-Maruyama paths."""
    rng = np.random.default_rng(seed)
    n_steps = int(round(OU_T1 / OU_DT))
    t0 = time.perf_counter()
    for _ in range(sample):
        x = OU_X0
        for _ in range(n_steps):
            x = x + OU_THETA * (OU_MU - x) * OU_DT + OU_SIGMA * np.sqrt(OU_DT) * rng.normal()
    return sample / (time.perf_counter() - t0)
