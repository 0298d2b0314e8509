#!/bin/sh
# Install shellfish from this checkout and its default model.
#
#   ./install.sh            # venv in ~/.local/share/shellfish/venv (or $SHELLFISH_VENV)
#
# Creates (or reuses) a virtual environment, pip-installs the package from this checkout,
# links `shellfish` into ~/.local/bin, then runs `shellfish setup`, which installs the default
# model (qwen2.5-coder-0.5b-shellfish: Qwen2.5-Coder-0.5B-Instruct with the adapter shipped in
# models/adapters merged in) and prints the line to add to ~/.zshrc.
# Re-running is fast: an existing venv with the same checkout installed is reused, and
# `shellfish setup` changes nothing when the model is already in place.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
venv=${SHELLFISH_VENV:-${XDG_DATA_HOME:-$HOME/.local/share}/shellfish/venv}
bindir=${SHELLFISH_BIN_DIR:-$HOME/.local/bin}
python=${PYTHON:-python3}

say() { printf '%s\n' "install.sh: $*" >&2; }

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    say "error: need Python >= 3.10 (set PYTHON=/path/to/python3)"; exit 1
fi

if [ -x "$venv/bin/python" ]; then
    say "using the virtual environment $venv"
else
    say "creating the virtual environment $venv"
    mkdir -p "$(dirname "$venv")"
    "$python" -m venv "$venv"
fi

# Reinstall only when the checkout changed since the last install (fast re-runs).
stamp="$venv/.shellfish-installed"
rev=$(cd "$here" && { git rev-parse HEAD 2>/dev/null || echo unknown; })
state="$rev $(cd "$here" && { git status --porcelain 2>/dev/null | cksum; } )"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$state" ] && [ -x "$venv/bin/shellfish" ]; then
    say "shellfish is already installed from this checkout"
else
    say "installing shellfish from $here"
    "$venv/bin/python" -m pip install --disable-pip-version-check -q "$here"
    printf '%s' "$state" > "$stamp"
fi

mkdir -p "$bindir"
ln -sf "$venv/bin/shellfish" "$bindir/shellfish"
say "linked $bindir/shellfish"
case ":$PATH:" in
    *":$bindir:"*) ;;
    *) say "note: $bindir is not on your PATH; add it in ~/.zshrc" ;;
esac

exec "$venv/bin/shellfish" setup
