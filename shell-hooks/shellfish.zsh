# shellfish.zsh - zsh integration for shellfish, a local-first terminal assistant.
#
# Load it from ~/.zshrc (nothing edits your rc files for you):
#
#     eval "$(shellfish init zsh)"
#
# or, to start no Python process at all when the shell starts:
#
#     shellfish init zsh > ~/.shellfish.zsh     # once, and again after upgrading
#     source ~/.shellfish.zsh                   # in ~/.zshrc
#
# Keys (set the variable before loading the script to change them; empty: do not bind):
#   SHELLFISH_SUGGEST_KEY  default ^X^A (Ctrl+X then Ctrl+A): turn the words on the line into a
#                          command. Press it again while it is thinking to cancel. Typing goes
#                          on while it thinks; if you changed the line meanwhile, the suggestion
#                          is shown below the prompt instead of replacing what you typed.
#                          Undo (Ctrl+_ or Ctrl+X u) brings your words back.
#   SHELLFISH_FIX_KEY      default ^X^W (Ctrl+X then Ctrl+W): propose a fix for the last command
#                          that failed. It knows the command, its exit status and this machine
#                          (missing programs and files, their nearest names), not the command's
#                          output: nothing captures your commands' stderr or runs them again.
# Other settings:
#   SHELLFISH_CONTEXT_CAPTURE=0   record no context at all (`shellfish context --off` too).
#   SHELLFISH_CONTEXT_MAX=20      how many recent commands the context keeps.
#   SHELLFISH_CLI=shellfish       the command the widget runs when no daemon answers.
#   SHELLFISH_SOCKET=...          the daemon socket (default: <runtime dir>/daemon.sock).
#   SHELLFISH_FAST_PATH=1         talk to a running daemon from zsh itself (0: always the CLI).
#
# What it does: preexec/precmd hooks record recent commands (exit status, duration, cwd),
# redacted, in a 0600 per-session file under the shellfish runtime directory (see
# `shellfish context`). The widgets send your words plus that context to the daemon over its
# Unix socket with zsh's own socket module (no Python started); without a daemon they run the
# shellfish CLI in the background. Replies are marker lines:
#   SHELLFISH_CMD<TAB>command  SHELLFISH_WARN<TAB>text  SHELLFISH_ERR<TAB>text  SHELLFISH_END
# Suggestions are never run by shellfish, and enter history only when you run them.

zmodload zsh/datetime zsh/system 2>/dev/null
zmodload -F zsh/files b:zf_mkdir b:zf_rm 2>/dev/null

(( ! ${+SHELLFISH_SUGGEST_KEY} )) && typeset -g SHELLFISH_SUGGEST_KEY='^X^A'
(( ! ${+SHELLFISH_FIX_KEY} )) && typeset -g SHELLFISH_FIX_KEY='^X^W'
(( ! ${+SHELLFISH_CLI} )) && typeset -g SHELLFISH_CLI='shellfish'
(( ! ${+SHELLFISH_CONTEXT_MAX} )) && typeset -g SHELLFISH_CONTEXT_MAX=20
(( ! ${+SHELLFISH_FAST_PATH} )) && typeset -g SHELLFISH_FAST_PATH=1
(( ! ${+SHELLFISH_INDICATOR} )) && typeset -g SHELLFISH_INDICATOR='  [shellfish: thinking - press the key again to cancel]'

# Where the daemon socket and the context files live: mirrors shellfish.paths (SHELLFISH_HOME
# first; `shellfish init` sets _SHELLFISH_RUNTIME_DIR to what platformdirs says).
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
typeset -gx SHELLFISH_CONTEXT_FILE=$REPLY/context/$$.ctx
typeset -ga _shellfish_h_cmd _shellfish_h_exit _shellfish_h_dur _shellfish_h_cwd _shellfish_h_time
typeset -g _shellfish_last_cmd= _shellfish_last_status=0
typeset -g _shellfish_fd= _shellfish_pid= _shellfish_orig= _shellfish_task= _shellfish_err= _shellfish_other=
typeset -ga _shellfish_cands _shellfish_warns
typeset -gi _shellfish_seq=0 _shellfish_ctx_appended=0

# ---------------------------------------------------------------------------------------------
# Redaction on the hot path (the Python `shellfish.shell.redact` runs again before sending).
# Each rule is a POSIX ERE matched against a lower-cased copy: (kept prefix) secret (kept suffix).
typeset -ga _shellfish_redact_rules _shellfish_redact_when
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

# _shellfish_redact TEXT -> REPLY: TEXT with secrets replaced by [REDACTED].
_shellfish_redact() {
  emulate -L zsh
  setopt norematchpcre
  local s=$1 re out rest low
  local -a match mbegin mend
  local MATCH MBEGIN MEND
  local -i k
  local w low0=${(L)s} hit
  for (( k = 1; k <= $#_shellfish_redact_rules; k++ )); do
    hit=
    for w in ${(s: :)_shellfish_redact_when[k]}; do
      [[ $low0 == *$w* ]] && { hit=1; break }
    done
    [[ -n $hit ]] || continue
    re=$_shellfish_redact_rules[k]
    out= rest=$s
    while :; do
      low=${(L)rest}
      [[ $low =~ $re ]] || break
      # the prefix and suffix groups come from the original text, not the lower-cased copy
      out+=${rest[1,MBEGIN-1]}${rest[mbegin[1],mend[1]]}'[REDACTED]'
      if [[ -n ${match[-1]} ]]; then
        out+=${rest[mbegin[-1],mend[-1]]}
      fi
      rest=${rest[MEND+1,-1]}
    done
    s=$out$rest
    low0=${(L)s}
  done
  REPLY=$s
}

# ---------------------------------------------------------------------------------------------
# Encoding helpers.

# _shellfish_json_str TEXT -> REPLY: TEXT as a JSON string literal. Bytes that are not UTF-8
# become U+FFFD, so the daemon always receives valid JSON.
_shellfish_json_str() {
  emulate -L zsh
  setopt extendedglob
  local LC_ALL=C
  local s=$1 c q
  local -i i
  if [[ $s == *[$'\x80'-$'\xff']* ]]; then
    s=${s//(#b)([$'\xc2'-$'\xdf'][$'\x80'-$'\xbf']|[$'\xe0'-$'\xef'][$'\x80'-$'\xbf'][$'\x80'-$'\xbf']|[$'\xf0'-$'\xf4'][$'\x80'-$'\xbf'][$'\x80'-$'\xbf'][$'\x80'-$'\xbf']|([$'\x80'-$'\xff']))/${${match[2]:+$'\xef\xbf\xbd'}:-$match[1]}}
  fi
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/\\n}
  s=${s//$'\t'/\\t}
  s=${s//$'\r'/\\r}
  if [[ $s == *[[:cntrl:]]* ]]; then
    for i in {0..31} 127; do
      c=${(#)i}
      [[ $s == *$c* ]] || continue
      printf -v q '\\u%04x' $i
      s=${s//$c/$q}
    done
  fi
  REPLY="\"$s\""
}

# _shellfish_escape TEXT -> REPLY: one-line form used in the context file (\\ \n \t).
_shellfish_escape() {
  local s=${1//\\/\\\\}
  s=${s//$'\n'/\\n}
  REPLY=${s//$'\t'/\\t}
}

# _shellfish_unescape PAYLOAD -> REPLY: undo the marker-line escaping (\\ \n \t).
_shellfish_unescape() {
  local s=${1//\\\\/$'\0'}
  s=${s//\\n/$'\n'}
  s=${s//\\t/$'\t'}
  REPLY=${s//$'\0'/\\}
}

# ---------------------------------------------------------------------------------------------
# Context capture.

_shellfish_capture_on() {
  [[ ${(L)SHELLFISH_CONTEXT_CAPTURE:-1} != (0|false|no|off) && ! -e ${SHELLFISH_CONTEXT_FILE:h}/off ]]
}

_shellfish_preexec() {
  typeset -g _shellfish_cmd=${1:-$3}
  typeset -g _shellfish_cmd_start=$EPOCHREALTIME
  typeset -g _shellfish_cmd_cwd=$PWD
}

_shellfish_precmd() {
  local -i st=$?
  emulate -L zsh
  (( ${+_shellfish_cmd} )) || return 0
  local cmd=$_shellfish_cmd
  unset _shellfish_cmd
  _shellfish_last_cmd=$cmd
  _shellfish_last_status=$st
  _shellfish_capture_on || return 0
  local -i dur=$(( (EPOCHREALTIME - _shellfish_cmd_start) * 1000 ))
  local -i max=$SHELLFISH_CONTEXT_MAX
  (( max > 0 )) || max=20
  _shellfish_redact "$cmd"
  _shellfish_h_cmd+=("$REPLY")
  _shellfish_h_exit+=($st)
  _shellfish_h_dur+=($dur)
  _shellfish_h_cwd+=("$_shellfish_cmd_cwd")
  _shellfish_h_time+=(${EPOCHSECONDS:-0})
  if (( $#_shellfish_h_cmd > max )); then
    _shellfish_h_cmd=("${(@)_shellfish_h_cmd[-max,-1]}")
    _shellfish_h_exit=("${(@)_shellfish_h_exit[-max,-1]}")
    _shellfish_h_dur=("${(@)_shellfish_h_dur[-max,-1]}")
    _shellfish_h_cwd=("${(@)_shellfish_h_cwd[-max,-1]}")
    _shellfish_h_time=("${(@)_shellfish_h_time[-max,-1]}")
  fi
  # Append one line; rewrite the whole (bounded) file only every $max commands: truncating a
  # file is slow on some filesystems (ext4 flushes it on close), appending is not.
  if (( _shellfish_ctx_appended < max )) && [[ -f $SHELLFISH_CONTEXT_FILE ]]; then
    local cwd
    _shellfish_escape "$_shellfish_cmd_cwd"; cwd=$REPLY
    _shellfish_escape "$_shellfish_h_cmd[-1]"
    print -r -- "cmd"$'\t'"$st"$'\t'"$dur"$'\t'"$_shellfish_h_time[-1]"$'\t'"$cwd"$'\t'"$REPLY" \
      2>/dev/null >> $SHELLFISH_CONTEXT_FILE
    (( _shellfish_ctx_appended++ ))
  else
    _shellfish_write_context
    _shellfish_ctx_appended=0
  fi
}

# Rewrite the per-session file (0600, in a 0700 directory): a header, then one line per command:
#   cmd<TAB>exit<TAB>duration_ms<TAB>epoch<TAB>cwd<TAB>command   (cwd and command escaped)
_shellfish_write_context() {
  emulate -L zsh
  local file=$SHELLFISH_CONTEXT_FILE dir=${SHELLFISH_CONTEXT_FILE:h} fd cwd
  local -i i
  [[ -d $dir ]] || zf_mkdir -p -m 700 $dir 2>/dev/null || return 0
  local -a lines
  lines=('# shellfish context v1' "shell"$'\t'"zsh $ZSH_VERSION" "os"$'\t'"$OSTYPE")
  for (( i = 1; i <= $#_shellfish_h_cmd; i++ )); do
    _shellfish_escape "$_shellfish_h_cwd[i]"; cwd=$REPLY
    _shellfish_escape "$_shellfish_h_cmd[i]"
    lines+=("cmd"$'\t'"$_shellfish_h_exit[i]"$'\t'"$_shellfish_h_dur[i]"$'\t'"$_shellfish_h_time[i]"$'\t'"$cwd"$'\t'"$REPLY")
  done
  sysopen -w -o create,truncate,nofollow -m 600 -u fd $file 2>/dev/null || return 0
  print -r -u $fd -- ${(F)lines}  # one write
  exec {fd}>&-
}

_shellfish_zshexit() {
  [[ -n $SHELLFISH_CONTEXT_FILE ]] && zf_rm -f -- $SHELLFISH_CONTEXT_FILE 2>/dev/null
  return 0
}

# The git branch of $PWD, read from .git/HEAD (no git process).
_shellfish_git_branch() {
  emulate -L zsh
  local d=$PWD head gitdir
  REPLY=
  while :; do
    if [[ -d $d/.git ]]; then
      gitdir=$d/.git; break
    elif [[ -f $d/.git ]]; then
      { IFS= read -r gitdir < $d/.git } 2>/dev/null
      gitdir=${gitdir#gitdir: }
      [[ $gitdir == /* ]] || gitdir=$d/$gitdir
      break
    fi
    [[ -z $d || $d == / ]] && return 0
    d=${d%/*}
  done
  { IFS= read -r head < $gitdir/HEAD } 2>/dev/null || return 0
  if [[ $head == 'ref: refs/heads/'* ]]; then
    REPLY=${head#ref: refs/heads/}
  else
    REPLY=${head[1,12]}  # detached HEAD: the commit
  fi
}

# The context object of a request, as JSON, in REPLY. Extra "key":value pairs may follow.
_shellfish_context_json() {
  emulate -L zsh
  local out item
  local -i i
  if ! _shellfish_capture_on; then
    # no context; a request's own facts (the fix key's exit status) still go
    (( $# )) && REPLY="{${(j:,:)@}}" || REPLY=null
    return 0
  fi
  _shellfish_json_str "$PWD"; out='{"source":"zsh","cwd":'$REPLY
  _shellfish_json_str "zsh $ZSH_VERSION"; out+=',"shell":'$REPLY
  _shellfish_json_str "$OSTYPE"; out+=',"os":'$REPLY
  _shellfish_git_branch
  if [[ -n $REPLY ]]; then _shellfish_json_str "$REPLY"; out+=',"git_branch":'$REPLY; fi
  out+=',"recent":['
  for (( i = 1; i <= $#_shellfish_h_cmd; i++ )); do
    (( i > 1 )) && out+=','
    _shellfish_json_str "$_shellfish_h_cmd[i]"; item='{"cmd":'$REPLY
    _shellfish_json_str "$_shellfish_h_cwd[i]"; item+=',"cwd":'$REPLY
    item+=',"exit":'$(( _shellfish_h_exit[i] ))',"duration_ms":'$(( _shellfish_h_dur[i] ))'}'
    out+=$item
  done
  out+=']'
  for item in "$@"; do out+=",$item"; done
  REPLY=$out'}'
}

# ---------------------------------------------------------------------------------------------
# Requests: the fast path (zsh talks to the daemon socket) and the slow path (the CLI).

# _shellfish_start TASK TEXT CONTEXT_EXTRA... : start a request; 0 when one is under way.
_shellfish_start() {
  emulate -L zsh
  local task=$1 text=$2 sock fd json ctx
  shift 2
  _shellfish_cands=() _shellfish_warns=() _shellfish_err= _shellfish_other= _shellfish_pid=
  _shellfish_task=$task
  _shellfish_context_json "$@"; ctx=$REPLY
  _shellfish_runtime_dir
  sock=${SHELLFISH_SOCKET:-$REPLY/daemon.sock}
  if [[ $SHELLFISH_FAST_PATH != 0 && -S $sock ]] && zmodload zsh/net/socket 2>/dev/null \
      && zsocket $sock 2>/dev/null; then
    fd=$REPLY
    (( _shellfish_seq++ ))
    _shellfish_json_str "$text"
    json='{"v":1,"id":"zsh-'$$-$_shellfish_seq'","cmd":"generate","stream":false,"reply_format":"lines","request":{"task":"'$task'","text":'$REPLY',"context":'$ctx'}}'
    if print -r -u $fd -- "$json" 2>/dev/null; then
      _shellfish_fd=$fd
      zle -F -w $fd _shellfish_on_reply
      return 0
    fi
    exec {fd}>&-  # the daemon went away between connect and send: use the CLI instead
  fi
  # Slow path: the CLI in the background. `exec` makes the subshell's pid the CLI's, so a
  # cancel can kill it; its stderr comes through the pipe so a broken install is visible.
  local -a cli
  cli=(${(Q)${(z)SHELLFISH_CLI}})
  local extra=${(j:,:)@}
  exec {fd}< <(
    print -r -- "SHELLFISH_PID"$'\t'"$sysparams[pid]"
    exec $cli widget $task --shell zsh --context-extra "{${extra}}" 2>&1 <<<"$text"
  ) || { _shellfish_err="cannot start $SHELLFISH_CLI"; return 1 }
  _shellfish_fd=$fd
  zle -F -w $fd _shellfish_on_reply
  return 0
}

# Stop listening, close the connection (the daemon cancels a request whose client went away)
# and kill a CLI still running.
_shellfish_stop() {
  emulate -L zsh
  local fd=$_shellfish_fd
  [[ -n $fd ]] || return 0
  zle -F $fd 2>/dev/null
  if [[ -n $_shellfish_pid ]]; then
    kill -TERM $_shellfish_pid 2>/dev/null
  fi
  # The braces matter: `exec {fd}<&- 2>/dev/null` would send the shell's own stderr to
  # /dev/null for good (a bare `exec` applies its redirections to the shell itself).
  { exec {fd}<&- } 2>/dev/null
  _shellfish_fd= _shellfish_pid=
  [[ $POSTDISPLAY == $SHELLFISH_INDICATOR ]] && POSTDISPLAY=
  return 0
}

_shellfish_handle_line() {
  local line=$1
  case $line in
    (SHELLFISH_CMD$'\t'*) _shellfish_unescape "${line#*$'\t'}"; _shellfish_cands+=("$REPLY") ;;
    (SHELLFISH_WARN$'\t'*) _shellfish_unescape "${line#*$'\t'}"; _shellfish_warns+=("$REPLY") ;;
    (SHELLFISH_ERR$'\t'*) _shellfish_unescape "${line#*$'\t'}"; _shellfish_err=$REPLY ;;
    (SHELLFISH_PID$'\t'*) _shellfish_pid=${line#*$'\t'} ;;
    (SHELLFISH_END) return 1 ;;
    (*) [[ -n $line ]] && _shellfish_other=$line ;;
  esac
  return 0
}

# zle -F handler (a widget, so it may change the line): read what arrived; finish at
# SHELLFISH_END or end of file.
_shellfish_on_reply() {
  emulate -L zsh
  local fd=$1 line
  [[ $fd == $_shellfish_fd ]] || { zle -F $fd 2>/dev/null; return 0 }
  local -i done=0
  if IFS= read -r -u $fd line; then
    _shellfish_handle_line "$line" || done=1
    while (( ! done )) && IFS= read -r -t 0 -u $fd line; do
      _shellfish_handle_line "$line" || done=1
    done
  else
    [[ -n $line ]] && { _shellfish_handle_line "$line" || done=1 }
    (( done )) || done=2  # end of file without SHELLFISH_END: the other side died
  fi
  (( done )) || return 0
  _shellfish_pid=  # finished on its own: nothing to kill
  _shellfish_stop
  _shellfish_finish $done
}

_shellfish_finish() {
  emulate -L zsh
  local how=$1 cmd msg w
  local -a notes
  if (( $#_shellfish_cands )); then
    cmd=$_shellfish_cands[1]
    if [[ $BUFFER == $_shellfish_orig ]]; then
      zle split-undo
      BUFFER=$cmd
      CURSOR=$#BUFFER
    else
      notes+=("shellfish: kept what you typed; suggestion: $cmd")
    fi
    for w in $_shellfish_warns; do notes+=("shellfish: warning: $w"); done
  elif [[ -n $_shellfish_err ]]; then
    notes+=("shellfish: $_shellfish_err")
  elif (( how == 2 )); then
    msg="the ${${_shellfish_task:+$_shellfish_task request}:-request} ended without an answer"
    [[ -n $_shellfish_other ]] && msg+=": $_shellfish_other"
    notes+=("shellfish: $msg - is \`shellfish daemon status\` healthy?")
  else
    notes+=("shellfish: no suggestion came back - try other words")
  fi
  if (( $#notes )); then
    zle -M -- "${(F)notes}"
  fi
  zle -R
}

# ---------------------------------------------------------------------------------------------
# Widgets.

_shellfish_suggest() {
  emulate -L zsh
  if [[ -n $_shellfish_fd ]]; then
    _shellfish_stop
    zle -M 'shellfish: cancelled'
    return 0
  fi
  if [[ -z ${BUFFER//[[:space:]]/} ]]; then
    zle -M "shellfish: type what you want in words first, then press the key again"
    return 0
  fi
  _shellfish_orig=$BUFFER
  if _shellfish_start suggest "$BUFFER"; then
    POSTDISPLAY=$SHELLFISH_INDICATOR
  else
    zle -M "shellfish: $_shellfish_err"
  fi
}

_shellfish_fix() {
  emulate -L zsh
  if [[ -n $_shellfish_fd ]]; then
    _shellfish_stop
    zle -M 'shellfish: cancelled'
    return 0
  fi
  if [[ -z $_shellfish_last_cmd ]]; then
    zle -M 'shellfish: no command has run in this shell yet'
    return 0
  fi
  if (( _shellfish_last_status == 0 )); then
    zle -M "shellfish: the last command succeeded - nothing to fix"
    return 0
  fi
  _shellfish_orig=$BUFFER
  # The exit status and this shell's PATH (the nearest installed programs are looked up on it);
  # the command's output is not captured (see shellfish/suggest/failure.py for why).
  _shellfish_json_str "$PATH"
  if _shellfish_start fix "$_shellfish_last_cmd" "\"last_exit_status\":$_shellfish_last_status" \
      "\"path\":$REPLY"; then
    POSTDISPLAY=$SHELLFISH_INDICATOR
  else
    zle -M "shellfish: $_shellfish_err"
  fi
}

# ---------------------------------------------------------------------------------------------
# Wiring. precmd goes first so it sees the exit status of the user's command.

# (the hook arrays directly, as add-zsh-hook would: no function autoloaded at start-up)
typeset -ga preexec_functions precmd_functions zshexit_functions
preexec_functions=(${preexec_functions:#_shellfish_preexec} _shellfish_preexec)
precmd_functions=(_shellfish_precmd ${precmd_functions:#_shellfish_precmd})
zshexit_functions=(${zshexit_functions:#_shellfish_zshexit} _shellfish_zshexit)

if [[ -o zle ]]; then
  zle -N _shellfish_suggest
  zle -N _shellfish_fix
  zle -N _shellfish_on_reply
  [[ -n $SHELLFISH_SUGGEST_KEY ]] && bindkey -- "$SHELLFISH_SUGGEST_KEY" _shellfish_suggest
  [[ -n $SHELLFISH_FIX_KEY ]] && bindkey -- "$SHELLFISH_FIX_KEY" _shellfish_fix
fi
return 0
