"""Fetch MovieLens (or read a user's file) and normalise it to one interactions table.

The raw table has the columns ``user_id, item_id, rating, timestamp`` (rating may be
NaN for a user's file). Archives are verified by checksum before anything is read;
verified archives are kept in a cache folder so that a rerun of the stage does not
download them again.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import os
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
from pydantic import field_validator
from tqdm import tqdm

from genrec.errors import UserError
from genrec.params import Section

COLUMNS = ["user_id", "item_id", "rating", "timestamp"]
GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens"


@dataclass(frozen=True)
class GroupLensArchive:
    file: str  # e.g. ml-1m.zip
    md5: str
    member: str


@dataclass(frozen=True)
class RecboleWheel:
    version: str
    sha256: str
    member: str
    member_sha256: str

    @property
    def file(self) -> str:
        return f"recbole-{self.version}-py3-none-any.whl"


ML_100K = RecboleWheel(
    version="1.2.1",
    sha256="9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407",
    member="recbole/dataset_example/ml-100k/ml-100k.inter",
    member_sha256="4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
)
ML_1M = GroupLensArchive("ml-1m.zip", "c4d9eecfca2ab87c1945afe126590906", "ml-1m/ratings.dat")
ML_20M = GroupLensArchive("ml-20m.zip", "cd245b17a1ae2cc31bb14903e1204af3", "ml-20m/ratings.csv")
DATASETS = {"ml-100k": ML_100K, "ml-1m": ML_1M, "ml-20m": ML_20M}


def cache_dir() -> Path:
    """Where verified archives are kept: ``$GENREC_CACHE_DIR`` or ``~/.cache/genrec``."""
    value = os.environ.get("GENREC_CACHE_DIR")
    if value is None:
        return Path.home() / ".cache" / "genrec"
    if not value.strip():
        raise UserError("GENREC_CACHE_DIR is set but empty; unset it (the cache is then ~/.cache/genrec) "
                        "or set it to a folder")
    folder = Path(value)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"GENREC_CACHE_DIR is {folder}, which is a file, not a folder; "
                        "point it at a folder (it is created if missing)")
    return folder


def cached(dest: Path, algorithm: str, expected: str) -> bool:
    """Whether ``dest`` holds a verified archive. A corrupt one is removed, and said so;
    something other than a file there is a clear error."""
    if not dest.exists():
        return False
    if not dest.is_file():
        raise UserError(f"the cache entry {dest} is not a file (a folder?); remove it and rerun")
    if file_digest(dest, algorithm) == expected:
        return True
    print(f"cached {dest} fails its {algorithm} check; downloading it again", file=sys.stderr)
    dest.unlink()
    return False


def load(dataset: str, columns: dict[str, str] | None = None) -> pd.DataFrame:
    """The raw interactions of ``dataset``: a name from ``DATASETS`` or a file path, whose
    ``columns`` (``data.columns``) name the file's own columns."""
    if dataset in DATASETS:
        source = DATASETS[dataset]
        if isinstance(source, RecboleWheel):
            return read_recbole_wheel(fetch_recbole_wheel(source, cache_dir()), source)
        base = os.environ.get("GENREC_GROUPLENS_URL", GROUPLENS_URL)
        archive = fetch(f"{base.rstrip('/')}/{source.file}", cache_dir() / source.file, md5=source.md5)
        return read_grouplens(archive, source)
    if dataset.lower().endswith((".csv", ".parquet", ".pq")) or os.sep in dataset or "/" in dataset:
        return read_user_file(Path(dataset), columns)
    raise UserError(
        f"params.yaml: data.dataset is '{dataset}', which is neither a known dataset "
        f"({', '.join(DATASETS)}) nor a path to a .csv or .parquet file"
    )


# --- downloads -------------------------------------------------------------------------


def file_digest(path: Path, algorithm: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def fetch(url: str, dest: Path, md5: str) -> Path:
    """Download ``url`` to ``dest`` unless a verified copy is there; return ``dest``.

    The bytes go to a temporary file beside ``dest`` and are moved into place only
    once their md5 matches, so ``dest`` is never a partial or corrupt file.
    """
    if cached(dest, "md5", md5):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.md5()
        with os.fdopen(fd, "wb") as out:
            try:
                response = urllib.request.urlopen(url, timeout=60)
            except (urllib.error.URLError, OSError) as error:
                raise UserError(
                    f"could not download {url}: {error}. Check the network, or set "
                    f"GENREC_GROUPLENS_URL to a mirror that serves {dest.name}"
                ) from None
            try:
                with response, tqdm(
                    total=int(response.headers.get("Content-Length") or 0) or None,
                    unit="B", unit_scale=True, desc=dest.name, mininterval=1.0,
                ) as bar:
                    while chunk := response.read(1 << 20):
                        out.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as error:
                raise UserError(
                    f"the download of {url} broke off ({type(error).__name__}: {error}); "
                    "nothing was kept. Try again"
                ) from None
        if digest.hexdigest() != md5:
            raise UserError(
                f"checksum mismatch for {url}: md5 {digest.hexdigest()}, expected {md5}. "
                "The download is corrupt or not the official file; nothing was kept. Try again "
                "or check the mirror"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def fetch_recbole_wheel(source: RecboleWheel, folder: Path, pip_args: tuple[str, ...] = ()) -> Path:
    """Fetch the recbole wheel with pip (never installed) and verify its sha256."""
    dest = folder / source.file
    if cached(dest, "sha256", source.sha256):
        return dest
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".recbole.", dir=folder) as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--disable-pip-version-check", "-d", tmp, f"recbole=={source.version}", *pip_args]
        result = subprocess.run(command, stdout=sys.stderr, stderr=subprocess.PIPE, text=True)
        wheel = Path(tmp) / source.file
        if result.returncode != 0 or not wheel.exists():
            raise UserError(
                f"pip could not download recbole=={source.version}, which carries MovieLens-100K: "
                f"{result.stderr.strip()[-500:]} Check that pip reaches a package index"
            )
        digest = file_digest(wheel, "sha256")
        if digest != source.sha256:
            raise UserError(
                f"checksum mismatch for {source.file}: sha256 {digest}, expected {source.sha256}. "
                "The package index served another file; nothing was kept"
            )
        os.replace(wheel, dest)
    return dest


# --- archives --------------------------------------------------------------------------


def open_zip(path: Path) -> zipfile.ZipFile:
    """Open ``path`` as a zip, refusing archives with members that escape their folder."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise UserError(f"{path} is not a readable zip archive ({error}); delete it and rerun") from None
    for name in archive.namelist():
        parts = PurePosixPath(name.replace("\\", "/")).parts
        if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
            archive.close()
            raise UserError(
                f"{path} has a member '{name}' that would extract outside its folder; "
                "the archive is unsafe and was not used"
            )
    return archive


def read_member(archive: zipfile.ZipFile, member: str) -> bytes:
    try:
        return archive.read(member)
    except KeyError:
        raise UserError(f"{archive.filename} has no member '{member}'; it is not the expected archive") from None
    except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as error:
        raise UserError(f"{archive.filename} is truncated or corrupt ({error}); delete it and rerun") from None


def read_recbole_wheel(path: Path, source: RecboleWheel) -> pd.DataFrame:
    with open_zip(path) as archive:
        data = read_member(archive, source.member)
    if hashlib.sha256(data).hexdigest() != source.member_sha256:
        raise UserError(f"checksum mismatch for {source.member} inside {path}")
    frame = pd.read_csv(io.BytesIO(data), sep="\t", header=0, names=COLUMNS,
                        dtype={"user_id": np.int64, "item_id": np.int64})
    return _normalise(frame)


def read_grouplens(path: Path, source: GroupLensArchive) -> pd.DataFrame:
    with open_zip(path) as archive:
        data = read_member(archive, source.member)
    if source.member.endswith(".dat"):
        # '::' is not a single-character separator; swapping it lets the fast C parser run.
        frame = pd.read_csv(io.BytesIO(data.replace(b"::", b"\t")), sep="\t", header=None, names=COLUMNS)
    else:
        frame = pd.read_csv(io.BytesIO(data), header=0, names=COLUMNS)
    return _normalise(frame)


def _normalise(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "user_id": frame["user_id"].astype(np.int64),
        "item_id": frame["item_id"].astype(np.int64),
        "rating": frame["rating"].astype(np.float32),
        # Whole seconds as int64 (MovieLens); a file's fractional seconds stay float64 (seconds()).
        "timestamp": frame["timestamp"].to_numpy() if frame["timestamp"].dtype == np.float64
        else frame["timestamp"].astype(np.int64),
    })


# --- a user's own file ------------------------------------------------------------------


def experiment_copy_hint(path: Path) -> str:
    """Why a relative ``path`` is missing, when the stage runs in an experiment's copy of the repo.

    ``dvc exp run --queue`` and ``--temp`` run the stages in a temporary copy of the
    repository that holds the files in git and the stages' DVC-tracked data only (not a
    file ``dvc add``-ed on its own), and set ``DVC_ROOT`` to the user's own workspace,
    which is then not the working directory. Returns "" otherwise.
    """
    root = os.environ.get("DVC_ROOT")
    if path.is_absolute() or not root or Path(root).resolve() == Path.cwd().resolve():
        return ""
    where = "is in your workspace but " if (Path(root) / path).is_file() else ""
    # --copy-paths gets the top folder: DVC cannot copy a file into a folder the copy lacks.
    return (f"data.dataset file {path} {where}is not in this experiment's temporary copy of the repository "
            f"(dvc exp run --queue/--temp copy only the files in git); give an absolute path "
            f"(-S data.dataset={Path(root).resolve() / path}), copy it in "
            f"(dvc exp run --queue --copy-paths {path.parts[0]} ...), or commit it to git")


def read_user_file(path: Path, columns: dict[str, str] | None = None) -> pd.DataFrame:
    """Read a CSV or Parquet file with a user, an item and a timestamp column, named as in
    ``columns`` (``data.columns``; by default ``user_id, item_id, timestamp``); other columns
    but ``rating`` are ignored.

    Timestamps may be numbers (e.g. Unix seconds) or date-time strings; the latter become
    Unix seconds.
    """
    columns = columns or {name: name for name in COLUMNS_OF_A_FILE}
    label = f"data.dataset file {path}"
    if not path.is_file():
        raise UserError(experiment_copy_hint(path) or
                        f"{label} does not exist; give an existing .csv or .parquet path or ml-100k/ml-1m/ml-20m")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise UserError(f"{label} is empty; it needs a header and rows user_id,item_id,timestamp") from None
    except Exception as error:  # pandas/pyarrow raise many types for unreadable files
        raise UserError(f"{label} could not be read ({type(error).__name__}: {error})") from None
    def shown(key: str) -> str:  # the file's name for a column, and ours where they differ
        return columns[key] if columns[key] == key else f"{columns[key]} ({key})"

    missing = [key for key in COLUMNS_OF_A_FILE if columns[key] not in frame.columns]
    if missing:
        hint = "" if all(columns[key] == key for key in missing) else " (data.columns)"
        raise UserError(f"{label} lacks column(s) {', '.join(shown(key) for key in missing)}{hint}; it has "
                        f"{', '.join(map(str, frame.columns))}. Name your columns in params.yaml's data.columns, "
                        "such as user_id: user")
    rating = frame["rating"] if "rating" in frame.columns and "rating" not in columns.values() else None
    frame = pd.DataFrame({key: frame[columns[key]] for key in COLUMNS_OF_A_FILE})
    if frame.empty:
        raise UserError(f"{label} has no rows")
    for column in COLUMNS_OF_A_FILE:
        if frame[column].isna().any():
            row = int(np.flatnonzero(frame[column].isna().to_numpy())[0])
            raise UserError(f"{label} has an empty {shown(column)} in data row {row + 1}")
    for column in ("user_id", "item_id"):
        _check_ids(frame[column], shown(column), label)
    timestamps = _parse_timestamps(frame["timestamp"], label)
    rating = pd.Series(np.nan, index=frame.index) if rating is None else rating
    return pd.DataFrame({
        "user_id": frame["user_id"].to_numpy(),
        "item_id": frame["item_id"].to_numpy(),
        "rating": pd.to_numeric(rating, errors="coerce").astype(np.float32).to_numpy(),
        "timestamp": timestamps,
    })


def _check_ids(column: pd.Series, name: str, label: str) -> None:
    """Ids must be numbers or strings: lists, dicts or a mix of numbers and strings cannot
    be sorted and remapped (and would only fail after the raw table was written)."""
    if pd.api.types.is_bool_dtype(column):
        raise UserError(f"{label}: the {name} column holds true/false values; ids must be numbers or strings")
    if pd.api.types.is_numeric_dtype(column):
        return
    kind = pd.api.types.infer_dtype(column, skipna=False)
    if kind not in ("string", "integer", "floating"):
        bad = column.map(lambda v: not isinstance(v, str)).to_numpy(dtype=bool)
        row = int(np.flatnonzero(bad)[0]) if bad.any() else 0
        raise UserError(
            f"{label}: {name} {column.iloc[row]!r} in data row {row + 1} is a {type(column.iloc[row]).__name__}; "
            f"every {name} must be a number or a string, all of one kind"
        )


def _parse_timestamps(column: pd.Series, label: str) -> np.ndarray:
    if pd.api.types.is_bool_dtype(column):
        raise UserError(f"{label}: the timestamp column holds true/false values; use Unix seconds or ISO dates")
    if pd.api.types.is_numeric_dtype(column):
        return _seconds(column.to_numpy(), column, label)
    if pd.api.types.is_datetime64_any_dtype(column):
        if isinstance(column.dtype, pd.DatetimeTZDtype):
            column = column.dt.tz_convert(None)  # to UTC, then naive
        return _from_datetimes(column.astype("datetime64[us]"))
    numeric = pd.to_numeric(column, errors="coerce")
    if numeric.notna().all():
        return _seconds(numeric.to_numpy(), column, label)
    parsed = pd.to_datetime(column, errors="coerce", utc=True, format="mixed")
    bad = parsed.isna().to_numpy() & numeric.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise UserError(
            f"{label}: timestamp '{column.iloc[row]}' in data row {row + 1} is neither a number "
            "nor a date-time; use Unix seconds or ISO dates such as 2024-01-31T12:00:00"
        )
    if parsed.isna().any():
        row = int(np.flatnonzero(parsed.isna().to_numpy())[0])
        raise UserError(
            f"{label}: the timestamp column mixes numbers (e.g. '{column.iloc[row]}' in data row "
            f"{row + 1}) with date-times; use one format: Unix seconds or ISO dates"
        )
    return _from_datetimes(parsed.dt.tz_convert(None).astype("datetime64[us]"))


def _from_datetimes(column: pd.Series) -> np.ndarray:
    """Date-times as Unix seconds: int64 when all are whole seconds, else float64 (to the
    microsecond): a fraction of a second may be what orders two interactions."""
    microseconds = column.astype(np.int64).to_numpy()
    if (microseconds % 1_000_000 == 0).all():
        return microseconds // 1_000_000
    return microseconds / 1e6


def _seconds(values: np.ndarray, column: pd.Series, label: str) -> np.ndarray:
    """Numeric timestamps: int64 when every value is whole, else float64, so that fractions of a
    second keep the order they give (cutting them would leave ties in the file's order). A value
    int64 cannot hold (which numpy would silently turn into -2**63) or an infinite one is an error."""
    if values.dtype.kind == "f":
        bad = ~(np.abs(values) < 2.0**63)  # also catches inf
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise UserError(f"{label}: timestamp {column.iloc[row]} in data row {row + 1} is out of range; "
                            "use Unix seconds")
        if (values != np.trunc(values)).any():
            return values.astype(np.float64)
    return values.astype(np.int64)


COLUMNS_OF_A_FILE = ("user_id", "item_id", "timestamp")  # what a user's file must have, under any names


class DataParams(Section):
    dataset: str  # ml-100k, ml-1m, ml-20m, or a path to a .csv/.parquet file
    columns: dict[str, str]  # a user's file: the column that holds each of COLUMNS_OF_A_FILE

    @field_validator("columns")
    @classmethod
    def _one_column_each(cls, columns: dict[str, str]) -> dict[str, str]:
        if sorted(columns) != sorted(COLUMNS_OF_A_FILE):
            raise ValueError(f"data.columns must name your file's column for each of {', '.join(COLUMNS_OF_A_FILE)} "
                             f"(such as user_id: user), got keys {', '.join(map(str, columns)) or 'none'}")
        empty = [key for key, column in columns.items() if not column.strip()]
        if empty:
            raise ValueError(f"data.columns.{empty[0]} is empty; give the name of a column of your file")
        if len(set(columns.values())) < len(columns):
            raise ValueError(f"data.columns names one column for two keys: {columns}")
        return columns


# --- item titles ----------------------------------------------------------------------------

TITLE_COLUMNS = ["raw_item_id", "title"]
ML_100K_ITEMS = "recbole/dataset_example/ml-100k/ml-100k.item"  # item_id, movie_title, release_year, class
ML_100K_ITEMS_SHA256 = "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532"
GROUPLENS_TITLES = {"ml-1m.zip": "ml-1m/movies.dat", "ml-20m.zip": "ml-20m/movies.csv"}


def load_titles(dataset: str) -> pd.DataFrame:
    """``raw_item_id, title`` of the dataset's items (``Toy Story (1995)``); empty for a user's file.

    Reads the archive that ``load`` already fetched and verified (it is in the cache).
    """
    source = DATASETS.get(dataset)
    if isinstance(source, RecboleWheel):
        with open_zip(fetch_recbole_wheel(source, cache_dir())) as archive:
            data = read_member(archive, ML_100K_ITEMS)
        if hashlib.sha256(data).hexdigest() != ML_100K_ITEMS_SHA256:
            raise UserError(f"checksum mismatch for {ML_100K_ITEMS} inside {source.file}")
        frame = pd.read_csv(io.BytesIO(data), sep="\t", header=0, encoding="utf-8", keep_default_na=False)
        # recbole splits the ml-100k title from its year; put them back as MovieLens writes them.
        years = frame.iloc[:, 2].astype(str).map(lambda y: f" ({y})" if y else "")
        return _titles(frame.iloc[:, 0], frame.iloc[:, 1].astype(str) + years)
    if isinstance(source, GroupLensArchive):
        base = os.environ.get("GENREC_GROUPLENS_URL", GROUPLENS_URL)
        path = fetch(f"{base.rstrip('/')}/{source.file}", cache_dir() / source.file, md5=source.md5)
        member = GROUPLENS_TITLES[source.file]
        with open_zip(path) as archive:
            if member not in archive.namelist():
                # Titles only label the recommendations; the pipeline does not need them.
                print(f"warning: {path} has no {member}; recommendations will show ids only", file=sys.stderr)
                return _titles([], [])
            data = read_member(archive, member)
        if member.endswith(".dat"):  # MovieID::Title::Genres, Latin-1 as GroupLens ships it
            rows = [line.split("::") for line in data.decode("latin-1").splitlines() if line]
            return _titles([r[0] for r in rows], [r[1] for r in rows])
        frame = pd.read_csv(io.BytesIO(data), header=0, encoding="utf-8")  # movieId,title,genres
        return _titles(frame.iloc[:, 0], frame.iloc[:, 1])
    return _titles([], [])  # a user's own file has ids only


def _titles(ids, titles) -> pd.DataFrame:
    return pd.DataFrame({"raw_item_id": np.asarray(ids, dtype=np.int64), "title": pd.Series(titles, dtype=str)})
