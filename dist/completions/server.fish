complete -c server -l bind -d 'Address to listen on, IPv4 or IPv6 (e.g. 127.0.0.1, ::1). Default: `::` with IPv4 mapped in, so one socket serves IPv6 and IPv4 clients in one room; `0.0.0.0` where IPv6 is unavailable' -r
complete -c server -l framing -d '`raw`: relay every chunk as it arrives, bytes as they are (the default). `line`: relay whole lines only; a partial line waits for its newline, so lines never interleave' -r -f -a "raw\t'Every chunk as it arrives'
line\t'Whole lines'"
complete -c server -l max-line -d 'Line mode: the longest line allowed (not counting its newline); a sender that exceeds it is disconnected' -r
complete -c server -l log-format -d 'Log format on stderr: `text` for people, `json` (one object per line) for log shippers' -r -f -a "text\t'Human-readable lines'
json\t'One JSON object per line'"
complete -c server -l stats-interval -d 'Log a statistics line every SECS seconds: clients now and peak, messages and bytes in and out, clients cut by reason. Off by default' -r
complete -c server -l backend -d 'I/O backend: `polling` (epoll, kqueue, IOCP; the default when compiled in; clients bounded by memory and `ulimit -n`) or `select` (the seed\'s select(); about 1,018 clients on Unix, 1,023 on Windows). `--version` lists the backends this build has' -r -f -a "polling\t'The `polling` crate: epoll, kqueue, event ports, IOCP'
select\t'`select()`: POSIX select, Winsock select'"
complete -c server -l max-pending -d 'Most bytes queued for one client before it is cut as a slow consumer. Accepts suffixes: 512KiB, 16MiB, 1GiB (K/M/G are the same binary units)' -r
complete -c server -l write-timeout -d 'Cut a client when bytes have waited this long for it with no write progress at all. 0 turns the timeout off (only --max-pending applies)' -r
complete -c server -l max-clients -d 'Most clients at once; later ones are accepted and closed at once with a log line. Default: what the descriptor limit (`ulimit -n`, raised to its hard limit at start) and the backend allow, minus a small reserve' -r
complete -c server -l drain-timeout -d 'On Ctrl-C / SIGTERM, how long pending output may take to drain before the server closes everything and exits. A second Ctrl-C exits at once' -r
complete -c server -l pace-budget -d 'Bytes queued for a reader that keeps up beyond which the server stops reading from the senders (TCP then slows them) instead of letting messages wait behind megabytes or cutting readers. Smaller: shorter waits under load, less throughput. A sender that sent under 16KiB since the room last caught up (someone typing) is still read' -r
complete -c server -l send-buffer -d 'The kernel send buffer asked for on every client socket. Bytes in it are out of the pace\'s sight, and the kernel may grow an unset buffer to megabytes; too small a buffer (32KiB on Linux) leaves writes waiting for TCP acknowledgements and throughput collapses. 0 leaves the OS default and its autotuning' -r
complete -c server -l lag-grace -d 'How long one reader that falls behind may slow the whole room; after that it gets what it can and is cut by --max-pending or --write-timeout if it never catches up' -r
complete -c server -l max-per-address -d 'Most clients at once from one address (an IPv4 address; for IPv6 its /64, which one subscriber\'s network hands out freely). Off by default: users behind one NAT, and local tests, share an address' -r
complete -c server -l max-rate -d 'Most bytes per second one client may send (e.g. 64KiB). A client over it is not cut: the server stops reading it until it may send again, so TCP slows it and nothing is lost. Off by default' -r
complete -c server -l keepalive -d 'TCP keepalive on every client: the kernel probes a connection silent this long, so a peer that vanished without a word (power cut, NAT timeout) is found and cut. 0 turns it off' -r
complete -c server -l idle-timeout -d 'Cut a client that has neither sent nor been sent anything for this long. Off by default' -r
complete -c server -l handshake-timeout -d 'Cut a TLS client whose handshake is not done within SECS seconds; it never joins the room meanwhile' -r
complete -c server -l allow -d 'Admit only peers in this network: CIDR such as 10.0.0.0/8 or ::1/128; a bare address is one host. Repeatable. Default: every peer that no --deny matches' -r
complete -c server -l deny -d 'Refuse peers in this network (CIDR or a bare address); wins over --allow. Repeatable. Refused peers are closed right after accept, logged at most once a minute per address' -r
complete -c server -l allow-file -d 'Add the --allow rules in FILE: one CIDR or address a line, `#` comments. Re-read on SIGHUP (Unix), for new connections. Repeatable' -r -F
complete -c server -l deny-file -d 'Add the --deny rules in FILE, written as for --allow-file. Re-read on SIGHUP (Unix). Repeatable' -r -F
complete -c server -l http -d 'Serve health, metrics and statistics over HTTP on ADDR (e.g. 127.0.0.1:8222; a bare port means 127.0.0.1, since only --http-token-file protects it): GET /healthz, /metrics (Prometheus), /stats and /clients (JSON); and a chat page at / whose WebSocket (/ws) joins the room. Off by default' -r
complete -c server -l cluster -d 'Share the room with every relay connected to the NATS server at URL with the same --room (e.g. nats://127.0.0.1:4222; several URLs separated by commas). Exits 1 if NATS is unreachable at start. Needs a build with the `cluster` feature (`cargo build --release -p server-cli --features cluster`)' -r
complete -c server -l tls-cert -d 'Serve TLS only, with this PEM certificate chain (the server\'s certificate first); needs --tls-key. Every client must then complete a TLS handshake (plaintext clients are dropped). Default: plain TCP' -r -F
complete -c server -l tls-key -d 'The PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1)' -r -F
complete -c server -l tls-client-ca -d 'Mutual TLS: admit only clients that present a certificate issued by a CA in this PEM file. Default: clients are not asked for certificates' -r -F
complete -c server -l room -d 'With --cluster: the room\'s name, letters, digits, \'-\' and \'_\' [default: lobby]' -r
complete -c server -l burst -d 'With --max-rate, the most a client may send at once after a quiet spell. Default: a quarter of a second of its rate, at least 16KiB' -r
complete -c server -l http-token-file -d 'With --http: require `Authorization: Bearer TOKEN` on the operator\'s paths but /healthz, TOKEN being this file\'s content (surrounding white space ignored; read again on SIGHUP)' -r -F
complete -c server -l http-max-connections -d 'With --http: most HTTP connections at once; more are answered 503 and closed' -r
complete -c server -l http-head-timeout -d 'With --http: close a connection whose request head is not complete this long after its first byte (against slowloris)' -r
complete -c server -l http-idle-timeout -d 'With --http: close a keep-alive connection idle this long' -r
complete -c server -l ws-origin -d 'With --http: a web origin (e.g. https://chat.example.org) whose pages may open /ws besides the built-in page\'s own; repeat for more; `*` allows any. Clients that send no Origin (not browsers) are always let in' -r
complete -c server -l ws-max-message -d 'With --http: most bytes in one message from a web client (fragments together); a larger one closes it with code 1009. At most 64KiB - 1, the engine\'s read buffer' -r
complete -c server -l ws-ping -d 'With --http: ping web clients this often, and cut one that sent nothing at all (no pong, no message) by the next ping as idle. 0: never ping' -r
complete -c server -l generate -r -f -a "bash\t'bash completions'
zsh\t'zsh completions'
fish\t'fish completions'
powershell\t'PowerShell completions'
man\t'The man page (roff)'"
complete -c server -l tag -d 'Line mode: prefix every forwarded line with the sender\'s id, e.g. `[7] hello`. Ids are never reused while the server runs'
complete -c server -l announce -d 'Line mode: tell the room when a client joins or leaves (`* 7 joined`, `* 7 left`)'
complete -c server -s v -l verbose -d 'Log more: -v adds every chunk received, -vv every readiness event. RUST_LOG overrides'
complete -c server -s q -l quiet -d 'Log only warnings and errors. RUST_LOG overrides'
complete -c server -l cluster-optional -d 'With --cluster: start even if NATS is unreachable, relay locally meanwhile and keep trying in the background'
complete -c server -l http-tls -d 'With --http and --tls-cert: serve HTTPS with the chat port\'s certificate (never asking for client certificates, even with --tls-client-ca). Default: plain HTTP'
complete -c server -l no-web -d 'With --http: no chat page and no WebSocket door (/ and /ws answer 404); only the operator\'s endpoints'
complete -c server -s h -l help -d 'Print help (see more with \'--help\')'
complete -c server -s V -l version -d 'Print version'
