"""Saving and loading models and training state: a JSON header plus equinox leaves, atomically."""

import hashlib
import importlib
import inspect
import io
import json
import os
import socket
import stat
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable
from typing import Any

import equinox as eqx
import jax
import numpy as np


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


_TMP_SUFFIX = ".tmp"
_HOST = socket.gethostname().replace(".", "_") or "host"
# Temporary files older than this whose writer cannot be checked (another host, or a name
# from an older scimlx) count as orphans.
_FOREIGN_TMP_AGE_S = 3600.0


def _umask() -> int:
    """The process's umask, read without changing it where the OS allows."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:  # pragma: no cover - not Linux
        pass
    mask = os.umask(0o022)  # pragma: no cover
    os.umask(mask)  # pragma: no cover
    return mask  # pragma: no cover


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    except OSError:  # pragma: no cover
        return True
    return True


def clean_orphans(path: str | os.PathLike) -> list[str]:
    """Remove temporary files that an interrupted write to `path` left behind.

    [`scimlx.save`][] (and every other scimlx atomic write) writes `path` through a
    temporary file `<name>.<host>.<pid>.<random>.tmp` beside it. A writer killed before it
    moved that file into place leaves it behind. A temporary file is an orphan when its
    writer (same host) is no longer running; one from another host, or without a
    recognisable name, when it is older than an hour. Called by `save`, `load` and
    `fit` for their path.

    **Returns:**

    The paths removed.
    """
    path = os.fspath(path)
    return clean_orphans_in(os.path.dirname(os.path.abspath(path)), os.path.basename(path) + ".")


def clean_orphans_in(directory: str | os.PathLike, prefix: str = "") -> list[str]:
    """Remove the orphaned temporary files (see `clean_orphans`) of every file in
    `directory` whose name starts with `prefix`."""
    directory = os.fspath(directory)
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    now = time.time()
    for name in names:
        if not (name.startswith(prefix) and name.endswith(_TMP_SUFFIX)):
            continue
        parts = name[: -len(_TMP_SUFFIX)].split(".")
        full = os.path.join(directory, name)
        # <target name (may hold dots)>.<host>.<pid>.<random>
        if len(parts) >= 4 and parts[-3] == _HOST and parts[-2].isdigit():
            pid = int(parts[-2])
            orphan = pid != os.getpid() and not _pid_alive(pid)
        else:
            try:
                orphan = now - os.stat(full).st_mtime > _FOREIGN_TMP_AGE_S
            except OSError:
                continue
        if orphan:
            try:
                os.unlink(full)
                removed.append(full)
            except OSError:
                pass
    return removed


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` so that `path` always holds either its old or its new content.

    The bytes go to a temporary file in the same directory, are flushed and fsynced, and
    the file is then moved over `path` with `os.replace` (atomic on POSIX and Windows),
    and the directory is fsynced. A crash or kill at any moment leaves the previous file
    intact; the temporary file a kill leaves behind is removed by the next write to
    `path` (see `clean_orphans`). A new file gets the permissions of the user's umask
    (`0o666 & ~umask`); an existing file keeps its permissions.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    clean_orphans(path)
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        mode = 0o666 & ~_umask()
    prefix = f"{os.path.basename(path)}.{_HOST}.{os.getpid()}."
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=_TMP_SUFFIX, dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
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


class CorruptedFileError(CheckpointError):
    """A checksummed array file (an ensemble store's chunk, a data cache) is truncated,
    altered or unreadable. `path` names the file."""

    def __init__(self, path, reason: str):
        self.path = os.fspath(path)
        super().__init__(f"{self.path} is corrupted ({reason}).")


_CHECKSUM_KEY = "__sha256__"


def _arrays_digest(arrays: dict) -> str:
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}|{a.dtype.str}|{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def write_arrays(path: str | os.PathLike, arrays: dict) -> None:
    """Write a dict of NumPy arrays as `.npz` together with their SHA-256, atomically
    (see `atomic_write_bytes`). Read back with `read_arrays`."""
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    buf = io.BytesIO()
    np.savez(buf, **arrays, **{_CHECKSUM_KEY: np.asarray(_arrays_digest(arrays))})  # pyright: ignore
    atomic_write_bytes(path, buf.getvalue())


def read_arrays(path: str | os.PathLike) -> dict:
    """Read a file written by `write_arrays`, verifying its checksum.

    **Raises:**

    `FileNotFoundError` if there is no file; `CorruptedFileError` naming the file if it
    is truncated, altered, unreadable or has no checksum.
    """
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as e:
        raise CorruptedFileError(path, f"unreadable: {type(e).__name__}: {e}") from None
    want = arrays.pop(_CHECKSUM_KEY, None)
    if want is None:
        raise CorruptedFileError(path, "no checksum: written by another program or version")
    if str(want) != _arrays_digest(arrays):
        raise CorruptedFileError(path, "its checksum does not match its content")
    return arrays


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
    good file; the temporary file a killed save leaves behind is removed by the next save
    to (or `load` of) `path`. A new file gets the permissions of the user's umask.

    **Arguments:**

    - `path`: where to write.
    - `tree`: the pytree to save, typically an `eqx.Module`.
    - `hyperparameters`: JSON-serialisable keyword arguments that rebuild a template of
      `tree` (see [`scimlx.load`][]). For a model class whose `__init__` takes these plus
      `key=`, the file loads by name without any template. Default: `tree.hyperparameters()`
      when the tree's class defines that method (the networks of `scimlx.linsolve` do, so
      `scimlx.save(path, net)` then `scimlx.load(path)` round-trips), else none.
    - `metadata`: any other JSON-serialisable information (training step, data set, ...).
    """
    if hyperparameters is None and callable(getattr(tree, "hyperparameters", None)):
        hyperparameters = tree.hyperparameters()
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
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path!r} has a corrupted header: {e}.") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path!r} has a corrupted header (not a JSON object).")
    if header.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path!r} is not a scimlx file (format {header.get('format')!r}).")
    version = header.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path!r} has format version {version!r}; this scimlx reads version "
            f"{FORMAT_VERSION}. Re-save it with a matching scimlx version."
        )
    missing = [k for k in ("class", "payload_bytes", "sha256") if k not in header]
    if missing:
        raise CheckpointError(f"{path!r} has a corrupted header: it lacks {missing}.")
    header.setdefault("hyperparameters", {})
    header.setdefault("metadata", {})
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


def _allowed(class_path: str, allow: Iterable[Any]) -> bool:
    module_name = class_path.partition(":")[0]
    if module_name == "scimlx" or module_name.startswith("scimlx."):
        return True
    for entry in allow:
        if isinstance(entry, type):
            if _class_path_of(entry) == class_path:
                return True
        elif isinstance(entry, str):
            if entry == class_path or module_name == entry or module_name.startswith(entry + "."):
                return True
        else:
            raise TypeError(
                f"`allow` must hold classes or module names (strings), got {type(entry).__name__}."
            )
    return False


def _class_path_of(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _template_from_class(header: dict[str, Any], path: str, allow: Iterable[Any]) -> Any:
    class_path = header["class"]
    if not _allowed(class_path, allow):
        raise CheckpointError(
            f"{path!r} was saved from the class {class_path!r}, outside scimlx. `load` "
            "without `like=` only imports scimlx classes (importing a module runs its code): "
            "pass `like=` (a template or a callable), or `allow=[ThatClass]` (or its module "
            "name) if you trust the file."
        )
    module_name, _, qualname = class_path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise CheckpointError(
            f"Cannot rebuild the class {class_path!r} saved in {path!r}: {e}. Pass `like=`."
        ) from None
    # a class whose initialisation is random takes `key=` (its leaves are then replaced by
    # the saved ones); a deterministic one takes no key
    kwargs = dict(header["hyperparameters"])
    if "key" in inspect.signature(obj).parameters:
        kwargs["key"] = jax.random.key(0)
    try:
        return obj(**kwargs)
    except TypeError as e:
        raise CheckpointError(
            f"Cannot rebuild {class_path!r} (saved in {path!r}) from its saved "
            f"hyperparameters {header['hyperparameters']!r} and `key=`: {e}. Pass `like=`."
        ) from None


def load(
    path: str | os.PathLike,
    like: Any | Callable[..., Any] | None = None,
    *,
    allow: Iterable[Any] = (),
) -> Any:
    """Load a file written by [`scimlx.save`][].

    **Arguments:**

    - `path`: the file.
    - `like`: how to build a template with the right structure, shapes and dtypes:
        - a pytree (e.g. a freshly initialised model), used as is;
        - a callable, called as `like(**hyperparameters)`;
        - `None`: the class recorded in the header is imported and called as
          `cls(**hyperparameters, key=jax.random.key(0))` (without `key` when the class
          takes none). Only classes of scimlx
          itself are imported this way, and those named by `allow`: importing a
          module runs its code, so a file from an untrusted source must not choose it.
    - `allow`: with `like=None`, further classes (the class objects, or module names
      as strings, which allow every class of that module and its submodules) that the
      file may name.

    Temporary files that an interrupted save to `path` left behind are removed first.

    **Returns:**

    The saved pytree.

    **Raises:**

    `CheckpointError` (a `ValueError`) if the file is not a scimlx file, has another
    format version, is truncated or corrupted, does not match the template, or (with
    `like=None`) names a class that is neither in scimlx nor in `allow`.
    """
    clean_orphans(path)
    header, payload = _split(path)
    if like is None:
        template = _template_from_class(header, os.fspath(path), allow)
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
