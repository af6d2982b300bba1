"""Saving and loading models and training state: a JSON header plus equinox leaves, atomically."""

import hashlib
import importlib
import io
import json
import os
import tempfile
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax


FORMAT_NAME = "scimlx"
FORMAT_VERSION = 1
_MAGIC = b"SCIMLX\n"


class CheckpointError(ValueError):
    """A saved file could not be read: wrong format or version, truncated, or corrupted."""


def _class_path(tree: Any) -> str:
    cls = type(tree)
    return f"{cls.__module__}:{cls.__qualname__}"


def _jsonable(name: str, value: Any) -> Any:
    try:
        json.dumps(value)
    except TypeError as e:
        raise TypeError(
            f"`{name}` must be JSON-serialisable (numbers, strings, lists, dicts, None); "
            f"got {value!r}."
        ) from e
    return value


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` so that `path` always holds either its old or its new content.

    The bytes go to a temporary file in the same directory, are flushed and fsynced, and
    the file is then moved over `path` with `os.replace` (atomic on POSIX and Windows).
    A crash or kill at any moment leaves the previous file intact.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            _write_all(f, data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(directory)


def _write_all(f, data: bytes) -> None:
    # Written in pieces so that a kill can land in the middle of a write (tests use this).
    view = memoryview(data)
    step = 1 << 20
    for i in range(0, len(view), step):
        f.write(view[i : i + step])


def save(
    path: str | os.PathLike,
    tree: Any,
    *,
    hyperparameters: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> None:
    """Save a model (or any pytree of arrays) with a JSON header, atomically.

    The file holds a header (format name and version, the class of `tree` as
    `module:qualname`, `hyperparameters`, `metadata`, the payload's length and SHA-256)
    followed by `equinox.tree_serialise_leaves(tree)`. It is written to a temporary file
    and moved into place with `os.replace`, so an interrupted save never corrupts the last
    good file.

    **Arguments:**

    - `path`: where to write.
    - `tree`: the pytree to save, typically an `eqx.Module`.
    - `hyperparameters`: JSON-serialisable keyword arguments that rebuild a template of
      `tree` (see [`scimlx.load`][]). For a model class whose `__init__` takes these plus
      `key=`, the file loads by name without any template.
    - `metadata`: any other JSON-serialisable information (training step, data set, ...).
    """
    hyperparameters = _jsonable("hyperparameters", dict(hyperparameters or {}))
    metadata = _jsonable("metadata", dict(metadata or {}))
    buf = io.BytesIO()
    eqx.tree_serialise_leaves(buf, tree)
    payload = buf.getvalue()
    header = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "class": _class_path(tree),
        "hyperparameters": hyperparameters,
        "metadata": metadata,
        "payload_bytes": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
        "jax_version": jax.__version__,
    }
    head = json.dumps(header, sort_keys=True).encode()
    atomic_write_bytes(path, _MAGIC + head + b"\n" + payload)


def _split(path: str | os.PathLike) -> tuple[dict[str, Any], bytes]:
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"No saved file at `path`={path!r}.") from None
    if not raw.startswith(_MAGIC):
        raise CheckpointError(f"{path!r} is not a scimlx file (missing the scimlx header).")
    end = raw.find(b"\n", len(_MAGIC))
    if end < 0:
        raise CheckpointError(f"{path!r} is truncated: its header is incomplete.")
    try:
        header = json.loads(raw[len(_MAGIC) : end])
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path!r} has a corrupted header: {e}.") from None
    if header.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path!r} is not a scimlx file (format {header.get('format')!r}).")
    version = header.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path!r} has format version {version!r}; this scimlx reads version "
            f"{FORMAT_VERSION}. Re-save it with a matching scimlx version."
        )
    payload = raw[end + 1 :]
    if len(payload) != header["payload_bytes"]:
        raise CheckpointError(
            f"{path!r} is truncated or corrupted: payload has {len(payload)} bytes, the "
            f"header promises {header['payload_bytes']}."
        )
    if hashlib.sha256(payload).hexdigest() != header["sha256"]:
        raise CheckpointError(f"{path!r} is corrupted: its checksum does not match its header.")
    return header, payload


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    """Read and verify a saved file's header (format, class, hyperparameters, metadata)."""
    header, _ = _split(path)
    return header


def _template_from_class(header: dict[str, Any]) -> Any:
    module_name, _, qualname = header["class"].partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise CheckpointError(
            f"Cannot rebuild the saved class {header['class']!r}: {e}. Pass `like=`."
        ) from None
    try:
        return obj(**header["hyperparameters"], key=jax.random.key(0))
    except TypeError as e:
        raise CheckpointError(
            f"Cannot rebuild {header['class']!r} from its saved hyperparameters "
            f"{header['hyperparameters']!r} and `key=`: {e}. Pass `like=`."
        ) from None


def load(path: str | os.PathLike, like: Any | Callable[..., Any] | None = None) -> Any:
    """Load a file written by [`scimlx.save`][].

    **Arguments:**

    - `path`: the file.
    - `like`: how to build a template with the right structure, shapes and dtypes:
        - a pytree (e.g. a freshly initialised model), used as is;
        - a callable, called as `like(**hyperparameters)`;
        - `None`: the class recorded in the header is imported and called as
          `cls(**hyperparameters, key=jax.random.key(0))`.

    **Returns:**

    The saved pytree.

    **Raises:**

    `CheckpointError` (a `ValueError`) if the file is not a scimlx file, has another
    format version, is truncated or corrupted, or does not match the template.
    """
    header, payload = _split(path)
    if like is None:
        template = _template_from_class(header)
    elif callable(like) and not isinstance(like, eqx.Module):
        template = like(**header["hyperparameters"])
    else:
        template = like
    try:
        return eqx.tree_deserialise_leaves(io.BytesIO(payload), template)
    except Exception as e:  # equinox raises a variety of errors on mismatch
        raise CheckpointError(
            f"{os.fspath(path)!r} does not match the template given by `like`: {e}"
        ) from None
