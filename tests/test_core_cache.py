"""The persistent compilation cache: where it lives, how it is switched off, and that
several processes can share it."""

import json
import os
import subprocess
import sys

import pytest

import scimlx
from scimlx._core import _cache


def test_default_dir_follows_xdg(monkeypatch, tmp_path):
    if os.name == "nt" or os.uname().sysname == "Darwin":
        pytest.skip("XDG applies to Linux only")  # CI runs Linux
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert scimlx.default_cache_dir() == tmp_path / "scimlx" / "jax"


def test_env_switches_it_off(monkeypatch):
    monkeypatch.setenv("SCIMLX_COMPILATION_CACHE", "off")
    assert scimlx.enable_compilation_cache() is None


def test_bad_arguments_are_named(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ValueError, match="`path`"):
        scimlx.enable_compilation_cache(blocker / "sub")
    with pytest.raises(ValueError, match="`min_compile_seconds`"):
        scimlx.enable_compilation_cache(tmp_path, min_compile_seconds=-1.0)


_SCRIPT = """
import json, sys
import jax, jax.numpy as jnp
from jax import monitoring
import scimlx
hits = []
monitoring.register_event_listener(
    lambda name, **kw: hits.append(name) if name == "/jax/compilation_cache/cache_hits" else None
)
scimlx.enable_compilation_cache(sys.argv[1], min_compile_seconds=0.0)

@jax.jit
def f(x):
    for k in range(40):  # a program worth caching
        x = jnp.sin(x) * (k + 1.0) + jnp.cos(x @ x.T)[:, :1]
    return x

y = f(jnp.linspace(0.0, 1.0, 24).reshape(24, 1))
print(json.dumps({"sum": float(y.sum()), "hits": len(hits)}))
"""


def _run_many(cache, n):
    env = {**os.environ, "SCIMLX_COMPILATION_CACHE": "0", "JAX_PLATFORMS": "cpu"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _SCRIPT, str(cache)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(n)
    ]
    outs = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr[-2000:]
        outs.append(json.loads(stdout.strip().splitlines()[-1]))
    return outs


def test_processes_share_one_cache(tmp_path):
    cache = tmp_path / "cache"
    first = _run_many(cache, 3)  # three cold processes write the same entries at once
    assert len({o["sum"] for o in first}) == 1
    entries = [p for p in cache.iterdir() if not p.name.startswith(".")]
    assert entries, "nothing was written to the cache"
    (warm,) = _run_many(cache, 1)
    assert warm["sum"] == first[0]["sum"]
    assert warm["hits"] >= 1  # the second process loaded the program instead of compiling
    assert _cache._MAX_BYTES > 0  # bounded cache: eviction (and with it JAX's file lock) is on
