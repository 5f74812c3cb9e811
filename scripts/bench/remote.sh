#!/usr/bin/env bash
# Concurrent remote-control calls (issue 10): SIPp calls the remote-access number (1400) N
# times, each call keying its own subscriber's number and `#`, the PIN and `#`, then a menu
# choice (`1` voicemail on or `2` off) as RFC 4733 events from pcaps; the server checks the
# PIN (argon2, in a process of its own), makes the change, says so and offers the menu again, and
# the caller hangs up. Steps of N are run one after the other, each against a fresh server on
# a copy of one provisioned store, and each twice: with the PIN hashes as shipped, then with
# the same PINs hashed at argon2's smallest cost ("cheap"), so that the two send gaps at the
# same concurrency show whether the PIN check reaches the media clock.
#
#   scripts/bench/remote.sh [N ...]                 (default: 100 250 500 750)
#   REMOTE_REALTIME=10 ...  the server under SCHED_RR at that priority (chrt --rr 10), as a
#                           media server is run in production
#   REMOTE_PIN=1 ...        the server alone on CPU 0, SIPp and tcpdump on CPU 1
#   REMOTE_COSTS=shipped    only the shipped PIN hashes (default: "shipped cheap")
#   REMOTE_RAMP=20          seconds to place a step's calls (N/20 calls/s)
#   REMOTE_HOLD_MS=20000    how long a caller listens after the choice before hanging up
#   REMOTE_PROFILE=1        also py-spy the server while the PIN checks run
#   REMOTE_KEEP_CAPTURE=1   keep each step's RTP capture
#
# The config: the generated subscribers (09050000000 ...: voice SIMs, the shipped PIN,
# remote control switched on, voicemail off for the odd ones) on the shipped defaults, except
# where one SIPp address playing every caller must differ: security.calls_per_source (20
# unconfirmed, 10 unauthenticated calls per source) allows 100,000 calls, and the per-source
# PIN throttle (pin.throttle.max_failures, 10 wrong PINs per source) allows 10,000; and the
# RTP ports are 20000-22999. Every call is its own subscriber's, so the per-subscriber PIN
# counters are not what is measured either. Before each step remote_step.py waits until other
# processes use less than 5% of a core (this machine may be shared), and a step during which
# they used more than 10% is flagged.
#
# Per step: calls completed/failed (SIPp), the most calls up at once (server log), calls
# that lost a key (no `pin-ok` line for the call's subscriber, no `remote-change` line, or
# the store's voicemail setting not as the call set it), the delay of the PIN check (the
# PIN's `#` to `pin-ok`), the server's CPU (/proc) and that of its threads outside the event
# loop, argon2's CPU per call (the PIN-check processes: the server's children at SCHED_IDLE),
# SIPp's CPU, and the gaps between the RTP packets the server sends within a
# talkspurt (tcpdump on lo, as ivr.sh). scripts/bench/remote_step.py does one step and
# explains each measurement; ivr_step.py has the machinery both share.
# Needs: sipp (sip-tester), tcpdump, gcc, root (SIPp's pcap player and tcpdump).
set -euo pipefail
cd "$(dirname "$0")/../.."
STEPS=("$@")
[ ${#STEPS[@]} -gt 0 ] || STEPS=(100 250 500 750)
PY=${PYTHON:-.venv/bin/python}
read -r -a COSTS <<< "${REMOTE_COSTS:-shipped cheap}"
for tool in sipp tcpdump gcc; do
    command -v "$tool" > /dev/null || { echo "remote.sh: $tool is not installed" >&2; exit 1; }
done
ulimit -n "$(ulimit -Hn)"  # a UDP socket per call in the server, a raw socket per play in SIPp
WORK=$(mktemp -d /tmp/softswitch-remote-bench.XXXXXX)
echo "work directory: $WORK (server logs, SIPp stats, RTP captures)"
SUBSCRIBERS=$(printf '%s\n' "${STEPS[@]}" | sort -n | tail -1)

# SIPp's pcap player: see scripts/bench/sipp_rawconnect.c (and ivr.sh)
gcc -O2 -shared -fPIC -o "$WORK/rawconnect.so" scripts/bench/sipp_rawconnect.c -ldl
OPTIONS=(--preload "$WORK/rawconnect.so" --template "$WORK/store-template.db"
         --subscribers "$SUBSCRIBERS" --ramp "${REMOTE_RAMP:-20}"
         --hold-ms "${REMOTE_HOLD_MS:-20000}")
[ -z "${REMOTE_PROFILE:-}" ] || OPTIONS+=(--profile)
[ -z "${REMOTE_PIN:-}" ] || OPTIONS+=(--pin)
[ -z "${REMOTE_REALTIME:-}" ] || OPTIONS+=(--realtime "$REMOTE_REALTIME")

echo
echo "| calls | PIN hashes | held at once | completed / failed | calls that lost a key (pin-ok / changes / store right) | PIN check delay p50 / p99 / max | server CPU: peak (system) / busiest 2 s | threads outside the loop, CPU (argon2 per call) | SIPp CPU (peak) | send gap p50 / p99 / max (peak) | send gap p99 / max (whole step) | talkspurt start p99 / max |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
for calls in "${STEPS[@]}"; do
    for cost in "${COSTS[@]}"; do
        step="step-$calls-$cost"
        "$PY" scripts/bench/remote_step.py --calls "$calls" --work "$WORK/$step" \
            --pin-cost "$cost" "${OPTIONS[@]}" > "$WORK/$step.out"
        tail -1 "$WORK/$step.out" > "$WORK/$step.json"
        [ -n "${REMOTE_KEEP_CAPTURE:-}" ] || rm -f "$WORK/$step/rtp.pcap"
        "$PY" - "$WORK/$step.json" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1]))
peak, step, start = r["gap_ms_peak"], r["gap_ms_step"], r["talkspurt_start_gap_ms"]
delay = r["pin_delay_ms"]
others = r["others_cpu_peak"]  # other processes on this machine during the peak
argon2 = (f", {r['argon2_cpu_ms_per_call']:.1f} ms" if r["argon2_cpu_ms_per_call"] else "")
print(f"| {r['target']}" + (f" (other processes used {others:.0f}% of a core)"
                            if others > 10 else "")
      + f" | {r['pin_cost']} | {r['peak_concurrent']} for {r['peak_seconds']:.1f} s "
      f"| {r['sipp_successful']} / {r['sipp_failed']} "
      f"| {r['calls_losing_keys']} of {r['target']} ({r['pin_ok']} / {r['changes']} / "
      f"{r['state_right']}" + (f"; {r['pin_failed']} pin-failed" if r["pin_failed"] else "")
      + ") "
      f"| {delay.get('p50', 0):.0f} / {delay.get('p99', 0):.0f} / {delay.get('max', 0):.0f} ms "
      f"| {r['server_cpu_peak']:.0f}% ({r['server_system_cpu_peak']:.0f}%) / "
      f"{r['server_cpu_busiest']:.0f}% "
      f"| {r['other_threads_cpu_s']:.1f} s{argon2} | {r['sipp_cpu_peak']:.0f}% "
      f"| {peak.get('p50', 0):.1f} / {peak.get('p99', 0):.1f} / {peak.get('max', 0):.1f} ms "
      f"| {step.get('p99', 0):.1f} / {step.get('max', 0):.1f} ms "
      f"| {start.get('p99', 0):.1f} / {start.get('max', 0):.1f} ms"
      + (f" (tcpdump dropped {r['capture_dropped']} packets: gaps overstated)"
         if r["capture_dropped"] > 0 else "") + " |")
PYEOF
    done
done
echo
echo "CPU in % of one core (this machine has $(nproc)); per-step details: $WORK/step-N-COST.json"
echo "(each server thread's CPU, tcpdump CPU, capture drops, packets, server warnings)."
