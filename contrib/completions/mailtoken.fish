# fish completion for mailtoken(1).
# Install: copy to ~/.config/fish/completions/mailtoken.fish (or /usr/share/fish/vendor_completions.d/).

# Account names from [accounts.NAME] (or [accounts."NAME"]) headers of the config file: read with sed, since
# starting Python on every <Tab> would be slow.
function __mailtoken_accounts
    set -l config $MAILTOKEN_CONFIG
    if test -z "$config"
        set -l base $XDG_CONFIG_HOME
        string match -q '/*' -- "$base"; or set base $HOME/.config
        set config $base/mailtoken/config.toml
    end
    test -r "$config"; or return 0
    sed -nE "s/^[[:space:]]*\[[[:space:]]*accounts[[:space:]]*\.[[:space:]]*[\"']?([A-Za-z0-9._@+-]+)[\"']?[[:space:]]*\][[:space:]]*(#.*)?\$/\1/p" $config
end

# The command and its positional arguments typed so far (the values of options that take one are skipped).
function __mailtoken_args
    set -l valued --timeout --user --host --port --min-validity --email --client-id --tenant --authority --cloud --store --cafile --queue -f -F --account
    set -l skip 0
    for word in (commandline -opc)[2..-1]
        if test $skip -eq 1
            set skip 0
            continue
        end
        switch $word
            case '--*=*'
            case '-*'
                contains -- $word $valued; and set skip 1
            case '*'
                echo $word
        end
    end
end

# True when the command is one of $argv.
function __mailtoken_using
    set -l args (__mailtoken_args)
    test (count $args) -ge 1; and contains -- $args[1] $argv
end

# True when the command is $argv[1] and exactly $argv[2] positional arguments follow it so far.
function __mailtoken_at
    set -l args (__mailtoken_args)
    test (count $args) -ge 1; and test "$args[1]" = $argv[1]; and test (count $args) -eq (math $argv[2] + 1)
end

set -l commands token xoauth2 oauthbearer login refresh systemd logout add status config sendmail test man serve

complete -c mailtoken -f
complete -c mailtoken -s h -l help -d 'show help'
complete -c mailtoken -s v -l verbose -d 'diagnostics on stderr (never a secret)'
complete -c mailtoken -n "not __fish_seen_subcommand_from $commands" -l version -d 'show the version'

complete -c mailtoken -n "not __fish_seen_subcommand_from $commands" -a token -d 'print a fresh access token'
complete -c mailtoken -n "not __fish_seen_subcommand_from $commands" -a xoauth2 -d 'print the SASL XOAUTH2 string'
complete -c mailtoken -n "not __fish_seen_subcommand_from $commands" -a oauthbearer -d 'print the SASL OAUTHBEARER string'
complete -c mailtoken -n "not __fish_seen_subcommand_from $commands" -a login -d 'sign in and store the grant'
complete -c mailtoken -n "not __fish_seen_subcommand_from $commands" -a refresh -d 'refresh tokens that expire soon'
complete -c mailtoken -n "not __fish_seen_subcommand_from $commands" -a systemd -d 'install or remove the refresh timer'
complete -c mailtoken -n "not __fish_seen_subcommand_from $commands" -a logout -d 'remove the stored tokens'
complete -c mailtoken -n "not __fish_seen_subcommand_from $commands" -a add -d 'add an account to the config'
complete -c mailtoken -n "not __fish_seen_subcommand_from $commands" -a status -d 'show accounts and token expiry'
complete -c mailtoken -n "not __fish_seen_subcommand_from $commands" -a config -d 'print a config block for a mail client'
complete -c mailtoken -n "not __fish_seen_subcommand_from $commands" -a sendmail -d 'send stdin with Microsoft Graph'
complete -c mailtoken -n "not __fish_seen_subcommand_from $commands" -a test -d 'sign in to the mail servers'
complete -c mailtoken -n "not __fish_seen_subcommand_from $commands" -a man -d 'show a manual page of this installation'
complete -c mailtoken -n "not __fish_seen_subcommand_from $commands" -a serve -d 'run the bridge, manage its passwords'

# Account names: once for the commands that take one, as often as wanted for those that take several.
for cmd in token xoauth2 oauthbearer login logout sendmail test
    complete -c mailtoken -n "__mailtoken_at $cmd 0" -a '(__mailtoken_accounts)' -d account
end
complete -c mailtoken -n '__mailtoken_using refresh status' -a '(__mailtoken_accounts)' -d account
complete -c mailtoken -n '__mailtoken_at config 0' -a 'msmtp mbsync neomutt mutt offlineimap3 getmail6 aerc curl mpop s-nail imapfilter fetchmail postfix' -d client
complete -c mailtoken -n '__mailtoken_at config 1' -a '(__mailtoken_accounts)' -d account
complete -c mailtoken -n '__mailtoken_at systemd 0' -a 'install uninstall'
complete -c mailtoken -n '__mailtoken_at man 0' -a 'mailtoken mailtoken.toml' -d page
complete -c mailtoken -n '__mailtoken_at serve 0' -a 'passwd revoke list'

complete -c mailtoken -n '__mailtoken_using token xoauth2 oauthbearer refresh test' -l timeout -x -d 'give up after this many seconds'
complete -c mailtoken -n '__mailtoken_using xoauth2 oauthbearer test' -l user -x -d 'mailbox to authenticate as'
complete -c mailtoken -n '__mailtoken_using xoauth2 oauthbearer' -l raw -d 'print the unencoded string'
complete -c mailtoken -n '__mailtoken_using oauthbearer test' -l host -x -a '(__fish_print_hostnames)' -d 'server host name'
complete -c mailtoken -n '__mailtoken_using oauthbearer' -l port -x -d 'server port'

complete -c mailtoken -n '__mailtoken_using login' -l device -d 'device code flow (the default)'
complete -c mailtoken -n '__mailtoken_using login' -l browser -d 'authorization code flow, localhost redirect'
complete -c mailtoken -n '__mailtoken_using login' -l paste -d 'browser flow: paste the address it was sent to'
complete -c mailtoken -n '__mailtoken_using login' -l timeout -x -d 'give up waiting after this many seconds'
complete -c mailtoken -n '__mailtoken_using login' -l no-wait -d 'print the URL and code, and return'
complete -c mailtoken -n '__mailtoken_using login' -l resume -d 'finish the sign-in --no-wait started'

complete -c mailtoken -n '__mailtoken_using refresh' -l all -d 'every account in the config'
complete -c mailtoken -n '__mailtoken_using refresh' -l min-validity -x -d 'refresh tokens with less than this left (30m)'

complete -c mailtoken -n '__mailtoken_using systemd' -l no-enable -d 'only write the unit files'
complete -c mailtoken -n '__mailtoken_using systemd' -l serve -d 'the bridge service instead of the timer'

# serve passwd NAME --account ACCOUNT
function __mailtoken_serve_passwd
    set -l args (__mailtoken_args)
    test (count $args) -ge 2; and test "$args[1]" = serve; and test "$args[2]" = passwd
end
complete -c mailtoken -n __mailtoken_serve_passwd -l account -x -a '(__mailtoken_accounts)' -d 'the account the device uses'

complete -c mailtoken -n '__mailtoken_using add' -l email -x -d 'mailbox address'
complete -c mailtoken -n '__mailtoken_using add' -l client-id -x -d 'application (client) ID'
complete -c mailtoken -n '__mailtoken_using add' -l tenant -x -a 'common organizations consumers' -d tenant
complete -c mailtoken -n '__mailtoken_using add' -l authority -x -d 'full authority URL'
complete -c mailtoken -n '__mailtoken_using add' -l cloud -x -a 'global usgov usgov-dod china' -d 'Microsoft cloud'
complete -c mailtoken -n '__mailtoken_using add' -l store -x -a 'auto keyring file' -d 'where to keep the grant'

complete -c mailtoken -n '__mailtoken_using status' -l json -d 'machine-readable output'

complete -c mailtoken -n '__mailtoken_using sendmail' -s t -d 'also send to the To, Cc and Bcc addresses'
complete -c mailtoken -n '__mailtoken_using sendmail' -s i -d 'accepted (a lone dot never ends the message)'
complete -c mailtoken -n '__mailtoken_using sendmail' -s f -x -d 'envelope sender'
complete -c mailtoken -n '__mailtoken_using sendmail' -s F -x -d 'full name for a missing From'
complete -c mailtoken -n '__mailtoken_using sendmail' -l timeout -x -d 'one deadline for the whole command'
complete -c mailtoken -n '__mailtoken_using sendmail' -l queue -x -a '(__fish_complete_directories)' -d 'keep unsent messages here'
complete -c mailtoken -n '__mailtoken_using sendmail' -l flush -d 'send the messages kept in --queue'
complete -c mailtoken -n '__mailtoken_using man' -l path -d 'print the folder holding the pages (for MANPATH)'

complete -c mailtoken -n '__mailtoken_using test' -l imap -d 'test IMAP (optionally =URL)'
complete -c mailtoken -n '__mailtoken_using test' -l pop -d 'test POP (optionally =URL)'
complete -c mailtoken -n '__mailtoken_using test' -l smtp -d 'test SMTP (optionally =URL)'
complete -c mailtoken -n '__mailtoken_using test' -l cafile -r -F -d 'trust these CA certificates (PEM)'
