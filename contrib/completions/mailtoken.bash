# bash completion for mailtoken(1)                                  -*- shell-script -*-
# Install: copy to ~/.local/share/bash-completion/completions/mailtoken (or /usr/share/bash-completion/
# completions/mailtoken), or source it from ~/.bashrc. Needs bash 4.2+; bash-completion is not required.

# Account names from [accounts.NAME] (or [accounts."NAME"]) headers of the config file: read with sed, since
# starting Python on every <Tab> would be slow.
_mailtoken_accounts() {
    local config=${MAILTOKEN_CONFIG:-}
    if [[ -z $config ]]; then
        local base=${XDG_CONFIG_HOME:-}
        [[ $base == /* ]] || base=$HOME/.config
        config=$base/mailtoken/config.toml
    fi
    [[ -r $config ]] || return 0
    sed -nE "s/^[[:space:]]*\[[[:space:]]*accounts[[:space:]]*\.[[:space:]]*[\"']?([A-Za-z0-9._@+-]+)[\"']?[[:space:]]*\][[:space:]]*(#.*)?\$/\1/p" "$config"
}

_mailtoken() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=
    ((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD - 1]}
    local commands="token xoauth2 oauthbearer login refresh systemd logout add status config sendmail test man serve"
    # Options that take a value: the word after them is not a positional argument.
    local valued=" --timeout --user --host --port --min-validity --email --client-id --tenant --authority --cloud --store --cafile --queue -f -F --account "
    local cmd= word i
    local -i nargs=0 skip=0
    for ((i = 1; i < COMP_CWORD; i++)); do
        word=${COMP_WORDS[i]}
        if ((skip)); then
            skip=0
            continue
        fi
        case $word in
        --*=*) ;;
        -*) [[ $valued == *" $word "* ]] && skip=1 ;;
        *) if [[ -z $cmd ]]; then cmd=$word; else nargs+=1; fi ;;
        esac
    done

    case $prev in
    --store) mapfile -t COMPREPLY < <(compgen -W "auto keyring file" -- "$cur"); return ;;
    --cloud) mapfile -t COMPREPLY < <(compgen -W "global usgov usgov-dod china" -- "$cur"); return ;;
    --tenant) mapfile -t COMPREPLY < <(compgen -W "common organizations consumers" -- "$cur"); return ;;
    --cafile) mapfile -t COMPREPLY < <(compgen -f -- "$cur"); return ;;
    --queue) mapfile -t COMPREPLY < <(compgen -d -- "$cur"); return ;;
    --account) mapfile -t COMPREPLY < <(compgen -W "$(_mailtoken_accounts)" -- "$cur"); return ;;
    --timeout | --user | --host | --port | --min-validity | --email | --client-id | --authority) return ;;
    esac

    if [[ -z $cmd ]]; then
        if [[ $cur == -* ]]; then
            mapfile -t COMPREPLY < <(compgen -W "-h --help -v --verbose --version" -- "$cur")
        else
            mapfile -t COMPREPLY < <(compgen -W "$commands" -- "$cur")
        fi
        return
    fi

    local opts="-h --help -v --verbose"
    case $cmd in
    token) opts+=" --timeout" ;;
    xoauth2) opts+=" --timeout --user --raw" ;;
    oauthbearer) opts+=" --timeout --user --raw --host --port" ;;
    login) opts+=" --device --browser --paste --timeout --no-wait --resume" ;;
    refresh) opts+=" --all --min-validity --timeout" ;;
    systemd) opts+=" --no-enable --serve" ;;
    serve) [[ ${COMP_WORDS[*]} == *" passwd "* ]] && opts+=" --account" ;;
    add) opts+=" --email --client-id --tenant --authority --cloud --store" ;;
    status) opts+=" --json" ;;
    sendmail) opts+=" -t -i -f -F --timeout --queue --flush" ;;
    test) opts+=" --imap --pop --smtp --host --user --cafile --timeout" ;;
    man) opts+=" --path" ;;
    esac
    if [[ $cur == -* ]]; then
        mapfile -t COMPREPLY < <(compgen -W "$opts" -- "$cur")
        return
    fi

    local words=
    case $cmd in
    token | xoauth2 | oauthbearer | login | logout | sendmail | test) ((nargs == 0)) && words=$(_mailtoken_accounts) ;;
    refresh | status) words=$(_mailtoken_accounts) ;;
    systemd) ((nargs == 0)) && words="install uninstall" ;;
    man) ((nargs == 0)) && words="mailtoken mailtoken.toml" ;;
    serve) ((nargs == 0)) && words="passwd revoke list" ;;
    config)
        if ((nargs == 0)); then
            words="msmtp mbsync neomutt mutt offlineimap3 getmail6 aerc curl mpop s-nail imapfilter fetchmail postfix"
        elif ((nargs == 1)); then
            words=$(_mailtoken_accounts)
        fi
        ;;
    esac
    mapfile -t COMPREPLY < <(compgen -W "$words" -- "$cur")
}

complete -F _mailtoken mailtoken
