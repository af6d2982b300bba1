"""A small reader for the UEA/UCR `.ts` time-series format (sktime/aeon)."""

import os

import numpy as np


def parse_ts(text: str) -> tuple[list[np.ndarray], np.ndarray, dict]:
    """Parse the text of a `.ts` file (classification, no timestamps).

    **Arguments:**

    - `text`: the file's content.

    **Returns:**

    `(series, labels, header)`: `series` is a list of float arrays of shape
    `(channels, length_i)` (`NaN` where the file has `?`), `labels` an array of the class
    labels as strings, `header` a dict of the `@` header fields (lower-cased keys).
    """
    header: dict = {}
    series: list[np.ndarray] = []
    labels: list[str] = []
    in_data = False
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", "%")):
            continue
        if not in_data:
            if not line.startswith("@"):
                raise ValueError(f".ts line {lineno}: expected a header line starting with '@'.")
            parts = line[1:].split(maxsplit=1)
            tag = parts[0].lower()
            value = parts[1] if len(parts) > 1 else ""
            if tag == "data":
                in_data = True
                continue
            if tag == "classlabel":
                toks = value.split()
                header["classlabel"] = toks[0].lower() == "true"
                header["classes"] = toks[1:]
            else:
                header[tag] = value
            continue
        if header.get("timestamps", "false").lower() == "true":
            raise ValueError(".ts files with timestamps are not supported by this reader.")
        fields = line.split(":")
        has_label = header.get("classlabel", False) or header.get("targetlabel", "false") == "true"
        if has_label:
            labels.append(fields[-1].strip())
            fields = fields[:-1]
        dims = []
        for f in fields:
            vals = [v.strip() for v in f.split(",")]
            dims.append(
                np.array([np.nan if v in ("?", "NaN", "nan", "") else float(v) for v in vals])
            )
        n_dims = int(header.get("dimensions", len(dims)))
        if len(dims) != n_dims:
            raise ValueError(f".ts line {lineno}: expected {n_dims} dimensions, found {len(dims)}.")
        length = max(len(d) for d in dims)
        arr = np.full((n_dims, length), np.nan)
        for i, d in enumerate(dims):
            arr[i, : len(d)] = d
        series.append(arr)
    if not in_data:
        raise ValueError("No '@data' section found in the .ts text.")
    return series, np.asarray(labels), header


def read_ts(path: str | os.PathLike) -> tuple[list[np.ndarray], np.ndarray, dict]:
    """Read a `.ts` file (see [`scimlx.data.parse_ts`][])."""
    with open(path, encoding="utf-8", errors="replace") as f:
        return parse_ts(f.read())
