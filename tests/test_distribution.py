"""Pretrained variants outside the wheel: one archive each, listed with its
sha256 in `index.json`, fetched on first use into a cache and verified.

The download path is exercised against a real HTTP server on 127.0.0.1,
with a good archive, a tampered one and no server at all.
"""
import functools
import http.server
import io
import json
import pathlib
import subprocess
import sys
import tarfile
import threading
import time

import numpy as np
import pytest

from tfladder import training, zoo
from tfladder.zoo import artifacts


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("dist") / "run"
    result = training.train("vae_mnist", workdir, data="mnist_offline", epochs=1,
                            batch_size=100, limit=300, verbose=0)
    return pathlib.Path(result.folder)


@pytest.fixture
def release(trained, tmp_path, monkeypatch):
    """A release of `vae_mnist` (the tiny model) served from tmp_path/www, with an
    installation whose package carries only index.json."""
    staged = tmp_path / "src" / "vae_mnist"
    import shutil
    shutil.copytree(trained, staged)
    www = tmp_path / "www"
    path, digest, size = artifacts.pack(staged, www)
    package = tmp_path / "package"
    package.mkdir()
    (package / "index.json").write_text(json.dumps(
        {"variants": {"vae_mnist": {"archive": path.name, "sha256": digest, "size": size}}}))
    monkeypatch.setattr(zoo, "zoo_root", lambda: package)
    monkeypatch.setenv(zoo.CACHE_ENV, str(tmp_path / "cache"))
    return www, path, digest


@pytest.fixture
def server(release, monkeypatch):
    www = release[0]
    handler = functools.partial(_QuietHandler, directory=str(www))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv(zoo.ZOO_URL_ENV, f"http://127.0.0.1:{httpd.server_address[1]}/")
    yield httpd
    httpd.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _cache_files(tmp_path):
    cache = tmp_path / "cache"
    return sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*")) if cache.exists() \
        else []


def test_pack_is_reproducible(trained, tmp_path):
    first = artifacts.pack(trained, tmp_path / "a")
    second = artifacts.pack(trained, tmp_path / "b")
    assert first[1] == second[1] and first[2] == second[2]


def test_pack_does_not_depend_on_the_process_or_the_temporary_name(trained, tmp_path):
    """The gzip header holds neither a file name nor a time: the bytes are the same
    from another process (whose temporary file has another name)."""
    path, digest, _ = artifacts.pack(trained, tmp_path / "a")
    header = path.read_bytes()[:10]
    assert header[3] & 0x08 == 0, "the gzip header names the temporary file (FNAME)"
    assert header[4:8] == b"\0\0\0\0"                      # MTIME 0
    code = ("import sys; from tfladder.zoo import artifacts; "
            "print(artifacts.pack(sys.argv[1], sys.argv[2])[1])")
    other = subprocess.run([sys.executable, "-c", code, str(trained), str(tmp_path / "b")],
                           capture_output=True, text=True, check=True).stdout.split()[-1]
    assert other == digest


def test_load_fetches_on_first_use_then_works_offline(server, release, trained, tmp_path):
    model = zoo.load("vae_mnist")
    folder = zoo.artifact_dir("vae_mnist")
    assert folder.parent == tmp_path / "cache" / "zoo"
    artifacts.verify(folder)
    server.shutdown()                            # offline from now on
    again = zoo.load("vae_mnist")
    x = np.zeros((2, 28, 28, 1), np.float32)
    np.testing.assert_array_equal(model.elbo(x, seed=0), again.elbo(x, seed=0))
    np.testing.assert_array_equal(again.elbo(x, seed=0), zoo.load(trained).elbo(x, seed=0))


def test_a_tampered_download_is_refused_and_nothing_is_cached(server, release, tmp_path):
    _, path, _ = release
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="sha256 .* but the index lists"):
        zoo.fetch("vae_mnist")
    assert _cache_files(tmp_path) in ([], ["zoo"])      # no folder, no partial download


def test_offline_without_a_cache_says_exactly_how_to_get_it(release, monkeypatch, tmp_path):
    monkeypatch.setenv(zoo.ZOO_URL_ENV, "http://127.0.0.1:9/")     # nothing listens there
    started = time.time()
    with pytest.raises(FileNotFoundError) as error:
        zoo.load("vae_mnist")
    assert time.time() - started < 30
    message = str(error.value)
    for needle in ("tfladder fetch vae_mnist", "--archive FILE", release[2],
                   "http://127.0.0.1:9/vae_mnist.tar.gz"):
        assert needle in message
    assert _cache_files(tmp_path) in ([], ["zoo"])


def test_a_downloaded_archive_installs_offline(release, monkeypatch, tmp_path):
    monkeypatch.setenv(zoo.ZOO_URL_ENV, "http://127.0.0.1:9/")
    folder = zoo.fetch("vae_mnist", archive=release[1])
    artifacts.verify(folder)
    assert zoo.artifact_dir("vae_mnist") == folder


def test_an_archive_with_a_link_is_refused(tmp_path):
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("SHA256SUMS")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tar.addfile(info)
        data = b"x"
        member = tarfile.TarInfo("config.json")
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    with pytest.raises(ValueError, match="refusing the entry 'SHA256SUMS'"):
        artifacts.unpack(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["evil.tar.gz"]
