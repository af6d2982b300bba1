"""Neural operators: MgNO against parameter-matched and standard FNOs on Darcy flow.

`python -m benchmarks.neuralop` (see `__main__.py`); the problems (sizes, models, data) are in
`problems.py`, the peers (scipy's direct solve, the PyTorch and paper rows) in `peers.py`, the
measurements (training, errors, step and inference times, data generation) in
`measurements.py`, the printed tables in `benchmarks/report/neuralop.py`.
"""

import jax


# Data are generated in float64 (so that solutions match scipy to 1e-8); models train in
# float32.
jax.config.update("jax_enable_x64", True)
