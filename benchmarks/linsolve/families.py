"""Problem families of the linsolve benchmark: SPD grid problems beyond the obstacle scenes.

Each member is a function `(shape, seed) -> (operator, solid, b)` built from the library's
public constructors (`scimlx.linsolve.diffusion`, `poisson`, `obstacle_scene`, `random_rhs`);
`b ~ N(0, 1)` on fluid cells. Dirichlet walls (`u = 0`) on every side. Members:

- `obstacles f=...`: `obstacle_scene(shape, fraction=f, split="test")` (balls and boxes,
  enclosed pockets filled).
- `maze w=...` (2-D): a random spanning-tree maze (depth-first, seeded) with corridors `w`
  cells wide and walls one cell thick, walled on every side except an entrance next to the
  first corridor cell and an exit next to the last, so the Dirichlet wall is reached only
  there.
- `inclusions k=c`: coefficient `a = c` on the layout of `obstacle_scene(fraction=0.3)`,
  `a = 1` elsewhere (harmonic means at faces): `c < 1` insulating, `c > 1` conducting
  inclusions.
- `log-normal s=...`: `a = exp(s g)`, `g` a Gaussian field of unit variance (white noise
  filtered by a Gaussian of width 5 % of the grid side), contrast `max a / min a` recorded.
- `anisotropy 1:r`: `-d_x^2 u - ... - d_z^2 u / r` (face coefficients along the last axis
  divided by `r`).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import scimlx.linsolve as ls


def _rng(shape, seed, salt):
    return np.random.default_rng([int(seed), len(shape), *shape, salt])


def maze(shape, width, seed):
    """A 2-D maze mask (`True` = wall); see the module docstring."""
    ny, nx = shape
    pitch = width + 1
    my, mx = (ny - 1) // pitch, (nx - 1) // pitch
    if my < 2 or mx < 2:
        raise ValueError(f"grid {shape} too small for corridors of width {width}")
    solid = np.ones(shape, bool)

    def carve(i, j):
        solid[1 + i * pitch : 1 + i * pitch + width, 1 + j * pitch : 1 + j * pitch + width] = False

    rng = _rng(shape, seed, width)
    seen = np.zeros((my, mx), bool)
    stack = [(0, 0)]
    seen[0, 0] = True
    carve(0, 0)
    while stack:
        i, j = stack[-1]
        nbrs = [
            (i + di, j + dj)
            for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1))
            if 0 <= i + di < my and 0 <= j + dj < mx and not seen[i + di, j + dj]
        ]
        if not nbrs:
            stack.pop()
            continue
        a, c = nbrs[rng.integers(len(nbrs))]
        seen[a, c] = True
        carve(a, c)
        # the wall between (i, j) and (a, c)
        y0 = 1 + min(i, a) * pitch + (width if a != i else 0)
        x0 = 1 + min(j, c) * pitch + (width if c != j else 0)
        solid[y0 : y0 + (1 if a != i else width), x0 : x0 + (1 if c != j else width)] = False
        stack.append((a, c))
    solid[0, 1 : 1 + width] = False  # entrance
    ye = 1 + (my - 1) * pitch
    solid[ye : ye + width, 1 + (mx - 1) * pitch + width :] = False  # exit to the east wall
    return solid


def lognormal(shape, sigma, seed):
    """`exp(sigma g)`, `g` a smooth Gaussian field of unit variance (see module docstring)."""
    g = _rng(shape, seed, 7).standard_normal(shape)
    ell = 0.05 * min(shape)
    k2 = sum(np.meshgrid(*[np.fft.fftfreq(n) ** 2 for n in shape], indexing="ij", sparse=True))
    g = np.real(np.fft.ifftn(np.fft.fftn(g) * np.exp(-2.0 * np.pi**2 * ell**2 * k2)))
    g = (g - g.mean()) / g.std()
    return np.exp(sigma * g)


def _rhs(solid, seed):
    return ls.random_rhs(jnp.asarray(solid), key=jax.random.key(seed))


def _obstacles(fraction):
    def build(shape, seed):
        solid = ls.obstacle_scene(shape, seed=seed, fraction=fraction, split="test")
        return ls.poisson(shape, solid=jnp.asarray(solid)), solid, _rhs(solid, seed)

    return build


def _maze(width):
    def build(shape, seed):
        solid = ls.remove_enclosed(maze(shape, width, seed))
        return ls.poisson(shape, solid=jnp.asarray(solid)), solid, _rhs(solid, seed)

    return build


def _inclusions(contrast):
    def build(shape, seed):
        inc = ls.obstacle_scene(shape, seed=seed, fraction=0.3, split="test")
        a = np.where(inc, contrast, 1.0)
        solid = np.zeros(shape, bool)
        return ls.diffusion(jnp.asarray(a)), solid, _rhs(solid, seed)

    return build


def _lognormal(sigma):
    def build(shape, seed):
        a = lognormal(shape, sigma, seed)
        solid = np.zeros(shape, bool)
        return ls.diffusion(jnp.asarray(a)), solid, _rhs(solid, seed)

    return build


def _anisotropy(ratio):
    def build(shape, seed):
        op = ls.poisson(shape)
        faces = op.faces[:-1] + (op.faces[-1] / ratio,)
        op = eqx.tree_at(lambda o: o.faces, op, faces)
        solid = np.zeros(shape, bool)
        return op, solid, _rhs(solid, seed)

    return build


# family -> members: (label, builder, dimensions)
FAMILIES = {
    "obstacles": [
        (f"obstacles f={f}", _obstacles(f), (2, 3) if f == 0.3 else (2,)) for f in (0.1, 0.3, 0.5)
    ],
    "maze": [(f"maze w={w}", _maze(w), (2,)) for w in (1, 3, 8)],
    "inclusions": [
        (f"inclusions k={c:g}", _inclusions(c), (2, 3) if c in (1e-3, 1e3) else (2,))
        for c in (1e-6, 1e-3, 1e3, 1e6)
    ],
    "log-normal": [("log-normal s=1.3", _lognormal(1.3), (2, 3))],
    "anisotropy": [
        (f"anisotropy 1:{r}", _anisotropy(float(r)), (2, 3) if r == 100 else (2,))
        for r in (100, 1000)
    ],
}


def members(dim):
    """`[(family, label, builder)]` of the members defined in `dim` dimensions."""
    return [
        (fam, label, build)
        for fam, ms in FAMILIES.items()
        for label, build, dims in ms
        if dim in dims
    ]


def coefficient_contrast(op) -> float:
    """`max T / min T` over the nonzero face coefficients (1 for the plain Laplacian)."""
    vals = np.concatenate([np.asarray(f).ravel() for f in op.faces])
    vals = vals[vals > 0]
    return float(vals.max() / vals.min()) if vals.size else 1.0
