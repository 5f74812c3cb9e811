#!/usr/bin/env bash
# Subscriber-to-subscriber calls relayed to the callee's registered phone: SIPp drives a real
# softswitch (its B2BUA) over UDP, then, in the same run and with the same load, Kamailio 5.6
# doing the same job (scripts/bench/kamailio-calls.cfg: digest 407, the blocklist check in an
# htable, a stateful tm relay with a usrloc lookup and Record-Route), when it is installed.
#
#   scripts/bench/relay.sh [RATE] [COUNT] [CALLERS] [HOLD_MS]    (defaults 1000 20000 200 1000)
#   BENCH_ONLY=kamailio|softswitch    run one of the two (the other's half may not work yet)
#
# The callee's phone is a SIPp UAS (scripts/sipp/uas_phone.xml) registered to the server with
# register_contact.xml: 180, 200 100 ms later, then the caller's BYE after HOLD_MS. The SDP is
# passed through, no RTP is sent (the media would flow phone to phone). Prints calls/s, failed
# calls, response time p50/p99 (SIPp rtd: the INVITE with credentials to the relayed 180), the
# server's CPU per call from /proc, and the ratios; see call_bench.py.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
ARGS=()
[ $# -lt 1 ] || ARGS+=(--rate "$1")
[ $# -lt 2 ] || ARGS+=(--count "$2")
[ $# -lt 3 ] || ARGS+=(--callers "$3")
[ $# -lt 4 ] || ARGS+=(--hold-ms "$4")
[ -z "${BENCH_ONLY:-}" ] || ARGS+=(--only "$BENCH_ONLY")
ulimit -n "$(ulimit -Hn)"
exec "$PY" scripts/bench/call_bench.py relay "${ARGS[@]}"
