"""`python -m benchmarks.stable_sde`: pin threads, then run the benchmark."""

import os


# Pin threads before JAX / torch start (both sides get one intra-op thread).
os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)
os.environ.setdefault("OMP_NUM_THREADS", "1")

from ._cli import main  # noqa: E402


raise SystemExit(main())
