#!/usr/bin/env bash
# The workspace's tests as Windows programs, under Wine, on a Debian (or Ubuntu) machine:
# everything is cross-built for x86_64-pc-windows-gnu with MinGW-w64 and every test binary runs
# through `wine`: the behaviour suite on both backends (IOCP through `polling`, Winsock `select`
# with more than 64 sockets in one set), the binary's tests, and the rest of the workspace.
#
# Called by .ci/run; also runs alone. Installs what it lacks (mingw-w64, wine, wine64 from the
# distribution; the Rust target through rustup) and fails, saying why, if it cannot: it never
# succeeds without having run the Windows tests.
#
# Wine runs in a throwaway prefix of its own, removed at exit, and only that prefix's
# wineserver is stopped. Wine is a correctness check here, never a benchmark.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

readonly TARGET=x86_64-pc-windows-gnu
readonly PACKAGES=(mingw-w64 wine wine64)

# Every line says how far into this script it is, so the build and the Wine run can be told
# apart in .ci/run's time for this step.
say() { printf 'windows-wine [%4d s]: %s\n' "${SECONDS}" "$*"; }
die() {
  printf 'windows-wine [%4d s]: FAILED: %s\n' "${SECONDS}" "$*" >&2
  exit 1
}

# Debian's wine64 package puts the 64-bit loader here, outside PATH; `wine` picks it.
have_wine64() { [[ -x /usr/lib/wine/wine64 ]] || command -v wine64 >/dev/null 2>&1; }

missing_packages() {
  local missing=()
  command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 || missing+=(mingw-w64)
  { command -v wine >/dev/null 2>&1 && command -v wineserver >/dev/null 2>&1; } || missing+=(wine)
  have_wine64 || missing+=(wine64)
  ((${#missing[@]} == 0)) || printf '%s\n' "${missing[@]}"
}

# --- 1. Tools ------------------------------------------------------------------------------
mapfile -t missing < <(missing_packages)
if ((${#missing[@]} > 0)); then
  say "missing: ${missing[*]}; installing ${PACKAGES[*]} with apt-get"
  command -v apt-get >/dev/null 2>&1 ||
    die "no apt-get on this machine: install ${PACKAGES[*]} (MinGW-w64 and 64-bit Wine) by hand"
  if [[ $(id -u) -eq 0 ]]; then
    as_root=(env)
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n env)
  else
    die "installing ${PACKAGES[*]} needs root (or password-less sudo); run: sudo apt-get install -y ${PACKAGES[*]}"
  fi
  "${as_root[@]}" DEBIAN_FRONTEND=noninteractive apt-get update -q ||
    die "apt-get update failed (see above)"
  "${as_root[@]}" DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${PACKAGES[@]}" ||
    die "apt-get install ${PACKAGES[*]} failed (see above)"
  mapfile -t missing < <(missing_packages)
  ((${#missing[@]} == 0)) || die "still missing after apt-get install: ${missing[*]}"
fi

if command -v rustup >/dev/null 2>&1; then
  if ! rustup target list --installed 2>/dev/null | grep -qx "${TARGET}"; then
    say "adding the Rust target ${TARGET}"
    rustup target add "${TARGET}" || die "rustup target add ${TARGET} failed"
  fi
elif [[ ! -d "$(rustc --print sysroot)/lib/rustlib/${TARGET}" ]]; then
  die "the Rust standard library for ${TARGET} is not installed, and there is no rustup to add it"
fi

# --- 2. A Wine prefix of our own -------------------------------------------------------------
WINEPREFIX="$(mktemp -d "${TMPDIR:-/tmp}/relay-wine.XXXXXX")" || die "cannot create a Wine prefix"
export WINEPREFIX WINEARCH=win64 WINEDEBUG=-all
say "$(wine --version), $(x86_64-w64-mingw32-gcc --version | head -n 1); prefix ${WINEPREFIX}"

stop_wine() {
  local status=$?
  # With WINEPREFIX set, `wineserver -k` stops this prefix's server and its processes only.
  wineserver -k >/dev/null 2>&1 || true
  # Debian's Wine keeps its server socket in a directory named in the prefix's `wineserver`.
  local socket_dir=""
  [[ -f "${WINEPREFIX}/wineserver" ]] && socket_dir="$(cat "${WINEPREFIX}/wineserver" 2>/dev/null || true)"
  if [[ ${socket_dir} =~ ^wine-[A-Za-z0-9]+$ ]]; then
    rm -rf -- "${TMPDIR:-/tmp}/${socket_dir}" "/tmp/${socket_dir}"
  fi
  rm -rf -- "${WINEPREFIX}"
  exit "${status}"
}
trap stop_wine EXIT

# Wine's helper processes (services, device drivers) inherit the standard streams of whichever
# wine command starts them, and keep them open: started from a pipe, they would hold it (cargo
# waits on that). So the server and the prefix come up first, attached to /dev/null only.
wineserver -p </dev/null >/dev/null 2>&1 || die "wineserver did not start"
# No Mono or Gecko prompts: console programs need neither.
WINEDLLOVERRIDES="mscoree,mshtml=" wine wineboot -i </dev/null >/dev/null 2>&1 ||
  die "wineboot could not create the prefix ${WINEPREFIX}"
system32="${WINEPREFIX}/drive_c/windows/system32"
[[ -d ${system32} ]] || die "wineboot left no ${system32}"

# Rust >= 1.78 programs import ProcessPrng from bcryptprimitives.dll, which Wine 8 lacks: without
# it every .exe fails to load (c0000135). Our stand-in forwards to Wine's bcrypt.dll.
x86_64-w64-mingw32-gcc -shared -O2 -Wall -Wextra -s -o "${system32}/bcryptprimitives.dll" \
  ci/wine/bcryptprimitives.c ci/wine/bcryptprimitives.def -lbcrypt ||
  die "cannot build ci/wine/bcryptprimitives.dll"
say "Wine prefix ready, with our bcryptprimitives.dll"

# --- 3. Build, then run under Wine ------------------------------------------------------------
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=wine

say "building the tests for ${TARGET}"
# The JSON names each test executable's source file, for the summary at the end.
cargo test --workspace --target "${TARGET}" --locked --no-run \
  --message-format=json-render-diagnostics >"${WINEPREFIX}/artifacts.json" ||
  die "the Windows build failed (see above)"
sed -n 's/.*"src_path":"\([^"]*\)".*"executable":"\([^"]*\)".*/\2 \1/p' \
  "${WINEPREFIX}/artifacts.json" | sed "s#${PWD}/##g" >"${WINEPREFIX}/executables"
[[ -s "${WINEPREFIX}/executables" ]] || die "cargo built no test executables for ${TARGET}"

# Fail early and clearly if Wine cannot start our programs at all.
server_exe="target/${TARGET}/debug/server.exe"
version="$(wine "${server_exe}" --version </dev/null 2>&1)" ||
  die "${server_exe} does not run under Wine (exit $?): ${version}"
say "under Wine: ${version}"

log="${WINEPREFIX}/cargo-test.log"
# Runs one cargo test command, every test binary under Wine, into the log; the time limits only
# stop a wedged Wine (a healthy run takes well under a minute).
run_tests() {
  local limit=$1
  shift
  say "$*"
  printf '== %s\n' "$*" >>"${log}"
  timeout --kill-after=30 "${limit}" "$@" 2>&1 | tee -a "${log}" ||
    die "Windows tests failed under Wine: $* (see above)"
}
run_tests 900 cargo test --workspace --target "${TARGET}" --locked --no-fail-fast
# The largest rooms are stress tests (ignored by default); they prove IOCP and Winsock select hold
# hundreds of clients, so run them here too.
run_tests 600 cargo test -p relay-tests --test polling --test select --target "${TARGET}" \
  --locked -- --ignored stress_the_largest_room
# Each backend-only build of the binary, as on Linux.
for backend in polling select; do
  run_tests 300 cargo test -p server-cli --no-default-features --features "${backend}" \
    --target "${TARGET}" --locked
done

# --- 4. Prove what ran ------------------------------------------------------------------------
# A green cargo run is not enough: these must have run and passed, under Wine, in this run.
required=(
  "polling::stress_the_largest_room_all_receive" # IOCP through polling, 1,000 clients
  "select::stress_the_largest_room_all_receive"  # Winsock select, 300 clients (> 64)
  "select::clients_beyond_the_backend_capacity_are_refused_politely"
  "polling::unknown_socket_is_not_found"         # the Backend contract suite, both backends
  "select::unknown_socket_is_not_found"
  "polling::senders_outpacing_a_reading_room_are_slowed_and_nobody_is_cut" # the room's pace
  "select::a_stopped_and_a_trickling_reader_are_cut_and_the_room_keeps_moving"
  "select::one_address_takes_at_most_its_seats_and_others_still_get_in"    # fair shares
  "relays_between_clients_and_logs_the_lifecycle" # the server.exe binary, both backends
  "another_socket_cannot_take_the_listening_port"
  "every_endpoint_answers_get_and_head_with_keep_alive_and_pipelining" # --http, both backends
  "garbage_oversized_unfinished_and_idle_requests_are_cut_while_chat_flows"
  "web_and_tcp_clients_share_a_room_byte_exact_and_without_echo" # /ws, both backends
  "protocol_violations_are_closed_with_their_codes_and_fragments_are_reassembled"
  "console::tests::a_close_requests_the_stop_and_is_held_until_the_server_stopped"
)
for name in "${required[@]}"; do
  grep -q "^test ${name} \.\.\. ok$" "${log}" || die "${name} did not run and pass under Wine"
done

say "what ran under Wine, per test binary:"
awk '
  FNR == NR { source[$1] = $2; next }   # executables: "<path of the .exe> <its source file>"
  /^== / { sub(/^== /, ""); printf "  %s\n", $0; next }
  /^ *Running / {
    exe = $NF; gsub(/[()]/, "", exe)
    name = (exe in source) ? source[exe] : $(NF - 1)
  }
  /^ *Doc-tests / { name = "doc-tests of " $2 }
  /^test result:/ {
    printf "    %-42s %4d passed, %d ignored\n", name, $4, $8
    passed += $4; ignored += $8
  }
  END { printf "  in all: %d passed, %d ignored\n", passed, ignored }
' "${WINEPREFIX}/executables" "${log}"
if grep -q '\.\.\. ignored' "${log}"; then
  say "ignored on Windows, with their reasons:"
  grep '\.\.\. ignored' "${log}" | sed 's/^test /  /' | sort -u
fi
say "ok: every test above ran as a Windows program under Wine"
