"""Configuration: precedence, validation with file:line, and `shellfish config`."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from shellfish.cli import main
from shellfish.config import Settings, load_settings, set_config_value
from shellfish.environment import Environment

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from shellfish.errors import ConfigError


def write(tmp_path, text: str):
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_missing_file_gives_defaults(tmp_path):
    assert load_settings(tmp_path / "absent.toml", {}) == Settings()


def test_precedence_defaults_file_env_flags(tmp_path):
    path = write(
        tmp_path, '[remote]\nmodel = "from-file"\ntimeout_s = 5\n[history]\nenabled = false\n'
    )
    settings = load_settings(path, {"SHELLFISH_REMOTE_MODEL": "from-env"})
    assert settings.remote.model == "from-env"  # env beats file
    assert settings.remote.timeout_s == 5.0  # file beats default
    assert settings.history.enabled is False
    assert settings.remote.policy == "local"  # default
    flagged = settings.with_overrides({"remote.model": "from-flag", "remote.policy": None})
    assert flagged.remote.model == "from-flag" and flagged.remote.policy == "local"


def test_invalid_toml_names_file_and_line(tmp_path):
    path = write(tmp_path, '[remote]\npolicy = "auto"\nmodel = \n')
    with pytest.raises(ConfigError) as info:
        load_settings(path, {})
    assert str(info.value).startswith(f"{path}:3: invalid TOML")


def test_unknown_key_names_its_line_in_the_right_section(tmp_path):
    # `model` is valid in [remote]; the unknown one is the second `modle` in [engine].
    path = write(tmp_path, '[remote]\nmodel = "x"\n\n[engine]\nthreads = 2\nmodle = "y"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path, {})
    message = str(info.value)
    assert message.startswith(f"{path}:6: unknown key engine.modle")
    assert "known keys in [engine]" in message


def test_unknown_section(tmp_path):
    path = write(tmp_path, '[engine]\nthreads = 2\n\n[remot]\npolicy = "auto"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path, {})
    assert str(info.value).startswith(f"{path}:4: unknown section [remot]")


@pytest.mark.parametrize(
    ("text", "line", "expected"),
    [
        ('[engine]\nthreads = "four"\n', 2, "engine.threads must be int, not str"),
        ("[history]\nenabled = 3\n", 2, "history.enabled must be bool"),
        ("[remote]\n\ntimeout_s = true\n", 3, "remote.timeout_s must be float"),
        ('[remote]\npolicy = "sometimes"\n', 2, "must be one of local, remote, auto"),
        ("[remote]\nmax_retries = -1\n", 2, "remote.max_retries must be >= 0"),
        ('remote = "x"\n', 1, "remote must be a table"),
        ("remote.model = 5\n", 1, "remote.model must be str"),
    ],
)
def test_wrong_types_name_file_and_line(tmp_path, text, line, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(path, {})
    assert str(info.value).startswith(f"{path}:{line}: ")
    assert expected in str(info.value)


def test_bad_environment_value_names_the_variable(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_settings(None, {"SHELLFISH_ENGINE_THREADS": "many"})
    assert "SHELLFISH_ENGINE_THREADS" in str(info.value)
    assert load_settings(None, {"SHELLFISH_HISTORY_ENABLED": "off"}).history.enabled is False


def test_set_writes_validates_and_keeps_other_values(tmp_path):
    path = write(tmp_path, "# mine\n[engine]\nthreads = 3\n")
    assert set_config_value(path, "remote.policy", "auto") == "auto"
    assert set_config_value(path, "remote.timeout_s", "12.5") == 12.5
    assert set_config_value(path, "history.enabled", "false") is False
    settings = load_settings(path, {})
    assert settings.engine.threads == 3 and settings.remote.policy == "auto"
    assert settings.remote.timeout_s == 12.5 and settings.history.enabled is False


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("remote.policy", "always", "must be one of"),
        ("engine.threads", "2.5", "must be int"),
        ("remote.nope", "1", "unknown setting 'remote.nope'"),
        ("nosection", "1", "unknown setting"),
    ],
)
def test_set_rejects_bad_values_and_keeps_the_file(tmp_path, key, value, expected):
    path = write(tmp_path, "[engine]\nthreads = 3\n")
    before = path.read_text()
    with pytest.raises(ConfigError) as info:
        set_config_value(path, key, value)
    assert expected in str(info.value)
    assert path.read_text() == before


def test_set_refuses_to_rewrite_a_broken_file(tmp_path):
    path = write(tmp_path, "[engine\nthreads = 3\n")
    before = path.read_text()
    with pytest.raises(ConfigError) as info:
        set_config_value(path, "engine.threads", "2")
    assert f"{path}:1: invalid TOML" in str(info.value)
    assert path.read_text() == before


def _env(tmp_path, **extra) -> Environment:
    return Environment(
        stdin=io.StringIO(),
        stdout=io.StringIO(),
        stderr=io.StringIO(),
        environ={"SHELLFISH_HOME": str(tmp_path / "home"), **extra},
    )


def test_config_cli_path_set_show_get(tmp_path):
    env = _env(tmp_path)
    assert main(["config", "path"], env) == 0
    config_file = env.stdout.getvalue().strip()
    assert config_file == str(tmp_path / "home" / "config" / "config.toml")

    env = _env(tmp_path, SHELLFISH_REMOTE_MODEL="env-model")
    assert main(["config", "set", "remote.model", "file-model"], env) == 0
    assert "SHELLFISH_REMOTE_MODEL is set and overrides the file" in env.stderr.getvalue()
    assert 'model = "file-model"' in Path(config_file).read_text()

    env = _env(tmp_path)
    assert main(["config", "show"], env) == 0
    shown = tomllib.loads(env.stdout.getvalue())
    assert shown["remote"]["model"] == "file-model"
    assert shown == Settings().with_overrides({"remote.model": "file-model"}).to_dict()

    env = _env(tmp_path)
    assert main(["config", "get", "remote.model"], env) == 0
    assert env.stdout.getvalue() == "file-model\n"


def test_config_cli_errors(tmp_path):
    env = _env(tmp_path)
    assert main(["config", "set", "remote.policy", "sometimes"], env) == 2
    assert "must be one of local, remote, auto" in env.stderr.getvalue()

    env = _env(tmp_path)
    env.paths.config_file.parent.mkdir(parents=True, exist_ok=True)
    env.paths.config_file.write_text("[engine]\nthreads = 'x'\n")
    assert main(["config", "show"], env) == 2
    err = env.stderr.getvalue()
    assert f"{env.paths.config_file}:2: engine.threads must be int" in err
    assert "Traceback" not in err
    # config show itself shows the line and the defaults instead of a hint pointing back here.
    assert "  2 | threads = 'x'" in err and "config show" not in err
    assert tomllib.loads(env.stdout.getvalue()) == Settings().to_dict()

    env = _env(tmp_path)
    env.paths.config_file.write_text("[remote]\npolicy = \n")
    assert main(["config", "show", "--json"], env) == 2
    err = env.stderr.getvalue()
    assert f"{env.paths.config_file}:2: invalid TOML" in err and "  2 | policy = " in err
    assert "config show" not in err

    env = _env(tmp_path)
    assert main(["config", "get", "engine.nope"], env) == 2
