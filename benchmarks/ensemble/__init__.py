"""The ensemble benchmark (`python -m benchmarks.ensemble [--quick]`, see `__main__.py`):
`problems` (the members), `peers` (scipy and NumPy loops), `measure` (timing), `studies`
(the rows), `children` (the 8-device and memory studies, each in its own process)."""

import jax


jax.config.update("jax_enable_x64", True)
