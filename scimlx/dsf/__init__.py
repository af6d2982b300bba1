"""Sequence models as dynamical systems (Sieber et al., NeurIPS 2024): the DSF and its layers."""

from ._auto import Auto as Auto, AUTO_TABLE as AUTO_TABLE, choose_method as choose_method
from ._dsf import (
    AbstractDSF as AbstractDSF,
    ChannelDSF as ChannelDSF,
    DenseDSF as DenseDSF,
    DiagonalDSF as DiagonalDSF,
    eigenvalues as eigenvalues,
    materialise as materialise,
    normalised_linear_attention_dsf as normalised_linear_attention_dsf,
    SoftmaxDSF as SoftmaxDSF,
)
from ._evaluate import evaluate as evaluate, matrix_bytes as matrix_bytes, phi as phi
from ._evaluation import (
    AbstractEvaluation as AbstractEvaluation,
    choose_chunk_size as choose_chunk_size,
    CHUNK_SIZE as CHUNK_SIZE,
    Chunked as Chunked,
    Matrix as Matrix,
    Recurrence as Recurrence,
    Scan as Scan,
)
from ._layers import (
    AbstractDSFLayer as AbstractDSFLayer,
    LinearAttention as LinearAttention,
    LRU as LRU,
    NormalisedAttention as NormalisedAttention,
    QLSTM as QLSTM,
    RGLRU as RGLRU,
    S4D as S4D,
    S5 as S5,
    S6 as S6,
    SoftmaxAttention as SoftmaxAttention,
    SSD as SSD,
    to_dsf as to_dsf,
)
from ._model import make_mixer as make_mixer, MIXERS as MIXERS, SequenceModel as SequenceModel
