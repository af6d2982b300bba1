"""PETSc peer of the linsolve benchmark: CG with hypre BoomerAMG or GAMG, in a subprocess.

petsc4py comes from Debian (`apt-get install python3-petsc4py-real`) and runs under the system
Python (`/usr/bin/python3`), not the project's environment, so the benchmark talks to it
through a pipe: `PetscPeer` (started by `__main__.py`, standard library only) starts
`python3 benchmarks/linsolve/petsc_peer.py --serve` with `PETSC_DIR` set to the package's
PETSc directory, writes the matrix (a scipy CSR matrix's `indptr`, `indices`, `data`) and the
right-hand side to a temporary `.npz`, and sends one JSON command per line:

- `{"cmd": "load", "path": ..., "rtol": ...}`: read the system;
- `{"cmd": "setup", "pc": "hypre" | "gamg"}`: a new KSP (CG, unpreconditioned 2-norm test
  `|r|_2 <= rtol |b|_2`, x0 = 0) with that preconditioner, `KSPSetUp` timed;
- `{"cmd": "solve", "pc": ...}`: one solve with that preconditioner's latest setup, timed;
  replies with the iterations, the converged reason and the true residual
  `|b - A x|_2 / |b|_2` (computed after the timing).

Times are measured inside the subprocess (`time.perf_counter` around `KSPSetUp` and
`KSPSolve`), so the pipe does not count; the caller interleaves these calls with its own
timings (`benchmarks._harness.time_interleaved`), which is how the peer shares the machine's
load with ours. Run alone for a one-shot measurement:
`PETSC_DIR=... python3 benchmarks/linsolve/petsc_peer.py system.npz --pc hypre --repeats 5`.
"""

import glob
import json
import os
import subprocess
import sys
import tempfile
import time


PCS = ("hypre", "gamg")
SYSTEM_PYTHON = "/usr/bin/python3"


def petsc_dir() -> str | None:
    """The Debian package's PETSc directory (real scalars), or `PETSC_DIR` if set."""
    if os.environ.get("PETSC_DIR"):
        return os.environ["PETSC_DIR"]
    found = sorted(glob.glob("/usr/lib/petscdir/petsc*/*-real"))
    return found[-1] if found else None


class PetscPeer:
    """Client of the PETSc subprocess (see the module docstring). `available` is `False`, and
    `why` says why, when petsc4py cannot be started; the benchmark rows then say so."""

    def __init__(self, threads: int):
        self.proc = None
        self.why = None
        self.version = None
        self.threads = threads
        d = petsc_dir()
        if d is None or not os.path.exists(SYSTEM_PYTHON):
            self.why = "not installed"
            return
        env = dict(os.environ, PETSC_DIR=d)
        env.pop("PYTHONPATH", None)
        # the peer's thread pools pinned like ours (PETSc itself is single-threaded per rank)
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(threads)
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        try:
            self.proc = subprocess.Popen(
                [SYSTEM_PYTHON, os.path.abspath(__file__), "--serve"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            hello = self._read()
        except (OSError, RuntimeError) as e:
            self.close()
            self.why = "not installed" if "petsc4py" in str(e) else f"failed: {e}"[:200]
            return
        self.version = hello.get("version")
        self.tmp = tempfile.TemporaryDirectory(prefix="petsc_peer_")

    @property
    def available(self) -> bool:
        return self.proc is not None

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read() if self.proc.poll() is not None else ""
            raise RuntimeError(("petsc4py" if "petsc4py" in err else "") + err[-300:])
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply

    def _ask(self, **cmd) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def load(self, A, b, rtol: float) -> None:
        """Send the scipy sparse matrix `A` and right-hand side `b` (NumPy)."""
        import numpy as np

        A = A.tocsr()
        path = os.path.join(self.tmp.name, "system.npz")
        np.savez(
            path,
            indptr=A.indptr.astype(np.int32),
            indices=A.indices.astype(np.int32),
            data=A.data.astype(np.float64),
            shape=np.asarray(A.shape),
            b=np.asarray(b, np.float64).ravel(),
        )
        self._ask(cmd="load", path=path, rtol=rtol)

    def setup(self, pc: str) -> dict:
        return self._ask(cmd="setup", pc=pc)

    def solve(self, pc: str) -> dict:
        return self._ask(cmd="solve", pc=pc)

    def close(self) -> None:
        if self.proc is not None:
            try:
                self._ask(cmd="quit")
            except (OSError, RuntimeError, ValueError):
                pass
            self.proc.wait(timeout=30)
            self.proc = None
        tmp = getattr(self, "tmp", None)
        if tmp is not None:
            tmp.cleanup()
            self.tmp = None


# ---------------------------------------------------------------------------------------
# The subprocess side (system Python with petsc4py and NumPy; nothing from the project).


class _Server:
    def __init__(self, PETSc):
        self.PETSc = PETSc
        self.A = self.b = self.x = None
        self.ksp = {}
        self.rtol = 1e-8

    def load(self, path, rtol):
        import numpy as np

        PETSc = self.PETSc
        z = np.load(path)
        n = int(z["shape"][0])
        for ksp in self.ksp.values():
            ksp.destroy()
        self.ksp = {}
        self.A = PETSc.Mat().createAIJ(
            size=(n, n), csr=(z["indptr"], z["indices"], z["data"]), comm=PETSc.COMM_SELF
        )
        self.A.assemble()
        self.A.setOption(PETSc.Mat.Option.SYMMETRIC, True)
        self.A.setOption(PETSc.Mat.Option.SPD, True)
        self.b = PETSc.Vec().createWithArray(np.array(z["b"]), comm=PETSc.COMM_SELF)
        self.x = self.b.duplicate()
        self.rtol = float(rtol)
        return {"n": n}

    def setup(self, pc):
        PETSc = self.PETSc
        if pc not in PCS:
            raise ValueError(f"`pc` must be one of {PCS}; got {pc!r}")
        if pc in self.ksp:
            self.ksp.pop(pc).destroy()
        t0 = time.perf_counter()
        ksp = PETSc.KSP().create(comm=PETSc.COMM_SELF)
        ksp.setOperators(self.A)
        ksp.setType("cg")
        ksp.setNormType(PETSc.KSP.NormType.UNPRECONDITIONED)
        ksp.setTolerances(rtol=self.rtol, atol=0.0, max_it=5000)
        ksp.setInitialGuessNonzero(False)
        p = ksp.getPC()
        if pc == "hypre":
            p.setType("hypre")
            p.setHYPREType("boomeramg")
        else:
            p.setType("gamg")
        ksp.setUp()
        seconds = time.perf_counter() - t0
        self.ksp[pc] = ksp
        return {"seconds": seconds}

    def solve(self, pc):
        ksp = self.ksp[pc]
        self.x.set(0.0)
        t0 = time.perf_counter()
        ksp.solve(self.b, self.x)
        seconds = time.perf_counter() - t0
        r = self.b.duplicate()
        self.A.mult(self.x, r)
        r.aypx(-1.0, self.b)
        return {
            "seconds": seconds,
            "its": int(ksp.getIterationNumber()),
            "reason": int(ksp.getConvergedReason()),
            "true_rel_res": float(r.norm() / self.b.norm()),
        }


def _init_petsc():
    import petsc4py

    petsc4py.init([])
    from petsc4py import PETSc

    return PETSc


def _serve():
    try:
        PETSc = _init_petsc()
    except ImportError as e:
        print(json.dumps({"error": f"petsc4py: {e}"}), flush=True)
        return
    server = _Server(PETSc)
    print(json.dumps({"version": ".".join(map(str, PETSc.Sys.getVersion()))}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        name = cmd.pop("cmd")
        if name == "quit":
            print(json.dumps({}), flush=True)
            return
        try:
            reply = getattr(server, name)(**cmd)
        except Exception as e:  # reported to the client, which raises it
            reply = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(reply), flush=True)


def _one_shot(argv):
    import argparse
    import statistics

    parser = argparse.ArgumentParser(description="PETSc CG + AMG on a saved system")
    parser.add_argument("path", help=".npz with indptr, indices, data, shape, b")
    parser.add_argument("--pc", choices=PCS, default="hypre")
    parser.add_argument("--rtol", type=float, default=1e-8)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    server = _Server(_init_petsc())
    server.load(args.path, args.rtol)
    setup, solve = [], []
    for _ in range(args.repeats):
        setup.append(server.setup(args.pc)["seconds"])
        out = server.solve(args.pc)
        solve.append(out.pop("seconds"))
    out.update(
        pc=args.pc,
        setup_s=statistics.median(setup),
        solve_s=statistics.median(solve),
        setup_times=setup,
        solve_times=solve,
    )
    print(json.dumps(out))


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        _serve()
    else:
        _one_shot(sys.argv[1:])
