"""Crash-safe checkpoints and run-directory files: atomic writes, loading, resume compatibility.

A checkpoint is written to a temporary file in the target's directory, flushed and fsync'ed, and
then moved over the old one with ``os.replace`` (atomic on POSIX and Windows), so a crash or a
full disk during a save leaves the previous checkpoint intact and never a partial file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch


def _fsync_dir(directory: Path) -> None:
    """Best-effort fsync of a directory so the rename itself is durable (POSIX only)."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_atomic(path: str | os.PathLike, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def save_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` ``obj`` to ``path`` atomically (temp file in the same dir, fsync, replace).

    Args:
        obj: anything ``torch.save`` accepts (state dicts, tensors, plain Python data).
        path: destination; parent directories are created.

    Returns:
        The destination path.
    """
    return _write_atomic(path, lambda f: torch.save(obj, f))


def write_text_atomic(text: str, path: str | os.PathLike) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return _write_atomic(path, lambda f: f.write(text.encode("utf-8")))


def write_json_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    text = json.dumps(obj, indent=2, sort_keys=True) + "\n"
    return _write_atomic(path, lambda f: f.write(text.encode()))


def write_jsonl_atomic(rows: Iterable[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Write ``rows`` as JSON lines (one object per line) to ``path`` atomically."""
    text = "".join(json.dumps(dict(r)) + "\n" for r in rows)
    return _write_atomic(path, lambda f: f.write(text.encode()))


def append_jsonl(row: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Append one JSON line to ``path`` and fsync it."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(dict(row)) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a JSON-lines file into a list of dicts (blank lines skipped)."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by ``save_atomic``.

    Uses ``torch.load(weights_only=True)``: checkpoints hold only tensors and plain Python data.

    Args:
        path: the checkpoint file.
        map_location: device for the tensors (default "cpu").

    Returns:
        The saved object.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no checkpoint at {path}; train first or point to a run directory "
                         f"that has checkpoint.pt")
    return torch.load(path, map_location=map_location, weights_only=True)


def _canonical(value: Any) -> Any:
    """JSON round-trip so tuples and lists (config.json vs dataclass) compare equal."""
    return json.loads(json.dumps(value))


def config_differences(saved_config: Mapping[str, Any], config: Mapping[str, Any],
                       ignore: Iterable[str] = ()) -> dict[str, tuple[Any, Any]]:
    """Keys whose values differ between two configs, as ``{key: (saved, new)}``."""
    ignore = set(ignore)
    keys = sorted((set(saved_config) | set(config)) - ignore)
    missing = object()
    diffs = {}
    for key in keys:
        old, new = saved_config.get(key, missing), config.get(key, missing)
        if old is missing or new is missing or _canonical(old) != _canonical(new):
            diffs[key] = (None if old is missing else old, None if new is missing else new)
    return diffs


def check_compatible(saved_config: Mapping[str, Any], config: Mapping[str, Any],
                     ignore: Iterable[str] = (),
                     run_dir: str | os.PathLike | None = None) -> None:
    """Refuse to resume a run whose configuration differs from the one it was started with.

    Args:
        saved_config: the config stored in the checkpoint.
        config: the config of the resuming call.
        ignore: keys allowed to differ (``config.RESUME_FREE_FIELDS`` for a run).
        run_dir: the run directory, named in the message.

    Raises:
        ValueError: "refusing to resume run in X: its config differs in {lr: 0.03 → 0.1}; ...".
    """
    diffs = config_differences(saved_config, config, ignore)
    if diffs:
        listed = ", ".join(f"{k}: {old!r} → {new!r}" for k, (old, new) in diffs.items())
        where = f" in {run_dir}" if run_dir is not None else ""
        raise ValueError(f"refusing to resume run{where}: its config differs in {{{listed}}}; "
                         f"use a new --out or the same options")
