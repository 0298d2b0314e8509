"""`shellfish doctor`: each problem is found, explained with a fix, and sets the exit status."""

from __future__ import annotations

import io
import json
import socket
import sys
from pathlib import Path

import pytest

from shellfish.cli import main
from shellfish.cli.doctor import FAIL, OK, WARN, check_zsh, run_checks
from shellfish.environment import Environment

sys.path.insert(0, str(Path(__file__).parent))
from openai_server import OpenAIServer


def make_env(tmp_path, **extra) -> Environment:
    home = tmp_path / "user"
    home.mkdir(exist_ok=True)
    environ = {"SHELLFISH_HOME": str(tmp_path / "sf"), "HOME": str(home), **extra}
    return Environment(
        stdin=io.StringIO(), stdout=io.StringIO(), stderr=io.StringIO(), environ=environ
    )


def by_name(checks):
    return {c.name: c for c in checks}


def test_fresh_install_reports_missing_models_and_exits_non_zero(tmp_path):
    env = make_env(tmp_path)
    status = main(["doctor"], env)
    out = env.stdout.getvalue()
    assert status == 1
    assert "[FAIL] models: no model installed" in out and "shellfish models pull" in out
    assert "[ok  ] onnxruntime:" in out and "CPUExecutionProvider" in out
    assert "[ok  ] remote: off (remote.policy = local" in out
    assert "1 problem found" in env.stderr.getvalue()


def test_invalid_config_is_reported_with_file_and_line(tmp_path):
    env = make_env(tmp_path)
    env.paths.config_file.parent.mkdir(parents=True)
    env.paths.config_file.write_text("[engine]\nthreads = 'four'\n")
    checks = by_name(run_checks(env))
    assert checks["config"].status == FAIL
    assert f"{env.paths.config_file}:2" in checks["config"].detail
    assert checks["onnxruntime"].status == OK  # the other checks still ran


def test_zsh_hook(tmp_path):
    env = make_env(tmp_path)
    rc = Path(env.environ["HOME"]) / ".zshrc"
    assert check_zsh(env, which=lambda name: None).status == WARN  # zsh missing
    assert "no " in check_zsh(env, which=lambda name: "/bin/zsh").detail  # no .zshrc
    rc.write_text('# eval "$(shellfish init zsh)"\n')
    missing = check_zsh(env, which=lambda name: "/bin/zsh")
    assert missing.status == WARN and 'eval "$(shellfish init zsh)"' in missing.fix
    rc.write_text('export PATH=~/bin:$PATH\neval "$(shellfish init zsh)"\n')
    assert check_zsh(env, which=lambda name: "/bin/zsh").status == OK


def test_stale_daemon_socket(tmp_path):
    env = make_env(tmp_path)
    env.paths.runtime.mkdir(parents=True)
    path = env.paths.socket
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()  # the file stays, nobody listens: a crashed daemon's leftover
    check = by_name(run_checks(env))["daemon"]
    assert check.status == WARN and "stale socket" in check.detail


def test_remote_reachable_and_unreachable(tmp_path):
    server = OpenAIServer().start()
    try:
        env = make_env(
            tmp_path,
            SHELLFISH_REMOTE_POLICY="auto",
            SHELLFISH_REMOTE_BASE_URL=server.base_url,
            OPENAI_API_KEY="sk-x",
        )
        check = by_name(run_checks(env, timeout_s=2))["remote"]
        assert check.status == OK and "answers" in check.detail
        assert [r.path for r in server.received] == ["/v1/models"]
    finally:
        server.stop()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = make_env(
        tmp_path,
        SHELLFISH_REMOTE_POLICY="auto",
        SHELLFISH_REMOTE_BASE_URL=f"http://127.0.0.1:{port}/v1",
    )
    check = by_name(run_checks(env, timeout_s=1))["remote"]
    assert check.status == FAIL and "cannot connect" in check.detail and check.fix


def test_remote_policy_without_endpoint(tmp_path):
    env = make_env(tmp_path, SHELLFISH_REMOTE_POLICY="remote")
    check = by_name(run_checks(env))["remote"]
    assert check.status == FAIL and "remote.base_url" in check.fix


def test_broken_history_log(tmp_path):
    env = make_env(tmp_path)
    env.paths.history_db.parent.mkdir(parents=True)
    env.paths.history_db.write_bytes(b"nope" * 500)
    check = by_name(run_checks(env))["history"]
    assert check.status == FAIL and "unreadable" in check.detail


@pytest.mark.parametrize("flag", ["--json"])
def test_json_output(tmp_path, flag):
    env = make_env(tmp_path)
    main(["doctor", flag], env)
    rows = json.loads(env.stdout.getvalue())
    assert {r["name"] for r in rows} >= {
        "config",
        "onnxruntime",
        "models",
        "daemon",
        "zsh",
        "history",
        "remote",
    }
    assert all(r["status"] in (OK, WARN, FAIL) for r in rows)
    assert all(r["fix"] for r in rows if r["status"] == FAIL)


def test_a_default_model_converted_before_its_descriptor_changed_is_a_warning(tmp_path):
    """An install from before the default got its prefill graph still runs; doctor says how to
    bring it up to date, and a current install is fine."""
    from test_store import fake_install

    from shellfish.config import ModelSettings
    from shellfish.store.store import Store

    env = make_env(tmp_path)
    store = Store(env.paths)
    model = fake_install(store, ModelSettings().default, ["suggest"])
    models = by_name(run_checks(env))["models"]
    assert models.status == OK, models.detail

    manifest_path = model.path / "shellfish-model.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["source"]["prefill_graph"]  # as installed by an earlier shellfish
    manifest_path.write_text(json.dumps(manifest))
    models = by_name(run_checks(env))["models"]
    assert models.status == WARN
    assert "prefill graph is missing" in models.fix and "shellfish setup" in models.fix
