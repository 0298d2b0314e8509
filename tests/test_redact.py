"""Redaction: a table of secret shapes that must go and harmless look-alikes that must stay.

The same table drives the pure-zsh hot-path redaction in test_shell_zsh.py.
"""

from __future__ import annotations

import pytest

from shellfish.shell.redact import MASK, findings, redact, redact_obj

# Fake credentials assembled at runtime so secret scanners do not flag this file.
_GH = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
_AWS_ID = "AKIA" + "IOSFODNN7EXAMPLE"
_AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCY" + "EXAMPLEKEY"
_JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)

# (text, the secret part that must not survive)
SECRETS: list[tuple[str, str]] = [
    (f"aws configure set aws_access_key_id {_AWS_ID}", _AWS_ID),
    (f"export AWS_SECRET_ACCESS_KEY={_AWS_SECRET}", _AWS_SECRET),
    (f"git clone https://{_GH}@github.com/o/r.git", _GH),
    (
        "export GH_TOKEN=github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEF",
        "github_pat_11ABCDEFG",
    ),
    (
        "curl --header 'PRIVATE-TOKEN: glpat-" + "xY9zAbCdEfGhIjKlMnOp' https://gitlab.com/api",
        "glpat-xY9z",
    ),
    ("SLACK=xoxb-" + "123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx ./notify", "xoxb-1234"),
    (
        "curl -X POST https://hooks.slack.com/services/T000/B000/" + "XXXXXXXXXXXXXXXXXXXXXXXX",
        "XXXXXXXXXXXX",
    ),
    ("OPENAI_API_KEY=sk-" + "proj-Abc123Def456Ghi789Jkl012Mno345 python app.py", "Abc123Def456"),
    ("llm keys set openai sk-" + "Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0", "Zz9Yy8Xx7"),
    ("stripe login --api-key sk_live_" + "51HgQkLAbCdEfGhIjKlMnOpQr", "51HgQkLAbCd"),
    (
        "curl 'https://maps.googleapis.com/x?key=AIza" + "SyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q'",
        "SyA1b2C3d4",
    ),
    (f"curl -H 'Authorization: Bearer {_JWT}' https://api.example.com", "SflKxwRJSMeKKF2QT4"),
    ("curl -H 'Authorization: Basic dXNlcjpodW50ZXIy' http://x", "dXNlcjpodW50ZXIy"),
    ("mysql -u root -pHunter2secret mydb", "Hunter2secret"),
    ("mysql -u root -p Hunter2secret mydb", "Hunter2secret"),
    ("sshpass -p 'correct horse' ssh admin@host", "correct horse"),
    ("psql 'postgresql://app:S3cr3tPw@db.internal:5432/app'", "S3cr3tPw"),
    ("git remote add origin https://bob:hunter22@git.example.com/r.git", "hunter22"),
    ("./deploy --password hunter2 --user bob", "hunter2"),
    ("./deploy --password=hunter2", "hunter2"),
    ("vault login -method=userpass username=bob password=Tr0ub4dor", "Tr0ub4dor"),
    ("export MY_SERVICE_TOKEN=abcdef0123456789abcdef", "abcdef0123456789abcdef"),
    ("DB_PASSWORD='p@ss w0rd' ./migrate", "p@ss w0rd"),
    (
        "echo '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
        "-----END OPENSSH PRIVATE KEY-----'",
        "b3BlbnNzaC1rZXktdjEAAAAA",
    ),
    (
        "huggingface-cli login --token hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYz01234567",
        "AbCdEfGhIjKlMnOp",
    ),
    ("npm config set //registry.npmjs.org/:_authToken npm_" + "a" * 36, "a" * 36),
    ("redis-cli -h cache -a s3cretRedis ping", "s3cretRedis"),
    ("curl -u admin:Sup3rS3cret https://jenkins.local", "Sup3rS3cret"),
    ("curl -H 'X-Api-Key: 0123456789abcdefXYZ' https://api.x.io", "0123456789abcdefXYZ"),
    ("docker login -u bob --password s3cr3tPass registry.io", "s3cr3tPass"),
    ("heroku config:set CLIENT_SECRET=f00ba7f00ba7", "f00ba7f00ba7"),
    # A password holding @: the part after the first @ must not leak.
    ("psql 'postgresql://app:p@ss@W0rdTail@db.internal:5432/app'", "W0rdTail"),
    ("git clone https://bob:hunt@er2x@git.example.com/r.git", "er2x"),
    ("curl -H 'Cookie: session=9f8e7d6c5b4a; theme=dark' https://x.io", "9f8e7d6c5b4a"),
    ("curl -H 'Set-Cookie: sid=AbC123xYz789' https://x.io", "AbC123xYz789"),
    ("echo 'machine api.example.com login bob password Netrc5ecret' >> ~/.netrc", "Netrc5ecret"),
    ("printf 'machine h\\n  login u\\n  password Pw0rdNetrc' > .netrc", "Pw0rdNetrc"),
    ("htpasswd -b /etc/nginx/.htpasswd alice HtSecret99", "HtSecret99"),
    ("htpasswd -cb .htpasswd alice HtSecret98", "HtSecret98"),
    ("htpasswd -nb alice HtSecret97", "HtSecret97"),
    (
        "export AZ_CONN='DefaultEndpointsProtocol=https;AccountName=acme;"
        "AccountKey=Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA==;EndpointSuffix=core.windows.net'",
        "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA",
    ),
    ("curl -H 'X-Goog: 1' -d token=x ya29." + "a0AfH6SMBx1y2z3AbCdEfGhIjK", "a0AfH6SMBx1y2z3"),
    ("gcloud call ya29." + "c.b0Aaekm1KxYzAbCdEfGhIjKlMn", "b0Aaekm1KxYz"),
    ("docker login -u bob -p D0ckerPw registry.io", "D0ckerPw"),
    ("podman login -u bob -p 'Pod man Pw' quay.io", "Pod man Pw"),
    ("az login -u bob@example.com -p Azur3Pw", "Azur3Pw"),
    ("az login --service-principal -u app -p Sp5ecret --tenant t1", "Sp5ecret"),
]

# Harmless text that looks a bit like a secret and must come back unchanged.
HARMLESS: list[str] = [
    "git show 3f786850e387550fdab836ed7e6dc881de23001b",
    "git checkout -b fix/a1b2c3d",
    "docker rm 9c1a6f0e-7d4b-4c2e-8f3a-2b6d9e1c0a57",
    "docker login --password-stdin -u bob registry.io",
    "restic backup --password-file ~/.restic-pass /home",
    "TOKEN_FILE=~/.config/tok ./sync",
    "mkdir -p build/out",
    "ssh -p 2222 admin@host.example.com",
    "docker run -p 8080:80 nginx",
    "psql -h db -p 5432 app",
    "export PATH=$HOME/.local/bin:$PATH",
    "export EDITOR=vim",
    "echo dGhpcyBpcyBqdXN0IHRleHQ= | base64 -d",
    "cat ~/.ssh/id_ed25519.pub",
    "grep -rn password src/",
    "grep -r Authorization src/",
    "git clone git@github.com:owner/repo.git",
    "curl https://example.com/search?q=tokens&page=2",
    "sha256sum image.iso  # e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "docker pull ubuntu@sha256:45b23dee08af5e43a7fea6c4cf9c25ccf269ee113168c19722f87876677c5cb2",
    "pip install scikit-learn",
    "openssl x509 -in cert.pem -text  # -----BEGIN CERTIFICATE-----",
    "export API_KEY=$(pass show api/key)",
    "passwd bob",
    "ls -la ~/.aws/credentials",
    "kubectl get secret my-secret -o yaml",
    "python -c 'print(1)' --skip-token-check",
    "docker login --password-stdin -u bob ghcr.io",
    "docker run -p 5432:5432 postgres",
    "az login --use-device-code",
    "htpasswd -B .htpasswd alice",
    "grep -rn cookie src/",
    "ssh://git@host.example.com:22/repo.git",
    "netrc_path=~/.netrc",
]


def test_table_sizes() -> None:
    assert len(SECRETS) >= 20 and len(HARMLESS) >= 20


@pytest.mark.parametrize(("text", "secret"), SECRETS, ids=[s[:32] for s, _ in SECRETS])
def test_secret_is_removed(text: str, secret: str) -> None:
    out = redact(text)
    assert secret not in out, out
    assert MASK in out
    assert findings(text), "findings() names the rule that fired"


@pytest.mark.parametrize("text", HARMLESS, ids=[h[:32] for h in HARMLESS])
def test_harmless_text_is_kept(text: str) -> None:
    assert redact(text) == text
    assert findings(text) == []


def test_redaction_keeps_the_shape() -> None:
    assert redact("https://bob:pw1234@host/x") == f"https://bob:{MASK}@host/x"
    assert redact("--password hunter2 rest") == f"--password {MASK} rest"
    assert redact("export X_TOKEN=abc123def") == f"export X_TOKEN={MASK}"
    assert redact("mysql -u root -pHunter2secret mydb") == f"mysql -u root -p{MASK} mydb"
    assert redact("app -token abc123 --verbose") == f"app -token {MASK} --verbose"


def test_redact_is_idempotent() -> None:
    for text, _ in SECRETS:
        once = redact(text)
        assert redact(once) == once


def test_redact_obj_walks_nested_values() -> None:
    data = {"cwd": "/home/a", "recent": [{"cmd": f"echo {_GH}", "exit": 0}], "n": 3}
    out = redact_obj(data)
    assert _GH not in str(out)
    assert out["recent"][0]["exit"] == 0 and out["n"] == 3 and out["cwd"] == "/home/a"


def test_empty_and_non_ascii() -> None:
    assert redact("") == ""
    assert redact("ls ünïcødé \udcff") == "ls ünïcødé \udcff"


def test_secrets_in_lists_the_removed_values() -> None:
    from shellfish.shell.redact import mask_known, secrets_in

    text = "mysql -u root -phunter2x db && curl -u bob:Sup3rS3cret https://x"
    assert secrets_in(text) == ["Sup3rS3cret", "hunter2x"]
    assert secrets_in("DB_PASSWORD='p@ss w0rd' ./migrate") == ["p@ss w0rd"]
    assert secrets_in("ls -la") == []
    # Too short to mask everywhere without eating ordinary words.
    assert secrets_in("mysql -pab db") == []
    echoed = "The -p option passes the password hunter2x to mysql."
    assert mask_known(echoed, secrets_in(text)) == (
        f"The -p option passes the password {MASK} to mysql."
    )


def test_the_hook_scripts_carry_the_generated_table() -> None:
    """The zsh/bash rule table is generated from the Python rules, never edited by hand."""
    from shellfish.shell.redact import shell_rules
    from shellfish.shell.redact_hooks import SCRIPTS, hooks_dir, render_table, replace_table

    table = render_table()
    assert len(shell_rules()) >= 25
    for name in SCRIPTS:
        text = (hooks_dir() / name).read_text(encoding="utf-8")
        assert text.count(table) == 1, (
            f"{name} is stale: python -m shellfish.shell.redact_hooks --write"
        )
        assert replace_table(text, table) == text
