"""A pyVoIP phone that registers, run as a child process by the tests.

    python pyvoip_phone.py --server 127.0.0.1 --port 5060 --user 08022220003 \
        --password pw-three --sip-port 5062 --rtp-low 30000 --rtp-high 30010

Reports JSON lines on stdout ({"event": "status", "status": "REGISTERED"}) and takes
commands on stdin, one a line: "stop" (pyVoIP unregisters), "quit". End of stdin means
quit. pyVoIP prints its own diagnostics with print(), so they are sent to stderr and only
our JSON lines reach stdout. It runs threads of its own (receive loop, re-register timer),
hence a process of its own too.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TextIO

from pyVoIP.VoIP import VoIPPhone


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--sip-port", type=int, required=True)
    parser.add_argument("--rtp-low", type=int, required=True)
    parser.add_argument("--rtp-high", type=int, required=True)
    args = parser.parse_args()

    report: TextIO = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout = sys.stderr

    def emit(event: str, **fields: object) -> None:
        report.write(json.dumps({"event": event, **fields}) + "\n")
        report.flush()

    phone = VoIPPhone(args.server, args.port, args.user, args.password, myIP="127.0.0.1",
                      sipPort=args.sip_port, rtpPortLow=args.rtp_low,
                      rtpPortHigh=args.rtp_high)
    try:
        phone.start()  # sends REGISTER and waits for the answers itself
    except Exception as error:  # reported, not raised: the test reads the outcome
        emit("error", where="start", error=f"{type(error).__name__}: {error}")
    emit("status", status=phone.get_status().name)
    try:
        for line in sys.stdin:
            command = line.strip()
            if command == "stop":
                phone.stop()
                emit("status", status=phone.get_status().name)
            elif command == "quit":
                break
    finally:
        phone.stop()
        emit("stopped")
        os._exit(0)  # pyVoIP's Timer threads are not daemons


if __name__ == "__main__":
    main()
