"""scimlx.dsf benchmark: (1) cost of each DSF evaluation mode against sequence length, and
the float32 accuracy of the chunked form's parameter gradients for the scalar-decay layers;
(2) multi-query associative recall (MQAR) with softmax, linear, normalised attention, S6 and SSD.

Run: `python -m benchmarks.dsf [--quick] [--seeds N]` from the repository root (`--help` lists
the options). `--sections-from PATH` re-makes tables, summary and results JSON from a sections
file or a results JSON of an earlier run (keeping that run's date and machine record), measuring
the gradient section now if that run had none (its date and load are then recorded separately).

Sections: `_cost` (evaluation cost, chunk lengths, growth), `_accuracy` (float32 gradients),
`_mqar` (MQAR training), on the problems of `_problems`; `_summary` makes the summary that
`benchmarks/report/dsf.py` prints.
"""

import jax


jax.config.update("jax_enable_x64", True)  # for the float64 reference; all timed work is float32
