#!/usr/bin/env bash
# Shell start-up cost of the shellfish integration, and the widget's two request paths.
#
#   benchmarks/shell_startup.sh            (from the repository root; needs zsh; hyperfine optional)
#
# 1. `zsh -f -i -c exit` with and without `source shell-hooks/shellfish.zsh` (no Python runs).
# 2. The same for bash.
# 3. `eval "$(shellfish init zsh)"`: the convenient form starts one Python process.
# 4. The widget round trip with no model: the fast path (zsh's own socket module talking to a
#    stand-in daemon that answers at once) against the slow path (`shellfish widget suggest`,
#    i.e. a Python start; here it ends with "no model installed" before any generation).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
ZSH_SCRIPT=$PWD/shell-hooks/shellfish.zsh
BASH_SCRIPT=$PWD/shell-hooks/shellfish.bash
RUNS=${RUNS:-50}
TMP=$(mktemp -d)
SERVER_PID=
trap '[[ -n $SERVER_PID ]] && kill $SERVER_PID 2>/dev/null || true; rm -rf "$TMP"' EXIT
export SHELLFISH_HOME=$TMP/home LANG=${LANG:-C.UTF-8}

bench() {  # name, command line (one string)
  local name=$1 cmd=$2
  if command -v hyperfine >/dev/null; then
    hyperfine -N --warmup 3 --runs "$RUNS" --style basic --export-json "$TMP/h.json" "$cmd" >/dev/null
    "$PY" - "$name" "$TMP/h.json" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[2]))["results"][0]
print(f"{sys.argv[1]:<44} mean {r['mean']*1000:7.2f} ms  sd {r['stddev']*1000:5.2f}  min {r['min']*1000:6.2f}")
PYEOF
  else
    local start end
    start=$("$PY" -c 'import time;print(time.perf_counter())')
    for ((i = 0; i < RUNS; i++)); do eval "$cmd" >/dev/null 2>&1; done
    end=$("$PY" -c 'import time;print(time.perf_counter())')
    "$PY" -c "print(f'{\"$name\":<44} mean {($end-$start)/$RUNS*1000:7.2f} ms  (loop of $RUNS)')"
  fi
}

echo "# shell start-up (RUNS=$RUNS)"
bench "zsh -f -i -c exit" "zsh -f -i -c exit"
bench "zsh -f -i + source shellfish.zsh" "zsh -f -i -c 'source $ZSH_SCRIPT; exit'"
bench "bash --norc -i -c exit" "bash --norc --noprofile -i -c exit"
bench "bash --norc -i + source shellfish.bash" "bash --norc --noprofile -i -c 'source $BASH_SCRIPT; exit'"
RUNS=$(( RUNS < 20 ? RUNS : 20 ))
bench "zsh + eval \"\$(shellfish init zsh)\"" "zsh -f -i -c 'eval \"\$($PY -m shellfish init zsh)\"; exit'"

echo "# one widget request, no model (RUNS=$RUNS)"
mkdir -p "$SHELLFISH_HOME/run"
"$PY" - "$SHELLFISH_HOME/run/daemon.sock" <<'PYEOF' &
import socket, sys
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(64)
while True:
    c, _ = s.accept()
    f = c.makefile("rb")
    f.readline()
    c.sendall(b"SHELLFISH_CMD\tls -la\nSHELLFISH_END\n")
    c.close()
PYEOF
SERVER_PID=$!
sleep 0.5
cat > "$TMP/fast.zsh" <<ZEOF
source $ZSH_SCRIPT
zmodload zsh/net/socket
_shellfish_context_json; ctx=\$REPLY
_shellfish_json_str "list files"
zsocket $SHELLFISH_HOME/run/daemon.sock; fd=\$REPLY
print -r -u \$fd -- '{"v":1,"cmd":"generate","reply_format":"lines","request":{"task":"suggest","text":'\$REPLY',"context":'\$ctx'}}'
while IFS= read -r -u \$fd line; do [[ \$line == SHELLFISH_END ]] && break; done
ZEOF
bench "zsh start + fast path (socket) request" "zsh -f $TMP/fast.zsh"
bench "zsh start + source only (for subtraction)" "zsh -f $ZSH_SCRIPT"
rm -f "$SHELLFISH_HOME/run/daemon.sock"
echo "list files" > "$TMP/in"
bench "slow path: shellfish widget suggest (CLI)" "sh -c '$PY -m shellfish widget suggest < $TMP/in'"
