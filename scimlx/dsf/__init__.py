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
from ._layers import (
    LRU as LRU,
    QLSTM as QLSTM,
    RGLRU as RGLRU,
    S4D as S4D,
    S5 as S5,
    S6 as S6,
    SSD as SSD,
    AbstractDSFLayer as AbstractDSFLayer,
    LinearAttention as LinearAttention,
    NormalizedAttention as NormalizedAttention,
    SoftmaxAttention as SoftmaxAttention,
    to_dsf as to_dsf,
)
from ._model import MIXERS as MIXERS, SequenceModel as SequenceModel, make_mixer as make_mixer
