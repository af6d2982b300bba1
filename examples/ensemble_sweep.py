"""A parameter sweep of the chaotic Lorenz system with `scimlx.ensemble.run_ensemble`.

4,000 members differ in the Rayleigh parameter rho (22 to 32) and in a tiny perturbation
of the initial state. Each member is an adaptive Tsit5 solve at rtol 1e-6 to t = 30:
below rho of about 24 the members settle towards a fixed point (z a smooth function of
rho); above it they are chaotic and z(30) scatters.
The runner evaluates them in chunks (lane-refill scheduled within a chunk, sharded over
the local devices), reduces the final state to mean / std / quantiles on the fly, stores every
member's final state on disk in chunks, and the plot shows the outcome distribution.

    python examples/ensemble_sweep.py [--quick] [--store DIR] [--out examples/ensemble_sweep.png]

`--quick` runs 400 members instead of 4,000.

By default the study is stored in a temporary
folder, removed afterwards. With `--store DIR` it is kept in a subfolder of `DIR` named by a
fingerprint of the inputs and of this script's source, so running the same script twice
resumes (the second run recomputes nothing), while an edited script or other inputs start a
fresh study instead of returning the statistics stored by an earlier version.
"""

import argparse
import hashlib
import os
import tempfile

import jax


jax.config.update("jax_enable_x64", True)

import diffrax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib  # noqa: E402


matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from scimlx import ensemble  # noqa: E402


def lorenz(t, y, rho):
    sigma, beta = 10.0, 8.0 / 3.0
    return jnp.stack([sigma * (y[1] - y[0]), y[0] * (rho - y[2]) - y[1], y[0] * y[1] - beta * y[2]])


def problem(m):
    return ensemble.DiffEqProblem(
        diffrax.ODETerm(lorenz),
        jnp.array([1.0, 1.0, 1.0]) + m["dy0"],
        args=m["rho"],
        t0=0.0,
        t1=30.0,
        dt0=0.01,
    )


# One member = one diffeqsolve (Tsit5, rtol 1e-6, final state saved, failures reported per
# member, never raised). Described as a DiffEqMember, the runner steps the members itself
# with the lane-refill schedule: a lane whose member is done loads the next, so the
# chaotic members (many steps) do not hold up the settling ones.
member = ensemble.DiffEqMember(
    problem,
    diffrax.Tsit5(),
    diffrax.PIDController(rtol=1e-6, atol=1e-8),
    max_steps=16384,
)


def final(sol):
    return sol.ys[-1]


def study_folder(root, inputs):
    """A subfolder of `root` named by a fingerprint of the inputs and of this script."""
    h = hashlib.sha256()
    with open(os.path.abspath(__file__), "rb") as f:
        h.update(f.read())
    for k in sorted(inputs):
        a = np.ascontiguousarray(inputs[k])
        h.update(k.encode() + str((a.dtype, a.shape)).encode() + a.tobytes())
    return os.path.join(root, f"lorenz_sweep_{h.hexdigest()[:16]}")


def main(n=4000, store=None, out=None):
    rng = np.random.default_rng(0)
    inputs = {"rho": rng.uniform(22.0, 32.0, n), "dy0": 1e-3 * rng.normal(size=(n, 3))}
    if store is None:
        with tempfile.TemporaryDirectory(prefix="scimlx_lorenz_") as tmp:
            return run(inputs, os.path.join(tmp, "study"), out)
    return run(inputs, study_folder(store, inputs), out)


def run(inputs, store, out):
    n = len(inputs["rho"])
    print(f"study folder: {store}")
    res = ensemble.run_ensemble(
        member,
        inputs,
        reducers={
            "mean": ensemble.Mean(of=final),
            "std": ensemble.Std(of=final),
            "q": ensemble.Quantiles([0.05, 0.5, 0.95], of=final, range=(0.0, 60.0), bins=600),
        },
        store=ensemble.Store(store, save=final),
        chunk_size=n // 2,  # two resumable chunks
        schedule=ensemble.RefillSchedule(lanes=256),  # members in flight per device
    )
    print(res)
    (finals,), codes = ensemble.load_outputs(store)
    ok = codes == 0
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    ax[0].scatter(inputs["rho"][ok], finals[ok, 2], s=2, alpha=0.5)
    ax[0].set_xlabel("rho")
    ax[0].set_ylabel("z(t=30)")
    ax[0].set_title("Lorenz sweep: final z against rho")
    ax[1].hist(finals[ok, 2], bins=80, color="0.6")
    for q, v in zip([0.05, 0.5, 0.95], res.stats["q"][:, 2]):
        ax[1].axvline(v, color="C3", ls="--")
        ax[1].text(v, ax[1].get_ylim()[1] * 0.95, f" q{q:g}", color="C3", fontsize=8)
    ax[1].set_xlabel("z(t=30)")
    ax[1].set_title(f"{res.n_successful}/{res.n_members} members; sketch quantiles dashed")
    fig.tight_layout()
    out = out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "ensemble_sweep.png")
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")
    return res


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="400 members instead of 4,000")
    parser.add_argument("--store", default=None, help="keep (and resume) the study under DIR")
    parser.add_argument("--out", default=None, help="where to save the figure")
    args = parser.parse_args()
    main(n=400 if args.quick else 4000, store=args.store, out=args.out)
