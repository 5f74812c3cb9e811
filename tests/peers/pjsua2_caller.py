"""A PJSUA2 softphone that places calls and records what it hears, run as a child process.

    python pjsua2_caller.py --log pjsua.log

No registration: it calls a SIP URI directly. Commands on stdin, one a line:

    call sip:1999@127.0.0.1:5060 /tmp/heard.wav   dial; record the far end into the WAV file
    dtmf rfc2833 123#                            key digits as RFC 4733 (RFC 2833) events
    dtmf info 456#                               ... or as SIP INFO (application/dtmf-relay)
    hangup
    quit                                         (end of stdin means quit too)

Reports JSON lines on stdout: {"event": "started"}, {"event": "state", "state": "CONFIRMED"},
{"event": "media"} once the call's audio flows into the recorder, {"event": "dtmf_sent"},
{"event": "disconnected", "code": 200, "reason": ..., "recording": path, "samples": n} once the
recording is closed (its WAV header is written when the recorder is destroyed), {"event":
"error", ...} when pjsua2 refuses a command.

The conference bridge runs at 8 kHz, so the recording is 16-bit PCM at 8 kHz: the G.711 the
server sent, decoded, with no resampling in between. No sound card: the null audio device.
One call at a time, one pjsua2 Endpoint per process (why this is a process of its own).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import sys
import time

import pjsua2 as pj

DTMF_METHODS = {"rfc2833": pj.PJSUA_DTMF_METHOD_RFC2833, "info": pj.PJSUA_DTMF_METHOD_SIP_INFO}
DTMF_DURATION_MS = 160  # how long each key is held (pjsua's default)


def emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


class Phone:
    """The one call in progress and its recorder; pjsua2 objects are destroyed from the main
    loop, never inside a callback."""

    def __init__(self, account: pj.Account) -> None:
        self.account = account
        self.call: Call | None = None
        self.recorder: pj.AudioMediaRecorder | None = None
        self.recording = ""
        self.disconnected: tuple[int, str] | None = None

    def dial(self, uri: str, recording: str) -> None:
        if self.call is not None:
            emit("error", command="call", reason="a call is in progress")
            return
        self.recording = recording
        self.disconnected = None
        self.call = Call(self)
        parameters = pj.CallOpParam(True)
        try:
            self.call.makeCall(uri, parameters)
        except pj.Error as error:
            emit("error", command="call", reason=error.info())
            self.call = None

    def media_active(self, call: Call) -> None:
        if self.recorder is not None:
            return
        audio = call.getAudioMedia(-1)
        self.recorder = pj.AudioMediaRecorder()
        self.recorder.createRecorder(self.recording)
        audio.startTransmit(self.recorder)
        emit("media")

    def send_dtmf(self, method: str, digits: str) -> None:
        if self.call is None or method not in DTMF_METHODS:
            emit("error", command="dtmf", reason=f"no call or unknown method {method!r}")
            return
        parameters = pj.CallSendDtmfParam()
        parameters.method = DTMF_METHODS[method]
        parameters.digits = digits
        parameters.duration = DTMF_DURATION_MS
        try:
            self.call.sendDtmf(parameters)
        except pj.Error as error:
            emit("error", command="dtmf", reason=error.info())
            return
        emit("dtmf_sent", method=method, digits=digits)

    def hangup(self) -> None:
        if self.call is not None:
            self.call.hangup(pj.CallOpParam(True))

    def after_events(self, endpoint: pj.Endpoint) -> None:
        """Tidy up a call that ended: close the WAV file, then report."""
        if self.disconnected is None:
            return
        code, reason = self.disconnected
        self.disconnected = None
        self.close_recorder()
        self.call = None
        samples = wait_for_wav(endpoint, self.recording)
        emit("disconnected", code=code, reason=reason, recording=self.recording,
             samples=samples)

    def close_recorder(self) -> None:
        recorder, self.recorder = self.recorder, None
        if recorder is not None:
            del recorder  # pjsua_recorder_destroy: writes the WAV header's sizes


def wait_for_wav(endpoint: pj.Endpoint, path: str, timeout: float = 3.0) -> int:
    """The samples in the WAV file at `path` once its header counts them all; -1 if it never
    does. pjproject 2.15's conference bridge removes a port (and so closes the recorder's
    file) asynchronously, on its own clock, after the recorder object is gone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        endpoint.libHandleEvents(10)
        try:
            with open(path, "rb") as wav:
                header = wav.read(44)
                size = os.fstat(wav.fileno()).st_size
        except FileNotFoundError:
            continue
        if len(header) == 44 and int.from_bytes(header[4:8], "little") == size - 8:
            return int.from_bytes(header[40:44], "little") // 2
    return -1


class Call(pj.Call):
    def __init__(self, phone: Phone) -> None:
        super().__init__(phone.account)
        self.phone = phone

    def onCallState(self, prm: pj.OnCallStateParam) -> None:  # noqa: N802 - pjsua2's name
        info = self.getInfo()
        emit("state", state=info.stateText, code=info.lastStatusCode)
        if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.phone.disconnected = (info.lastStatusCode, info.lastReason)

    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:  # noqa: N802
        info = self.getInfo()
        for media in info.media:
            if (media.type == pj.PJMEDIA_TYPE_AUDIO
                    and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE):
                self.phone.media_active(self)
                return


def read_command(timeout: float) -> str | None:
    """One line from stdin if one arrives within `timeout`; "quit" at end of input."""
    ready, _, _ = select.select([sys.stdin], [], [], timeout)
    if not ready:
        return None
    line = sys.stdin.readline()
    return line.strip() if line else "quit"


def make_endpoint(log: str) -> pj.Endpoint:
    endpoint = pj.Endpoint()
    endpoint.libCreate()
    config = pj.EpConfig()
    config.uaConfig.threadCnt = 0  # no worker threads: the main loop polls libHandleEvents
    config.uaConfig.mainThreadOnly = True
    config.logConfig.consoleLevel = 0  # stdout carries only our JSON lines
    config.logConfig.level = 5
    config.logConfig.msgLogging = True
    config.logConfig.filename = log
    config.medConfig.clockRate = 8000  # the bridge at G.711's rate: no resampling
    config.medConfig.sndClockRate = 8000
    config.medConfig.ecTailLen = 0  # no echo canceller touching what we hear
    config.medConfig.noVad = True
    endpoint.libInit(config)
    endpoint.audDevManager().setNullDev()  # no sound card on a test machine
    transport = pj.TransportConfig()
    transport.port = 0
    transport.boundAddress = "127.0.0.1"
    endpoint.transportCreate(pj.PJSIP_TRANSPORT_UDP, transport)
    endpoint.libStart()
    for codec in endpoint.codecEnum2():  # offer G.711 only, μ-law first
        priority = {"PCMU/8000/1": 255, "PCMA/8000/1": 254}.get(codec.codecId, 0)
        endpoint.codecSetPriority(codec.codecId, priority)
    return endpoint


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--log", required=True)
    parser.add_argument("--user", default="pjsua2-caller")
    args = parser.parse_args()

    endpoint = make_endpoint(args.log)
    account_config = pj.AccountConfig()
    account_config.idUri = f"sip:{args.user}@127.0.0.1"
    account_config.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
    account = pj.Account()
    account.create(account_config)  # no registrarUri: no REGISTER is sent
    phone = Phone(account)
    emit("started")

    try:
        while True:
            endpoint.libHandleEvents(10)
            phone.after_events(endpoint)
            command = read_command(0)
            if command is None:
                continue
            name, _, rest = command.partition(" ")
            if name == "call":
                uri, _, recording = rest.partition(" ")
                phone.dial(uri, recording)
            elif name == "dtmf":
                method, _, digits = rest.partition(" ")
                phone.send_dtmf(method, digits)
            elif name == "hangup":
                phone.hangup()
            elif name == "quit":
                break
            elif name:
                emit("error", command=name, reason="unknown command")
        phone.hangup()
        deadline = time.monotonic() + 0.5  # let a BYE in flight finish
        while time.monotonic() < deadline:
            endpoint.libHandleEvents(20)
            phone.after_events(endpoint)
    finally:
        phone.close_recorder()
        endpoint.hangupAllCalls()
        account.shutdown()
        endpoint.libDestroy()
        emit("stopped")
        sys.stdout.flush()
        os._exit(0)  # pjsua2's SWIG objects can crash in interpreter teardown


if __name__ == "__main__":
    main()
