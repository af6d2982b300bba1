"""Neural ODEs/SDEs that stay cheap to solve: solver-heuristic regularisers against vanilla,
STEER, RNODE and TayNODE.

`python -m benchmarks.nde_regularisation` (see `__main__.py`); the data and the spiral's true
system are in `problems.py`, the regularised arms in `arms.py`, training (through
`scimlx.fit`) and prediction in `training.py`, the tasks in `tasks.py`, the means, ratios and
selected arms in `summary.py`, the printed tables in `benchmarks/report/nde_regularisation.py`.
"""

import jax


jax.config.update("jax_enable_x64", True)
