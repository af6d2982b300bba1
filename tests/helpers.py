import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np


def tree_allclose(x, y, *, rtol=1e-5, atol=1e-8) -> bool:
    """Whether two pytrees have the same structure and all array leaves are close."""
    same_structure = jax.tree_util.tree_structure(x) == jax.tree_util.tree_structure(y)
    if not same_structure:
        return False
    xs, ys = jax.tree_util.tree_leaves(x), jax.tree_util.tree_leaves(y)
    for a, b in zip(xs, ys, strict=True):
        if eqx.is_array_like(a) and eqx.is_array_like(b):
            if np.shape(a) != np.shape(b):
                return False
            if not np.allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol):
                return False
        elif a != b:
            return False
    return True


def finite_difference_grad(f, x, eps=1e-6):
    """Central finite-difference gradient of a scalar function of one array."""
    x = jnp.asarray(x)
    flat = x.reshape(-1)
    grads = []
    for i in range(flat.size):
        e = jnp.zeros_like(flat).at[i].set(eps).reshape(x.shape)
        grads.append((f(x + e) - f(x - e)) / (2 * eps))
    return jnp.stack(grads).reshape(x.shape)
