"""The word tables of the shell command-line parser (`shellfish.shell.syntax`), in one place.

Every consumer that needs to know what a word *is* (a wrapper that runs the next word, an
interpreter that runs code it is given, a compound-command keyword, an option that takes a
value) reads it here, so the danger check, validation, retrieval and the metrics agree.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WrapperSpec:
    """How a wrapper's own arguments look before the command it runs.

    `value_options` take the next word (or an attached value) as their argument;
    `positionals` is how many plain words the wrapper itself takes (`timeout 5s cmd`: 1);
    `not_a_wrapper` are options after which the wrapper runs nothing (`command -v ls`).
    `assignments`: the wrapper takes ``VAR=value`` words before the command (`env`).
    """

    value_options: frozenset[str] = frozenset()
    positionals: int = 0
    not_a_wrapper: frozenset[str] = frozenset()
    assignments: bool = False


def _spec(
    values: str = "", positionals: int = 0, stop: str = "", *, assignments: bool = False
) -> WrapperSpec:
    return WrapperSpec(frozenset(values.split()), positionals, frozenset(stop.split()), assignments)


# Prefixes that run the next word as the program (`sudo -u bob rm x` runs rm).
WRAPPERS: dict[str, WrapperSpec] = {
    "sudo": _spec(
        "-u -g -p -C -D -h -r -t -U -T --user --group --prompt --chdir --close-from --host"
        " --role --type --other-user --command-timeout",
        stop="-l -v -k -K -V --list --validate --version",
        assignments=True,
    ),
    "doas": _spec("-u -C"),
    "env": _spec("-u -C -S --unset --chdir --split-string", assignments=True),
    "nice": _spec("-n --adjustment"),
    "ionice": _spec("-c -n --class --classdata", stop="-p -P -u --pid --pgid --uid"),
    "timeout": _spec("-s -k --signal --kill-after", positionals=1),
    "nohup": _spec(),
    "time": _spec("-f -o --format --output"),
    "command": _spec(stop="-v -V"),
    "exec": _spec("-a"),
    "builtin": _spec(),
    "noglob": _spec(),
    "nocorrect": _spec(),
    "stdbuf": _spec("-i -o -e --input --output --error"),
    "unbuffer": _spec(),
    "torsocks": _spec(),
    "proxychains": _spec("-f"),
    "proxychains4": _spec("-f"),
    "setsid": _spec(),
    "busybox": _spec(stop="--list --install"),
    "flock": _spec("-w -E --timeout --conflict-exit-code", positionals=1),
    "pkexec": _spec("--user"),
    "eatmydata": _spec(),
    "fakeroot": _spec(),
    "chronic": _spec(),
    "caffeinate": _spec("-t -w"),
}
# Programs that run a shell command given with -c / --command (`su -c 'cmd' bob`), wherever
# the option stands among their arguments.
COMMAND_OPTION_RUNNERS = frozenset({"su", "runuser", "sg"})

# Programs that run whatever code they are given (piped into, or as an argument).
SHELLS = frozenset({"sh", "bash", "zsh", "dash", "ksh", "mksh", "fish", "csh", "tcsh", "ash"})
INTERPRETERS = SHELLS | frozenset({"python", "python2", "python3", "perl", "ruby", "node", "php"})

# Reserved words that open, continue or close compound commands; the program (if any) is the
# word after them. `[[` and `((` are not here: they are commands of their own.
KEYWORDS = frozenset(
    {
        "if",
        "then",
        "else",
        "elif",
        "fi",
        "do",
        "done",
        "while",
        "until",
        "!",
        "{",
        "}",
        "coproc",
        "esac",
    }
)
# Keywords whose whole simple command is a header, not a program (`for x in a b`).
HEADER_KEYWORDS = frozenset({"for", "select", "case"})

# Separators between simple commands (`;;` and friends end a `case` branch).
SEPARATORS = frozenset({"|", "|&", "||", "&&", ";", "&", "\n", ";;", ";&", ";;&"})
# Redirection operators (an optional fd number is written right before them).
REDIRECT_OPERATORS = frozenset(
    {">", ">>", "<", "<<", "<<-", "<<<", ">&", "<&", "&>", "&>>", ">|", "<>"}
)

# Programs whose options are long names behind one dash (`find -name`, `java -jar`): never
# split into letters.
SINGLE_DASH_LONG = frozenset(
    {
        "find",
        "java",
        "gcc",
        "g++",
        "cc",
        "clang",
        "clang++",
        "go",
        "ffmpeg",
        "ffprobe",
        "convert",
        "mogrify",
        "identify",
        "xdotool",
        "openssl",
        "tcpdump",
        "iptables",
        "ip6tables",
        "qemu-img",
        "dig",
        "xrandr",
        "xset",
        "gs",
        "vlc",
        "mplayer",
    }
)

# find's actions that run a command up to `;` (or `{} +`).
FIND_EXEC_ACTIONS = frozenset({"-exec", "-execdir", "-ok", "-okdir"})

# Options that take a value in the next word (or attached: `-d:`, `-k2`, `--x=y`), per
# program. Options not listed take no value unless one is attached.
VALUE_OPTIONS: dict[str, frozenset[str]] = {
    name: frozenset(opts.split())
    for name, opts in {
        "find": "-name -iname -path -ipath -wholename -iwholename -regex -iregex -regextype"
        " -type -xtype -size -mtime -mmin -atime -amin -ctime -cmin -newer -anewer -cnewer"
        " -perm -user -group -uid -gid -maxdepth -mindepth -links -inum -samefile -lname"
        " -ilname -printf -fprint -fprint0 -fprintf -fls -used -context -fstype -D -O",
        "xargs": "-I -n -P -L -d -s -E -a --arg-file --delimiter --max-args --max-procs"
        " --max-lines --max-chars --eof --replace --process-slot-var",
        "cut": "-d -f -b -c --delimiter --fields --bytes --characters --output-delimiter",
        "sort": "-k -t -o -S -T --key --field-separator --output --buffer-size"
        " --temporary-directory --parallel --files0-from --compress-program",
        "head": "-n -c --lines --bytes",
        "tail": "-n -c -s --lines --bytes --sleep-interval --pid --max-unchanged-stats",
        "grep": "-e -f -m -A -B -C -d -D --regexp --file --max-count --after-context"
        " --before-context --context --include --exclude --exclude-dir --exclude-from"
        " --label --color --colour --devices --directories --binary-files",
        "egrep": "-e -f -m -A -B -C --regexp --file --max-count --include --exclude",
        "fgrep": "-e -f -m -A -B -C --regexp --file --max-count --include --exclude",
        "sed": "-e -f -l --expression --file --line-length",
        "awk": "-F -v -f --field-separator --assign --file",
        "gawk": "-F -v -f --field-separator --assign --file",
        "tar": "-f -C -T -X -b -g -N -V -H --file --directory --files-from --exclude-from"
        " --blocking-factor --listed-incremental --newer --label --format --exclude"
        " --transform --strip-components --owner --group --mode --use-compress-program",
        "tr": "",
        "ls": "-I -w -T --ignore --hide --width --tabsize --block-size --format --sort"
        " --time --time-style --color --quoting-style --indicator-style",
        "du": "-d -B -t --max-depth --block-size --threshold --exclude --exclude-from --time"
        " --time-style",
        "df": "-B -t -x --block-size --type --exclude-type --output",
        "chmod": "--reference",
        "chown": "--reference --from",
        "cp": "-S -t --suffix --target-directory --backup --reflink --sparse",
        "mv": "-S -t --suffix --target-directory --backup",
        "ln": "-S -t --suffix --target-directory --backup",
        "rsync": "-e -f -B -T --rsh --filter --exclude --include --exclude-from"
        " --include-from --files-from --rsync-path --temp-dir --backup-dir --suffix"
        " --chmod --chown --bwlimit --timeout --port --password-file --log-file",
        "ssh": "-b -c -D -E -e -F -I -i -J -L -l -m -O -o -p -Q -R -S -W -w",
        "scp": "-c -F -i -J -l -o -P -S",
        "curl": "-o -O -d -H -X -u -A -e -b -c -x -T -F -w -m -r -E -K --output --data"
        " --data-raw --data-binary --data-urlencode --header --request --user --user-agent"
        " --referer --cookie --cookie-jar --proxy --upload-file --form --write-out"
        " --max-time --connect-timeout --range --cert --config --retry --limit-rate",
        "wget": "-O -o -a -P -t -T -w -U -e -i -A -R -l -D --output-document --output-file"
        " --append-output --directory-prefix --tries --timeout --wait --user-agent"
        " --execute --input-file --accept --reject --level --domains --user --password"
        " --header --post-data --limit-rate",
        "git": "-C -c --git-dir --work-tree --namespace",
        "docker": "-H -l -c --host --log-level --context --config",
        "kill": "-s -n --signal",
        "killall": "-s -u -o -y --signal --user --older-than --younger-than",
        "pkill": "-s -u -U -g -G -P -t --signal --euid --uid --pgroup --group --parent --terminal",
        "pgrep": "-u -U -g -G -P -t -d --euid --uid --pgroup --group --parent --terminal"
        " --delimiter",
        "ps": "-o -p -u -U -g -G -t -C --format --pid --user --sort --ppid",
        "split": "-l -b -C -n -a -d --lines --bytes --line-bytes --number --suffix-length"
        " --additional-suffix",
        "paste": "-d --delimiters",
        "join": "-t -j -1 -2 -o -a -v -e",
        "column": "-s -t -c -o -N --separator --output-separator --table-columns",
        "date": "-d -f -r -s -I --date --file --reference --set --iso-8601",
        "touch": "-d -r -t --date --reference --time",
        "mkdir": "-m --mode --context",
        "install": "-m -o -g -t -S --mode --owner --group --target-directory --suffix",
        "diff": "-U -C -x -X -I -W -F -L --unified --context --exclude --exclude-from"
        " --ignore-matching-lines --width --label --line-format",
        "nl": "-b -d -f -h -i -l -n -s -v -w",
        "fold": "-w --width",
        "fmt": "-w -p -g --width --prefix --goal",
        "pr": "-w -l -o -h",
        "seq": "-f -s --format --separator",
        "uniq": "-f -s -w --skip-fields --skip-chars --check-chars",
        "wc": "--files0-from",
        "od": "-A -j -N -t -w --address-radix --skip-bytes --read-bytes --format --width",
        "hexdump": "-e -f -n -s",
        "xxd": "-c -g -l -s -o",
        "dd": "",
        "zip": "-x -i -b -n -t -P --exclude --include --password",
        "unzip": "-d -x -P",
        "gzip": "-S --suffix",
        "openssl": "-in -out -k -pass -passin -passout -md -inkey -certfile -name",
        "ssh-keygen": "-t -b -C -f -N -P -E -F -R -l",
        "useradd": "-c -d -e -f -g -G -k -K -p -s -u --comment --home-dir --expiredate"
        " --gid --groups --shell --uid --password",
        "usermod": "-c -d -e -f -g -G -l -p -s -u --comment --home --gid --groups --login"
        " --shell --uid --password",
        "crontab": "-u",
        "mount": "-t -o -L -U --types --options --label --uuid",
        "jq": "--arg --argjson --slurpfile --rawfile --indent --tab",
        "sqlite3": "-separator -cmd",
        "mysql": "-u -p -h -P -D -e --user --host --port --database --execute",
        "psql": "-U -h -p -d -c -f --username --host --port --dbname --command --file",
        "python": "-m -c -W -X",
        **{shell: "-c -o -O --rcfile --init-file" for shell in ("sh", "bash", "dash", "ksh")},
        "zsh": "-c -o",
        "python3": "-m -c -W -X",
        "watch": "-n -d --interval",
        "less": "-x -y -b -h -j -P -o -O -p -t -T",
        "top": "-d -n -p -u -o",
        "iconv": "-f -t --from-code --to-code",
        "base64": "-w --wrap",
        "tee": "",
        "npm": "--prefix",
        "pip": "-r -c -e -t -i --requirement --constraint --editable --target --index-url"
        " --extra-index-url",
        "ffmpeg": "-i -f -c -codec -vcodec -acodec -b -r -s -t -ss -to -vf -af -map",
    }.items()
}
