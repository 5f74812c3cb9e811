"""A pyVoIP phone that registers, calls a number and keys digits as in-band tones, run as a
child process by the tests.

    python pyvoip_caller.py --server 127.0.0.1 --port 5060 --user 08022220003 \
        --password pw-three --sip-port 5062 --rtp-low 30000 --rtp-high 30010 \
        --number 1999 --keys '12#'

pyVoIP offers telephone-event (payload 101) but has no way to send it: its keys are tones in
the audio, as many gateways send them. Reports JSON lines on stdout: {"event": "status"},
{"event": "call", "state": "ANSWERED"}, {"event": "audio", "bytes": N, "loud": N} (what it
heard), {"event": "ended", "state": ...}. pyVoIP prints diagnostics with print(): they go to
stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import TextIO

from pyVoIP.VoIP import CallState, VoIPPhone

RATE = 8000
TONES = {"1": (697, 1209), "2": (697, 1336), "3": (697, 1477), "4": (770, 1209),
         "5": (770, 1336), "6": (770, 1477), "7": (852, 1209), "8": (852, 1336),
         "9": (852, 1477), "*": (941, 1209), "0": (941, 1336), "#": (941, 1477)}


def tone(key: str, seconds: float) -> bytes:
    """A DTMF key as pyVoIP's write_audio takes it: 8-bit unsigned linear samples."""
    low, high = TONES[key]
    return bytes(
        128 + round(45 * (math.sin(2 * math.pi * low * n / RATE)
                          + math.sin(2 * math.pi * high * n / RATE)))
        for n in range(int(RATE * seconds)))


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("--server", "--user", "--password", "--number"):
        parser.add_argument(name, required=True)
    for name in ("--port", "--sip-port", "--rtp-low", "--rtp-high"):
        parser.add_argument(name, type=int, required=True)
    parser.add_argument("--keys", default="")
    parser.add_argument("--listen-seconds", type=float, default=2.0)
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
        phone.start()
        emit("status", status=phone.get_status().name)
        call = phone.call(args.number)
        deadline = time.monotonic() + 10
        while call.state != CallState.ANSWERED and time.monotonic() < deadline:
            time.sleep(0.05)
        emit("call", state=call.state.name)
        if call.state == CallState.ANSWERED:
            time.sleep(0.5)
            for key in args.keys:
                call.write_audio(tone(key, 0.12))
                call.write_audio(bytes([128]) * int(RATE * 0.12))
            heard = loud = 0
            until = time.monotonic() + args.listen_seconds
            while time.monotonic() < until and call.state == CallState.ANSWERED:
                audio = call.read_audio(160, blocking=False)
                heard += len(audio)
                loud += sum(1 for sample in audio if abs(sample - 128) > 8)
                time.sleep(0.02)
            emit("audio", bytes=heard, loud=loud)
            if call.state == CallState.ANSWERED:
                call.hangup()
        emit("ended", state=call.state.name)
    except Exception as error:  # reported, not raised: the test reads the outcome
        emit("error", error=f"{type(error).__name__}: {error}")
    finally:
        phone.stop()
        os._exit(0)  # pyVoIP's Timer threads are not daemons


if __name__ == "__main__":
    main()
