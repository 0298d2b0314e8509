"""`shellfish knowledge pull tldr` against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import functools
import http.server
import io
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from shellfish.cli import main
from shellfish.errors import ExitStatus
from shellfish.knowledge.tldr import parse_page, read_archive

PAGE = """# tar

> Archiving utility.

- [c]reate an archive and write it to a [f]ile:

`tar cf {{path/to/target.tar}} {{path/to/file1}}`

- E[x]tract an archive in a target directory:

`tar xf {{path/to/source.tar}} {{[-C|--directory]}} {{path/to/directory}}`
"""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A directory served over HTTP on 127.0.0.1 (an ephemeral port)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


def _small_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("pages/common/tar.md", PAGE)
        zf.writestr("pages/osx/pbcopy.md", "# pbcopy\n\n- Copy:\n\n`pbcopy < {{file}}`\n")
        zf.writestr("pages.de/common/tar.md", PAGE)  # translations are skipped
    return buf.getvalue()


def test_parse_page_resolves_placeholders() -> None:
    examples = parse_page(PAGE, "tar")
    assert [e.description for e in examples] == [
        "create an archive and write it to a file",
        "Extract an archive in a target directory",
    ]
    assert examples[1].command == "tar xf path/to/source.tar -C path/to/directory"


def test_placeholders_with_choices_take_the_first_not_a_pipe() -> None:
    page = """# tool

- Display help or version:

`tool --{{help|version}}`

- Turn it on or off:

`tool set {{on|off}} {{[-q|--quiet]}}`

- Pipe inside a placeholder stays a pipe:

`watch {{make | sed 10q}}`
"""
    assert [e.command for e in parse_page(page, "tool")] == [
        "tool --help",
        "tool set on -q",
        "watch make | sed 10q",
    ]


def test_pull_small_archive_and_build(served: tuple[str, Path], make_env, tmp_path: Path) -> None:
    url, root = served
    (root / "tldr.zip").write_bytes(_small_zip())
    env = make_env(PATH=str(tmp_path / "emptybin"))
    status = main(["knowledge", "pull", "tldr", "--url", f"{url}/tldr.zip"], env)
    assert status == ExitStatus.OK, env.stderr.getvalue()
    assert (
        "tldr 2" in env.stdout.getvalue()
    )  # the two common/ examples; osx and de skipped on Linux
    env2 = make_env(PATH=str(tmp_path / "emptybin"))
    assert main(["knowledge", "search", "--json", "extract", "archive", "directory"], env2) == 0
    assert '"tar xf path/to/source.tar -C path/to/directory"' in env2.stdout.getvalue()


def test_pull_failure_keeps_the_old_archive(
    served: tuple[str, Path], make_env, shellfish_home: Path
) -> None:
    url, root = served
    (root / "tldr.zip").write_bytes(_small_zip())
    (root / "notzip.zip").write_bytes(b"<html>not a zip</html>")
    env = make_env()
    assert main(["knowledge", "pull", "tldr", "--no-build", "--url", f"{url}/tldr.zip"], env) == 0
    saved = shellfish_home / "data" / "knowledge" / "tldr.zip"
    before = saved.read_bytes()
    for bad in (f"{url}/missing.zip", f"{url}/notzip.zip", "http://127.0.0.1:9/tldr.zip"):
        env = make_env()
        # A failed download exits as a failed `models pull` does (DownloadError: MODEL, 3).
        assert (
            main(["knowledge", "pull", "tldr", "--no-build", "--url", bad], env) == ExitStatus.MODEL
        )
        err = env.stderr.getvalue().strip().splitlines()
        assert len(err) == 2 and err[-1].startswith("shellfish: error: "), (
            err
        )  # one progress line, one error
        assert saved.read_bytes() == before


def test_pull_the_shared_tldr_archive(served: tuple[str, Path], tmp_path: Path, make_env) -> None:
    from conftest import shared_path

    archive = shared_path("tldr", "tldr-pages.zip")
    url, root = served
    (root / "tldr.zip").write_bytes(archive.read_bytes())
    env = make_env(SHELLFISH_TLDR_URL=f"{url}/tldr.zip")
    assert main(["knowledge", "pull", "tldr", "--no-build"], env) == 0
    examples = read_archive(Path(env.paths.knowledge / "tldr.zip"))
    assert len(examples) > 10000
    assert any(e.program == "tar" for e in examples)


def test_pull_from_a_local_file_or_file_url(make_env, shellfish_home: Path, tmp_path: Path) -> None:
    archive = tmp_path / "tldr-pages.zip"
    archive.write_bytes(_small_zip())
    saved = shellfish_home / "data" / "knowledge" / "tldr.zip"
    for source in (str(archive), archive.as_uri()):
        saved.unlink(missing_ok=True)
        env = make_env()
        status = main(["knowledge", "pull", "tldr", "--no-build", "--url", source], env)
        assert status == ExitStatus.OK, env.stderr.getvalue()
        assert saved.read_bytes() == archive.read_bytes()
    (tmp_path / "notzip.zip").write_bytes(b"plain text")
    for bad, message in (
        (tmp_path / "missing.zip", "does not exist"),
        (tmp_path / "notzip.zip", "not a zip"),
    ):
        env = make_env()
        status = main(["knowledge", "pull", "tldr", "--no-build", "--url", str(bad)], env)
        assert status == ExitStatus.ERROR
        assert message in env.stderr.getvalue()
        assert saved.read_bytes() == archive.read_bytes()  # the good copy survives
