"""Sequence models as dynamical systems (Sieber et al., NeurIPS 2024): the DSF and its layers."""

from ._auto import AUTO_TABLE as AUTO_TABLE, choose_method as choose_method
from ._dsf import (
    AbstractDSF as AbstractDSF,
    ChannelDSF as ChannelDSF,
    DenseDSF as DenseDSF,
    DiagonalDSF as DiagonalDSF,
    SoftmaxDSF as SoftmaxDSF,
    eigenvalues as eigenvalues,
    materialise as materialise,
    normalised_linear_attention_dsf as normalised_linear_attention_dsf,
)
from ._evaluate import evaluate as evaluate, matrix_bytes as matrix_bytes, phi as phi
