import os
import socket
import subprocess
import sys

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


def subprocess_env(devices: int | None) -> dict:
    """The environment of a test subprocess: CPU only, `devices` simulated devices (or the
    default), no progress bars, this checkout importable."""
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    if devices is not None:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["SCIMLX_PROGRESS"] = "0"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    env["JAX_PLATFORMS"] = "cpu"
    return env


def free_port() -> int:
    """A free TCP port on the loopback interface (for a jax.distributed coordinator)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_script(script, args, devices: int | None) -> subprocess.Popen:
    """Start `python script *args` with [`subprocess_env`][]`(devices)`, output captured."""
    return subprocess.Popen(
        [sys.executable, str(script), *map(str, args)],
        env=subprocess_env(devices),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_all(procs, timeout: float = 240) -> None:
    """Wait for every process (killing those still running after `timeout` seconds) and
    fail with the end of a failed one's standard error."""
    try:
        outs = [p.communicate(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-4000:]
