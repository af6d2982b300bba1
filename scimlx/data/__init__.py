"""Small data sets: bundled UEA/UCR loaders (no download), the stable-SDE paper's protocol,
synthetic generators."""

from ._bundled import (
    available_datasets as available_datasets,
    BUNDLED as BUNDLED,
    bundled_dataset_dir as bundled_dataset_dir,
    load_uea_ucr as load_uea_ucr,
)
from ._protocol import (
    drop_values as drop_values,
    from_series as from_series,
    observed_fraction as observed_fraction,
    paper_split as paper_split,
    standardise as standardise,
    TimeSeriesData as TimeSeriesData,
)
from ._synthetic import (
    damped_oscillator as damped_oscillator,
    seven_segment_digits as seven_segment_digits,
    synthetic_irregular as synthetic_irregular,
)
from ._ts import parse_ts as parse_ts, read_ts as read_ts
