"""Benchmark: iterative solvers for SPD grid problems (scimlx.linsolve).

Question: how many iterations and how much time (setup + solve, compile apart) does our JAX
multigrid-preconditioned CG need on pressure-like problems, next to the strongest peers that run
here (pyamg RS/SA-PCG, PETSc CG + hypre BoomerAMG and CG + GAMG, IC(0)-PCG, scipy and lineax
CG), and the learned solvers (DCDM, learned BPX, learned V-cycle)?

Run from the repository root: `python -m benchmarks.linsolve [--quick] [--cores N]
[--compare PATH] [--dcdm run|keep|skip|only|train] [--no-families] [--dcdm-* ...]`
(`--help` lists every option).

Modules: `problems.py` (obstacle scenes, tolerances, sizes per mode), `families.py` (the
problem families), `measure.py` (ours as a `Method`, and `compare`, the interleaved timing),
`peers.py` (pyamg, PETSc, scipy/lineax CG, IC(0)), `petsc_peer.py` (the PETSc
subprocess), `tables.py` (the measurements of each table), `dcdm.py` (training and rows of
the learned solvers), `summary.py` (summary keys), `__main__.py` (options, the run, the
results file); the printed tables are `benchmarks/report/linsolve.py`'s.

Tables:
1. Obstacle scenes: `scimlx.linsolve.obstacle_scene(shape, seed=s, split="test")` (15-20 %
   solid, Dirichlet walls, enclosed pockets removed), `b ~ N(0, 1)` on fluid cells
   (`random_rhs`, key `s`), plus an MG-PCG row with the divergence of a smooth random velocity
   field. Stop: `|r|_2 / |b|_2 <= 1e-6` (x0 = 0); the second iteration column is the DCDM
   paper's `1e-4` relative to `r0` (= b here).
2. Problem families (`families.py`: obstacles at several densities, mazes of several corridor
   widths, two-phase inclusions of contrast 1e-6..1e6, log-normal coefficients, anisotropy to
   1:1000; 2-D and 3-D; sizes including ones that are not powers of two) at `rtol = 1e-8`,
   with ours, pyamg RS/SA and PETSc hypre/GAMG.
3. What MG setup time is made of (`mg_setup_breakdown`): setup, its dense coarsest-grid
   pseudo-inverse (LAPACK through jaxlib, i.e. OpenBLAS) and pyamg, with the BLAS pool at the
   number of cores and at one thread.
4. The learned solvers (`dcdm.py`) on the obstacle scenes: trained in the run (`--dcdm run`,
   the default in `--quick`), or kept from the committed full results (`--dcdm keep`, the
   default in full mode). `--dcdm only` runs them alone (with scipy CG, IC(0) and pyamg rows
   for reference), `--dcdm train` trains and saves them without test problems.

Timing: every method of a problem is timed in the same process, in turns
(`benchmarks._harness.time_interleaved`: round-robin, the order rotating every round), setup
and solve as separate turns; the PETSc peer runs in a subprocess (`petsc_peer.py`, system
Python) that times its own setup and solve, called in the same turns. The whole run is held to
the machine's first `--cores` cores (default 1; the process restarts itself under that CPU
affinity, which the PETSc subprocess inherits), and host thread pools (OpenBLAS/OpenMP, the
PETSc subprocess's too) are pinned to `peer_threads` = that count, which XLA's CPU backend uses
as well: every solver gets the same cores. On the shared 2-core virtual machine the benchmarks
run on, two runs on both cores gave same-run ratios 20-45 % apart (our two-thread XLA solves
took up to 2x longer in one run, the single-threaded peers did not); two runs of the obstacle
table on one core, under 10 %. A row's `total_s` is the median over rounds of that round's
setup + solve, `ours_over_peer` the median over rounds of ours / the peer's total in the same
round (min and max beside it); `compile_s` is the first call of ours where its shapes are new
(later problems of the same shapes reuse the compiled code). The load average is recorded at
the start and end of each problem; `busy` flags a load above the core count.
"""

import jax


jax.config.update("jax_enable_x64", True)  # the problems and our solves are float64
