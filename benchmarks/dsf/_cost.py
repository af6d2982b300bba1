"""Measurements of evaluation cost: every mode against L (section 1), chunk lengths against the
recurrence (1b), and cost growth from L = 1024 to 4096 (1c)."""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

import scimlx.dsf as dsf

from .._harness import peak_memory_bytes, time_compiled, time_interleaved
from ._problems import (
    batch16,
    BUDGET,
    FAMILIES,
    fwdbwd,
    mode,
    mode_name,
    PEAK_LIMIT,
    system_and_input,
)


TASKS = ("fwd_b1", "fwdbwd_b16")  # forward at batch 1; forward+backward at batch 16


def default_lengths(quick: bool) -> tuple[list[int], list[int]]:
    """Lengths of the forward and the training cells: quick, every (family, task, mode) row at
    one length (the L = 1024 training targets come from the recurrence and chunked rows of the
    sweep, section 1b); full, L = 64 ... 16384 (training up to 4096)."""
    if quick:
        return [256], [256]
    return [64, 256, 1024, 4096, 16384], [64, 256, 1024, 4096]


def _skip_note(rows, fam, L, task, name, est, quick):
    """Why a cell's mode is not run (None: it is run)."""
    if name == "matrix" and est > BUDGET:
        return f"refused: ~{est / 2**20:.0f} MiB > budget"
    if fam == "softmax" and name == "recurrence" and L > 4096:
        return "skipped: O(L^2) sequential"
    prev = [
        r
        for r in rows
        if (r["family"], r["task"], r["method"]) == (fam, task, name)
        and r.get("median_ms") is not None
    ]
    limit_ms = 1500 if quick else 4000
    if prev and prev[-1]["median_ms"] * L / prev[-1]["L"] > limit_ms:
        return f"skipped: extrapolated > {limit_ms / 1e3} s/call"
    return None


def _reference(fam, sys32, x32):
    """Output of the float64 reference mode (matrix for softmax, else the recurrence)."""
    sys64 = jax.tree.map(lambda a: a.astype(jnp.float64), sys32)
    ref_mode = dsf.Matrix() if fam == "softmax" else dsf.Recurrence()
    y = jax.jit(lambda s, x: dsf.evaluate(s, x, method=ref_mode)[0])(sys64, x32.astype(jnp.float64))
    return np.asarray(y)


def _cell(rows, fam, L, task, sys32, x32, quick, repeats):
    """Time every mode of one (family, L, task) cell round-robin; append its rows to `rows`."""
    training = task == "fwdbwd_b16"
    cell, timed_fns = [], {}
    for name in sys32.supported_methods():
        est = dsf.matrix_bytes(sys32, L) * (16 if training else 1)
        row = dict(family=fam, L=L, task=task, method=name)
        rows.append(row)
        note = _skip_note(rows[:-1], fam, L, task, name, est, quick)
        if note is not None:
            row.update(median_ms=None, note=note)
            continue
        if not training:
            method = mode(name)
            fn = jax.jit(lambda s, x, m=method: dsf.evaluate(s, x, method=m)[0])
            args = (sys32, x32)
        else:
            fn = fwdbwd(name)
            args = batch16(sys32, x32)
        # the compiled executable's own memory analysis, before running it (the online-softmax
        # form under autodiff saves every block's scores)
        peak = peak_memory_bytes(fn, *args)
        if peak is not None and peak > PEAK_LIMIT:
            row.update(
                median_ms=None,
                peak_mib=peak / 2**20,
                note=f"skipped: compiled peak {peak / 2**30:.0f} GiB > "
                f"{PEAK_LIMIT / 2**30:.0f} GiB",
            )
            continue
        row["peak_mib"] = (peak or 0) / 2**20
        timed_fns[name] = (fn, args)
        cell.append(row)
    # all modes of the cell timed round-robin, so that load changes hit them alike
    res = time_interleaved(timed_fns, repeats)
    ref = None
    for row in cell:
        t = res[row["method"]]
        row.update(
            median_ms=1e3 * t["median_s"],
            min_ms=1e3 * t["min_s"],
            repeats=t["rounds"],
            calls_per_sample=t["inner"],
            compile_s=t["compile_s"],
        )
        if not training:
            ref = _reference(fam, sys32, x32) if ref is None else ref
            y = np.asarray(t["output"], np.float64)
            row["rel_err_vs_f64"] = float(np.max(np.abs(y - ref)) / np.max(np.abs(ref)))
    return cell


def cost_section(quick: bool, repeats: int, lengths_fwd=None, lengths_bwd=None):
    """Every mode of every family at every length, forward and forward+backward; for each cell
    the fastest mode (`best`, by the minimum over rounds, the robust statistic on a shared
    machine) and the one `Auto` picks, with its time over the fastest one's."""
    default_fwd, default_bwd = default_lengths(quick)
    Ls_fwd = lengths_fwd or default_fwd
    Ls_bwd = lengths_bwd or default_bwd
    rows = []
    key = jr.key(0)
    for fam in FAMILIES:
        for L in sorted(set(Ls_fwd) | set(Ls_bwd)):
            sys32, x32 = system_and_input(fam, L, key)
            for task in TASKS:
                if L not in (Ls_bwd if task == "fwdbwd_b16" else Ls_fwd):
                    continue
                cell = _cell(rows, fam, L, task, sys32, x32, quick, repeats)
                timed = [r for r in cell if r.get("median_ms") is not None]
                if not timed:  # every mode of the cell refused or skipped
                    print(f"  {fam:9s} L={L:5d} {task:10s} no mode timed", flush=True)
                    continue
                best = min(timed, key=lambda r: r["min_ms"])
                auto = mode_name(dsf.choose_method(sys32, L, training=task == "fwdbwd_b16"))
                auto_row = next((r for r in timed if r["method"] == auto), None)
                for r in cell:
                    r["best"] = best["method"]
                    r["auto"] = auto
                    r["auto_over_best"] = (
                        (auto_row["min_ms"] / best["min_ms"]) if auto_row else None
                    )
                print(
                    f"  {fam:9s} L={L:5d} {task:10s} best={best['method']:10s} auto={auto}",
                    flush=True,
                )
    return rows


def chunk_sweep_section(quick: bool, repeats: int, L: int = 1024):
    """Chunked kernels against the recurrence at L = 1024, forward+backward at batch 16, for
    several chunk lengths, per family (scalar decay and per-state decay); the variants of a
    family are timed round-robin in one process. This is the measurement behind `CHUNK_SIZE`
    in scimlx/dsf/_evaluation.py."""
    print(f"== 1b. chunk length sweep (fwd+bwd, batch 16, L={L}) ==", flush=True)
    key = jr.key(0)
    sweeps = {
        "scalar": (dsf.CHUNK_SIZE["scalar"],) if quick else (16, 32, 64, 128),
        "per_state": (dsf.CHUNK_SIZE["per_state"],) if quick else (1, 2, 4, 8, 16, 32),
    }
    rows = []
    for fam, qs in sweeps.items():
        args = batch16(*system_and_input(fam, L, key))
        variants = {"recurrence": (fwdbwd("recurrence"), args)}
        for q in qs:
            variants[f"chunked_Q{q}"] = (fwdbwd("chunked", q), args)
        res = time_interleaved(variants, repeats)
        rec = res["recurrence"]["min_s"]
        for name, t in res.items():
            rows.append(
                dict(
                    family=fam,
                    L=L,
                    task="fwdbwd_b16",
                    variant=name,
                    min_ms=1e3 * t["min_s"],
                    median_ms=1e3 * t["median_s"],
                    compile_s=t["compile_s"],
                    rec_over_this=rec / t["min_s"],
                )
            )
        best = max(
            (r for r in rows[-len(res) :] if r["variant"] != "recurrence"),
            key=lambda r: r["rec_over_this"],
        )
        print(
            f"  {fam:9s} best {best['variant']}: {best['rec_over_this']:.2f}x the recurrence",
            flush=True,
        )
    return rows


GROWTH_CASES = (
    ("softmax", "matrix"),
    ("softmax", "chunked"),
    ("scalar", "chunked"),
    ("scalar", "recurrence"),
    ("per_state", "recurrence"),
    ("per_state", "chunked"),
)


def growth_section(quick: bool, repeats: int, lengths=(1024, 4096)):
    """Cost growth from L = 1024 to 4096 of quadratic forms (softmax and scalar-decay matrix) and
    of linear ones (chunked, recurrence), forward at a batch large enough that one call does
    tens of milliseconds of work at L = 1024 (dispatch overhead is then negligible)."""
    print("== 1c. growth from L=1024 to 4096 ==", flush=True)
    batch = 2 if quick else 8
    rows = []
    key = jr.key(1)
    for fam, name in GROWTH_CASES:
        for L in lengths:
            s, x = system_and_input(fam, L, key)
            sb = jax.tree.map(lambda a: jnp.broadcast_to(a, (batch,) + a.shape), s)
            xb = jnp.broadcast_to(x, (batch,) + x.shape)
            method = mode(name, max_bytes=2**34)
            fn = jax.jit(jax.vmap(lambda a, b, m=method: dsf.evaluate(a, b, method=m)[0]))
            t = time_compiled(fn, sb, xb, repeats=repeats)
            quad = name == "matrix"
            units = batch * L * L if quad else batch * L
            rows.append(
                dict(
                    family=fam,
                    method=name,
                    L=L,
                    batch=batch,
                    min_ms=1e3 * t["min_s"],
                    median_ms=1e3 * t["median_s"],
                    ns_per_unit=1e9 * t["min_s"] / units,
                    unit="score (b L^2)" if quad else "step (b L)",
                    peak_mib=(peak_memory_bytes(fn, sb, xb) or 0) / 2**20,
                )
            )
        a, b = rows[-2], rows[-1]
        b["growth_1024_to_4096"] = b["min_ms"] / a["min_ms"]
        print(
            f"  growth {fam:9s} {name:10s} {b['growth_1024_to_4096']:.1f}x "
            f"(ns/unit {a['ns_per_unit']:.3g} -> {b['ns_per_unit']:.3g})",
            flush=True,
        )
    return rows
