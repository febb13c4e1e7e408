"""Shell completions (issue 7), sourced in the real shells (bash, zsh, fish) and asked for completions: commands,
each command's options (so they cannot drift from the parser), fixed values, and account names from the config.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
from pathlib import Path

import pytest

from mailtoken import cli, clientconf, config
from tests.conftest import Env, require

ROOT = Path(__file__).resolve().parent.parent
COMPLETIONS = ROOT / "contrib" / "completions"
ACCOUNTS = ["work", "me@home", "lab"]
CONFIG = """# accounts for the completion tests
[defaults]
notify_cmd = []

[accounts.work]
email = "me@contoso.com"
client_id = "abc"

[accounts."me@home"]  # a quoted name
email = "me@outlook.com"
client_id = "def"

  [ accounts . lab ]
email = "lab@contoso.com"
client_id = "ghi"
"""

# Sourced in `zsh -f -i` under zsh/zpty: compadd is wrapped so that every match is printed between markers.
ZSH_INIT = r"""
PS1='' PROMPT='' RPROMPT=''
unsetopt zle_bracketed_paste auto_list auto_menu 2>/dev/null
fpath=($COMPDIR $fpath)
autoload -Uz compinit && compinit -u -D
zstyle ':completion:*' insert-tab false
_capture_begin() { print -rn -- $'\n<<<BEGIN>>>\n' }
_capture_end() { print -rn -- $'\n<<<END>>>\n' }
# The completion system empties these arrays after each use: set them again for every <Tab>.
_capture_complete() { compprefuncs=(_capture_begin); comppostfuncs=(_capture_end); zle complete-word }
zle -N _capture_complete
bindkey '^I' _capture_complete
compadd() {
  local a
  for a in "$@"; do
    [[ $a == -- ]] && break
    if [[ $a == -[OAD]* ]]; then builtin compadd "$@"; return; fi
  done
  local -a __hits
  builtin compadd -A __hits "$@"
  (( $#__hits )) && print -rl -- "<<<MATCH>>>"${^__hits}
  builtin compadd "$@"
}
print -r -- '<<<READY>>>'
"""
ZSH_DRIVER = r"""
zmodload zsh/zpty
zpty z zsh -f -i
zpty -w z "source ${(q)1}"
zpty -r z line '*<<<READY>>>*'
for cmdline in "${@[2,-1]}"; do
  zpty -w -n z "$cmdline"$'\t'
  zpty -r z out '*<<<END>>>*'
  print -r -- "<<<LINE>>>$cmdline"
  print -r -- "${out##*<<<BEGIN>>>}"
  zpty -w -n z $'\C-u'
done
zpty -d z
"""
BASH_DRIVER = r"""
source "$1"; shift
spec=$(complete -p mailtoken) || exit 3
fn=${spec#*-F }; fn=${fn%% *}
for cmdline in "$@"; do
  read -ra COMP_WORDS <<< "$cmdline"
  [[ $cmdline == *' ' ]] && COMP_WORDS+=("")
  COMP_CWORD=$((${#COMP_WORDS[@]} - 1)) COMP_LINE=$cmdline COMP_POINT=${#cmdline} COMPREPLY=()
  "$fn" mailtoken "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
  printf '<<<LINE>>>%s\n' "$cmdline"
  printf '<<<MATCH>>>%s\n' "${COMPREPLY[@]}"
done
"""
FISH_DRIVER = r"""
source $argv[1]
for cmdline in $argv[2..-1]
  echo "<<<LINE>>>$cmdline"
  for match in (complete -C"$cmdline")
    echo "<<<MATCH>>>"(string split -f1 \t -- $match)
  end
end
"""


def _parser_verbs() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _long_options(parser: argparse.ArgumentParser) -> set[str]:
    return {o for a in parser._actions for o in a.option_strings if o.startswith("--")}


def _complete(shell: str, env: Env, lines: list[str]) -> dict[str, set[str]]:
    """Ask `shell` for the completions of each command line; returns line -> set of matches."""
    require(shell)
    if shell == "zsh":
        init = env.root / "init.zsh"
        init.write_text(ZSH_INIT)
        argv = ["zsh", "-f", "-c", ZSH_DRIVER, "zsh", str(init), *lines]
    elif shell == "bash":
        argv = ["bash", "--norc", "--noprofile", "-c", BASH_DRIVER, "bash", str(COMPLETIONS / "mailtoken.bash"), *lines]
    else:
        argv = ["fish", "--no-config", "-c", FISH_DRIVER, str(COMPLETIONS / "mailtoken.fish"), *lines]
    result = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        env={**env.vars, "COMPDIR": str(COMPLETIONS), "TERM": "dumb"},
    )
    assert result.returncode == 0, result.stderr
    found: dict[str, set[str]] = {}
    current = None
    for line in result.stdout.replace("\r", "").splitlines():
        if line.startswith("<<<LINE>>>"):
            current = line.removeprefix("<<<LINE>>>")
            found[current] = set()
        elif current is not None and "<<<MATCH>>>" in line:
            match = line.split("<<<MATCH>>>", 1)[1]
            if match:
                found[current].add(match)
    assert list(found) == lines, result.stdout + result.stderr
    return found


@pytest.fixture
def configured(env: Env) -> Env:
    env.write_config(CONFIG)
    assert sorted(config.load(str(env.config_path)).accounts) == sorted(ACCOUNTS)  # the test config is valid
    return env


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completions_follow_the_parser_and_the_config(shell: str, configured: Env) -> None:
    verbs = _parser_verbs()
    lines = ["mailtoken ", *(f"mailtoken {verb} --" for verb in verbs)]
    one_account = ["token", "xoauth2", "oauthbearer", "login", "logout", "test"]
    lines += [f"mailtoken {verb} " for verb in one_account]
    lines += [
        "mailtoken -v status ",
        "mailtoken refresh work ",
        "mailtoken login --timeout 5 ",
        "mailtoken token work ",
        "mailtoken config ",
        "mailtoken config mutt ",
        "mailtoken add --store ",
        "mailtoken add --cloud ",
        "mailtoken systemd ",
        "mailtoken to",
    ]
    got = _complete(shell, configured, lines)
    assert got["mailtoken "] == set(verbs)
    for verb, parser in verbs.items():
        offered = got[f"mailtoken {verb} --"]
        assert offered == _long_options(parser), f"{shell}: options of '{verb}' drifted: {sorted(offered)}"
    for verb in one_account:
        assert got[f"mailtoken {verb} "] == set(ACCOUNTS), f"{shell}: {verb}"
    assert got["mailtoken -v status "] == set(ACCOUNTS)
    assert got["mailtoken refresh work "] == set(ACCOUNTS)
    assert got["mailtoken login --timeout 5 "] == set(ACCOUNTS), "an option's value is not a positional argument"
    assert not got["mailtoken token work "] & set(ACCOUNTS), "token takes one account"
    assert got["mailtoken config "] == set(clientconf.CLIENTS + clientconf.BRIDGE_CLIENTS)
    assert got["mailtoken config mutt "] == set(ACCOUNTS)
    assert got["mailtoken add --store "] == set(config.STORES)
    assert got["mailtoken add --cloud "] == {"global", "usgov", "usgov-dod", "china"}
    assert got["mailtoken systemd "] == {"install", "uninstall"}
    assert got["mailtoken to"] == {"token"}


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_accounts_come_from_the_default_config_path(shell: str, env: Env) -> None:
    xdg = env.root / "xdg"
    (xdg / "mailtoken").mkdir(parents=True)
    (xdg / "mailtoken" / "config.toml").write_text(CONFIG)
    env.vars["XDG_CONFIG_HOME"] = str(xdg)
    got = _complete(shell, env, ["mailtoken logout ", "mailtoken status "])
    assert got["mailtoken logout "] == set(ACCOUNTS)
    del env.vars["XDG_CONFIG_HOME"]
    assert _complete(shell, env, ["mailtoken logout "])["mailtoken logout "] == set(), "no config, no accounts"


def test_cloud_names_match_the_catalog() -> None:
    from mailtoken import providers

    clouds = set(providers.spec("microsoft")["clouds"])
    assert clouds == {"global", "usgov", "usgov-dod", "china"}, "update the --cloud values in contrib/completions/"
    for name in ("mailtoken.bash", "_mailtoken", "mailtoken.fish"):
        text = (COMPLETIONS / name).read_text()
        assert re.search(r"global usgov usgov-dod china", text), name
    assert json.dumps(sorted(clouds))
