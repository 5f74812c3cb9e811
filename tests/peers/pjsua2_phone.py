"""A PJSUA2 account that registers, run as a child process by the tests.

    python pjsua2_phone.py --registrar sip:127.0.0.1:5060 --user 09011110002 \
        --password pw-two --realm softswitch.test --log pjsua.log

Reports JSON lines on stdout ({"event": "reg_state", "code": 200, "expires": 300, ...}) and
takes commands on stdin, one a line: "unregister", "quit". End of stdin means quit, so the
child never outlives a test that died. pjsua2 allows one Endpoint per process and can crash,
which is why it lives in its own process.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import sys
import time

import pjsua2 as pj


def emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


class Account(pj.Account):
    def onRegState(self, prm: pj.OnRegStateParam) -> None:  # noqa: N802 - pjsua2's name
        info = self.getInfo()
        emit("reg_state", code=prm.code, reason=prm.reason, expires=prm.expiration,
             active=info.regIsActive)


def read_command(timeout: float) -> str | None:
    """One line from stdin if one arrives within `timeout`; "quit" at end of input."""
    ready, _, _ = select.select([sys.stdin], [], [], timeout)
    if not ready:
        return None
    line = sys.stdin.readline()
    return line.strip() if line else "quit"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--registrar", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--realm", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--transport", choices=["udp", "tcp"], default="udp")
    args = parser.parse_args()

    endpoint = pj.Endpoint()
    endpoint.libCreate()
    config = pj.EpConfig()
    config.uaConfig.threadCnt = 0  # no worker threads: this loop polls libHandleEvents
    config.uaConfig.mainThreadOnly = True
    config.logConfig.consoleLevel = 0  # stdout carries only our JSON lines
    config.logConfig.level = 5
    config.logConfig.msgLogging = True
    config.logConfig.filename = args.log
    endpoint.libInit(config)
    endpoint.audDevManager().setNullDev()  # no sound card on a test machine
    transport = pj.TransportConfig()
    transport.port = 0
    transport.boundAddress = "127.0.0.1"
    kind = pj.PJSIP_TRANSPORT_TCP if args.transport == "tcp" else pj.PJSIP_TRANSPORT_UDP
    endpoint.transportCreate(kind, transport)
    endpoint.libStart()

    account_config = pj.AccountConfig()
    account_config.idUri = f"sip:{args.user}@{args.realm}"
    registrar = args.registrar
    if args.transport == "tcp":
        registrar += ";transport=tcp"
    account_config.regConfig.registrarUri = registrar
    account_config.regConfig.retryIntervalSec = 0  # a failure is final: the test reads it
    account_config.sipConfig.authCreds.append(
        pj.AuthCredInfo("digest", args.realm, args.user, 0, args.password))
    account = Account()
    account.create(account_config)
    emit("started")

    try:
        while True:
            endpoint.libHandleEvents(20)
            command = read_command(0)
            if command == "unregister":
                account.setRegistration(False)
            elif command == "quit":
                break
        # Let an unregistration in flight finish before tearing down.
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            endpoint.libHandleEvents(20)
    finally:
        account.shutdown()
        endpoint.libDestroy()
        emit("stopped")
        sys.stdout.flush()
        os._exit(0)  # pjsua2's SWIG objects can crash in interpreter teardown


if __name__ == "__main__":
    main()
