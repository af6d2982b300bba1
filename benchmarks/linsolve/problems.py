"""The obstacle-scene problems, tolerances and sizes of the linsolve benchmark.

A problem is a dict with keys `shape`, `grid` (e.g. "256^2"), `seed`, `rhs` ("random" or
"divergence"), `solid` (NumPy bool mask), `operator` (a `scimlx.linsolve.DiffusionOperator`),
`b`, `fluid` (unknowns) and `solid_fraction`; every table and the DCDM rows take these.
"""

import jax
import jax.numpy as jnp
import numpy as np

import scimlx.linsolve as ls


TOL = 1e-6
TOL_R0 = 1e-4
FAMILY_TOL = 1e-8
MAX_STEPS = 1000  # ours, every table (one compiled solve per grid shape)
DENSE_COARSE_LIMIT = 2500  # cells: larger dense coarsest grids are not attempted
SEED = 1000
OURS = "MG-PCG (ours)"
OURS_GALERKIN = "MG-PCG (ours, Galerkin)"
OURS_F32 = "MG-PCG (ours, float32 cycle)"  # multigrid(op, dtype=float32), CG in float64


def grid_name(shape) -> str:
    """`(256, 256)` -> "256^2"; shapes with unequal sides -> "64x32"."""
    return "x".join(str(n) for n in shape) if len(set(shape)) > 1 else f"{shape[0]}^{len(shape)}"


def parse_grids(spec: str) -> list[tuple[int, ...]]:
    """ "256^2,32^3" -> `[(256, 256), (32, 32, 32)]`."""
    return [(int(g.split("^")[0]),) * int(g.split("^")[1]) for g in spec.split(",")]


def make_problem(shape, seed, rhs="random"):
    solid = ls.obstacle_scene(shape, seed=seed, split="test")
    op = ls.poisson(shape, solid=jnp.asarray(solid))
    key = jax.random.key(seed)
    if rhs == "random":
        b = ls.random_rhs(jnp.asarray(solid), key=key)
    else:
        b = ls.divergence_rhs(jnp.asarray(solid), key=key)
    return {
        "shape": tuple(shape),
        "grid": grid_name(shape),
        "seed": seed,
        "rhs": rhs,
        "solid": solid,
        "operator": op,
        "b": b,
        "fluid": int((~solid).sum()),
        "solid_fraction": float(solid.mean()),
    }


def true_res(A, x, b) -> float:
    """`|b - A x|_2 / |b|_2` with the scipy matrix `A`."""
    return float(np.linalg.norm(b - A @ x) / np.linalg.norm(b))


def its_to(history, target):
    """The first iteration whose residual is `<= target` times the first one (`None`: never)."""
    h = np.asarray(history)
    h = h[np.isfinite(h)]
    hits = np.nonzero(h <= target * h[0])[0]
    return int(hits[0]) if len(hits) else None


def config(quick):
    """Sizes and rounds. `family_sizes`: per dimension, the sizes of a doubling (the growth)
    first, then sizes that are not powers of two; `family_subset`: sizes at which only
    the members listed run (the rest of the sizes run every member of the dimension)."""
    subset = ("obstacles f=0.3", "maze w=3", "inclusions k=1000", "log-normal s=1.3")
    if quick:
        return {
            "shapes": [(128, 128), (256, 256), (32, 32, 32)],
            "rounds": 3,
            "krylov_rounds": 2,
            "breakdown_shape": (256, 256),
            "family_sizes": {2: [64, 128, 96, 63], 3: [16, 32, 24]},
            "family_subset": {(96, 2): subset, (63, 2): subset, (24, 3): subset},
            "family_rounds": 2,
        }
    subset3 = ("obstacles f=0.3", "inclusions k=1000", "log-normal s=1.3")
    return {
        "shapes": [(128, 128), (256, 256), (512, 512), (32, 32, 32), (64, 64, 64)],
        # the Galerkin, CG and IC(0) rows (a compile each, minutes of CG) on these only
        "small_shapes": [(128, 128), (256, 256), (32, 32, 32)],
        "rounds": 5,
        "krylov_rounds": 2,
        "breakdown_shape": (256, 256),
        "family_sizes": {2: [128, 256, 192, 255, 512, 1024], 3: [32, 64, 63]},
        "family_subset": {
            (192, 2): subset,
            (255, 2): subset,
            (512, 2): subset,
            (1024, 2): subset,
            (64, 3): subset3,
            (63, 3): subset3,
        },
        "family_rounds": 5,
    }


def family_sizes(cfg, spec):
    """`cfg` with the family sizes of `--family-sizes` ("2:64,128,96;3:16,32"): the first two
    sides of a dimension run every member, later ones the mode's non-power-of-two subset."""
    subset = cfg["family_subset"].get((cfg["family_sizes"][2][2], 2), ())
    cfg["family_sizes"], cfg["family_subset"] = {}, {}
    for part in spec.split(";"):
        dim, sizes = part.split(":")
        sizes = [int(n) for n in sizes.split(",")]
        cfg["family_sizes"][int(dim)] = sizes
        for n in sizes[2:]:
            cfg["family_subset"][(n, int(dim))] = subset
    return cfg
