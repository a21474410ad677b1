"""A stage's paths: its command line, its inputs checked, its outputs written atomically (a stage
that fails leaves no partial or corrupt files behind)."""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from genrec.errors import UserError


def stage_arguments(doc: str, **paths: str | None) -> argparse.ArgumentParser:
    """A stage's command line: an option ``--<key> PATH`` for each keyword, whose default is the
    path dvc.yaml passes (None: the stage derives it), so that the stage also runs by hand from
    the repository root. The stage adds its positional arguments and parses."""
    parser = argparse.ArgumentParser(description=doc)
    for key, default in paths.items():
        parser.add_argument(f"--{key}", default=default, type=Path, metavar="PATH")  # a str default goes through type too
    return parser


def check_output(path: str | os.PathLike, option: str, names: Iterable[str] | None = None) -> None:
    """Refuse, before any work, an output path whose writing would delete what the command did
    not write. ``names`` None: the output is a file, replaced if it exists, so ``path`` must not
    be a folder or anything but a file. ``names`` given: the output is a folder replaced whole,
    so an existing ``path`` must be a folder holding nothing but ``names`` (what the command
    writes into it: its own previous output). ``option`` names the path in the message."""
    path = Path(path)
    if not os.path.lexists(path):
        return
    if names is None:
        if path.is_dir():
            raise UserError(f"{option} {path} is a folder, but a file is written there: give the path of a file "
                            "(an existing file is replaced; a folder never is)")
        if not path.is_file():
            raise UserError(f"{option} {path} exists and is not a regular file: give the path of a file")
        return
    if not path.is_dir():
        raise UserError(f"{option} {path} is a file, but a folder is written there: give the path of a folder")
    foreign = sorted(entry.name for entry in path.iterdir() if entry.name not in set(names))
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise UserError(f"{option} {path} holds {shown}, which this command does not write, and the folder is "
                        "replaced whole: give a new or empty folder")


def check_folder(path: str | os.PathLike, option: str) -> None:
    """Refuse, before any work, a ``path`` that is not a folder where the command writes named
    files beside others' (``--metrics``); the files themselves go through ``check_output``."""
    if os.path.lexists(path) and not Path(path).is_dir():
        raise UserError(f"{option} {path} is a file, but files are written into it: give the path of a folder")


def remove_stale_temporaries(path: Path) -> None:
    """Remove the temporaries of ``path`` that a killed run left (SIGKILL, a power cut: no
    chance to clean up): ``.<name>.<pid>.<random>`` folders whose process has ended."""
    prefix = f".{path.name}."
    for entry in path.parent.glob(f"{glob.escape(prefix)}*"):
        pid = entry.name[len(prefix):].split(".")[0]
        if entry.is_dir() and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; move it into place only on success.

    Works for a file or a folder: the caller writes whichever it wants at the yielded path. An
    existing folder at ``path`` is replaced only by a folder, and only if every entry it holds
    is one the new folder has too (the command's own previous output); anything else is
    refused (``check_output`` says so before the work; this is the last guard).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    # The process id in the name tells a later run whether the writer is still alive.
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", dir=path.parent))
    tmp = tmp_dir / path.name
    try:
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"nothing was written for {path}")
        if os.path.lexists(path):
            check_output(path, str(path), [entry.name for entry in tmp.iterdir()] if tmp.is_dir() else None)
            if path.is_symlink() and tmp.is_dir():
                path.unlink()  # the link, not the folder it points to
            elif path.is_dir():
                shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


@contextlib.contextmanager
def atomic_paths(*paths: str | os.PathLike) -> Iterator[list[Path]]:
    """``atomic_path`` for a stage's outputs as one set: the caller writes every temporary,
    and only then are all moved into place, so a failure or Ctrl-C while writing leaves
    the previous set whole (never a new file beside old ones) and no temporaries."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(atomic_path(path)) for path in paths]


def json_text(data: dict) -> str:
    return json.dumps(data, indent=2, sort_keys=False) + "\n"


def write_json(path: str | os.PathLike, data: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json_text(data))


def write_parquet(path: str | os.PathLike, frame) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def read_table(path: str | os.PathLike, stage: str, columns: Iterable[str] = ()):
    """The Parquet (or .csv, .tsv) file ``path`` that ``stage`` writes, with at least ``columns``:
    a missing, damaged or incomplete file is one line naming it and the stage that writes it."""
    import pandas as pd  # here: the stages that never read a table do not pay for pandas

    require_input(path, stage)
    suffix = Path(path).suffix
    try:
        frame = pd.read_parquet(path) if suffix not in (".csv", ".tsv") else \
            pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
    except Exception as error:  # pyarrow and pandas raise many kinds for a damaged file
        raise UserError(f"{path} is damaged ({_reason(error)}): run `dvc repro -f {stage}` to write it again") from None
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise UserError(f"{path} lacks column(s) {', '.join(missing)}: run `dvc repro -f {stage}` to write it again")
    return frame


def read_json(path: str | os.PathLike, stage: str, keys: Iterable[str] = ()) -> dict:
    """The JSON object in ``path`` that ``stage`` writes, with at least ``keys``; anything else
    is one line naming the file and the stage that writes it."""
    require_input(path, stage)
    fix = f"run `dvc repro -f {stage}` to write it again"
    try:
        data = json.loads(Path(path).read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise UserError(f"{path} is not valid JSON ({_reason(error)}): {fix}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} holds a JSON {type(data).__name__}, not an object: {fix}")
    missing = [key for key in keys if key not in data]
    if missing:
        raise UserError(f"{path} lacks key(s) {', '.join(missing)}: {fix}")
    return data


def _reason(error: Exception) -> str:
    """The first line of an error's message, short enough for a one-line error."""
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return text if len(text) <= 120 else text[:117] + "..."


def require_input(path: str | os.PathLike, stage: str) -> str:
    """``path``, an output of ``stage``, if it exists: a stage script run before the stage that
    makes its input gets one clear line, not a traceback."""
    if not Path(path).exists():
        raise UserError(f"{path} not found: run `dvc repro {stage}` first, or pass the path of its output")
    return str(path)
