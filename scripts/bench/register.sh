#!/usr/bin/env bash
# REGISTER throughput with digest authentication: SIPp drives a real softswitch over UDP,
# then, in the same run and with the same load, Kamailio 5.6 as a registrar (the speed
# anchor of DESIGN.md) when it is installed (apt-get install kamailio).
#
#   scripts/bench/register.sh [RATE] [COUNT] [USERS]      (defaults 5000 40000 200)
#
# Each SIPp call is one whole registration: REGISTER, 401 challenge, REGISTER with
# credentials, 200 OK. softswitch commits the binding to SQLite before it sends the 200;
# Kamailio keeps bindings in memory. Prints registrations/s, failures, server CPU per
# registration (from /proc), and checks the bindings are in softswitch's store.
# SIPp and the servers share this machine's cores.
#
#   LOG_LEVEL=warning scripts/bench/register.sh ...     softswitch's log level (default info, as
#                                                       shipped: an auth-ok line per REGISTER)
#   REGISTER_PROFILE=1 scripts/bench/register.sh ...   also py-spy softswitch for 8 s of the
#                                                       run and print its CPU per thread
#                                                       (.venv/bin/pip install py-spy first)
set -euo pipefail
cd "$(dirname "$0")/../.."
RATE=${1:-5000}
COUNT=${2:-40000}
USERS=${3:-200}
PY=${PYTHON:-.venv/bin/python}
ROOT=$PWD
WORK=$(mktemp -d /tmp/softswitch-bench.XXXXXX)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true' EXIT

free_port() {
    $PY -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

$PY - "$WORK" "$USERS" <<'PYEOF'
import sys
work, users = sys.argv[1], int(sys.argv[2])
with open(f"{work}/users.csv", "w") as csv:
    csv.write("SEQUENTIAL\n")
    for i in range(users):
        n, pw = f"0901{i:07d}", f"pw-{i}"
        csv.write(f"{n};{pw};bench.test;[authentication username={n} password={pw}]\n")
PYEOF

cpu_ticks() {  # user+system ticks of the given processes
    local total=0
    for pid in "$@"; do
        total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
    done
    echo "$total"
}

thread_ticks() {  # "thread-id user system" of each thread of process $1
    for task in /proc/"$1"/task/*; do echo "${task##*/} $(awk '{print $14, $15}' "$task/stat")"; done
}

# drive NAME PORT PID... : run the SIPp load against PORT, report with CPU of the PIDs.
drive() {
    local name=$1 port=$2
    shift 2
    local before after start end
    before=$(cpu_ticks "$@")
    start=$(date +%s.%N)
    (cd "$WORK" && rm -f "stat-$name.csv" && sipp "127.0.0.1:$port" \
        -sf "$ROOT/scripts/sipp/register_auth.xml" -inf users.csv -r "$RATE" -m "$COUNT" \
        -l 2000 -trace_stat -stf "stat-$name.csv" -timeout 300s -nostdin \
        > "sipp-$name.out" 2>&1) || true
    end=$(date +%s.%N)
    after=$(cpu_ticks "$@")
    $PY - "$WORK/stat-$name.csv" "$name" "$before" "$after" "$(getconf CLK_TCK)" \
        "$start" "$end" <<'PYEOF'
import csv, sys
path, name, before, after, ticks, start, end = sys.argv[1:]
last = list(csv.DictReader(open(path), delimiter=";"))[-1]
ok, failed = int(last["SuccessfulCall(C)"]), int(last["FailedCall(C)"])
elapsed = float(end) - float(start)
cpu = (int(after) - int(before)) / int(ticks)
print(f"{name}: {ok} ok, {failed} failed in {elapsed:.1f} s = {ok / elapsed:.0f} REGISTER/s; "
      f"server CPU {cpu:.2f} s = {1000 * cpu / max(ok, 1):.3f} ms per REGISTER "
      f"({100 * cpu / elapsed:.0f}% of one core)")
open(f"{path}.rate", "w").write(f"{ok / elapsed:.1f} {1000 * cpu / max(ok, 1):.4f}\n")
PYEOF
}

# ---- softswitch -----------------------------------------------------------------------------
PORT=$(free_port)
$PY - "$WORK" "$PORT" "$USERS" "${LOG_LEVEL:-info}" <<'PYEOF'
import sys, yaml
work, port, users, log_level = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
subscribers = [{"number": f"0901{i:07d}", "sim": "voice", "line": "D",
                "sip_password": f"pw-{i}"} for i in range(users)]
config = {"sip": {"listen": [f"127.0.0.1:{port}"], "domain": "bench.test",
                  "transports": ["udp"], "auth": {"algorithms": ["MD5"]}},
          "store": {"url": f"sqlite+aiosqlite:///{work}/bench.db"},
          "subscribers": subscribers, "log_level": log_level}
open(f"{work}/bench.yaml", "w").write(yaml.safe_dump(config))
PYEOF
.venv/bin/softswitch run --config "$WORK/bench.yaml" > "$WORK/stdout" 2> "$WORK/server.log" &
SERVER=$!
PIDS+=("$SERVER")
for _ in $(seq 600); do grep -q "listening on" "$WORK/stdout" 2>/dev/null && break; sleep 0.1; done
grep -q "listening on" "$WORK/stdout" || { cat "$WORK/server.log"; exit 1; }
if [ -n "${REGISTER_PROFILE:-}" ]; then
    thread_ticks "$SERVER" > "$WORK/threads-before"
    (sleep 3 && .venv/bin/py-spy record --nonblocking --rate 400 --format raw --duration 8 --pid "$SERVER" \
        --output "$WORK/profile.txt" > /dev/null 2>&1) &
    PIDS+=("$!")
fi
drive softswitch "$PORT" "$SERVER"
if [ -n "${REGISTER_PROFILE:-}" ]; then
    thread_ticks "$SERVER" | join -a 1 - "$WORK/threads-before" | awk -v hz="$(getconf CLK_TCK)" \
        '{printf "thread %s: %.2f s user, %.2f s system during the run\n", $1, ($2 - $4) / hz, ($3 - $5) / hz}'
    wait "${PIDS[-1]}" 2>/dev/null || true
    $PY scripts/bench/profile_summary.py "$WORK/profile.txt"
fi
kill "$SERVER"
wait "$SERVER" 2>/dev/null || true
$PY -c "import sqlite3,sys; print('softswitch bindings in the store after the run:', sqlite3.connect(sys.argv[1]).execute('select count(*) from registrations').fetchone()[0], 'of', sys.argv[2], 'users')" "$WORK/bench.db" "$USERS"

# ---- Kamailio, same load ----------------------------------------------------------------------
if command -v kamailio > /dev/null; then
    KPORT=$(free_port)
    sed "s/LISTEN/udp:127.0.0.1:$KPORT/; s/CHILDREN/2/" scripts/bench/kamailio-registrar.cfg \
        > "$WORK/kamailio.cfg"
    kamailio -f "$WORK/kamailio.cfg" -DD -E -n 1 -Y "$WORK" -P "$WORK/kamailio.pid" \
        > "$WORK/kamailio.log" 2>&1 &
    PIDS+=("$!")
    sleep 2
    mapfile -t KPIDS < <(pgrep -f "kamailio -f $WORK/kamailio.cfg")
    drive kamailio "$KPORT" "${KPIDS[@]}"
    $PY - "$WORK" <<'PYEOF'
import sys
work = sys.argv[1]
ours = [float(x) for x in open(f"{work}/stat-softswitch.csv.rate").read().split()]
theirs = [float(x) for x in open(f"{work}/stat-kamailio.csv.rate").read().split()]
print(f"ratio softswitch/kamailio: rate {ours[0] / theirs[0]:.2f}, "
      f"CPU per REGISTER {ours[1] / theirs[1]:.1f}x")
PYEOF
else
    echo "kamailio not installed: no anchor run (apt-get install kamailio)"
fi
