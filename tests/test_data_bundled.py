"""Bundled UEA/UCR loaders, on the .ts files the dev extra installs (with aeon)."""

import numpy as np
import pytest

from scimlx.data import bundled_dataset_dir, from_series, load_uea_ucr, paper_split


# (name, N = train + test, channels, min length, max length, classes), from the UEA/UCR
# archive descriptions as listed in the methods notes.
EXPECTED = [
    ("BasicMotions", 80, 6, 100, 100, 4),
    ("JapaneseVowels", 640, 12, 7, 29, 9),
    ("ArrowHead", 211, 1, 251, 251, 3),
    ("GunPoint", 200, 1, 150, 150, 2),
    ("ItalyPowerDemand", 1096, 1, 24, 24, 2),
    ("OSULeaf", 442, 1, 427, 427, 6),
    ("ACSF1", 200, 1, 1460, 1460, 10),
    ("PickupGestureWiimoteZ", 100, 1, 29, 361, 10),
]


@pytest.mark.parametrize("name,N,C,lmin,lmax,K", EXPECTED)
def test_bundled_sets(name, N, C, lmin, lmax, K):
    assert bundled_dataset_dir(name) is not None, "the dev extra installs aeon's data files"
    series, labels, is_train = load_uea_ucr(name)
    assert len(series) == N and labels.shape == (N,) and is_train.dtype == bool
    data = from_series(series, labels)
    assert data.channels == C
    assert data.lengths.min() == lmin and data.lengths.max() == lmax
    assert data.num_classes == K and set(np.unique(labels)) == set(range(K))
    assert not np.any(np.isnan(data.values[0, : data.lengths[0]]))
    tr, va, te = paper_split(labels, 0)
    assert len(tr) == int(np.floor(0.7 * N))


def test_missing_dataset_error_names_the_fix():
    with pytest.raises(FileNotFoundError, match="aeon"):
        load_uea_ucr("NotADataSet")
