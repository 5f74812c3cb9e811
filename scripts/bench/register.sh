#!/usr/bin/env bash
# REGISTER throughput with digest authentication: SIPp drives a real softswitch over UDP.
#
#   scripts/bench/register.sh [RATE] [COUNT] [USERS]      (defaults 4000 60000 200)
#
# Each SIPp call is one whole registration: REGISTER, 401 challenge, REGISTER with
# credentials, 200 OK (the binding is committed to SQLite before the 200 is sent).
# Prints registrations/s, failures, the server's CPU per registration (from /proc), and
# checks the bindings are in the store. SIPp and the server share this machine's cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
RATE=${1:-4000}
COUNT=${2:-60000}
USERS=${3:-200}
PY=${PYTHON:-.venv/bin/python}
WORK=$(mktemp -d /tmp/softswitch-bench.XXXXXX)
trap 'kill $SERVER 2>/dev/null || true; wait 2>/dev/null || true' EXIT

PORT=$($PY -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
$PY - "$WORK" "$PORT" "$USERS" <<'PYEOF'
import sys, yaml
work, port, users = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
subscribers = [{"number": f"0901{i:07d}", "sim": "voice", "line": "D",
                "sip_password": f"pw-{i}"} for i in range(users)]
config = {"sip": {"listen": [f"127.0.0.1:{port}"], "domain": "bench.test",
                  "transports": ["udp"], "auth": {"algorithms": ["MD5"]}},
          "store": {"url": f"sqlite+aiosqlite:///{work}/bench.db"},
          "subscribers": subscribers, "log_level": "warning"}
open(f"{work}/bench.yaml", "w").write(yaml.safe_dump(config))
with open(f"{work}/users.csv", "w") as csv:
    csv.write("SEQUENTIAL\n")
    for s in subscribers:
        n, pw = s["number"], s["sip_password"]
        csv.write(f"{n};{pw};bench.test;[authentication username={n} password={pw}]\n")
PYEOF

.venv/bin/softswitch run --config "$WORK/bench.yaml" > "$WORK/stdout" 2> "$WORK/server.log" &
SERVER=$!
for _ in $(seq 200); do grep -q "listening on" "$WORK/stdout" 2>/dev/null && break; sleep 0.1; done
grep -q "listening on" "$WORK/stdout" || { cat "$WORK/server.log"; exit 1; }

cpu_ticks() { awk '{print $14 + $15}' "/proc/$SERVER/stat"; }
TICKS=$(getconf CLK_TCK)
before=$(cpu_ticks)
start=$(date +%s.%N)
set +e
(cd "$WORK" && sipp "127.0.0.1:$PORT" -sf "$OLDPWD/scripts/sipp/register_auth.xml" \
    -inf users.csv -r "$RATE" -m "$COUNT" -l 2000 -bg -trace_stat -stf stat.csv \
    -timeout 300s -timeout_error -nostdin > sipp.out 2>&1)
set -e
# sipp -bg returns at once: wait for it to finish.
while pgrep -f "sipp 127.0.0.1:$PORT" > /dev/null; do sleep 0.2; done
end=$(date +%s.%N)
after=$(cpu_ticks)

$PY - "$WORK" "$before" "$after" "$TICKS" "$start" "$end" "$COUNT" <<'PYEOF'
import csv, sqlite3, sys
work, before, after, ticks, start, end, count = sys.argv[1:]
rows = list(csv.DictReader(open(f"{work}/stat.csv"), delimiter=";"))
last = rows[-1]
ok = int(last["SuccessfulCall(C)"]); failed = int(last["FailedCall(C)"])
elapsed = float(end) - float(start)
cpu = (int(after) - int(before)) / int(ticks)
db = sqlite3.connect(f"{work}/bench.db")
bindings = db.execute("select count(*) from registrations").fetchone()[0]
print(f"registrations: {ok} ok, {failed} failed in {elapsed:.1f} s")
print(f"rate: {ok / elapsed:.0f} REGISTER/s (with digest auth, 2 round trips each)")
print(f"server CPU: {cpu:.2f} s = {1000 * cpu / max(ok, 1):.3f} ms per REGISTER "
      f"({100 * cpu / elapsed:.0f}% of one core)")
print(f"bindings in the store: {bindings}")
PYEOF
