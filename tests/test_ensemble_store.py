"""An ensemble store cannot hand back another study's results, and survives damage."""

import os
import socket
import warnings

import jax.numpy as jnp
import numpy as np
import pytest

import scimlx
from scimlx import ensemble


def _run(fn, x, store, *, resume=True, save=None, **kw):
    kw.setdefault("chunk_size", 4)
    return ensemble.run_ensemble(
        fn, x, reducers={"m": ensemble.Mean(), "q": ensemble.Quantiles([0.5])},
        store=ensemble.Store(store, resume=resume, save=save), progress=False, **kw,
    )  # fmt: skip


def _square(v):
    return v * v


def test_reused_store_with_other_inputs_or_function_is_refused(tmp_path):
    x = np.linspace(0.0, 1.0, 10)
    store = tmp_path / "s"
    first = _run(_square, x, store)
    assert first.computed_chunks == 3
    again = _run(_square, x, store)
    assert again.computed_chunks == 0
    np.testing.assert_array_equal(again.stats["m"], first.stats["m"])
    with pytest.raises(
        ValueError, match=r"different study \(it differs in: inputs\).*resume=False"
    ):
        _run(_square, x + 1.0, store)
    scale = 2.0
    with pytest.raises(ValueError, match=r"differs in: fn\)"):
        _run(lambda v: scale * v, x, store)
    with pytest.raises(ValueError, match=r"differs in: reducers\)"):
        ensemble.run_ensemble(
            _square,
            x,
            reducers={"m": ensemble.Max()},
            chunk_size=4,
            store=ensemble.Store(store),
            progress=False,
        )
    fresh = _run(_square, x + 1.0, store, resume=False)
    assert fresh.computed_chunks == 3
    np.testing.assert_allclose(fresh.stats["m"], np.mean((x + 1.0) ** 2), rtol=1e-14)


def test_iterator_chunks_are_checked_one_by_one(tmp_path):
    store = tmp_path / "s"
    chunks = [np.arange(4.0), np.arange(4.0, 8.0)]
    _run(_square, iter(chunks), store, total=8)
    other = [np.arange(4.0) + 0.5, np.arange(4.0, 8.0)]
    with pytest.raises(ValueError, match="stats_0000000.npz belongs to another study"):
        _run(_square, iter(other), store, total=8)


@pytest.mark.parametrize("damage", ["truncate", "random", "flip"])
def test_corrupted_chunk_is_named_and_recomputed(tmp_path, damage):
    x = np.linspace(-1.0, 1.0, 10)
    store = tmp_path / "s"
    full = _run(_square, x, store, save=True)
    victim = store / "chunks" / "stats_0000001.npz"
    raw = victim.read_bytes()
    if damage == "truncate":
        victim.write_bytes(raw[: len(raw) // 2])
    elif damage == "random":
        victim.write_bytes(np.random.default_rng(0).bytes(len(raw)))
    else:
        # Same length, one array byte changed: only the checksum can tell.
        arrays = dict(np.load(victim))
        arrays["s00000"] = arrays["s00000"] + 1
        np.savez(victim, **arrays)
    with pytest.warns(UserWarning, match="stats_0000001.npz is corrupted.*Recomputing chunk 1"):
        again = _run(_square, x, store, save=True)
    assert again.computed_chunks == 1
    for k in full.stats:
        np.testing.assert_array_equal(again.stats[k], full.stats[k])
    # A damaged outputs file: `load_outputs` names it; the next run recomputes its chunk.
    out = store / "outputs" / "chunk_0000002.npz"
    out.write_bytes(out.read_bytes()[:-7])
    with pytest.raises(ensemble.StoreCorruptionError, match="chunk_0000002.npz is corrupted"):
        ensemble.load_outputs(store)
    with pytest.warns(UserWarning, match="chunk_0000002.npz"):
        assert _run(_square, x, store, save=True).computed_chunks == 1
    leaves, _ = ensemble.load_outputs(store)
    np.testing.assert_allclose(leaves[0], x * x, rtol=1e-14)


def test_corrupted_header_is_named_and_rewritten(tmp_path):
    x = np.linspace(0.0, 1.0, 10)
    store = tmp_path / "s"
    full = _run(_square, x, store)
    (store / "study.json").write_text('{"content": {"version": 2, "fn"')
    with pytest.warns(UserWarning, match="study.json is corrupted"):
        again = _run(_square, x, store)
    assert again.computed_chunks == 0
    np.testing.assert_array_equal(again.stats["m"], full.stats["m"])
    # With the header gone, a chunk of another study is still recognised.
    (store / "study.json").write_text("garbage")
    with pytest.warns(UserWarning, match="study.json"):
        with pytest.raises(ValueError, match="belongs to another study"):
            _run(_square, x + 1.0, store)


def test_orphaned_temporary_files_are_removed_on_start(tmp_path):
    x = np.linspace(0.0, 1.0, 6)
    store = tmp_path / "s"
    _run(_square, x, store)
    # What a writer killed mid-write leaves: a temporary file of a process that is gone.
    host = socket.gethostname().replace(".", "_")
    dead_pid = 2**22 + 12345  # above Linux's default pid_max of 4194304
    orphan = store / "chunks" / f"stats_0000000.npz.{host}.{dead_pid}.abcdefgh.tmp"
    orphan.write_bytes(b"x" * 100)
    live = store / "chunks" / f"stats_0000001.npz.{host}.{os.getpid()}.abcdefgh.tmp"
    live.write_bytes(b"y")
    _run(_square, x, store)
    assert not orphan.exists()
    assert live.exists()  # a live writer's file is left alone


def test_result_codes_outside_the_enumeration_are_an_error():
    x = np.arange(100.0)
    n_codes = len(scimlx._core._results.code_names())
    outside = rf"`result` gave the code 89 .*outside the {n_codes} codes"
    with pytest.raises(ValueError, match=outside):
        ensemble.run_ensemble(
            _square, x, reducers={"m": ensemble.Mean()}, chunk_size=100, progress=False,
            result=lambda out: jnp.where(out > 10.0, 89, 0).astype(jnp.int32),
        )  # fmt: skip
    with pytest.raises(ValueError, match="code -1"):
        ensemble.run_ensemble(
            _square, x, reducers={"m": ensemble.Mean()}, chunk_size=100, progress=False,
            result=lambda out: jnp.int32(-1),
        )  # fmt: skip
    with pytest.raises(TypeError, match="`result` must return"):
        ensemble.run_ensemble(
            _square, x, reducers={"m": ensemble.Mean()}, chunk_size=100, progress=False,
            result=lambda out: out,
        )  # fmt: skip
    # Every code of the enumeration counts.
    res = ensemble.run_ensemble(
        _square, x[:n_codes], reducers={"m": ensemble.Mean()}, chunk_size=n_codes, progress=False,
        result=lambda out: jnp.sqrt(out).astype(jnp.int32),
    )  # fmt: skip
    assert res.n_successful + sum(res.failures.values()) == n_codes
    assert set(res.failures) == {str(n) for n in scimlx._core._results.code_names()[1:]}


def test_empty_inputs_and_zero_sizes_are_named():
    red = {"m": ensemble.Mean()}
    with pytest.raises(ValueError, match="`inputs` \\(an iterator\\) yielded no chunks"):
        ensemble.run_ensemble(_square, iter([]), reducers=red, progress=False)
    with pytest.raises(ValueError, match="first chunk of `inputs` holds no members"):
        ensemble.run_ensemble(_square, iter([np.zeros(0)]), reducers=red, progress=False)
    with pytest.raises(ValueError, match="`inputs` holds no members"):
        ensemble.run_ensemble(_square, np.zeros(0), reducers=red, progress=False)
    for size in (0, 2.5):
        with pytest.raises((ValueError, TypeError), match="chunk_size"):
            ensemble.run_ensemble(_square, np.zeros(3), reducers=red, chunk_size=size)  # pyright: ignore
    with pytest.raises(ValueError, match="total"):
        ensemble.run_ensemble(_square, iter([np.zeros(3)]), reducers=red, total=0)
    with pytest.raises(ValueError, match="lanes"):
        ensemble.RefillSchedule(lanes=0)


def test_store_path_that_is_a_file_is_refused(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    with warnings.catch_warnings():
        with pytest.raises(ValueError, match="`store` must be a folder"):
            _run(_square, np.zeros(3), f)
