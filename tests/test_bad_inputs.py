"""Property-based bad inputs, per capability: each must give a clear error that names the
argument (or a documented RESULTS code), never a silent answer or an obscure failure.

`TRIED` counts the bad inputs each capability's tests try; `test_zz_report` prints it."""

import collections
import math
import os
import shutil
import warnings

import diffrax
import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest
from hypothesis import given, HealthCheck, settings, strategies as st

import scimlx
from scimlx import data, dsf, ensemble, nde, sde
from scimlx._core import _checks
from scimlx._core._results import code_names


TRIED: collections.Counter = collections.Counter()
_SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
_NAMED = (ValueError, TypeError)

bad_floats = st.one_of(
    st.just(float("nan")),
    st.just(float("inf")),
    st.just(-float("inf")),
    st.floats(max_value=-1e-12, allow_nan=False, allow_infinity=False),
)


def _raises_naming(exc, name, fn):
    with pytest.raises(exc) as info:
        fn()
    assert name in str(info.value), (name, str(info.value))


# --- core ----------------------------------------------------------------------------


@settings(max_examples=40, **_SETTINGS)
@given(value=bad_floats, name=st.sampled_from(["rtol", "atol", "weight", "dt"]))
def test_core_checks_name_their_argument(value, name):
    TRIED["core checks"] += 1
    _raises_naming(ValueError, f"`{name}`", lambda: _checks.check_tolerances(**{name: value}))
    _raises_naming(ValueError, f"`{name}`", lambda: _checks.check_weight(name, value))
    if not math.isnan(value) and value != -math.inf:
        return
    _raises_naming(ValueError, f"`{name}`", lambda: _checks.check_finite(name, value))


@settings(max_examples=20, **_SETTINGS)
@given(labels=st.lists(st.integers(-5, 12), min_size=1, max_size=6), n=st.integers(1, 6))
def test_core_label_check(labels, n):
    arr = np.asarray(labels)
    TRIED["core checks"] += 1
    if np.all((arr >= 0) & (arr < n)):
        assert _checks.check_labels("labels", arr, n) is arr
    else:
        _raises_naming(ValueError, "`labels`", lambda: _checks.check_labels("labels", arr, n))


def test_core_label_check_traced():
    TRIED["core checks"] += 1
    traced = eqx.filter_jit(lambda x: _checks.check_labels("labels", x, 3))
    assert traced(jnp.array([0, 2])).tolist() == [0, 2]
    with pytest.raises(eqx.EquinoxRuntimeError, match="`labels` holds values outside"):
        traced(jnp.array([0, 3]))


# --- save / load ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("saved") / "model.eqx"
    scimlx.save(path, {"w": np.arange(64.0)}, metadata={"step": 3})
    return path, path.read_bytes()


@settings(max_examples=40, **_SETTINGS)
@given(data_=st.data())
def test_damaged_saved_file_is_a_named_checkpoint_error(saved_file, tmp_path_factory, data_):
    path, good = saved_file
    kind = data_.draw(st.sampled_from(["truncate", "flip", "random", "append"]))
    raw = bytearray(good)
    if kind == "truncate":
        raw = raw[: data_.draw(st.integers(0, len(good) - 1))]
    elif kind == "flip":
        i = data_.draw(st.integers(0, len(good) - 1))
        raw[i] ^= data_.draw(st.integers(1, 255))
    elif kind == "random":
        raw = bytearray(data_.draw(st.binary(min_size=0, max_size=400)))
    else:
        raw += data_.draw(st.binary(min_size=1, max_size=20))
    bad = tmp_path_factory.mktemp("bad") / "damaged.eqx"
    bad.write_bytes(bytes(raw))
    TRIED["save/load"] += 1
    try:
        out = scimlx.load(bad, like={"w": np.zeros(64)})
    except scimlx.CheckpointError as e:
        assert "damaged.eqx" in str(e)
    else:  # a flip in the JSON header's whitespace-free text can keep it valid: same data
        np.testing.assert_array_equal(out["w"], np.arange(64.0))


# --- fit ------------------------------------------------------------------------------


@settings(max_examples=15, **_SETTINGS)
@given(
    name=st.sampled_from(
        ["steps", "checkpoint_every", "validate_every", "max_seconds", "min_steps"]
    ),
    value=st.one_of(st.integers(-10, 0), st.just(-1.5)),
)
def test_fit_rejects_bad_counts(name, value):
    if name in ("steps", "min_steps") and value == 0:
        value = -1
    TRIED["fit"] += 1
    model = {"w": jnp.zeros(2)}
    _raises_naming(
        _NAMED,
        name,
        lambda: scimlx.fit(
            lambda m, b, k: jnp.sum(m["w"] ** 2),
            model,
            optax.sgd(0.1),
            key=jr.key(0),
            progress=False,
            **{"steps": 3, name: value},
        ),  # fmt: skip
    )


@settings(max_examples=6, **_SETTINGS)
@given(bad=st.sampled_from([float("nan"), float("inf"), -float("inf")]), at=st.integers(1, 3))
def test_fit_rejects_nonfinite_validation(bad, at):
    TRIED["fit"] += 1
    values = iter([1.0] * (at - 1) + [bad] + [0.0] * 5)
    with pytest.raises(FloatingPointError, match="`validate` returned a non-finite value"):
        scimlx.fit(
            lambda m, b, k: jnp.sum(m["w"] ** 2), {"w": jnp.ones(2)}, optax.sgd(0.1),
            steps=4, key=jr.key(0), progress=False, validate=lambda m: next(values),
            validate_every=1,
        )  # fmt: skip


# --- ensemble -------------------------------------------------------------------------


@settings(max_examples=20, **_SETTINGS)
@given(
    name=st.sampled_from(["chunk_size", "lanes", "total"]),
    value=st.one_of(st.integers(-5, 0), st.floats(0.1, 3.0).filter(lambda v: v != int(v))),
)
def test_ensemble_rejects_bad_sizes(name, value):
    TRIED["ensemble"] += 1
    _raises_naming(
        _NAMED,
        name,
        lambda: ensemble.run_ensemble(
            lambda v: v,
            np.zeros(3),
            reducers={"m": ensemble.Mean()},
            progress=False,
            **{name: value},
        ),  # fmt: skip
    )


@settings(max_examples=5, **_SETTINGS)
@given(code=st.one_of(st.integers(-1000, -1), st.integers(16, 10_000)))
def test_ensemble_rejects_codes_outside_results(code):
    TRIED["ensemble"] += 1
    with pytest.raises(ValueError, match=rf"`result` gave the code {code} "):
        ensemble.run_ensemble(
            lambda v: v, np.arange(6.0), reducers={"m": ensemble.Mean()}, chunk_size=6,
            progress=False, result=lambda out: jnp.where(out > 2.0, code, 0).astype(jnp.int32),
        )  # fmt: skip


def _sq(v):
    return v * v


@pytest.fixture(scope="module")
def finished_store(tmp_path_factory):
    store = tmp_path_factory.mktemp("store") / "s"
    x = np.linspace(0.0, 1.0, 12)
    full = ensemble.run_ensemble(
        _sq, x, reducers={"m": ensemble.Mean()}, chunk_size=4, store=ensemble.Store(store),
        progress=False,
    )  # fmt: skip
    return store, x, full


@settings(max_examples=8, **_SETTINGS)
@given(chunk=st.integers(0, 2), keep=st.floats(0.0, 0.999), tail=st.binary(max_size=8))
def test_ensemble_damaged_chunk_is_recomputed(finished_store, tmp_path_factory, chunk, keep, tail):
    pristine, x, full = finished_store
    store = tmp_path_factory.mktemp("copy") / "s"
    shutil.copytree(pristine, store)
    victim = store / "chunks" / f"stats_{chunk:07d}.npz"
    raw = victim.read_bytes()
    victim.write_bytes(raw[: int(keep * len(raw))] + tail)
    TRIED["ensemble"] += 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = ensemble.run_ensemble(
            _sq, x, reducers={"m": ensemble.Mean()}, chunk_size=4, store=ensemble.Store(store),
            progress=False,
        )  # fmt: skip
    assert again.computed_chunks in (0, 1)
    if again.computed_chunks:
        assert any(victim.name in str(w.message) for w in caught)
    np.testing.assert_array_equal(again.stats["m"], full.stats["m"])


def test_ensemble_empty_and_zero_member_inputs():
    TRIED["ensemble"] += 3
    red = {"m": ensemble.Mean()}
    _raises_naming(
        ValueError, "`inputs`", lambda: ensemble.run_ensemble(lambda v: v, iter([]), reducers=red)
    )
    _raises_naming(
        ValueError,
        "`inputs`",
        lambda: ensemble.run_ensemble(lambda v: v, np.zeros((0, 2)), reducers=red),
    )
    member = ensemble.DiffEqMember(
        lambda p: ensemble.DiffEqProblem(
            diffrax.ODETerm(lambda t, y, a: -p * y), jnp.ones(1), dt0=0.1
        ),
        diffrax.Tsit5(),
    )
    _raises_naming(ValueError, "`inputs`", lambda: ensemble.refill_solve(member, jnp.zeros((0,))))


# --- nde ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def node():
    return nde.NeuralODE(nde.MLPVectorField(3, 4, key=jr.key(0)), 3, max_steps=64)


@eqx.filter_jit
def _solve_jit(model, y0):
    return model(y0).ys


@eqx.filter_jit
def _logits_jit(model, tokens):
    return model(tokens)


@settings(max_examples=25, **_SETTINGS)
@given(
    where=st.integers(0, 5),
    bad=st.sampled_from([float("nan"), float("inf"), -float("inf")]),
    jit=st.booleans(),
)
def test_nde_nonfinite_initial_state_is_an_error(node, where, bad, jit):
    TRIED["nde"] += 1
    y0 = np.ones((2, 3))
    y0.reshape(-1)[where] = bad
    if jit:
        with pytest.raises(eqx.EquinoxRuntimeError, match="`y0` contains NaN or inf"):
            _solve_jit(node, jnp.asarray(y0))
    else:
        _raises_naming(ValueError, "`y0`", lambda: node(jnp.asarray(y0)))


@settings(max_examples=20, **_SETTINGS)
@given(
    ts=st.lists(
        st.one_of(st.floats(-2.0, 3.0), st.just(float("nan"))), min_size=1, max_size=5
    ).filter(
        lambda v: (
            any(math.isnan(t) for t in v)
            or any(t < 0.0 or t > 1.0 for t in v)
            or any(b < a for a, b in zip(v, v[1:]))
        )
    )
)
def test_nde_bad_save_times_are_named(node, ts):
    TRIED["nde"] += 1
    _raises_naming(ValueError, "`ts`", lambda: node(jnp.ones(3), ts=jnp.asarray(ts)))


@settings(max_examples=20, **_SETTINGS)
@given(
    name=st.sampled_from(["rtol", "atol"]),
    value=st.one_of(st.floats(-10.0, -1e-12), st.just(float("nan"))),
    kind=st.sampled_from(["ode", "sde"]),
)
def test_nde_negative_tolerances_are_rejected(name, value, kind):
    TRIED["nde"] += 1
    tols = {"rtol": 1e-3, "atol": 1e-3, name: value}
    ctrl = diffrax.PIDController(**tols)
    vf = nde.MLPVectorField(2, 4, key=jr.key(0))
    if kind == "ode":
        make = lambda: nde.NeuralODE(vf, 2, stepsize_controller=ctrl)  # noqa: E731
    else:
        make = lambda: nde.NeuralSDE(  # noqa: E731
            vf, nde.DiagonalLinearDiffusion(2, key=jr.key(1)), 2, stepsize_controller=ctrl
        )
    _raises_naming(ValueError, f"`stepsize_controller.{name}`", make)


@settings(max_examples=5, **_SETTINGS)
@given(width=st.integers(1, 6).filter(lambda w: w != 3))
def test_nde_vector_field_of_another_width_is_named(width):
    TRIED["nde"] += 1
    model = nde.NeuralODE(nde.MLPVectorField(width, 4, key=jr.key(0)), 3)
    _raises_naming(ValueError, "`vector_field`", lambda: model(jnp.ones(3)))


@settings(max_examples=24, **_SETTINGS)
@given(
    cls=st.sampled_from(
        [
            nde.GlobalErrorEstimate,
            nde.GlobalStiffness,
            nde.LocalErrorEstimate,
            nde.TaylorRegulariser,
        ]
    ),
    weight=bad_floats,
)
def test_nde_bad_regulariser_weights_are_rejected(cls, weight):
    TRIED["nde"] += 1
    _raises_naming(ValueError, "`weight`", lambda: cls(weight=weight))


def test_nde_nan_met_inside_a_solve_is_nonfinite():
    TRIED["nde"] += 2

    class Poisoned(eqx.Module):
        def __call__(self, t, y, args):
            return jnp.where(t > 0.5, jnp.nan, 1.0) * y

    model = nde.NeuralODE(Poisoned(), 2, max_steps=500)
    sol = model(jnp.ones(2), throw=False)
    assert sol.result == scimlx.RESULTS.nonfinite
    assert int(sol.stats["num_steps"]) < 500  # stopped, not spun until max_steps
    with pytest.raises(eqx.EquinoxRuntimeError, match="Nonfinite"):
        model(jnp.ones(2))


# --- sde ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sde_model_and_path():
    times = jnp.linspace(0.0, 1.0, 6)
    values = jnp.sin(jnp.arange(12.0)).reshape(6, 2)
    path = sde.make_path(times, values)
    model = sde.LSDE(path.channels, 4, 2, key=jr.key(0))
    return model, path, times


@settings(max_examples=15, **_SETTINGS)
@given(
    name=st.sampled_from(["rtol", "atol", "brownian_tol", "max_steps"]),
    value=st.one_of(st.floats(-5.0, -1e-9), st.just(float("nan")), st.just(0)),
)
def test_sde_solve_rejects_bad_options(sde_model_and_path, name, value):
    model, path, times = sde_model_and_path
    if name in ("rtol", "atol") and value == 0:
        value = -1.0  # zero tolerances are allowed (one of the two may be zero)
    if name == "max_steps":
        value = int(value) if not math.isnan(value) else -1
    options = {"rtol": 1e-3, "atol": 1e-5}
    if name in options:
        options[name] = value
        name = f"stepsize_controller.{name}"
        kwargs = {}
    else:
        kwargs = {name: value}
    controller = diffrax.PIDController(**options)
    TRIED["sde"] += 1
    _raises_naming(
        _NAMED, name,
        lambda: model.solve(path, times, key=jr.key(1), stepsize_controller=controller, **kwargs),
    )  # fmt: skip


@settings(max_examples=3, **_SETTINGS)
@given(channels=st.integers(1, 6).filter(lambda c: c != 2))  # make_path adds a time channel
def test_sde_path_with_another_channel_count_is_named(sde_model_and_path, channels):
    model, _, times = sde_model_and_path
    path = sde.make_path(times, jnp.ones((6, channels)))
    TRIED["sde"] += 1
    _raises_naming(ValueError, "`path` has", lambda: model.solve(path, times, key=jr.key(1)))


# --- dsf ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seq_model():
    return dsf.SequenceModel(11, 8, 1, "s6", d_state=4, key=jr.key(0))


@settings(max_examples=25, **_SETTINGS)
@given(
    tokens=st.lists(st.integers(-50, 60), min_size=1, max_size=6).filter(
        lambda t: any(v < 0 or v >= 11 for v in t)
    ),
    jit=st.booleans(),
)
def test_dsf_token_ids_out_of_range_are_an_error(seq_model, tokens, jit):
    TRIED["dsf"] += 1
    ids = jnp.asarray(tokens, jnp.int32)
    if jit:  # one compiled length
        ids = jnp.resize(ids, (6,)).at[0].set(ids[np.flatnonzero((ids < 0) | (ids >= 11))[0]])
        with pytest.raises(eqx.EquinoxRuntimeError, match="`tokens`"):
            _logits_jit(seq_model, ids)
    else:
        _raises_naming(ValueError, "`tokens`", lambda: seq_model(ids))


@settings(max_examples=20, **_SETTINGS)
@given(
    r_min=st.one_of(st.floats(-2.0, 3.0), st.just(float("nan"))),
    r_max=st.one_of(st.floats(-2.0, 3.0), st.just(float("nan"))),
)
def test_dsf_lru_radii(r_min, r_max):
    valid = 0.0 <= r_min < r_max <= 1.0
    if valid:
        return
    TRIED["dsf"] += 1
    with pytest.raises(ValueError, match="`r_m(in|ax)`"):
        dsf.LRU(4, 2, r_min=r_min, r_max=r_max, key=jr.key(0))


@settings(max_examples=20, **_SETTINGS)
@given(
    layer=st.sampled_from(["S6", "S4D", "S5", "SSD"]),
    dt_min=st.one_of(st.floats(-1.0, 1.0), st.just(float("nan"))),
    dt_max=st.one_of(st.floats(-1.0, 1.0), st.just(float("inf"))),
)
def test_dsf_step_ranges(layer, dt_min, dt_max):
    if 0.0 < dt_min <= dt_max < math.inf:
        return
    TRIED["dsf"] += 1
    with pytest.raises(ValueError, match="`dt_m(in|ax)`"):
        getattr(dsf, layer)(4, dt_min=dt_min, dt_max=dt_max, key=jr.key(0))


@settings(max_examples=6, **_SETTINGS)
@given(
    width=st.integers(1, 9).filter(lambda w: w != 4),
    layer=st.sampled_from(
        ["SoftmaxAttention", "LinearAttention", "S4D", "S5", "LRU", "S6", "SSD", "RGLRU"]
    ),
)
def test_dsf_input_of_another_width_is_named(width, layer):
    TRIED["dsf"] += 1
    lay = getattr(dsf, layer)(4, key=jr.key(0))
    _raises_naming(ValueError, "`u`", lambda: lay(jnp.ones((5, width))))


# --- data -----------------------------------------------------------------------------


@settings(max_examples=15, **_SETTINGS)
@given(n_series=st.integers(1, 4), n_labels=st.integers(0, 6))
def test_data_label_count_must_match_series(n_series, n_labels):
    series = [np.ones((2, 5)) for _ in range(n_series)]
    labels = np.zeros(n_labels, np.int64)
    if n_series == n_labels:
        assert len(data.from_series(series, labels)) == n_series
        return
    TRIED["data"] += 1
    _raises_naming(ValueError, "`labels`", lambda: data.from_series(series, labels))


# --- RESULTS --------------------------------------------------------------------------


@settings(max_examples=20, **_SETTINGS)
@given(codes=st.lists(st.integers(0, len(scimlx.RESULTS) - 1), min_size=1, max_size=5))
def test_results_of_any_family_compare(codes):
    TRIED["RESULTS"] += 1
    names = code_names(diffrax.RESULTS)
    ours = list(scimlx.RESULTS)
    for c in codes:
        if c >= len(names):
            continue
        item = getattr(diffrax.RESULTS, names[c])
        assert bool(scimlx.is_successful(item)) == (c == 0)
        assert bool(item == ours[c]) and bool(ours[c] == item)
        assert bool(item != ours[(c + 1) % len(ours)])
    assert scimlx.is_successful(jnp.asarray(codes)).tolist() == [c == 0 for c in codes]


def test_zz_report():
    """Prints how many bad inputs each capability's tests tried (run with `-s`)."""
    print("\nbad inputs tried per capability:", dict(sorted(TRIED.items())))
    if os.environ.get("SCIMLX_BAD_INPUT_REPORT"):
        with open(os.environ["SCIMLX_BAD_INPUT_REPORT"], "w") as f:
            f.write(repr(dict(sorted(TRIED.items()))))
