"""Multi-query associative recall (section 2): each mixer trained on Zoology's MQAR task."""

import json
import os
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import optax

import scimlx.dsf as dsf

from ._problems import F32, mqar_batch


MQAR_MIXERS = ("softmax", "linear", "normalised", "s6", "ssd")

PAPER_ORDER = (
    "paper (Sieber et al. 2024, Fig. 2/5 as summarised in the methods notes; numbers not verified "
    "here): softmax >= SSD > normalised >= linear, S6 between"
)


def train_mqar(
    mixer,
    L,
    num_kv,
    vocab,
    steps,
    seed,
    lr,
    batch=64,
    n_state=32,
    test_size=1000,
    time_budget_s=None,
):
    key = jr.key(seed)
    model = dsf.SequenceModel(
        vocab,
        64,
        2,
        mixer,
        d_state=n_state,
        n_heads=1,
        max_len=L if mixer in ("softmax", "linear", "normalised") else 0,
        dtype="float32",
        key=jr.fold_in(key, 1),
    )
    sched = optax.warmup_cosine_decay_schedule(0.0, lr, max(steps // 20, 1), steps)
    opt = optax.adamw(sched, weight_decay=0.1)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    state = opt.init(params)
    training = dsf.Auto(training=True)

    def loss_fn(params, tok, pos, vals):
        m = eqx.combine(params, static)
        h = jax.vmap(lambda t: m.hidden(t, method=training))(tok)  # (B, L, d)
        hq = jnp.take_along_axis(h, pos[:, :, None], axis=1)  # gather before the head
        logits = hq @ m.embedding.T
        return optax.softmax_cross_entropy_with_integer_labels(logits, vals).mean()

    @jax.jit
    def step(params, state, i):
        tok, pos, vals = mqar_batch(jr.fold_in(jr.fold_in(key, 2), i), batch, L, num_kv, vocab)
        loss, g = jax.value_and_grad(loss_fn)(params, tok, pos, vals)
        upd, state = opt.update(g, state, params)
        return optax.apply_updates(params, upd), state, loss

    @jax.jit
    def accuracy(params):
        m = eqx.combine(params, static)
        tok, pos, vals = mqar_batch(jr.fold_in(key, 3), test_size, L, num_kv, vocab)
        h = jax.vmap(lambda t: m.hidden(t))(tok)
        pred = jnp.argmax(jnp.take_along_axis(h, pos[:, :, None], axis=1) @ m.embedding.T, -1)
        return jnp.mean((pred == vals).astype(F32))

    t0 = time.perf_counter()
    losses = []
    used = 0
    for i in range(steps):
        params, state, loss = step(params, state, jnp.asarray(i))
        used = i + 1
        if i % 50 == 0 or i == steps - 1:
            losses.append(float(loss))
            if time_budget_s is not None and time.perf_counter() - t0 > time_budget_s:
                losses.append(float(loss))
                break
    acc = float(accuracy(params))
    return dict(acc=acc, final_loss=losses[-1], steps_used=used, train_s=time.perf_counter() - t0)


def read_runs(paths: list[str]) -> list[dict]:
    """The MQAR rows of earlier MQAR-only runs (`--parts mqar --out PATH`), waiting for files
    that runs side by side have not written yet."""
    while not all(os.path.exists(p) for p in paths):
        print(f"  waiting for the MQAR runs {','.join(paths)}", flush=True)
        time.sleep(30)
    rows = []
    for path in paths:
        with open(path) as f:
            rows += json.load(f)["rows"]
    rows.sort(key=lambda r: (MQAR_MIXERS.index(r["mixer"]), r["seed"]))
    print(f"  MQAR runs read from {','.join(paths)} ({len(rows)} runs)", flush=True)
    return rows


def mqar_section(quick: bool, seeds, mixers=MQAR_MIXERS, steps=None, budget_s=None):
    """Every mixer gets the same number of optimiser steps (`steps`; default 2000, quick 30: a
    fair budget), with no time cap unless `budget_s` is given, for each seed in `seeds`."""
    print("== 2. MQAR ==", flush=True)
    vocab = 512
    if quick:  # exercises every mixer; far too short to learn the task
        L, kv, batch, n_state, test_size = 64, 4, 16, 16, 128
        steps = steps or 30
    else:
        L, kv, batch, n_state, test_size = 64, 4, 64, 32, 1000
        steps = steps or 2000
    lr = 3e-3
    rows = []
    for mixer in mixers:
        for seed in seeds:
            r = train_mqar(
                mixer,
                L,
                kv,
                vocab,
                steps,
                seed,
                lr,
                batch=batch,
                n_state=n_state,
                test_size=test_size,
                time_budget_s=budget_s,
            )
            row = dict(
                task=f"L{L}_kv{kv}",
                mixer=mixer,
                seed=seed,
                lr=lr,
                steps=steps,
                batch=batch,
                vocab=vocab,
                d_state=n_state,
                time_budget_s=budget_s,
                **r,
            )
            rows.append(row)
            print(
                f"  MQAR L={L} kv={kv} {mixer:10s} seed={seed} acc={r['acc']:.3f} "
                f"loss={r['final_loss']:.3f} steps={r['steps_used']} ({r['train_s']:.0f} s)",
                flush=True,
            )
    return rows
