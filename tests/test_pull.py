"""`pull` from a real hub-shaped HTTP server on 127.0.0.1 (tests/hubmirror.py)."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hubmirror import HubMirror

from shellfish.errors import DownloadError, HashMismatch, ModelError, ModelNotFound
from shellfish.paths import get_paths
from shellfish.store.install import pull
from shellfish.store.progress import RecordingProgress
from shellfish.store.store import DiskFull, Store

REPO = "test-org/tiny-model"
FILES = {
    "onnx/encoder_model.onnx": (os.urandom(300_000), True),
    "onnx/decoder_model_merged.onnx": (os.urandom(500_000), True),
    "config.json": (b'{"model_type": "t5", "is_encoder_decoder": true}', False),
    "tokenizer.json": (b'{"version": "1.0", "model": {}}' * 50, False),
}


def descriptor(pinned: dict[str, str] | None = None, extra_file: str = "") -> str:
    pinned = pinned or {}
    lines = [
        'name = "tiny-test"',
        'aliases = ["tiny"]',
        'family = "seq2seq"',
        'tasks = ["translate"]',
        'template = "flan"',
        "context_length = 512",
        "[generation]",
        "max_new_tokens = 16",
        "[[sources]]",
        'kind = "hf"',
        f'repo = "{REPO}"',
        'revision = "main"',
        'layout = "optimum-merged"',
        "files = [",
    ]
    for path in [*FILES, *([extra_file] if extra_file else [])]:
        sha = f', sha256 = "{pinned[path]}"' if path in pinned else ""
        lines.append(f'  {{ path = "{path}"{sha} }},')
    lines.append("]")
    return "\n".join(lines) + "\n"


@pytest.fixture()
def mirror():
    m = HubMirror()
    for path, (data, lfs) in FILES.items():
        m.add(REPO, path, data, lfs=lfs)
    m.start()
    yield m
    m.stop()


def make_env(tmp_path: Path, mirror: HubMirror, text: str | None = None) -> dict[str, str]:
    home = tmp_path / "home"
    (home / "config" / "models").mkdir(parents=True, exist_ok=True)
    (home / "config" / "models" / "tiny-test.toml").write_text(text or descriptor())
    return {"SHELLFISH_HOME": str(home), "HF_ENDPOINT": mirror.url, "PATH": os.environ["PATH"]}


def store_of(environ: dict[str, str]) -> Store:
    return Store(get_paths(environ))


def assert_nothing_installed(store: Store) -> None:
    assert store.installed() == []
    assert store.get("tiny-test") is None
    leftovers = [p.name for p in store.root.iterdir() if p.name.startswith((".staging", ".work"))]
    assert leftovers == []


def test_pull_installs_with_progress_and_verified_hashes(tmp_path, mirror):
    env = make_env(tmp_path, mirror)
    store = store_of(env)
    progress = RecordingProgress()
    model, changed = pull(store, "tiny", environ=env, progress=progress)
    assert changed and model.name == "tiny-test"
    for path, (data, _lfs) in FILES.items():
        flat = path.removeprefix("onnx/")  # installed flat, as the loader reads it
        assert (model.path / flat).read_bytes() == data
        assert model.manifest["files"][flat] == hashlib.sha256(data).hexdigest()
    # progress: one bar per file, advanced by exactly the file's size, then finished
    for path, (data, _lfs) in FILES.items():
        assert progress.amounts[f"download:{path}"] == len(data)
        assert ("done", f"download:{path}", len(data)) in progress.events
    assert model.manifest["source"]["commit"] == mirror.commit
    assert model.manifest["family"] == "seq2seq" and model.manifest["template"] == "flan"
    assert store.resolve("tiny").path == model.path
    assert not store.downloads_dir("tiny-test").exists()
    # idempotent: a second pull changes nothing and downloads nothing
    before = len(mirror.requests)
    _, changed = pull(store, "tiny-test", environ=env)
    assert not changed and len(mirror.requests) == before


def test_corrupted_byte_is_refused_and_nothing_installed(tmp_path, mirror):
    env = make_env(tmp_path, mirror)
    store = store_of(env)
    mirror.corrupt.add("onnx/decoder_model_merged.onnx")
    with pytest.raises(HashMismatch) as info:
        pull(store, "tiny-test", environ=env)
    assert "onnx/decoder_model_merged.onnx" in str(info.value)
    assert "nothing was installed" in str(info.value)
    assert_nothing_installed(store)
    # the corrupt partial download is not kept either
    assert not list(store.downloads_dir("tiny-test").rglob("*.part"))


def test_corrupted_small_git_file_is_refused_by_blob_id(tmp_path, mirror):
    env = make_env(tmp_path, mirror)
    store = store_of(env)
    mirror.corrupt.add("config.json")  # non-LFS: checked against the git blob id
    with pytest.raises(HashMismatch, match=r"git blob id"):
        pull(store, "tiny-test", environ=env)
    assert_nothing_installed(store)


def test_wrong_pinned_hash_is_refused(tmp_path, mirror):
    pinned = {"onnx/encoder_model.onnx": "0" * 64}
    env = make_env(tmp_path, mirror, descriptor(pinned))
    store = store_of(env)
    with pytest.raises(HashMismatch, match=r"pinned"):
        pull(store, "tiny-test", environ=env)
    assert_nothing_installed(store)


def test_right_pinned_hash_is_accepted(tmp_path, mirror):
    data = FILES["onnx/encoder_model.onnx"][0]
    env = make_env(
        tmp_path, mirror, descriptor({"onnx/encoder_model.onnx": hashlib.sha256(data).hexdigest()})
    )
    model, _ = pull(store_of(env), "tiny-test", environ=env)
    assert (model.path / "encoder_model.onnx").read_bytes() == data


def test_dropped_connection_resumes_with_range(tmp_path, mirror):
    env = make_env(tmp_path, mirror)
    mirror.drop_after["onnx/decoder_model_merged.onnx"] = 123_456
    model, _ = pull(store_of(env), "tiny-test", environ=env)
    data = FILES["onnx/decoder_model_merged.onnx"][0]
    assert (model.path / "decoder_model_merged.onnx").read_bytes() == data
    ranges = [r for _m, p, r in mirror.requests if p.endswith("decoder_model_merged.onnx") and r]
    assert ranges == ["bytes=123456-"]


def test_interrupted_pull_leaves_nothing_installed_and_next_pull_resumes(tmp_path, mirror):
    env = make_env(tmp_path, mirror)
    store = store_of(env)
    mirror.drop_after["onnx/decoder_model_merged.onnx"] = 200_000
    with pytest.raises(DownloadError, match=r"resume"):
        pull(store, "tiny-test", environ=env, hub_retries=0)
    assert_nothing_installed(store)
    part = store.downloads_dir("tiny-test") / "onnx/decoder_model_merged.onnx.part"
    assert part.stat().st_size == 200_000
    model, _ = pull(store, "tiny-test", environ=env)
    ranges = [r for _m, p, r in mirror.requests if p.endswith("decoder_model_merged.onnx") and r]
    assert ranges == ["bytes=200000-"]
    assert (model.path / "decoder_model_merged.onnx").read_bytes() == FILES[
        "onnx/decoder_model_merged.onnx"
    ][0]


def test_unknown_model_name(tmp_path, mirror):
    env = make_env(tmp_path, mirror)
    with pytest.raises(ModelNotFound, match=r"shellfish models list"):
        pull(store_of(env), "no-such-model", environ=env)


def test_missing_file_in_repo_and_404(tmp_path, mirror):
    env = make_env(tmp_path, mirror, descriptor(extra_file="onnx/not_there.onnx"))
    store = store_of(env)
    with pytest.raises(ModelError, match=r"has no file onnx/not_there.onnx"):
        pull(store, "tiny-test", environ=env)
    assert_nothing_installed(store)
    text = descriptor().replace(REPO, "test-org/absent")
    env = make_env(tmp_path, mirror, text)
    with pytest.raises(DownloadError, match=r"404"):
        pull(store_of(env), "tiny-test", environ=env)


def test_token_is_sent_and_401_is_explained(tmp_path, mirror):
    mirror.token = "s3cret"
    env = make_env(tmp_path, mirror)
    with pytest.raises(DownloadError, match=r"HF_TOKEN"):
        pull(store_of(env), "tiny-test", environ=env)
    env["HF_TOKEN"] = "s3cret"
    model, _ = pull(store_of(env), "tiny-test", environ=env)
    assert model.name == "tiny-test"


def test_unreachable_host(tmp_path, mirror):
    env = make_env(tmp_path, mirror)
    mirror.stop()
    with pytest.raises(DownloadError, match=r"cannot reach"):
        pull(store_of(env), "tiny-test", environ=env, hub_retries=0)
    assert_nothing_installed(store_of(env))


def test_disk_full_injected_at_write_layer(tmp_path, mirror):
    """ENOSPC injected into the download writer (always runs; see the tmpfs test below)."""
    env = make_env(tmp_path, mirror)
    store = store_of(env)

    class FullFile(io.BytesIO):
        def write(self, b):  # type: ignore[override]
            if self.tell() + len(b) > 100_000:
                raise OSError(errno.ENOSPC, "No space left on device")
            return super().write(b)

    with pytest.raises(DiskFull, match=r"no space left"):
        pull(store, "tiny-test", environ=env, hub_opener=lambda p, mode: FullFile())
    assert_nothing_installed(store)


def test_disk_full_on_a_real_small_tmpfs(tmp_path, mirror):
    """A real 1 MiB tmpfs as the store: the kernel answers ENOSPC (needs mount rights)."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        env = make_env(tmp_path, mirror)
        (mnt / "models").mkdir()
        # the store (and its downloads) on the 1 MiB tmpfs; the model needs ~0.8 MB x2 moves
        big = os.urandom(1_500_000)
        mirror.add(REPO, "onnx/decoder_model_merged.onnx", big)
        paths = get_paths(env)
        paths.data.mkdir(parents=True)
        os.symlink(mnt / "models", paths.models)
        store = Store(paths)
        with pytest.raises(DiskFull, match=r"no space left"):
            pull(store, "tiny-test", environ=env)
        assert_nothing_installed(store)
        assert not list((mnt / "models").rglob("*.part"))
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_cli_pull_list_info_rm(tmp_path, mirror, capsys):
    from shellfish.cli import main
    from shellfish.environment import Environment

    env_vars = make_env(tmp_path, mirror)
    env_vars["SHELLFISH_NO_PROGRESS"] = "1"
    out, err = io.StringIO(), io.StringIO()
    env = Environment(stdout=out, stderr=err, environ=env_vars)
    # The mirrored "model" is random bytes: the CLI's smoke load (the engine's loader) refuses
    # it with one clear line and nothing is installed.
    assert main(["models", "pull", "tiny"], env) == 3
    assert err.getvalue().startswith("shellfish: error: ") and err.getvalue().count("\n") == 1
    assert_nothing_installed(store_of(env_vars))
    # installed without the smoke load, the other commands work on it
    pull(store_of(env_vars), "tiny", environ=env_vars)
    out.truncate(0)
    assert main(["models", "list", "--json"], env) == 0
    import json

    rows = {r["name"]: r for r in json.loads(out.getvalue())["models"]}
    assert rows["tiny-test"]["installed"] and rows["tiny-test"]["size_on_disk"] > 800_000
    assert not rows["qwen2.5-coder-0.5b-instruct"]["installed"]
    out.seek(0)
    out.truncate(0)
    assert main(["models", "list"], env) == 0
    assert "tiny-test" in out.getvalue() and "flan-t5-small" in out.getvalue()
    assert main(["models", "verify", "tiny-test"], env) == 0
    # unknown name: one clear line, exit status MODEL
    err.truncate(0)
    err.seek(0)
    assert main(["models", "pull", "nope"], env) == 3
    assert err.getvalue().strip() == (
        "shellfish: error: unknown model 'nope' - `shellfish models list` shows the catalog"
    )
    assert main(["models", "rm", "tiny"], env) == 0
    assert store_of(env_vars).installed() == []
    assert main(["models", "rm", "tiny"], env) == 3


def test_shellfish_pull_in_subprocess_shows_progress(tmp_path, mirror):
    """The real CLI entry point; its stderr is a pipe, so progress comes as plain lines."""
    env = make_env(tmp_path, mirror)
    env["COLUMNS"] = "120"
    proc = subprocess.run(
        [sys.executable, "-m", "shellfish", "models", "pull", "tiny-test"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "download onnx/decoder_model_merged.onnx (500.0 kB) ...\n" in proc.stderr
    assert "download onnx/decoder_model_merged.onnx: done (500.0 kB in " in proc.stderr
    assert proc.stdout == ""
    # random bytes are no model: the smoke load refuses them after the verified download
    assert proc.returncode == 3 and "shellfish: error: cannot load" in proc.stderr
    assert_nothing_installed(store_of(env))
