"""The .ts reader, padding, the paper's split and missing-data protocol, synthetic data."""

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from scimlx.data import (
    drop_values,
    from_series,
    observed_fraction,
    paper_split,
    parse_ts,
    standardise,
    synthetic_irregular,
)


TS_TEXT = """% a comment
# another
@problemName Toy
@timeStamps false
@missing true
@univariate false
@dimensions 2
@equalLength false
@classLabel true a b
@data
1.0,2.0,3.0:4.0,5.0,6.0:a
1.5,?,2.5,3.5:0.5,0.25,0.125,0.0625:b
7.0:8.0:a
"""


def test_parse_ts_variable_length_missing_and_labels():
    series, labels, header = parse_ts(TS_TEXT)
    assert header["classes"] == ["a", "b"] and header["problemname"] == "Toy"
    assert [s.shape for s in series] == [(2, 3), (2, 4), (2, 1)]
    assert np.isnan(series[1][0, 1]) and series[1][1, 3] == 0.0625
    assert list(labels) == ["a", "b", "a"]
    data = from_series(series, np.array([0, 1, 0]))
    assert data.values.shape == (3, 4, 2)
    np.testing.assert_array_equal(data.lengths, [3, 4, 1])
    np.testing.assert_allclose(data.times[0], np.linspace(0, 1, 4))
    assert np.all(np.isnan(data.values[2, 1:]))
    np.testing.assert_allclose(data.values[0, :3, 1], [4.0, 5.0, 6.0])


def test_parse_ts_errors():
    with pytest.raises(ValueError, match="dimensions"):
        parse_ts(TS_TEXT.replace("7.0:8.0:a", "7.0:a"))
    with pytest.raises(ValueError, match="@data"):
        parse_ts("@problemName x\n")
    with pytest.raises(ValueError, match="header"):
        parse_ts("1,2,3:a\n")


@pytest.mark.parametrize("n_per_class", [(20, 20, 20, 20), (61, 65, 118, 74, 59), (10,) * 10])
def test_paper_split_sizes_match_sklearn_and_are_stratified(n_per_class):
    labels = np.repeat(np.arange(len(n_per_class)), n_per_class)
    tr, va, te = paper_split(labels, seed=3)
    assert len(np.intersect1d(tr, va)) == len(np.intersect1d(tr, te)) == 0
    assert len(np.union1d(np.union1d(tr, va), te)) == len(labels)
    sk_tr, sk_rest = train_test_split(
        np.arange(len(labels)), train_size=0.7, stratify=labels, random_state=0
    )
    sk_va, sk_te = train_test_split(
        sk_rest, train_size=0.5, stratify=labels[sk_rest], random_state=0
    )
    assert (len(tr), len(va), len(te)) == (len(sk_tr), len(sk_va), len(sk_te))
    for part in (tr, va, te):
        expect = np.bincount(labels) * len(part) / len(labels)
        assert np.all(
            np.abs(np.bincount(labels[part], minlength=len(n_per_class)) - expect) <= 1.0 + 1e-9
        )
    again = paper_split(labels, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((tr, va, te), again))


@pytest.mark.parametrize("rate", [0.0, 0.3, 0.5, 0.7])
def test_drop_values_exact_counts_per_channel(rate):
    data = synthetic_irregular(12, length=20, channels=3, min_length=5, seed=1)
    dropped = drop_values(data, rate, seed=7)
    for i in range(len(data)):
        n = data.lengths[i]
        k = int(np.floor(n * rate))
        for c in range(3):
            assert np.isnan(dropped.values[i, :n, c]).sum() == k
        assert np.all(np.isnan(dropped.values[i, n:]))
    # independent per channel (at 50 % the masks of two channels differ somewhere)
    if rate == 0.5:
        m = np.isnan(dropped.values)
        assert np.any(m[:, :, 0] != m[:, :, 1])
    assert np.array_equal(np.isnan(drop_values(data, rate, 7).values), np.isnan(dropped.values))
    expected = 1.0 - np.sum(np.floor(data.lengths * rate)) / data.lengths.sum()
    np.testing.assert_allclose(observed_fraction(dropped), expected)
    with pytest.raises(ValueError, match="rate"):
        drop_values(data, 1.0, 0)


def test_synthetic_and_standardise():
    data = synthetic_irregular(
        40, length=16, channels=2, num_classes=3, missing=0.3, min_length=4, seed=0
    )
    assert data.values.shape == (40, 16, 2) and data.num_classes == 3
    for i in range(len(data)):
        n = data.lengths[i]
        assert np.all(np.diff(data.times[i]) > 0)  # padding continues the grid
        assert np.all(np.isnan(data.values[i, n:]))
    frac = observed_fraction(data)
    assert 0.6 < float(frac) < 0.8
    s = standardise(data)
    np.testing.assert_allclose(np.nanmean(s.values, axis=(0, 1)), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.nanstd(s.values, axis=(0, 1)), 1.0, atol=1e-5)
    sub = data[np.array([0, 2])]
    assert len(sub) == 2 and sub.values.shape == (2, 16, 2)
