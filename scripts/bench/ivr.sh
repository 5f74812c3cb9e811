#!/usr/bin/env bash
# Concurrent IVR calls: SIPp calls the DTMF test number (1999) N times at once, each call
# keying the same digits as RFC 4733 events from a pcap; the server reads them back and hangs
# up. Steps of N are run one after the other, each against a fresh server.
#
#   scripts/bench/ivr.sh [N ...]                 (default: 250 500 750 1000 1200)
#   IVR_PROFILE=1 scripts/bench/ivr.sh 1000      (also py-spy the server at the peak)
#   IVR_PIN=1 ...        the server alone on CPU 0, SIPp and tcpdump on CPU 1 (default: shared)
#   IVR_AUDIO=call ...   callers send G.711 silence all call long, not only between their keys
#   IVR_NICE=-10 ...     the server at that nice value
#   IVR_REALTIME=10 ...  the server under SCHED_RR at that priority (chrt --rr 10), as a media
#                        server is run in production (systemd CPUSchedulingPolicy=rr)
#   IVR_KEEP_CAPTURE=1   keep each step's RTP capture (about 80 MB at 1,000 calls)
#
# This machine may be shared: before each step ivr_step.py waits until other processes use
# less than 5% of a core, and a step during which they used more than 10% is flagged.
#
# Per step: calls completed/failed (SIPp), the most calls up at once (server log), digits
# lost (the server's `dtmf-test digits=` lines against what was keyed), CPU of the server and
# of SIPp (/proc), the server's RSS growth per call (/proc VmRSS), the RTP packets the server
# sent per call, and the gaps between them on each stream (tcpdump on lo): "send gap" is the
# gap between consecutive packets of one talkspurt (with media.silence: suppress, the default,
# the server sends nothing between prompts but a keepalive a second; a packet with the RTP
# marker bit starts a talkspurt), "talkspurt start" is how late each talkspurt's first packet
# left against the pause its RTP timestamp announces (20 ms: on time). scripts/bench/ivr_step.py does
# one step and explains each measurement. Needs: sipp (sip-tester), tcpdump
# (apt-get install -y tcpdump; the bench only), gcc, root (SIPp's pcap player and tcpdump).
#
# SIPp 3.6.1 plays each call's pcap from a raw UDP socket of its own, and Linux gives every
# raw UDP socket a copy of each UDP packet to its address: with hundreds of calls keying at
# once, each RTP packet the server sends to SIPp is copied hundreds of times inside the
# server's sendto() (system time the server would be charged for a quirk of the load
# generator). A preloaded shim (scripts/bench/sipp_rawconnect.c) connects each of those raw
# sockets, after SIPp has bound it, to an address nothing sends from, so they receive
# nothing; SIPp still sends with sendto() to the call's address. IVR_NO_SHIM=1 runs without
# it (at 300 calls the server's system time then doubles).
set -euo pipefail
cd "$(dirname "$0")/../.."
STEPS=("$@")
[ ${#STEPS[@]} -gt 0 ] || STEPS=(250 500 750 1000 1200)
PY=${PYTHON:-.venv/bin/python}
DIGITS=1234567890
LEAD_MS=${IVR_LEAD_MS:-8000}  # after the answer: the intro prompt (3.1 s), then some silence
RAMP=${IVR_RAMP:-8}           # seconds to place all calls of a step
for tool in sipp tcpdump gcc; do
    command -v "$tool" > /dev/null || { echo "ivr.sh: $tool is not installed" >&2; exit 1; }
done
ulimit -n "$(ulimit -Hn)"  # a UDP socket per call in the server, a raw socket per play in SIPp
WORK=$(mktemp -d /tmp/softswitch-ivr-bench.XXXXXX)
echo "work directory: $WORK (server logs, SIPp stats, RTP captures)"

# 100 ms keys 400 ms apart, with G.711 silence frames between them as a phone sends: 5.5 s.
# SIPp waits LEAD_MS after the answer before it plays them; the caller is silent until then
# and after them, unless IVR_AUDIO=call: then the pcap itself starts with LEAD_MS of silence
# frames and ends with 12 s more (the call ends with the server's BYE, and the playing with it).
"$PY" scripts/make_dtmf_pcap.py "$DIGITS#" "$WORK/keys.pcap" --duration-ms 100 \
    --gap-ms 400 --with-audio
if [ "${IVR_AUDIO:-keys}" = call ]; then
    "$PY" scripts/bench/ivr_pcap.py "$WORK/keys.pcap" "$WORK/digits.pcap" --lead-ms "$LEAD_MS" \
        --trail-ms 12000
    LEAD_MS=0
else
    cp "$WORK/keys.pcap" "$WORK/digits.pcap"
fi

PRELOAD=()
if [ -z "${IVR_NO_SHIM:-}" ]; then
    gcc -O2 -shared -fPIC -o "$WORK/rawconnect.so" scripts/bench/sipp_rawconnect.c -ldl
    PRELOAD=(--preload "$WORK/rawconnect.so")
fi
OPTIONS=()
[ -z "${IVR_PROFILE:-}" ] || OPTIONS+=(--profile)
[ -z "${IVR_PIN:-}" ] || OPTIONS+=(--pin)
[ -z "${IVR_NICE:-}" ] || OPTIONS+=(--nice "$IVR_NICE")
[ -z "${IVR_REALTIME:-}" ] || OPTIONS+=(--realtime "$IVR_REALTIME")

echo
echo "| calls | held at once | completed / failed | digits lost | server CPU: peak (system) / busiest 2 s | SIPp CPU (peak) | RSS per call | RTP packets per call | send gap p50 / p99 / max (peak) | send gap p99 / max (whole step) | talkspurt start p99 / max |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for calls in "${STEPS[@]}"; do
    "$PY" scripts/bench/ivr_step.py --calls "$calls" --work "$WORK/step-$calls" \
        --pcap "$WORK/digits.pcap" --digits "$DIGITS" --lead-ms "$LEAD_MS" --ramp "$RAMP" \
        "${PRELOAD[@]}" "${OPTIONS[@]}" > "$WORK/step-$calls.out"
    tail -1 "$WORK/step-$calls.out" > "$WORK/step-$calls.json"
    [ -n "${IVR_KEEP_CAPTURE:-}" ] || rm -f "$WORK/step-$calls/rtp.pcap"
    "$PY" - "$WORK/step-$calls.json" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1]))
peak, step, start = r["gap_ms_peak"], r["gap_ms_step"], r["talkspurt_start_gap_ms"]
others = r["others_cpu_peak"]  # other processes on this machine during the peak
print(f"| {r['target']}" + (f" (other processes used {others:.0f}% of a core)"
                            if others > 10 else "")
      + f" | {r['peak_concurrent']} for {r['peak_seconds']:.1f} s "
      f"| {r['sipp_successful']} / {r['sipp_failed']} "
      f"| {r['digits_lost']} of {r['digits_sent']} ({r['calls_with_wrong_digits']} calls wrong) "
      f"| {r['server_cpu_peak']:.0f}% ({r['server_system_cpu_peak']:.0f}%) / "
      f"{r['server_cpu_busiest']:.0f}% | {r['sipp_cpu_peak']:.0f}% "
      f"| {r['rss_per_call_kb']:.0f} KB ({r['rss_before_kb'] // 1024} -> {r['rss_peak_kb'] // 1024} MB) "
      f"| {r['rtp_packets'] / max(r['rtp_streams'], 1):.0f} "
      f"| {peak.get('p50', 0):.1f} / {peak.get('p99', 0):.1f} / {peak.get('max', 0):.1f} ms "
      f"| {step.get('p99', 0):.1f} / {step.get('max', 0):.1f} ms "
      f"| {start.get('p99', 0):.1f} / {start.get('max', 0):.1f} ms"
      + (f" (tcpdump dropped {r['capture_dropped']} packets: gaps overstated)"
         if r["capture_dropped"] > 0 else "") + " |")
PYEOF
done
echo
echo "CPU in % of one core (this machine has $(nproc)); per-step details: $WORK/step-N.json"
echo "(tcpdump CPU, capture drops, packets and streams captured, server warnings)."
