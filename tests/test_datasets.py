"""genrec.datasets: GroupLens downloads, the recbole wheel, and a user's own file (docs/method.md §1)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import os
import socket
import struct
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from genrec import datasets
from genrec.datasets import GroupLensArchive, RecboleWheel
from genrec.errors import UserError

COLUMNS = ["user_id", "item_id", "rating", "timestamp"]

ML_1M_RATINGS = (
    "1::1193::5::978300760\n"
    "1::661::3::978302109\n"
    "2::1357::5::978298709\n"
    "10::3068::4::978299000\n"
)
ML_1M_EXPECTED = pd.DataFrame({
    "user_id": np.array([1, 1, 2, 10], dtype=np.int64),
    "item_id": np.array([1193, 661, 1357, 3068], dtype=np.int64),
    "rating": np.array([5.0, 3.0, 5.0, 4.0], dtype=np.float32),
    "timestamp": np.array([978300760, 978302109, 978298709, 978299000], dtype=np.int64),
})

ML_20M_RATINGS = (
    "userId,movieId,rating,timestamp\n"
    "1,2,3.5,1112486027\n"
    "1,29,3.5,1112484676\n"
    "7,32,4.0,1094785740\n"
    "138493,131262,0.5,1427749611\n"
)
ML_20M_EXPECTED = pd.DataFrame({
    "user_id": np.array([1, 1, 7, 138493], dtype=np.int64),
    "item_id": np.array([2, 29, 32, 131262], dtype=np.int64),
    "rating": np.array([3.5, 3.5, 4.0, 0.5], dtype=np.float32),
    "timestamp": np.array([1112486027, 1112484676, 1094785740, 1427749611], dtype=np.int64),
})


def make_zip(members: dict[str, str | bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buf.getvalue()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- a local HTTP server ----------------------------------------------------------------


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        super().do_GET()


class Server:
    def __init__(self, root: Path) -> None:
        self.root = root
        handler = functools.partial(_Handler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.requests = []
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def requests(self) -> list[str]:
        return self.httpd.requests

    def serve(self, name: str, data: bytes) -> str:
        (self.root / name).write_bytes(data)
        return f"{self.url}/{name}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server(tmp_path, monkeypatch):
    # Never route 127.0.0.1 through a proxy the environment may configure.
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    root = tmp_path / "www"
    root.mkdir()
    srv = Server(root)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("GENREC_CACHE_DIR", str(folder))
    return folder


def use_archive(monkeypatch, server: Server, name: str, source: GroupLensArchive) -> None:
    """Point ``datasets.load(name)`` at the local server, with ``source``'s md5."""
    monkeypatch.setenv("GENREC_GROUPLENS_URL", server.url + "/")
    monkeypatch.setitem(datasets.DATASETS, name, source)
    monkeypatch.setattr(datasets, {"ml-1m": "ML_1M", "ml-20m": "ML_20M"}[name], source)


def cache_files(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.rglob("*")) if cache.exists() else []


# --- GroupLens --------------------------------------------------------------------------


def test_fetch_and_read_ml_1m(server, tmp_path):
    data = make_zip({"ml-1m/README": "readme", "ml-1m/ratings.dat": ML_1M_RATINGS})
    url = server.serve("ml-1m.zip", data)
    dest = tmp_path / "cache" / "ml-1m.zip"
    assert datasets.fetch(url, dest, md5=md5(data)) == dest
    assert dest.read_bytes() == data
    assert cache_files(dest.parent) == ["ml-1m.zip"]  # no temporary sibling left
    source = GroupLensArchive("ml-1m.zip", md5(data), "ml-1m/ratings.dat")
    frame = datasets.read_grouplens(dest, source)
    pd.testing.assert_frame_equal(frame, ML_1M_EXPECTED)


def test_fetch_and_read_ml_20m(server, tmp_path):
    data = make_zip({"ml-20m/ratings.csv": ML_20M_RATINGS, "ml-20m/movies.csv": "movieId,title\n"})
    url = server.serve("ml-20m.zip", data)
    dest = tmp_path / "cache" / "ml-20m.zip"
    datasets.fetch(url, dest, md5=md5(data))
    source = GroupLensArchive("ml-20m.zip", md5(data), "ml-20m/ratings.csv")
    frame = datasets.read_grouplens(dest, source)
    pd.testing.assert_frame_equal(frame, ML_20M_EXPECTED)


def test_load_ml_1m_via_env(server, cache, monkeypatch):
    data = make_zip({"ml-1m/ratings.dat": ML_1M_RATINGS})
    server.serve("ml-1m.zip", data)
    use_archive(monkeypatch, server, "ml-1m", GroupLensArchive("ml-1m.zip", md5(data), "ml-1m/ratings.dat"))
    frame = datasets.load("ml-1m")
    assert list(frame.columns) == COLUMNS
    pd.testing.assert_frame_equal(frame, ML_1M_EXPECTED)
    assert server.requests == ["/ml-1m.zip"]
    assert cache_files(cache) == ["ml-1m.zip"]


def test_load_ml_20m_via_env(server, cache, monkeypatch):
    data = make_zip({"ml-20m/ratings.csv": ML_20M_RATINGS})
    server.serve("ml-20m.zip", data)
    use_archive(monkeypatch, server, "ml-20m", GroupLensArchive("ml-20m.zip", md5(data), "ml-20m/ratings.csv"))
    pd.testing.assert_frame_equal(datasets.load("ml-20m"), ML_20M_EXPECTED)
    assert cache_files(cache) == ["ml-20m.zip"]


def test_cached_archive_is_reused(server, cache, monkeypatch):
    data = make_zip({"ml-1m/ratings.dat": ML_1M_RATINGS})
    server.serve("ml-1m.zip", data)
    use_archive(monkeypatch, server, "ml-1m", GroupLensArchive("ml-1m.zip", md5(data), "ml-1m/ratings.dat"))
    first = datasets.load("ml-1m")
    assert server.requests == ["/ml-1m.zip"]
    server.stop()  # a second download would now fail
    second = datasets.load("ml-1m")
    pd.testing.assert_frame_equal(first, second)
    assert server.requests == ["/ml-1m.zip"]


def test_corrupt_cached_archive_is_downloaded_again(server, cache, monkeypatch):
    data = make_zip({"ml-1m/ratings.dat": ML_1M_RATINGS})
    server.serve("ml-1m.zip", data)
    use_archive(monkeypatch, server, "ml-1m", GroupLensArchive("ml-1m.zip", md5(data), "ml-1m/ratings.dat"))
    cache.mkdir()
    (cache / "ml-1m.zip").write_bytes(data[:-10])
    pd.testing.assert_frame_equal(datasets.load("ml-1m"), ML_1M_EXPECTED)
    assert server.requests == ["/ml-1m.zip"]
    assert (cache / "ml-1m.zip").read_bytes() == data


def test_wrong_checksum_leaves_nothing(server, cache, monkeypatch):
    data = make_zip({"ml-1m/ratings.dat": ML_1M_RATINGS})
    server.serve("ml-1m.zip", data)
    use_archive(monkeypatch, server, "ml-1m", GroupLensArchive("ml-1m.zip", "0" * 32, "ml-1m/ratings.dat"))
    with pytest.raises(UserError, match="checksum"):
        datasets.load("ml-1m")
    assert cache_files(cache) == []  # neither the .partial file nor ml-1m.zip


def test_fetch_wrong_checksum_direct(server, tmp_path):
    url = server.serve("ml-20m.zip", b"not what was expected")
    dest = tmp_path / "c" / "ml-20m.zip"
    with pytest.raises(UserError, match="checksum"):
        datasets.fetch(url, dest, md5=md5(b"something else"))
    assert not dest.exists()
    assert cache_files(dest.parent) == []


def test_missing_file_on_server(server, cache, monkeypatch):
    use_archive(monkeypatch, server, "ml-1m", GroupLensArchive("ml-1m.zip", "0" * 32, "ml-1m/ratings.dat"))
    with pytest.raises(UserError, match="could not download"):
        datasets.load("ml-1m")
    assert cache_files(cache) == []


def test_connection_reset_mid_download(tmp_path, monkeypatch):
    class Reset(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "10000000")
            self.end_headers()
            self.wfile.write(b"x" * 1000)
            self.wfile.flush()
            time.sleep(0.2)
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True

        def log_message(self, *args):
            pass

    monkeypatch.setenv("no_proxy", "127.0.0.1")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Reset)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    dest = tmp_path / "c" / "ml-1m.zip"
    try:
        with pytest.raises(UserError):
            datasets.fetch(f"http://127.0.0.1:{httpd.server_address[1]}/ml-1m.zip", dest, md5="0" * 32)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
        assert cache_files(dest.parent) == []


@pytest.mark.parametrize("kind", ["truncated", "not_a_zip"])
def test_broken_archive_passing_md5(server, cache, monkeypatch, kind):
    good = make_zip({"ml-1m/ratings.dat": ML_1M_RATINGS * 20})
    data = good[: len(good) // 2] if kind == "truncated" else b"<html>Not Found</html>\n"
    server.serve("ml-1m.zip", data)
    use_archive(monkeypatch, server, "ml-1m", GroupLensArchive("ml-1m.zip", md5(data), "ml-1m/ratings.dat"))
    with pytest.raises(UserError, match="zip"):
        datasets.load("ml-1m")


def test_corrupt_member_data(tmp_path):
    good = bytearray(make_zip({"ml-1m/ratings.dat": "".join(f"{u}::{i}::3::{u * i}\n"
                                                            for u in range(50) for i in range(50))}))
    for k in range(60, 200):  # inside the deflated data; the central directory stays intact
        good[k] ^= 0xFF
    path = tmp_path / "ml-1m.zip"
    path.write_bytes(bytes(good))
    with pytest.raises(UserError):
        datasets.read_grouplens(path, GroupLensArchive("ml-1m.zip", md5(bytes(good)), "ml-1m/ratings.dat"))


@pytest.mark.parametrize("evil", ["../evil.txt", "ml-1m/../../evil.txt", "/etc/evil.txt", "C:/evil.txt"])
def test_member_outside_folder(server, cache, monkeypatch, evil):
    data = make_zip({"ml-1m/ratings.dat": ML_1M_RATINGS, evil: "gotcha"})
    server.serve("ml-1m.zip", data)
    use_archive(monkeypatch, server, "ml-1m", GroupLensArchive("ml-1m.zip", md5(data), "ml-1m/ratings.dat"))
    with pytest.raises(UserError, match="outside"):
        datasets.load("ml-1m")
    assert not (cache.parent / "evil.txt").exists()


def test_missing_member(server, cache, monkeypatch):
    data = make_zip({"ml-1m/movies.dat": "1::Toy Story (1995)::Animation\n"})
    server.serve("ml-1m.zip", data)
    use_archive(monkeypatch, server, "ml-1m", GroupLensArchive("ml-1m.zip", md5(data), "ml-1m/ratings.dat"))
    with pytest.raises(UserError, match="ml-1m/ratings.dat"):
        datasets.load("ml-1m")


# --- ml-100k from the recbole wheel -----------------------------------------------------

INTER = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    "196\t242\t3\t881250949\n"
    "186\t302\t3\t891717742\n"
    "22\t377\t1\t878887116\n"
)
INTER_EXPECTED = pd.DataFrame({
    "user_id": np.array([196, 186, 22], dtype=np.int64),
    "item_id": np.array([242, 302, 377], dtype=np.int64),
    "rating": np.array([3.0, 3.0, 1.0], dtype=np.float32),
    "timestamp": np.array([881250949, 891717742, 878887116], dtype=np.int64),
})
MEMBER = "recbole/dataset_example/ml-100k/ml-100k.inter"


def make_wheel(folder: Path, inter: str = INTER) -> tuple[Path, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    data = make_zip({
        MEMBER: inter,
        "recbole/__init__.py": "",
        "recbole-1.2.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: recbole\nVersion: 1.2.1\n",
        "recbole-1.2.1.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        "recbole-1.2.1.dist-info/RECORD": "",
    })
    path = folder / "recbole-1.2.1-py3-none-any.whl"
    path.write_bytes(data)
    return path, data


@pytest.fixture
def isolated_pip(monkeypatch):
    """pip sees only the --find-links folder a test gives it (no config, no extra links)."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    for var in ("PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_CONSTRAINT"):
        monkeypatch.delenv(var, raising=False)


def test_recbole_wheel(tmp_path, isolated_pip):
    wheel_dir = tmp_path / "wheels"
    _, data = make_wheel(wheel_dir)
    source = RecboleWheel("1.2.1", sha256(data), MEMBER, sha256(INTER.encode()))
    cache = tmp_path / "cache"
    pip_args = ("--no-index", "--find-links", str(wheel_dir))
    path = datasets.fetch_recbole_wheel(source, cache, pip_args=pip_args)
    assert path == cache / "recbole-1.2.1-py3-none-any.whl"
    assert path.read_bytes() == data
    assert cache_files(cache) == ["recbole-1.2.1-py3-none-any.whl"]  # no temp folder left
    frame = datasets.read_recbole_wheel(path, source)
    assert list(frame.columns) == COLUMNS
    pd.testing.assert_frame_equal(frame, INTER_EXPECTED)

    # A verified wheel in the cache is reused without calling pip (an empty index would fail).
    (wheel_dir / path.name).unlink()
    assert datasets.fetch_recbole_wheel(source, cache, pip_args=pip_args) == path


def test_recbole_wheel_sha_mismatch(tmp_path, isolated_pip):
    wheel_dir = tmp_path / "wheels"
    make_wheel(wheel_dir)
    source = RecboleWheel("1.2.1", "0" * 64, MEMBER, sha256(INTER.encode()))
    cache = tmp_path / "cache"
    with pytest.raises(UserError, match="checksum"):
        datasets.fetch_recbole_wheel(source, cache, pip_args=("--no-index", "--find-links", str(wheel_dir)))
    assert cache_files(cache) == []


def test_recbole_wheel_not_found(tmp_path, isolated_pip):
    empty = tmp_path / "empty"
    empty.mkdir()
    source = RecboleWheel("1.2.1", "0" * 64, MEMBER, "0" * 64)
    with pytest.raises(UserError, match="pip could not download"):
        datasets.fetch_recbole_wheel(source, tmp_path / "cache", pip_args=("--no-index", "--find-links", str(empty)))
    assert cache_files(tmp_path / "cache") == []


def test_recbole_member_sha_mismatch(tmp_path):
    path, data = make_wheel(tmp_path)
    source = RecboleWheel("1.2.1", sha256(data), MEMBER, "0" * 64)
    with pytest.raises(UserError, match="checksum"):
        datasets.read_recbole_wheel(path, source)


# --- a user's own file ------------------------------------------------------------------


def test_user_csv(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text(
        "user_id,item_id,timestamp,rating,comment\n"
        "7,70,1700000000,4,great\n"
        "3,30,1700000100,,meh\n"
        "7,71,1600000000,2.5,\n"
    )
    frame = datasets.load(str(path))
    assert list(frame.columns) == COLUMNS
    assert frame["user_id"].tolist() == [7, 3, 7]
    assert frame["item_id"].tolist() == [70, 30, 71]
    assert frame["timestamp"].tolist() == [1700000000, 1700000100, 1600000000]
    assert frame["timestamp"].dtype == np.int64
    np.testing.assert_array_equal(frame["rating"].to_numpy(), np.array([4.0, np.nan, 2.5], dtype=np.float32))


def test_user_csv_iso_dates(tmp_path):
    path = tmp_path / "dates.csv"
    path.write_text(
        "extra,user_id,item_id,timestamp\n"
        "x,1,10,2024-01-01\n"
        "y,1,11,2024-01-02T12:00:00\n"
        "z,2,10,2024-01-01T01:00:00+01:00\n"
    )
    frame = datasets.load(str(path))
    assert list(frame.columns) == COLUMNS
    assert frame["timestamp"].tolist() == [1704067200, 1704196800, 1704067200]
    assert frame["rating"].isna().all()


def test_user_parquet(tmp_path):
    path = tmp_path / "mine.parquet"
    pd.DataFrame({
        "user_id": [5, 5, 9],
        "item_id": [50, 51, 50],
        "timestamp": pd.to_datetime(["2024-01-01T00:00:00", "2024-01-02T12:00:00", "1970-01-01T00:00:10"]),
        "ignored": ["a", "b", "c"],
    }).to_parquet(path, index=False)
    frame = datasets.load(str(path))
    assert list(frame.columns) == COLUMNS
    assert frame["user_id"].tolist() == [5, 5, 9]
    assert frame["item_id"].tolist() == [50, 51, 50]
    assert frame["timestamp"].tolist() == [1704067200, 1704196800, 10]


def test_user_parquet_string_dates_and_numbers(tmp_path):
    path = tmp_path / "mine.parquet"
    pd.DataFrame({"user_id": [1, 2], "item_id": [3, 4], "timestamp": ["2024-01-01", "2024-01-02"],
                  "rating": [1.0, 2.0]}).to_parquet(path, index=False)
    frame = datasets.load(str(path))
    assert frame["timestamp"].tolist() == [1704067200, 1704153600]
    assert frame["rating"].tolist() == [1.0, 2.0]


def test_user_parquet_timezone_aware(tmp_path):
    path = tmp_path / "tz.parquet"
    pd.DataFrame({
        "user_id": [1, 2],
        "item_id": [3, 4],
        "timestamp": pd.to_datetime(["2024-01-01T00:00:00Z", "2024-01-01T01:00:00+01:00"], utc=True),
    }).to_parquet(path, index=False)
    assert datasets.load(str(path))["timestamp"].tolist() == [1704067200, 1704067200]


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("empty.csv", "", "empty"),
        ("header.csv", "user_id,item_id,timestamp\n", "no rows"),
        ("nocol.csv", "user_id,item,timestamp\n1,2,3\n", "lacks column.*item_id"),
        ("when.csv", "user_id,item_id,timestamp\n1,2,2024-01-01\n1,3,yesterday\n", "'yesterday'.*row 2"),
        ("nouser.csv", "user_id,item_id,timestamp\n1,2,3\n,3,4\n", "empty user_id.*row 2"),
        ("noitem.csv", "user_id,item_id,timestamp\n1,2,3\n1,,4\n", "empty item_id.*row 2"),
        ("nots.csv", "user_id,item_id,timestamp\n1,2,\n", "empty timestamp.*row 1"),
    ],
)
def test_user_file_errors(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(UserError, match=match) as info:
        datasets.load(str(path))
    assert str(path) in str(info.value)


def test_user_file_bad_timestamp_among_numbers(tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_text("user_id,item_id,timestamp\n1,2,1700000000\n1,3,yesterday\n")
    with pytest.raises(UserError, match="'yesterday'.*row 2"):
        datasets.load(str(path))


def test_user_file_missing(tmp_path):
    path = tmp_path / "nope.csv"
    with pytest.raises(UserError, match="does not exist") as info:
        datasets.load(str(path))
    assert str(path) in str(info.value)


def test_user_parquet_empty_and_broken(tmp_path):
    empty = tmp_path / "empty.parquet"
    empty.write_bytes(b"")
    with pytest.raises(UserError, match="could not be read|empty"):
        datasets.load(str(empty))
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(UserError, match="could not be read"):
        datasets.load(str(broken))


def test_user_parquet_missing_column(tmp_path):
    path = tmp_path / "m.parquet"
    pd.DataFrame({"user_id": [1], "timestamp": [2]}).to_parquet(path, index=False)
    with pytest.raises(UserError, match="item_id"):
        datasets.load(str(path))


@pytest.mark.parametrize("name", ["ml-10m", "movielens", "ML-1M", ""])
def test_unknown_dataset(name, cache):
    with pytest.raises(UserError, match="data.dataset"):
        datasets.load(name)
    assert cache_files(cache) == []


# --- item titles --------------------------------------------------------------------------

@pytest.mark.parametrize("name, ratings, member, movies, expected", [
    ("ml-1m", ("ml-1m/ratings.dat", ML_1M_RATINGS), "ml-1m/movies.dat",  # Latin-1, '::'-separated
     "1::Toy Story (1995)::Animation|Children's\n2::Misérables, Les (1995)::Drama\n".encode("latin-1"),
     {1: "Toy Story (1995)", 2: "Misérables, Les (1995)"}),
    ("ml-20m", ("ml-20m/ratings.csv", ML_20M_RATINGS), "ml-20m/movies.csv",  # UTF-8 CSV, quoted titles
     'movieId,title,genres\n1,Toy Story (1995),Comedy\n11,"American President, The (1995)",Drama\n',
     {1: "Toy Story (1995)", 11: "American President, The (1995)"}),
])
def test_titles_grouplens(server, cache, monkeypatch, name, ratings, member, movies, expected):
    data = make_zip({ratings[0]: ratings[1], member: movies})
    server.serve(f"{name}.zip", data)
    use_archive(monkeypatch, server, name, GroupLensArchive(f"{name}.zip", md5(data), ratings[0]))
    titles = datasets.load_titles(name)
    assert dict(zip(titles["raw_item_id"], titles["title"])) == expected
    assert titles["raw_item_id"].dtype == np.int64


def test_titles_missing_from_the_archive_are_a_warning(server, cache, monkeypatch, capsys):
    data = make_zip({"ml-1m/ratings.dat": ML_1M_RATINGS})
    server.serve("ml-1m.zip", data)
    use_archive(monkeypatch, server, "ml-1m", GroupLensArchive("ml-1m.zip", md5(data), "ml-1m/ratings.dat"))
    titles = datasets.load_titles("ml-1m")
    assert list(titles.columns) == ["raw_item_id", "title"] and titles.empty
    assert "ml-1m/movies.dat" in capsys.readouterr().err


def test_titles_ml_100k_from_the_cached_wheel(tmp_path, cache, monkeypatch):
    item = ("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
            "1\tToy Story\t1995\tAnimation Children's Comedy\n"
            "1005\tDouble vie de Véronique, La\t1991\tDrama\n"
            "267\tunknown\t\tunknown\n")
    path, data = make_wheel(cache)
    with zipfile.ZipFile(path, "a") as wheel:
        wheel.writestr(datasets.ML_100K_ITEMS, item)
    source = RecboleWheel("1.2.1", sha256(path.read_bytes()), MEMBER, sha256(INTER.encode()))
    monkeypatch.setitem(datasets.DATASETS, "ml-100k", source)
    monkeypatch.setattr(datasets, "ML_100K_ITEMS_SHA256", sha256(item.encode()))
    titles = datasets.load_titles("ml-100k")  # the verified wheel in the cache: no pip
    assert titles["raw_item_id"].tolist() == [1, 1005, 267]
    assert titles["title"].tolist() == ["Toy Story (1995)", "Double vie de Véronique, La (1991)", "unknown"]
    monkeypatch.setattr(datasets, "ML_100K_ITEMS_SHA256", "0" * 64)
    with pytest.raises(UserError, match="ml-100k.item"):
        datasets.load_titles("ml-100k")


def test_titles_of_a_users_file_are_empty(tmp_path):
    titles = datasets.load_titles(str(tmp_path / "mine.csv"))
    assert list(titles.columns) == ["raw_item_id", "title"] and titles.empty


# --- issue 10: cache paths, corrupt cached wheel, ids and timestamps ----------------------

def test_cache_dir_that_is_a_file_or_empty(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("GENREC_CACHE_DIR", str(tmp_path / "file"))
    with pytest.raises(UserError, match="GENREC_CACHE_DIR .* is a file"):
        datasets.load("ml-100k")
    monkeypatch.setenv("GENREC_CACHE_DIR", "")
    with pytest.raises(UserError, match="GENREC_CACHE_DIR is set but empty"):
        datasets.load("ml-1m")
    monkeypatch.delenv("GENREC_CACHE_DIR")
    assert datasets.cache_dir() == Path.home() / ".cache" / "genrec"


def test_cache_entry_that_is_a_folder(server, cache, monkeypatch):
    data = make_zip({"ml-1m/ratings.dat": ML_1M_RATINGS})
    use_archive(monkeypatch, server, "ml-1m", GroupLensArchive("ml-1m.zip", md5(data), "ml-1m/ratings.dat"))
    (cache / "ml-1m.zip").mkdir(parents=True)
    with pytest.raises(UserError, match="cache entry .*ml-1m.zip is not a file"):
        datasets.load("ml-1m")
    assert server.requests == []


def test_corrupt_cached_wheel_is_fetched_again_and_said_so(tmp_path, isolated_pip, capfd):
    wheel_dir = tmp_path / "wheels"
    _, data = make_wheel(wheel_dir)
    source = RecboleWheel("1.2.1", sha256(data), MEMBER, sha256(INTER.encode()))
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / source.file).write_bytes(data[:-10])
    path = datasets.fetch_recbole_wheel(source, cache, pip_args=("--no-index", "--find-links", str(wheel_dir)))
    assert path.read_bytes() == data
    assert "fails its sha256 check; downloading it again" in capfd.readouterr().err


def test_user_file_list_ids_are_refused_before_anything_is_written(tmp_path):
    path = tmp_path / "lists.parquet"
    pd.DataFrame({"user_id": [[1, 2], [3]], "item_id": [1, 2], "timestamp": [1, 2]}).to_parquet(path)
    with pytest.raises(UserError, match=r"user_id .* in data row 1 is a ndarray; every user_id must be a number"):
        datasets.read_user_file(path)


@pytest.mark.parametrize("timestamps", [[1e20, 2.0], ["1e30", "2"], [float("inf"), 2.0]])
def test_user_file_overflowing_timestamps_are_refused(tmp_path, timestamps):
    # numpy turns 1e20 into -2**63 without a word: before issue 10 such rows were kept.
    path = tmp_path / "big.parquet"
    pd.DataFrame({"user_id": [1, 2], "item_id": [1, 2], "timestamp": timestamps}).to_parquet(path)
    with pytest.raises(UserError, match="timestamp .* in data row 1 is out of range"):
        datasets.read_user_file(path)


MINE = {"user_id": "user", "item_id": "item", "timestamp": "time"}


def test_a_file_with_its_own_column_names(tmp_path):
    """Issue 24: `user,item,time` once had to be renamed by hand; data.columns names them."""
    path = tmp_path / "mine.csv"
    pd.DataFrame({"user": ["a", "a", "b"], "item": [3, 4, 3], "time": [10, 20, 30], "rating": [5, 4, 3],
                  "user_id": ["ignored"] * 3}).to_csv(path, index=False)
    raw = datasets.read_user_file(path, MINE)
    assert list(raw.columns) == datasets.COLUMNS
    assert raw["user_id"].tolist() == ["a", "a", "b"] and raw["timestamp"].tolist() == [10, 20, 30]
    assert raw["rating"].tolist() == [5.0, 4.0, 3.0]
    with pytest.raises(UserError, match=r"lacks column\(s\) user_id, item_id, timestamp; it has user, item, time.*"
                                        r"Name your columns in params.yaml's data.columns, such as user_id: user"):
        datasets.read_user_file(_write(tmp_path, "time"))  # no data.columns: our names
    with pytest.raises(UserError, match=r"lacks column\(s\) time \(timestamp\) \(data.columns\); it has user, item"):
        datasets.read_user_file(_write(tmp_path, "when"), MINE)
    pd.DataFrame({"user": ["a", None], "item": [3, 4], "time": [1, 2]}).to_csv(path, index=False)
    with pytest.raises(UserError, match=r"has an empty user \(user_id\) in data row 2"):
        datasets.read_user_file(path, MINE)


def _write(folder, time_column: str):
    path = folder / f"{time_column}.csv"
    pd.DataFrame({"user": ["a"], "item": [3], time_column: [10]}).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("columns, words", [
    ({"user_id": "user", "item_id": "item"}, "data.columns must name your file's column for each of user_id, "
                                             "item_id, timestamp (such as user_id: user), got keys user_id, item_id"),
    ({**MINE, "rating": "stars"}, "got keys user_id, item_id, timestamp, rating"),
    ({**MINE, "item_id": "user"}, "data.columns names one column for two keys"),
    ({**MINE, "timestamp": " "}, "data.columns.timestamp is empty"),
    ("user", "data.columns must be a dict, got 'user'"),
])
def test_bad_columns_are_one_line(columns, words):
    from genrec import params
    with pytest.raises(UserError) as error:
        params.section({"data": {"dataset": "mine.csv", "columns": columns}}, "data", datasets.DataParams)
    assert words in str(error.value)
