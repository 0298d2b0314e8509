# shellfish.bash - bash integration for shellfish, a local-first terminal assistant.
#
# Load it from ~/.bashrc (nothing edits your rc files for you):
#
#     eval "$(shellfish init bash)"
#
# or, to start no Python process when the shell starts:
#
#     shellfish init bash > ~/.shellfish.bash   # once, and again after upgrading
#     source ~/.shellfish.bash                  # in ~/.bashrc
#
# Keys (readline syntax; set before loading; empty: do not bind):
#   SHELLFISH_SUGGEST_KEY  default \C-x\C-a (Ctrl+X then Ctrl+A): turn the words on the line
#                          into a command. Undo (Ctrl+_) brings the words back.
#   SHELLFISH_FIX_KEY      default \C-x\C-w (Ctrl+X then Ctrl+W): propose a fix for the last
#                          command that failed (from the command, its exit status and this
#                          machine; the command's output is never captured, nor is it re-run).
# bash has no way to wait for a socket while you type, so in bash the widget runs the CLI and
# waits for it (Ctrl+C cancels and keeps your words); the CLI uses the daemon when it runs.
# zsh is asynchronous. SHELLFISH_INDICATOR is the text shown after your words meanwhile.
# Other settings: SHELLFISH_CONTEXT_CAPTURE=0 (record nothing), SHELLFISH_CONTEXT_MAX=20,
# SHELLFISH_CLI=shellfish. Context capture uses the DEBUG trap and PROMPT_COMMAND.
# Replies are marker lines:
#   SHELLFISH_CMD<TAB>command  SHELLFISH_WARN<TAB>text  SHELLFISH_ERR<TAB>text  SHELLFISH_END
# Suggestions are never run by shellfish, and enter history only when you run them.

[[ $- == *i* ]] || return 0

[[ -n ${SHELLFISH_SUGGEST_KEY+x} ]] || SHELLFISH_SUGGEST_KEY='\C-x\C-a'
[[ -n ${SHELLFISH_FIX_KEY+x} ]] || SHELLFISH_FIX_KEY='\C-x\C-w'
[[ -n ${SHELLFISH_CLI+x} ]] || SHELLFISH_CLI='shellfish'
[[ -n ${SHELLFISH_CONTEXT_MAX+x} ]] || SHELLFISH_CONTEXT_MAX=20
[[ -n ${SHELLFISH_INDICATOR+x} ]] || SHELLFISH_INDICATOR='  [shellfish: thinking - Ctrl+C cancels]'

_shellfish_runtime_dir() {
  if [[ -n $SHELLFISH_HOME ]]; then
    REPLY=${SHELLFISH_HOME/#\~/$HOME}/run
  elif [[ -n $_SHELLFISH_RUNTIME_DIR ]]; then
    REPLY=$_SHELLFISH_RUNTIME_DIR
  elif [[ -n $XDG_RUNTIME_DIR ]]; then
    REPLY=$XDG_RUNTIME_DIR/shellfish
  else
    REPLY=/tmp/runtime-$UID/shellfish
  fi
}

_shellfish_runtime_dir
export SHELLFISH_CONTEXT_FILE=$REPLY/context/$$.ctx
_shellfish_h_cmd=() _shellfish_h_exit=() _shellfish_h_dur=() _shellfish_h_cwd=() _shellfish_h_time=()
_shellfish_last_cmd= _shellfish_last_status=0 _shellfish_armed= _shellfish_have_cmd=

# Redaction on the hot path (the Python `shellfish.shell.redact` runs again before sending);
# the same rules as shellfish.zsh: (kept prefix) secret (kept suffix), matched lower-cased.
# A rule runs only when one of its trigger words occurs (lower-cased): regexes are slow.
# BEGIN generated redaction table: python -m shellfish.shell.redact_hooks --write
_shellfish_redact_when=(
  'private'
  '://'
  'authorization'
  'x-'
  'cookie'
  'akia asia agpa aida aroa anpa'
  'gh'
  'github_pat_'
  'gl'
  'xox'
  'hooks.slack'
  'sk-'
  '_live_ _test_'
  'aiza'
  'ya29.'
  'hf_'
  'npm_'
  'pypi-'
  'eyj'
  'accountkey sharedaccess'
  'pass pwd secret token key auth credential'
  'pass secret token key'
  'password'
  'mysql mariadb sshpass mongo'
  'login'
  'htpasswd'
  'redis-cli'
  '-u --user'
  'aws'
)
_shellfish_redact_rules=(
  '(-----begin [a-z0-9 ]*private key-----)[^-]+()'
  '([a-z][a-z0-9+.-]*://[^][:space:]:/@'\''"]+:)[^][:space:]/'\''"]+(@)'
  '((proxy-)?authorization:[[:space:]]*((bearer|basic|token|digest|bot)[[:space:]]+)?)[^][:space:]'\''"]+()'
  '(x-(api-key|auth-token|access-token|api-token):[[:space:]]*)[^][:space:]'\''"]+()'
  '(cookie[[:space:]]*:[[:space:]]*)[^'\''"]+()'
  '(^|[^a-z0-9_])(akia|asia|agpa|aida|aroa|anpa)[0-9a-z]{16}()'
  '(^|[^a-z0-9_])gh[pousr]_[a-z0-9]{30,}()'
  '(^|[^a-z0-9_])github_pat_[a-z0-9_]{40,}()'
  '(^|[^a-z0-9_])gl(pat|dt|ptt|rt|oas)-[a-z0-9_-]{20,}()'
  '(^|[^a-z0-9_])xox[abposr]-[a-z0-9-]{10,}()'
  '(hooks\.slack\.com/services/)[a-z0-9/]+()'
  '(^|[^a-z0-9_])sk-[a-z0-9_-]{20,}()'
  '(^|[^a-z0-9_])(sk|rk|pk)_(live|test)_[a-z0-9]{16,}()'
  '(^|[^a-z0-9_])aiza[0-9a-z_-]{35}()'
  '(^|[^a-z0-9_])ya29\.[0-9a-z._-]{20,}()'
  '(^|[^a-z0-9_])hf_[a-z0-9]{30,}()'
  '(^|[^a-z0-9_])npm_[a-z0-9]{36}()'
  '(^|[^a-z0-9_])pypi-[a-z0-9_-]{50,}()'
  '(^|[^a-z0-9_])eyj[a-z0-9_-]{8,}\.eyj[a-z0-9_-]{8,}\.[a-z0-9_-]{8,}()'
  '((accountkey|sharedaccesskey|sharedaccesssignature)[[:space:]]*=[[:space:]]*)[^][:space:];'\''"]+()'
  '([a-z0-9_.-]*(password|passwd|passphrase|pass|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key|auth[_-]?key|client[_-]?secret|credentials?|session[_-]?key)[a-z0-9_]*[[:space:]]*[=:][[:space:]]*)("[^"$]+"|'\''[^'\'']+'\''|[^][:space:]'\''"`&;|<>()$~/.-][^][:space:]'\''"`&;|<>()]*)()'
  '((^|[[:space:]])(--[a-z0-9-]*|-)(password|passwd|passphrase|secret|token|api-key|apikey|access-key|client-secret)(=|[[:space:]]+))("[^"$]+"|'\''[^'\'']+'\''|[^][:space:]'\''"`&;|<>()$~/.-][^][:space:]'\''"`&;|<>()]*)()'
  '((machine[[:space:]]+[^[:space:]]+|default)([[:space:]]+(login|account)[[:space:]]+[^[:space:]]+)*[[:space:]]+password[[:space:]]+)("[^"]+"|'\''[^'\'']+'\''|[^][:space:]'\''"`&;|<>()]+)()'
  '((mysql|mysqldump|mysqladmin|mariadb|sshpass|mongo|mongosh)[^|;&]*[[:space:]]-p[[:space:]]*)("[^"]+"|'\''[^'\'']+'\''|[^][:space:]'\''"`&;|<>()]+)()'
  '((docker|podman|buildah|nerdctl|az)[[:space:]]+login[^|;&]*[[:space:]]-p(=|[[:space:]]*))("[^"]+"|'\''[^'\'']+'\''|[^][:space:]'\''"`&;|<>()]+)()'
  '(htpasswd([[:space:]]+-[a-z]+)*[[:space:]]+-[a-z]*b[a-z]*([[:space:]]+-[a-z]+)*([[:space:]]+[^][:space:]'\''"&;|<>-][^][:space:]]*){2}[[:space:]]+|htpasswd([[:space:]]+-[a-z]+)*[[:space:]]+-[a-z]*(nb|bn)[a-z]*([[:space:]]+-[a-z]+)*[[:space:]]+[^][:space:]'\''"&;|<>-][^][:space:]]*[[:space:]]+)("[^"]+"|'\''[^'\'']+'\''|[^][:space:]'\''"`&;|<>()]+)()'
  '(redis-cli[^|;&]*[[:space:]]-a[[:space:]]+)("[^"]+"|'\''[^'\'']+'\''|[^][:space:]'\''"`&;|<>()]+)()'
  '([[:space:]](-u|--user)[[:space:]]+[^][:space:]:'\''"]+:)[^][:space:]'\''"]+()'
  '(aws_?secret_?access_?key[[:space:]]*[=:]?[[:space:]]*)[a-z0-9/+]{40}()'
)
# END generated redaction table

# _shellfish_redact TEXT -> REPLY
_shellfish_redact() {
  local s=$1 re out rest low whole pre first last
  local k w hit low0=${s,,}
  for (( k = 0; k < ${#_shellfish_redact_rules[@]}; k++ )); do
    hit=
    for w in ${_shellfish_redact_when[k]}; do
      [[ $low0 == *"$w"* ]] && { hit=1; break; }
    done
    [[ -n $hit ]] || continue
    re=${_shellfish_redact_rules[k]}
    out= rest=$s
    while :; do
      low=${rest,,}
      [[ $low =~ $re ]] || break
      whole=${BASH_REMATCH[0]} first=${BASH_REMATCH[1]} last=${BASH_REMATCH[-1]}
      pre=${low%%"$whole"*}
      # prefix and suffix groups are taken from the original text, not the lower-cased copy
      out+=${rest:0:${#pre}}${rest:${#pre}:${#first}}'[REDACTED]'
      [[ -n $last ]] && out+=${rest:${#pre}+${#whole}-${#last}:${#last}}
      rest=${rest:${#pre}+${#whole}}
    done
    s=$out$rest
    low0=${s,,}
  done
  REPLY=$s
}

_shellfish_escape() {
  local s=${1//\\/\\\\}
  s=${s//$'\n'/\\n}
  REPLY=${s//$'\t'/\\t}
}

_shellfish_unescape() {
  local s=${1//\\\\/$'\1'}
  s=${s//\\n/$'\n'}
  s=${s//\\t/$'\t'}
  REPLY=${s//$'\1'/\\}
}

_shellfish_capture_on() {
  local v=${SHELLFISH_CONTEXT_CAPTURE:-1}
  v=${v,,}
  [[ $v != 0 && $v != false && $v != no && $v != off && ! -e ${SHELLFISH_CONTEXT_FILE%/*}/off ]]
}

# DEBUG trap: note the start of the first command after each prompt.
_shellfish_debug() {
  [[ -n $_shellfish_armed && -z $COMP_LINE ]] || return 0
  [[ $BASH_COMMAND == _shellfish_* ]] && return 0
  _shellfish_armed=
  _shellfish_have_cmd=1
  _shellfish_cmd_start=${EPOCHREALTIME:-0}
  _shellfish_cmd_cwd=$PWD
}

# PROMPT_COMMAND: record the command that just finished. The history number tells whether a
# command ran (the DEBUG trap misses subshells such as `(exit 3)`); the trap gives start and cwd.
_shellfish_precmd() {
  local st=$?
  local line cmd= num=
  line=$(HISTTIMEFORMAT= builtin history 1)
  if [[ $line =~ ^[[:space:]]*([0-9]+)[*]?[[:space:]]+(.*)$ ]]; then
    num=${BASH_REMATCH[1]} cmd=${BASH_REMATCH[2]}
  fi
  if [[ -z $_shellfish_started ]]; then  # the first prompt: nothing of ours ran yet
    _shellfish_started=1 _shellfish_hist_num=$num _shellfish_have_cmd= _shellfish_armed=1
    return $st
  fi
  if [[ -n $cmd && ( $num != "$_shellfish_hist_num" || -n $_shellfish_have_cmd ) ]]; then
    _shellfish_hist_num=$num
    _shellfish_last_cmd=$cmd
    _shellfish_last_status=$st
    if _shellfish_capture_on; then
      local dur=0 cwd=$PWD
      if [[ -n $_shellfish_have_cmd ]]; then
        local start=${_shellfish_cmd_start/[.,]/} now=${EPOCHREALTIME/[.,]/}
        dur=$(( (10#$now - 10#$start) / 1000 )) cwd=$_shellfish_cmd_cwd
      fi
      local max=$SHELLFISH_CONTEXT_MAX
      (( max > 0 )) || max=20
      _shellfish_redact "$cmd"
      _shellfish_h_cmd+=("$REPLY") _shellfish_h_exit+=("$st") _shellfish_h_dur+=("$dur")
      _shellfish_h_cwd+=("$cwd") _shellfish_h_time+=("${EPOCHSECONDS:-0}")
      while (( ${#_shellfish_h_cmd[@]} > max )); do
        _shellfish_h_cmd=("${_shellfish_h_cmd[@]:1}") _shellfish_h_exit=("${_shellfish_h_exit[@]:1}")
        _shellfish_h_dur=("${_shellfish_h_dur[@]:1}") _shellfish_h_cwd=("${_shellfish_h_cwd[@]:1}")
        _shellfish_h_time=("${_shellfish_h_time[@]:1}")
      done
      # append one line; rewrite the bounded file only every $max commands (truncating is slow)
      if (( ${_shellfish_ctx_appended:-0} < max )) && [[ -f $SHELLFISH_CONTEXT_FILE ]]; then
        _shellfish_escape "$cwd"; local ecwd=$REPLY
        _shellfish_escape "${_shellfish_h_cmd[-1]}"
        printf 'cmd\t%s\t%s\t%s\t%s\t%s\n' "$st" "$dur" "${_shellfish_h_time[-1]}" "$ecwd" "$REPLY" \
          >> "$SHELLFISH_CONTEXT_FILE" 2>/dev/null
        _shellfish_ctx_appended=$(( ${_shellfish_ctx_appended:-0} + 1 ))
      else
        _shellfish_write_context
        _shellfish_ctx_appended=0
      fi
    fi
  fi
  _shellfish_have_cmd=
  _shellfish_armed=1
  return $st
}

# Same format as the zsh hook (see shellfish/shell/context.py); 0600 in a 0700 directory.
_shellfish_write_context() {
  local file=$SHELLFISH_CONTEXT_FILE dir=${SHELLFISH_CONTEXT_FILE%/*} i cwd
  [[ -d $dir ]] || mkdir -p -m 700 "$dir" 2>/dev/null || return 0
  [[ -e $file ]] || ( umask 077 && : >> "$file" ) 2>/dev/null || return 0
  [[ -L $file ]] && return 0
  {
    printf '%s\n' '# shellfish context v1'
    printf 'shell\tbash %s\nos\t%s\n' "${BASH_VERSION%%(*}" "$OSTYPE"
    for (( i = 0; i < ${#_shellfish_h_cmd[@]}; i++ )); do
      _shellfish_escape "${_shellfish_h_cwd[i]}"; cwd=$REPLY
      _shellfish_escape "${_shellfish_h_cmd[i]}"
      printf 'cmd\t%s\t%s\t%s\t%s\t%s\n' "${_shellfish_h_exit[i]}" "${_shellfish_h_dur[i]}" \
        "${_shellfish_h_time[i]}" "$cwd" "$REPLY"
    done
  } > "$file" 2>/dev/null
}

_shellfish_exit() {
  [[ -n $SHELLFISH_CONTEXT_FILE ]] && command rm -f -- "$SHELLFISH_CONTEXT_FILE" 2>/dev/null
}

# _shellfish_request TASK TEXT EXTRA_JSON: run the CLI, parse its marker lines, update the line.
# The typed words stay in READLINE_LINE the whole time: a cancel (Ctrl+C) or a failure leaves
# them as they were, and only an answer replaces them (one readline edit, so undo works). The
# indicator is drawn over the current screen line and readline redraws the line afterwards, so
# nothing of it stays on the screen.
_shellfish_request() {
  local task=$1 text=$2 extra=$3 line cmd= err= other= w pid st tmp ended= prompt
  local -a cli warns=()
  eval "cli=($SHELLFISH_CLI)"
  # `local -` restores the options on return; without job control the background CLI shares
  # the shell's process group (Ctrl+C reaches it too) and bash prints no "[1] pid" lines.
  local -
  set +m
  tmp=$(command mktemp "${TMPDIR:-/tmp}/shellfish.XXXXXX" 2>/dev/null) || {
    printf '\nshellfish: cannot create a temporary file in %s\n' "${TMPDIR:-/tmp}" >&2
    return 0
  }
  # Ctrl+C interrupts `wait` (the trap runs, wait returns 130): cancel, keep the line. The trap
  # goes first so that a Ctrl+C at any moment cancels, not the user's own INT trap.
  local old_trap cancelled=
  old_trap=$(trap -p INT)
  trap 'cancelled=1; [[ -n $pid ]] && command kill -TERM $pid 2>/dev/null' INT
  # the prompt again (its last line), unless showing it would run commands (starship & co.)
  prompt=
  [[ $PS1 == *'$('* || $PS1 == *'`'* ]] || prompt=${PS1@P}
  printf '\r\e[K%s%s%s' "${prompt##*$'\n'}" "$READLINE_LINE" "$SHELLFISH_INDICATOR" >&2
  { "${cli[@]}" widget "$task" --shell bash --context-extra "$extra" <<< "$text" > "$tmp" 2>&1 & } 2>/dev/null
  pid=$!
  [[ -n $cancelled ]] || wait "$pid"
  st=$?
  [[ -n $cancelled ]] && st=130
  eval "${old_trap:-trap - INT}"
  printf '\r\e[K' >&2
  if (( st > 128 )); then
    # No command substitution from here on: one run after the interrupt makes bash split the
    # next command line the user enters (bash 5.2: `echo a-b` ran `echo`, then `a-b`).
    command kill -TERM "$pid" 2>/dev/null
    command rm -f -- "$tmp"
    printf 'shellfish: cancelled\n' >&2
    return 0
  fi
  while IFS= read -r line || [[ -n $line ]]; do
    case $line in
      SHELLFISH_CMD$'\t'*) [[ -z $cmd ]] && { _shellfish_unescape "${line#*$'\t'}"; cmd=$REPLY; } ;;
      SHELLFISH_WARN$'\t'*) _shellfish_unescape "${line#*$'\t'}"; warns+=("$REPLY") ;;
      SHELLFISH_ERR$'\t'*) _shellfish_unescape "${line#*$'\t'}"; err=$REPLY ;;
      SHELLFISH_END) ended=1; break ;;
      *) [[ -n $line ]] && other=$line ;;
    esac
  done < "$tmp"
  command rm -f -- "$tmp"
  if [[ -n $cmd ]]; then
    READLINE_LINE=$cmd
    READLINE_POINT=${#READLINE_LINE}
    for w in "${warns[@]}"; do printf 'shellfish: warning: %s\n' "$w" >&2; done
  elif [[ -n $err ]]; then
    printf 'shellfish: %s\n' "$err" >&2
  elif [[ -z $ended ]]; then
    printf 'shellfish: the %s request ended without an answer%s\n' "$task" "${other:+: $other}" >&2
  else
    printf 'shellfish: no suggestion came back - try other words\n' >&2
  fi
}

_shellfish_suggest() {
  if [[ -z ${READLINE_LINE//[[:space:]]/} ]]; then
    printf 'shellfish: type what you want in words first, then press the key again\n' >&2
    return 0
  fi
  _shellfish_request suggest "$READLINE_LINE" '{}'
}

_shellfish_fix() {
  if [[ -z $_shellfish_last_cmd ]]; then
    printf 'shellfish: no command has run in this shell yet\n' >&2
  elif (( _shellfish_last_status == 0 )); then
    printf 'shellfish: the last command succeeded - nothing to fix\n' >&2
  else
    # the CLI adds this shell's PATH; the command's output is not captured (see the zsh script)
    _shellfish_request fix "$_shellfish_last_cmd" "{\"last_exit_status\":$_shellfish_last_status}"
  fi
}

trap '_shellfish_debug' DEBUG
case ";${PROMPT_COMMAND};" in
  *";_shellfish_precmd;"*) ;;
  *) PROMPT_COMMAND="_shellfish_precmd${PROMPT_COMMAND:+;$PROMPT_COMMAND}" ;;
esac
trap '_shellfish_exit' EXIT
[[ -n $SHELLFISH_SUGGEST_KEY ]] && bind -x "\"$SHELLFISH_SUGGEST_KEY\": _shellfish_suggest"
[[ -n $SHELLFISH_FIX_KEY ]] && bind -x "\"$SHELLFISH_FIX_KEY\": _shellfish_fix"
return 0
