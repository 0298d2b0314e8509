"""Path words resolved against cwd and $HOME without the disk, and which places are protected."""

from __future__ import annotations

import pytest

from shellfish.shell.places import expand_braces, matches_everything, protected, resolve


# Path resolution, without the disk.
@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("/./usr//lib/", "/usr/lib"),
        ("/usr/../", "/"),
        ("~/x/..", "/home/me"),
        ("${HOME:?}/", "/home/me"),
        ("$HOME/.*", "/home/me/.*"),
        ("../..", "/home"),
        ("$(pwd)/a", "/home/me/proj/a"),
        ("~bob", "/home/bob"),
        ("~+/*", "/home/me/proj/*"),
    ],
)
def test_resolve(word: str, expected: str) -> None:
    assert [str(p) for p in resolve(word, "/home/me/proj", "/home/me")] == [expected]


def test_resolve_unknown_places_stay_symbolic() -> None:
    assert [str(p) for p in resolve("../x", None, None)] == ["./../x"]
    assert [str(p) for p in resolve("~/a/../..", None, None)] == ["~/.."]


def test_resolve_braces_and_empty_variables() -> None:
    assert [str(p) for p in resolve("/{usr,tmp}", None, None)] == ["/usr", "/tmp"]
    readings = resolve('"$DIR"/', None, None)
    assert [(str(p), p.maybe_empty) for p in readings] == [("./$?", False), ("/", True)]
    assert len(resolve("${DIR:?}/", None, None)) == 1  # the shell stops when DIR is empty


@pytest.mark.parametrize(
    ("word", "kind"),
    [
        ("/", "root"),
        ("/home/me", "home"),
        ("/home/me/*", "home"),
        ("/home", "home"),
        ("..", "home"),
        (".", "cwd"),
        ("/etc", "system"),
        ("/usr/lib", "system"),
        ("~/.ssh", "home"),
        ("/home/*", "home"),
    ],
)
def test_protected_places(word: str, kind: str) -> None:
    (path,) = resolve(word, "/home/me/proj", "/home/me")
    verdict = protected(path, "/home/me/proj", "/home/me")
    assert verdict is not None and verdict.kind == kind


@pytest.mark.parametrize(
    "word", ["./build", "/tmp", "/tmp/*", "/usr/local/go", "~/.cache", "*.log", "/data", "/path"]
)
def test_unprotected_places(word: str) -> None:
    (path,) = resolve(word, "/home/me/proj", "/home/me")
    assert protected(path, "/home/me/proj", "/home/me") is None


def test_brace_expansion() -> None:
    assert expand_braces("/{bin,lib{,64}}") == ["/bin", "/lib", "/lib64"]
    assert expand_braces("${HOME}/x") == ["${HOME}/x"]
    assert expand_braces("{1..3}") == ["{1..3}"]


@pytest.mark.parametrize(
    ("part", "everything"),
    [
        ("*", True),
        (".*", True),
        (".[!.]*", True),
        ("*.log", False),
        ("build*", False),
        ("x", False),
    ],
)
def test_globs_that_list_a_whole_directory(part: str, everything: bool) -> None:
    assert matches_everything(part) is everything
