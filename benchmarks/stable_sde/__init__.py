"""Stable neural SDEs on bundled UEA/UCR sets with 0/30/50/70 % missing values.

Question: under the paper's robustness protocol (train+test merged, stratified 70/15/15,
values dropped per channel), how accurate are scimlx's LSDE / LNSDE / GSDE against the
naive neural SDE, neural CDE and latent neural ODE, how close is scimlx's LNSDE to a
PyTorch (torchsde + torchcde) implementation of the paper's LNSDE on identical splits, masks
and seeds, and how fast is a training step?

Run from the repo root: `python -m benchmarks.stable_sde [--quick] [--seeds N] [--epochs E]`
(`--help` lists the options). Both sides run single-threaded (XLA and torch intra-op threads
pinned to 1). Every scimlx model trains with `scimlx.sde.train_classifier` (that is,
`scimlx.fit`) under the paper's optimiser and early-stopping rule.

- `_setup`: data sets, models and the protocol's settings;
- `_train`: one training run and its test accuracy;
- `_torch_port`, `_peer`: the PyTorch port of the official classifier and the checks
  against it (copied-weights logits, interleaved step times, its training runs);
- `_studies`: the main study, focused studies, learning-rate and full tuning, rebuilding
  results from logs or per-data-set files;
- `_cli`: the command line.

The tables it prints and the docs' markdown table are rendered by
`benchmarks/report/stable_sde.py`.
"""
