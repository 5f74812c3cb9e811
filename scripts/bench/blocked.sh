#!/usr/bin/env bash
# Blocked callers: a subscriber's call to a subscriber who has blocked them. SIPp drives a real
# softswitch over UDP, then, in the same run and with the same load, Kamailio 5.6 doing the same
# job (scripts/bench/kamailio-calls.cfg: digest 407, the blocklist in an htable, a stateless
# 603), when it is installed (apt-get install kamailio).
#
#   scripts/bench/blocked.sh [RATE] [COUNT] [CALLERS]      (defaults 4000 40000 30)
#       the callers offer no SDP: 407, INVITE with credentials, 603 with a Reason header
#   BLOCKED_SDP=1 scripts/bench/blocked.sh [RATE] [COUNT]   (defaults 250 5000)
#       the callers offer SDP and hear the whole announcement as early media: 183, RTP, 603
#       (softswitch only: Kamailio has no media). RTP reaching the callers is counted with
#       tcpdump when installed; BLOCKED_NO_RTP_COUNT=1 leaves it out (it costs CPU).
#   BENCH_ONLY=kamailio|softswitch    run one of the two (the other's half may not work yet)
#
# The callee's phone is a SIPp UAS registered to the server: it must receive no INVITE. Prints
# calls/s, failed calls, response time p50/p99 (SIPp rtd: the INVITE with credentials to the
# 603, or to the 183), the server's CPU per call from /proc, and the ratios; see call_bench.py.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
ARGS=()
if [ -n "${BLOCKED_SDP:-}" ]; then CASE=blocked-sdp; else CASE=blocked; fi
[ $# -lt 1 ] || ARGS+=(--rate "$1")
[ $# -lt 2 ] || ARGS+=(--count "$2")
[ $# -lt 3 ] || ARGS+=(--callers "$3")
[ -z "${BENCH_ONLY:-}" ] || ARGS+=(--only "$BENCH_ONLY")
[ -z "${BLOCKED_NO_RTP_COUNT:-}" ] || ARGS+=(--no-rtp-count)
ulimit -n "$(ulimit -Hn)"
exec "$PY" scripts/bench/call_bench.py "$CASE" "${ARGS[@]}"
