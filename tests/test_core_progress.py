import io

import jax
import jax.numpy as jnp
import pytest

import scimlx


def test_python_loop_progress_reaches_total(monkeypatch):
    monkeypatch.delenv("SCIMLX_PROGRESS", raising=False)
    out = io.StringIO()
    with scimlx.ProgressBar(50, "work", file=out, lines=5) as bar:
        for i in range(50):
            bar.update(loss=1.0 / (i + 1))
    text = out.getvalue()
    lines = [line for line in text.splitlines() if line]
    assert 3 <= len(lines) <= 7
    assert "50/50" in lines[-1] and "work" in lines[-1] and "loss=0.02" in lines[-1]


def test_progress_inside_jit_and_scan(monkeypatch):
    monkeypatch.delenv("SCIMLX_PROGRESS", raising=False)
    out = io.StringIO()
    bar = scimlx.ProgressBar(20, "scan", file=out, lines=20)

    @jax.jit
    def run(x):
        def body(carry, _):
            bar.tick(1)
            return carry * 1.5, None

        y, _ = jax.lax.scan(body, x, None, length=20)
        return y

    y = run(jnp.array(1.0))
    jax.block_until_ready(y)
    jax.effects_barrier()
    bar.close()
    assert bar.n == 20
    assert "20/20" in out.getvalue()


def test_disabled_by_environment(monkeypatch):
    monkeypatch.setenv("SCIMLX_PROGRESS", "0")
    out = io.StringIO()
    with scimlx.ProgressBar(3, file=out) as bar:
        bar.update(3)
    assert out.getvalue() == ""


def test_negative_total_named():
    with pytest.raises(ValueError, match="`total`"):
        scimlx.ProgressBar(-1)


def test_eta_ignores_the_compiling_first_step(monkeypatch):

    from scimlx._core import _progress

    monkeypatch.setenv("SCIMLX_PROGRESS", "1")
    now = [0.0]
    monkeypatch.setattr(_progress.time, "perf_counter", lambda: now[0])
    out = io.StringIO()
    bar = scimlx.ProgressBar(20, "train", unit="step", file=out, note="compiling...", initial=5)
    text = out.getvalue()
    assert "train: resuming at 5/20" in text and "train: compiling..." in text
    now[0] = 10.0  # the first step after start took 10 s (it includes compilation)
    bar.update(1)
    assert "? step/s" in bar.line()  # no rate from a single step
    for _ in range(4):
        now[0] += 0.1
        bar.update(1)
    # 4 steps in 0.4 s after the first: 10 step/s, 10 steps left -> 1 s, not ~30 s
    assert "10 step/s" in bar.line() and "<00:01," in bar.line()
    with pytest.raises(ValueError, match="`initial`"):
        scimlx.ProgressBar(3, initial=4)
