import os
import signal
import subprocess
import sys
import textwrap
import time

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import scimlx
from scimlx._core import _persistence

from .helpers import tree_allclose


class Net(eqx.Module):
    mlp: eqx.nn.MLP
    width: int = eqx.field(static=True)

    def __init__(self, width: int, *, key):
        self.width = width
        self.mlp = eqx.nn.MLP(3, 2, width, 2, key=key)


def test_roundtrip_with_template(tmp_path, getkey):
    model = Net(8, key=getkey())
    path = tmp_path / "m.eqx"
    scimlx.save(path, model, hyperparameters={"width": 8}, metadata={"note": "x"})
    header = scimlx.read_header(path)
    assert header["class"] == f"{Net.__module__}:Net"
    assert header["hyperparameters"] == {"width": 8}
    assert header["metadata"] == {"note": "x"}
    loaded = scimlx.load(path, like=Net(8, key=getkey()))
    assert tree_allclose(loaded, model, rtol=0, atol=0)


def test_load_by_class_name_and_by_callable(tmp_path, getkey):
    model = Net(5, key=getkey())
    path = tmp_path / "m.eqx"
    scimlx.save(path, model, hyperparameters={"width": 5})
    # A class outside scimlx is imported only when allowed (importing runs its code).
    with pytest.raises(scimlx.CheckpointError, match="outside scimlx.*allow="):
        scimlx.load(path)
    assert tree_allclose(scimlx.load(path, allow=[Net]), model, rtol=0, atol=0)
    assert tree_allclose(scimlx.load(path, allow=[Net.__module__]), model, rtol=0, atol=0)
    loaded = scimlx.load(path, like=lambda width: Net(width, key=jr.key(1)))
    assert tree_allclose(loaded, model, rtol=0, atol=0)


def test_template_mismatch_is_clear(tmp_path, getkey):
    path = tmp_path / "m.eqx"
    scimlx.save(path, Net(5, key=getkey()), hyperparameters={"width": 5})
    with pytest.raises(scimlx.CheckpointError, match="does not match"):
        scimlx.load(path, like=Net(6, key=getkey()))


def test_truncated_file_raises(tmp_path, getkey):
    path = tmp_path / "m.eqx"
    scimlx.save(path, Net(16, key=getkey()), hyperparameters={"width": 16})
    raw = path.read_bytes()
    for cut in (len(raw) // 2, len(raw) - 1, 10):
        path.write_bytes(raw[:cut])
        with pytest.raises(scimlx.CheckpointError, match="m.eqx.*(truncated|corrupted)"):
            scimlx.load(path, allow=[Net])


def test_corrupted_payload_raises(tmp_path, getkey):
    path = tmp_path / "m.eqx"
    scimlx.save(path, Net(4, key=getkey()), hyperparameters={"width": 4})
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(scimlx.CheckpointError, match="checksum"):
        scimlx.load(path, allow=[Net])


def test_other_format_version_raises(tmp_path, getkey, monkeypatch):
    path = tmp_path / "m.eqx"
    monkeypatch.setattr(_persistence, "FORMAT_VERSION", 999)
    scimlx.save(path, Net(4, key=getkey()), hyperparameters={"width": 4})
    monkeypatch.undo()
    with pytest.raises(scimlx.CheckpointError, match="version 999"):
        scimlx.load(path)


def test_not_a_scimlx_file(tmp_path):
    path = tmp_path / "x.eqx"
    path.write_bytes(b"hello")
    with pytest.raises(scimlx.CheckpointError, match="not a scimlx file"):
        scimlx.load(path)
    with pytest.raises(FileNotFoundError, match="path"):
        scimlx.load(tmp_path / "missing.eqx")


def test_non_json_hyperparameters_named():
    with pytest.raises(TypeError, match="hyperparameters"):
        scimlx.save("unused.eqx", jnp.zeros(2), hyperparameters={"f": object()})


def test_failed_write_midway_keeps_previous(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.eqx"
    good = {"w": jnp.arange(4.0)}
    scimlx.save(path, good)

    calls = {"n": 0}
    real_write_all = _persistence._write_all

    def failing_write_all(f, data):
        f.write(data[: len(data) // 2])  # half of the new file reaches the disk
        calls["n"] += 1
        raise OSError("simulated crash in the middle of a write")

    monkeypatch.setattr(_persistence, "_write_all", failing_write_all)
    with pytest.raises(OSError, match="simulated"):
        scimlx.save(path, {"w": jnp.arange(4.0) + 100.0})
    monkeypatch.setattr(_persistence, "_write_all", real_write_all)
    assert calls["n"] == 1
    loaded = scimlx.load(path, like={"w": jnp.zeros(4)})
    assert np.array_equal(np.asarray(loaded["w"]), np.arange(4.0))
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.eqx"]  # no temporary file left


_WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    import scimlx
    path = sys.argv[1]
    i = 0
    big = np.zeros((2_000_000,))
    while True:
        i += 1
        scimlx.save(path, {"i": np.array(i), "big": big + i}, metadata={"i": i})
        print(i, flush=True)
    """
)


def test_killed_writer_leaves_a_loadable_checkpoint(tmp_path):
    """A process killed (SIGKILL) while it saves in a loop never leaves a broken file."""
    path = tmp_path / "ckpt.eqx"
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.Popen(
        [sys.executable, str(script), str(path)], stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        # Wait until a few saves have completed, then kill at an arbitrary moment.
        for _ in range(3):
            line = proc.stdout.readline()
            assert line, "writer exited early"
        time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    like = {"i": np.array(0), "big": np.zeros((2_000_000,))}
    loaded = scimlx.load(path, like=like)
    i = int(loaded["i"])
    assert i >= 3
    assert np.all(np.asarray(loaded["big"]) == i)
    assert scimlx.read_header(path)["metadata"]["i"] == i


_SELF_KILLING_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    import scimlx
    from scimlx._core import _persistence
    real = _persistence._write_all

    def write_then_die(f, data):
        f.write(data[: len(data) // 2])
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    scimlx.save(sys.argv[1], {"x": np.arange(3.0)})
    _persistence._write_all = write_then_die
    scimlx.save(sys.argv[1], {"x": np.arange(3.0) + 1})
    """
)


def _tmp_files(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_kill_during_save_leaves_no_orphan_after_next_save_or_load(tmp_path):
    path = tmp_path / "ckpt.eqx"
    script = tmp_path / "writer.py"
    script.write_text(_SELF_KILLING_WRITER)
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    for then in ("save", "load"):
        proc = subprocess.run([sys.executable, str(script), str(path)], env=env)
        assert proc.returncode == -signal.SIGKILL
        assert len(_tmp_files(tmp_path)) == 1  # the killed save's half-written file
        like = {"x": np.zeros(3)}
        if then == "save":
            scimlx.save(path, {"x": np.arange(3.0) + 2})
            assert np.array_equal(scimlx.load(path, like=like)["x"], np.arange(3.0) + 2)
        else:
            assert np.array_equal(scimlx.load(path, like=like)["x"], np.arange(3.0))
        assert _tmp_files(tmp_path) == []


def test_saved_file_follows_umask(tmp_path):
    old = os.umask(0o022)
    try:
        scimlx.save(tmp_path / "a.eqx", {"x": np.zeros(2)})
        os.umask(0o077)
        scimlx.save(tmp_path / "b.eqx", {"x": np.zeros(2)})
    finally:
        os.umask(old)
    assert oct(os.stat(tmp_path / "a.eqx").st_mode & 0o777) == oct(0o644)
    assert oct(os.stat(tmp_path / "b.eqx").st_mode & 0o777) == oct(0o600)


def test_header_without_fields_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "h.eqx"
    for head in (b"[1, 2]", b'{"format": "scimlx", "format_version": 1}'):
        path.write_bytes(_persistence._MAGIC + head + b"\n" + b"payload")
        with pytest.raises(scimlx.CheckpointError, match="h.eqx.*corrupted header"):
            scimlx.load(path)
