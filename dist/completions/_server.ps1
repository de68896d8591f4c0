
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'server' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'server'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'server' {
            [CompletionResult]::new('--bind', '--bind', [CompletionResultType]::ParameterName, 'Address to listen on, IPv4 or IPv6 (e.g. 127.0.0.1, ::1). Default: `::` with IPv4 mapped in, so one socket serves IPv6 and IPv4 clients in one room; `0.0.0.0` where IPv6 is unavailable')
            [CompletionResult]::new('--framing', '--framing', [CompletionResultType]::ParameterName, '`raw`: relay every chunk as it arrives, bytes as they are (the default). `line`: relay whole lines only; a partial line waits for its newline, so lines never interleave')
            [CompletionResult]::new('--max-line', '--max-line', [CompletionResultType]::ParameterName, 'Line mode: the longest line allowed (not counting its newline); a sender that exceeds it is disconnected')
            [CompletionResult]::new('--log-format', '--log-format', [CompletionResultType]::ParameterName, 'Log format on stderr: `text` for people, `json` (one object per line) for log shippers')
            [CompletionResult]::new('--stats-interval', '--stats-interval', [CompletionResultType]::ParameterName, 'Log a statistics line every SECS seconds: clients now and peak, messages and bytes in and out, clients cut by reason. Off by default')
            [CompletionResult]::new('--backend', '--backend', [CompletionResultType]::ParameterName, 'I/O backend: `polling` (epoll, kqueue, IOCP; the default when compiled in; clients bounded by memory and `ulimit -n`) or `select` (the seed''s select(); about 1,018 clients on Unix, 1,023 on Windows). `--version` lists the backends this build has')
            [CompletionResult]::new('--max-pending', '--max-pending', [CompletionResultType]::ParameterName, 'Most bytes queued for one client before it is cut as a slow consumer. Accepts suffixes: 512KiB, 16MiB, 1GiB (K/M/G are the same binary units)')
            [CompletionResult]::new('--write-timeout', '--write-timeout', [CompletionResultType]::ParameterName, 'Cut a client when bytes have waited this long for it with no write progress at all. 0 turns the timeout off (only --max-pending applies)')
            [CompletionResult]::new('--max-clients', '--max-clients', [CompletionResultType]::ParameterName, 'Most clients at once; later ones are accepted and closed at once with a log line. Default: what the descriptor limit (`ulimit -n`, raised to its hard limit at start) and the backend allow, minus a small reserve')
            [CompletionResult]::new('--drain-timeout', '--drain-timeout', [CompletionResultType]::ParameterName, 'On Ctrl-C / SIGTERM, how long pending output may take to drain before the server closes everything and exits. A second Ctrl-C exits at once')
            [CompletionResult]::new('--pace-budget', '--pace-budget', [CompletionResultType]::ParameterName, 'Bytes queued for a reader that keeps up beyond which the server stops reading from the senders (TCP then slows them) instead of letting messages wait behind megabytes or cutting readers. Smaller: shorter waits under load, less throughput. A sender that sent under 16KiB since the room last caught up (someone typing) is still read')
            [CompletionResult]::new('--send-buffer', '--send-buffer', [CompletionResultType]::ParameterName, 'The kernel send buffer asked for on every client socket. Bytes in it are out of the pace''s sight, and the kernel may grow an unset buffer to megabytes; too small a buffer (32KiB on Linux) leaves writes waiting for TCP acknowledgements and throughput collapses. 0 leaves the OS default and its autotuning')
            [CompletionResult]::new('--lag-grace', '--lag-grace', [CompletionResultType]::ParameterName, 'How long one reader that falls behind may slow the whole room; after that it gets what it can and is cut by --max-pending or --write-timeout if it never catches up')
            [CompletionResult]::new('--max-per-address', '--max-per-address', [CompletionResultType]::ParameterName, 'Most clients at once from one address (an IPv4 address; for IPv6 its /64, which one subscriber''s network hands out freely). Off by default: users behind one NAT, and local tests, share an address')
            [CompletionResult]::new('--max-rate', '--max-rate', [CompletionResultType]::ParameterName, 'Most bytes per second one client may send (e.g. 64KiB). A client over it is not cut: the server stops reading it until it may send again, so TCP slows it and nothing is lost. Off by default')
            [CompletionResult]::new('--keepalive', '--keepalive', [CompletionResultType]::ParameterName, 'TCP keepalive on every client: the kernel probes a connection silent this long, so a peer that vanished without a word (power cut, NAT timeout) is found and cut. 0 turns it off')
            [CompletionResult]::new('--idle-timeout', '--idle-timeout', [CompletionResultType]::ParameterName, 'Cut a client that has neither sent nor been sent anything for this long. Off by default')
            [CompletionResult]::new('--handshake-timeout', '--handshake-timeout', [CompletionResultType]::ParameterName, 'Cut a TLS client whose handshake is not done within SECS seconds; it never joins the room meanwhile')
            [CompletionResult]::new('--allow', '--allow', [CompletionResultType]::ParameterName, 'Admit only peers in this network: CIDR such as 10.0.0.0/8 or ::1/128; a bare address is one host. Repeatable. Default: every peer that no --deny matches')
            [CompletionResult]::new('--deny', '--deny', [CompletionResultType]::ParameterName, 'Refuse peers in this network (CIDR or a bare address); wins over --allow. Repeatable. Refused peers are closed right after accept, logged at most once a minute per address')
            [CompletionResult]::new('--allow-file', '--allow-file', [CompletionResultType]::ParameterName, 'Add the --allow rules in FILE: one CIDR or address a line, `#` comments. Re-read on SIGHUP (Unix), for new connections. Repeatable')
            [CompletionResult]::new('--deny-file', '--deny-file', [CompletionResultType]::ParameterName, 'Add the --deny rules in FILE, written as for --allow-file. Re-read on SIGHUP (Unix). Repeatable')
            [CompletionResult]::new('--http', '--http', [CompletionResultType]::ParameterName, 'Serve health, metrics and statistics over HTTP on ADDR (e.g. 127.0.0.1:8222; a bare port means 127.0.0.1, since only --http-token-file protects it): GET /healthz, /metrics (Prometheus), /stats and /clients (JSON); and a chat page at / whose WebSocket (/ws) joins the room. Off by default')
            [CompletionResult]::new('--cluster', '--cluster', [CompletionResultType]::ParameterName, 'Share the room with every relay connected to the NATS server at URL with the same --room (e.g. nats://127.0.0.1:4222; several URLs separated by commas). Exits 1 if NATS is unreachable at start. Needs a build with the `cluster` feature (`cargo build --release -p server-cli --features cluster`)')
            [CompletionResult]::new('--tls-cert', '--tls-cert', [CompletionResultType]::ParameterName, 'Serve TLS only, with this PEM certificate chain (the server''s certificate first); needs --tls-key. Every client must then complete a TLS handshake (plaintext clients are dropped). Default: plain TCP')
            [CompletionResult]::new('--tls-key', '--tls-key', [CompletionResultType]::ParameterName, 'The PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1)')
            [CompletionResult]::new('--tls-client-ca', '--tls-client-ca', [CompletionResultType]::ParameterName, 'Mutual TLS: admit only clients that present a certificate issued by a CA in this PEM file. Default: clients are not asked for certificates')
            [CompletionResult]::new('--room', '--room', [CompletionResultType]::ParameterName, 'With --cluster: the room''s name, letters, digits, ''-'' and ''_'' [default: lobby]')
            [CompletionResult]::new('--burst', '--burst', [CompletionResultType]::ParameterName, 'With --max-rate, the most a client may send at once after a quiet spell. Default: a quarter of a second of its rate, at least 16KiB')
            [CompletionResult]::new('--http-token-file', '--http-token-file', [CompletionResultType]::ParameterName, 'With --http: require `Authorization: Bearer TOKEN` on the operator''s paths but /healthz, TOKEN being this file''s content (surrounding white space ignored; read again on SIGHUP)')
            [CompletionResult]::new('--http-max-connections', '--http-max-connections', [CompletionResultType]::ParameterName, 'With --http: most HTTP connections at once; more are answered 503 and closed')
            [CompletionResult]::new('--http-head-timeout', '--http-head-timeout', [CompletionResultType]::ParameterName, 'With --http: close a connection whose request head is not complete this long after its first byte (against slowloris)')
            [CompletionResult]::new('--http-idle-timeout', '--http-idle-timeout', [CompletionResultType]::ParameterName, 'With --http: close a keep-alive connection idle this long')
            [CompletionResult]::new('--ws-origin', '--ws-origin', [CompletionResultType]::ParameterName, 'With --http: a web origin (e.g. https://chat.example.org) whose pages may open /ws besides the built-in page''s own; repeat for more; `*` allows any. Clients that send no Origin (not browsers) are always let in')
            [CompletionResult]::new('--ws-max-message', '--ws-max-message', [CompletionResultType]::ParameterName, 'With --http: most bytes in one message from a web client (fragments together); a larger one closes it with code 1009. At most 64KiB - 1, the engine''s read buffer')
            [CompletionResult]::new('--ws-ping', '--ws-ping', [CompletionResultType]::ParameterName, 'With --http: ping web clients this often, and cut one that sent nothing at all (no pong, no message) by the next ping as idle. 0: never ping')
            [CompletionResult]::new('--generate', '--generate', [CompletionResultType]::ParameterName, 'generate')
            [CompletionResult]::new('--tag', '--tag', [CompletionResultType]::ParameterName, 'Line mode: prefix every forwarded line with the sender''s id, e.g. `[7] hello`. Ids are never reused while the server runs')
            [CompletionResult]::new('--announce', '--announce', [CompletionResultType]::ParameterName, 'Line mode: tell the room when a client joins or leaves (`* 7 joined`, `* 7 left`)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Log more: -v adds every chunk received, -vv every readiness event. RUST_LOG overrides')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Log more: -v adds every chunk received, -vv every readiness event. RUST_LOG overrides')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Log only warnings and errors. RUST_LOG overrides')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Log only warnings and errors. RUST_LOG overrides')
            [CompletionResult]::new('--cluster-optional', '--cluster-optional', [CompletionResultType]::ParameterName, 'With --cluster: start even if NATS is unreachable, relay locally meanwhile and keep trying in the background')
            [CompletionResult]::new('--http-tls', '--http-tls', [CompletionResultType]::ParameterName, 'With --http and --tls-cert: serve HTTPS with the chat port''s certificate (never asking for client certificates, even with --tls-client-ca). Default: plain HTTP')
            [CompletionResult]::new('--no-web', '--no-web', [CompletionResultType]::ParameterName, 'With --http: no chat page and no WebSocket door (/ and /ws answer 404); only the operator''s endpoints')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
