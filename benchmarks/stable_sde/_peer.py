"""The PyTorch peer: the port of the official LNSDE classifier (`_torch_port`) trained on
the same splits, masks and schedule, its logits against scimlx's with copied weights, and
interleaved step times."""

import copy
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax

from scimlx.data import drop_values, standardise
from scimlx.sde import (
    calibrate_readout,
    classification_loss,
    default_batch_size,
    GridBrownianPath,
    LNSDE,
    paths_from_data,
)

from .. import _harness as H
from ._setup import HIDDEN, LAYERS, load
from ._train import MIN_EPOCHS, PATIENCE


def port():
    """The PyTorch port of the official classifier (`_torch_port`), or `None` where torch,
    torchsde or torchcde is missing."""
    for name in ("torch", "torchsde", "torchcde"):
        if H.optional_import(name) is None:
            return None
    import torch

    from . import _torch_port

    torch.set_num_threads(1)
    return _torch_port


def _torch_inputs(port, data, ids=None):
    import torch

    ids = np.arange(len(data)) if ids is None else np.asarray(ids)
    times = data.times[0].astype(np.float32)
    # padding: the time channel continues; values are NaN and torchcde fills them forward
    coeffs = port.coefficients(times, data.values[ids])
    return (
        torch.from_numpy(times),
        coeffs,
        torch.from_numpy(data.lengths[ids].astype(np.int64)),
        torch.from_numpy(data.labels[ids].astype(np.int64)),
    )


def _batches(n, bs, epoch, seed):
    """Epoch batches: a seeded permutation; the last batch holds the remainder (the
    reference's `DataLoader(drop_last=False)`)."""
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    return [perm[i : i + bs] for i in range(0, n, bs)]


def torch_run(port, data, idx, cfg, seed, solver="loop"):
    """Train the port of the official LNSDE classifier on the same split, mask, batch size
    and schedule as scimlx's runs (Adam with weight decay lr/100, StepLR(10, 0.5), the
    reference's early-stopping rule, best-validation weights, test accuracy). Its epochs
    visit the series in their own seeded order."""
    import torch

    torch.manual_seed(seed)
    tr, va, te = idx
    times, coeffs, lengths, labels = _torch_inputs(port, data)
    model = port.Classifier(data.channels + 1, HIDDEN, data.num_classes, LAYERS, "LNSDE")
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"], weight_decay=cfg["lr"] / 100)
    sched = torch.optim.lr_scheduler.StepLR(opt, 10, 0.5)
    lossf = torch.nn.CrossEntropyLoss()

    def evaluate(ids):
        model.eval()
        with torch.no_grad():
            out = model(times, coeffs[ids], lengths[ids], solver=solver)
            return float(lossf(out, labels[ids])), float(
                (out.argmax(1) == labels[ids]).float().mean()
            )

    best, bad, step_times = (np.inf, None), 0, []
    for epoch in range(cfg["epochs"]):
        model.train()
        for b in _batches(len(tr), cfg["bs"], epoch, seed):
            ids = torch.from_numpy(tr[b])
            t0 = time.perf_counter()
            opt.zero_grad()
            out = model(times, coeffs[ids], lengths[ids], solver=solver)
            loss = lossf(out, labels[ids])
            loss.backward()
            opt.step()
            step_times.append(time.perf_counter() - t0)
        vloss, _ = evaluate(torch.from_numpy(va))
        if vloss < best[0]:
            best, bad = (vloss, copy.deepcopy(model.state_dict())), 0
        else:
            bad += 1
        if cfg["early_stop"] and epoch + 1 >= MIN_EPOCHS and bad >= PATIENCE:
            break
        sched.step()
    model.load_state_dict(best[1])
    _, acc = evaluate(torch.from_numpy(te))
    return {
        "diverged": False,
        "acc": acc,
        "step_s": float(np.median(step_times[1:])) if len(step_times) > 1 else np.nan,
    }


def torch_stepper(port, data, ids, lr, solver):
    """One training step of a fresh port (train mode) on a fixed batch."""
    import torch

    torch.manual_seed(0)
    times, coeffs, lengths, labels = _torch_inputs(port, data, ids)
    model = port.Classifier(data.channels + 1, HIDDEN, data.num_classes, LAYERS, "LNSDE")
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=lr / 100)
    lossf = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad()
        loss = lossf(model(times, coeffs, lengths, solver=solver), labels)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step


@eqx.filter_jit
def _timed_step(params, static, opt_state, optimiser, batch, key):
    """One optimiser step of scimlx's LNSDE, the unit the interleaved timing repeats."""

    def loss(p):
        return classification_loss(eqx.combine(p, static), batch, key)

    value, grads = jax.value_and_grad(loss)(params)
    updates, opt_state = optimiser.update(grads, opt_state, params)
    return eqx.apply_updates(params, updates), opt_state, value


def logits_agreement(port, data, ids, key=0) -> dict:
    """scimlx's LNSDE and the port with copied weights on one fixed Brownian sample (the
    increments scimlx draws), inference mode with calibrated batch-norm statistics: the
    largest logit difference over the largest logit, for the plain loop and torchsde."""
    import torch

    P = paths_from_data(data)[ids]
    model = LNSDE(data.channels + 1, HIDDEN, data.num_classes, num_layers=LAYERS, key=jr.key(key))
    model = calibrate_readout(model, P, key=jr.key(key + 1))
    keys = jr.split(jr.key(key + 2), len(ids))
    logits = np.asarray(
        eqx.filter_jit(
            lambda m: jax.vmap(lambda p, t, n, k: m.classify(p, t, n, key=k))(
                P.paths, P.times, P.lengths, keys
            )
        )(model)
    )
    grid = jnp.asarray(data.times[0])
    inc = np.stack(
        [np.asarray(GridBrownianPath(grid, (HIDDEN,), key=k).increments) for k in keys], axis=1
    )
    tm = port.copy_weights(
        port.Classifier(data.channels + 1, HIDDEN, data.num_classes, LAYERS, "LNSDE"), model
    )
    tm.eval()
    times, coeffs, lengths, _ = _torch_inputs(port, data, ids)
    out = {}
    with torch.no_grad():
        for solver in ("loop", "torchsde"):
            theirs = tm(times, coeffs, lengths, solver=solver, increments=torch.from_numpy(inc))
            diff = np.max(np.abs(theirs.numpy() - logits)) / np.max(np.abs(logits))
            out[solver] = float(diff)
    return out


def interleaved_step_times(port, data, cfg, rounds=15) -> dict:
    """Step times (s) of scimlx's LNSDE, the port as a plain PyTorch loop and the port
    through torchsde, timed in turns (round-robin) on the same batch, with PyTorch's
    intra-op pool pinned to the single thread XLA uses here."""
    ids = np.arange(cfg["bs"]) % len(data)
    P = paths_from_data(data)
    model = LNSDE(data.channels + 1, HIDDEN, data.num_classes, num_layers=LAYERS, key=jr.key(0))
    params, static = eqx.partition(model, eqx.is_inexact_array)
    optimiser = optax.chain(optax.add_decayed_weights(cfg["lr"] / 100), optax.adam(cfg["lr"]))
    batch = P[ids]
    state = [params, optimiser.init(params), 0]

    def jax_step():
        state[2] += 1
        p, o, v = _timed_step(state[0], static, state[1], optimiser, batch, jr.key(state[2]))
        state[0], state[1] = p, o
        return v

    fns = {
        "scimlx": (jax_step, ()),
        "torch loop": (torch_stepper(port, data, ids, cfg["lr"], "loop"), ()),
        "torchsde": (torch_stepper(port, data, ids, cfg["lr"], "torchsde"), ()),
    }
    with H.pinned_threads(1) as threads:
        load_before = H.load_avg()
        res = H.time_interleaved(fns, rounds=rounds, sample_s=0.0)
        load_after = H.load_avg()
    out = {
        k: {f: v[f] for f in ("min_s", "median_s", "max_s", "compile_s")} for k, v in res.items()
    }
    out["peer_threads"] = threads
    out["load_avg"] = [load_before, load_after]
    return out


def peer_checks(port, names, quick, raw_paths=False) -> dict:
    """Per data set (50 % missing, the protocol's batch size): the copied-weights logits
    agreement with the port, and interleaved step times of scimlx, the port as a plain loop
    and the port through torchsde."""
    out = {}
    for name in names:
        base = load(name)
        d = drop_values(base if raw_paths else standardise(base), 0.5, seed=0)
        bs = default_batch_size(len(d))
        agree = logits_agreement(port, d, np.arange(min(len(d), 64)))
        t = interleaved_step_times(port, d, {"bs": bs, "lr": 1e-3 * bs / 16}, 5 if quick else 15)
        out[name] = {"batch": bs, "logits_rel_diff": agree, **t}
        ms = {k: 1e3 * t[k]["median_s"] for k in ("scimlx", "torch loop", "torchsde")}
        print(
            f"  {name}: copied-weights logits rel. diff {agree['loop']:.1e} (loop), "
            f"{agree['torchsde']:.1e} (torchsde); interleaved step (median ms, batch {bs}, 50% "
            f"missing): scimlx {ms['scimlx']:.1f}, torch loop {ms['torch loop']:.1f}, "
            f"torchsde {ms['torchsde']:.1f}; load {t['load_avg']}",
            flush=True,
        )
    return out


def _geomean(xs):
    return float(np.exp(np.mean(np.log(xs))))


def peer_summary(peer: dict) -> dict:
    """Summary keys of the peer checks (`{}` without a peer)."""
    if not peer:
        return {}
    names = list(peer)
    ours = {n: peer[n]["scimlx"]["median_s"] for n in names}
    loop = {n: peer[n]["torch loop"]["median_s"] / ours[n] for n in names}
    tsde = {n: peer[n]["torchsde"]["median_s"] / ours[n] for n in names}
    fastest = {n: min(loop[n], tsde[n]) for n in names}
    return {
        "logits_rel_diff_vs_torch_port": max(peer[n]["logits_rel_diff"]["loop"] for n in names),
        "logits_rel_diff_vs_torch_port_torchsde": max(
            peer[n]["logits_rel_diff"]["torchsde"] for n in names
        ),
        "step_speedup_vs_torch_port": _geomean(list(fastest.values())),
        "step_speedup_vs_torch_port_loop": _geomean(list(loop.values())),
        "step_speedup_vs_torchsde": _geomean(list(tsde.values())),
        "step_speedup_per_dataset": {
            n: {"torch loop": loop[n], "torchsde": tsde[n]} for n in names
        },
        "peer_threads": peer[names[0]]["peer_threads"],
        "peer_load_avg": {n: peer[n]["load_avg"] for n in names},
        "target_logits_1e-5": bool(max(peer[n]["logits_rel_diff"]["loop"] for n in names) <= 1e-5),
        "target_5x_faster_than_torch_port": bool(_geomean(list(fastest.values())) >= 5.0),
    }
