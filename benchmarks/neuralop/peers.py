"""The peers: scipy's sparse direct solve of the Darcy systems, and the rows of the PyTorch
neuraloperator and the MgNO paper."""

import jax.numpy as jnp
import numpy as np

from scimlx.neuralop import darcy_operator

from .._harness import NOT_INSTALLED, optional_import


def scipy_solve(a):
    """`-div(a grad u) = 1` on the `n x n` cells of `a`, by scipy's sparse direct solve of
    the 5-point matrix assembled from `darcy_operator(a)`'s face coefficients."""
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla

    op = darcy_operator(jnp.asarray(a))
    n = a.shape[0]
    Tx, Ty = (np.asarray(f) * n * n for f in op.faces)
    idx = np.arange(n * n).reshape(n, n)
    diag = Tx[:-1] + Tx[1:] + Ty[:, :-1] + Ty[:, 1:]
    rows = [idx.ravel()]
    cols = [idx.ravel()]
    vals = [diag.ravel()]
    rows += [idx[1:].ravel(), idx[:-1].ravel()]
    cols += [idx[:-1].ravel(), idx[1:].ravel()]
    vals += [-Tx[1:-1].ravel(), -Tx[1:-1].ravel()]
    rows += [idx[:, 1:].ravel(), idx[:, :-1].ravel()]
    cols += [idx[:, :-1].ravel(), idx[:, 1:].ravel()]
    vals += [-Ty[:, 1:-1].ravel(), -Ty[:, 1:-1].ravel()]
    A = sp.csc_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n * n,) * 2
    )
    return spla.spsolve(A, np.ones(n * n)).reshape(n, n)


def reference_rows():
    """The rows of the models not trained here: the PyTorch FNO and the MgNO paper's."""
    torch = optional_import("neuralop")
    return [
        {
            "model": "neuraloperator FNO (PyTorch)",
            "note": NOT_INSTALLED if torch is None else "installed but not run here",
        },
        {
            "model": "paper MgNO (Darcy smooth 211^2, 500 GPU epochs)",
            "params": 678_093,
            "note": "paper's table not read directly (secondary transcriptions only): errors not "
            "quoted; params = reference code config, reproduced by our count",
        },
    ]
