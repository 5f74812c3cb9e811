"""A PJSUA2 softphone that registers, makes and takes calls, run as a child process.

    python pjsua2_softphone.py --log pjsua.log --user 09011110002 [--display "Suzuki Hanako"]
        [--server 127.0.0.1:5060 --password pw-two --domain softswitch.test [--no-register]]
        [--sip-port 0] [--rtp-port 0 --rtp-ports 40] [--incoming 200|180|486|...]
        [--tone 440 | --wav FILE] [--record-dir DIR]

Without --server it registers nowhere and is called directly by URI (sip:USER@127.0.0.1:PORT,
the port is in the "started" report). With --server it registers (digest over UDP; --domain is
the digest realm and the AOR's host) unless --no-register, and answers a 401/407 to any of its
requests, INVITEs included, with the same credentials. Calls go where their URI says; with
--outbound-proxy they are sent through --server (a Route header) whatever the URI's host.

--incoming says what it does with a call that arrives: 200 ring (180) and answer at once (the
default); 180 ring and wait for an `answer` command (or ring for ever: "never answers"); a
status of 300-699 (486 busy, 603 decline, ...) reject with it.

Commands on stdin, one a line (CALL is the number in the reports; left out: the latest call):

    call URI                 dial; the call's number comes in the "calling" report
    answer [CODE [CALL]]     answer a ringing call: 200 (default), 180/183, or reject (486...)
    hangup [CALL]            BYE, CANCEL or a 603 to a ringing call, whatever fits its state
    dtmf DIGITS [CALL]       key digits as RFC 4733 (RFC 2833) telephone-events
    hold [CALL] / resume [CALL]   re-INVITE with a=sendonly / a=sendrecv
    stats [CALL]             report the call's RTP counters now
    incoming MODE            change --incoming for the calls that arrive from now on
    register / unregister    REGISTER again / with Expires: 0
    quit                     (end of stdin means quit too)

Reports, one JSON object a line on stdout:

    {"event": "started", "sip_port": P, "rtp_port": R, "uri": "sip:USER@127.0.0.1:P"}
    {"event": "reg_state", "code": 200, "reason": "OK", "expires": 300, "active": true}
    {"event": "calling", "call": N, "uri": ...}
    {"event": "incoming", "call": N, "from": RAW, "from_user": "0901...", "display": "..",
     "to": RAW, "request_uri": .., "call_id": .., "source": "127.0.0.1:5060", "invite": TEXT}
    {"event": "state", "call": N, "state": "EARLY|CONNECTING|CONFIRMED|DISCONNECTED", "code": 180}
    {"event": "media", "call": N, "status": "active|local_hold|remote_hold|none|error",
     "dir": "sendrecv|sendonly|recvonly|inactive", "remote_rtp": "127.0.0.1:4002",
     "local_rtp": "127.0.0.1:4000", "codec": "PCMU"}
    {"event": "stats", "call": N, "rx_packets": .., "tx_packets": .., "remote_rtp": .., ...}
    {"event": "dtmf", "call": N, "digit": "5"}            a telephone-event received
    {"event": "dtmf_sent", "call": N, "digits": "123#"}
    {"event": "disconnected", "call": N, "code": 200, "reason": .., "rx_packets": ..,
     "tx_packets": .., "remote_rtp": .., "recording": PATH or null}
    {"event": "error", "command": .., "reason": ..}
    {"event": "stopped"}

RTP counters are pjmedia's stream statistics (RTCP's view of the packets it sent and got),
summed over the streams of the call (a re-INVITE makes a new stream); the disconnected report
carries the last ones read before the stream went away, so a test
can tell that media flowed both ways, and remote_rtp says to whom (a phone, not a server).
No sound card: the null audio device; the phone "speaks" a steady tone (or loops a WAV),
and the conference bridge runs at 8 kHz with no VAD, so a packet leaves every 20 ms.
One pjsua2 Endpoint per process (which is why this is a process of its own).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import select
import sys
import time
from pathlib import Path

import pjsua2 as pj

DTMF_DURATION_MS = 160
STATS_EVERY = 0.1  # seconds between readings of the counters of a live call
MEDIA_STATUS = {pj.PJSUA_CALL_MEDIA_NONE: "none", pj.PJSUA_CALL_MEDIA_ACTIVE: "active",
                pj.PJSUA_CALL_MEDIA_LOCAL_HOLD: "local_hold",
                pj.PJSUA_CALL_MEDIA_REMOTE_HOLD: "remote_hold",
                pj.PJSUA_CALL_MEDIA_ERROR: "error"}
DIRECTION = {pj.PJMEDIA_DIR_NONE: "inactive", pj.PJMEDIA_DIR_ENCODING: "sendonly",
             pj.PJMEDIA_DIR_DECODING: "recvonly", pj.PJMEDIA_DIR_ENCODING_DECODING: "sendrecv"}
NAME_ADDR = re.compile(r'^\s*(?:"((?:[^"\\]|\\.)*)"|([^<"]*?))\s*<([^>]*)>')


def emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def parse_name_addr(value: str) -> tuple[str, str, str]:
    """(display name, URI, user part) of a From/To value such as '"Taro" <sip:0901@host>'."""
    match = NAME_ADDR.match(value)
    if match:
        display = (match.group(1) if match.group(1) is not None else match.group(2)) or ""
        display = re.sub(r"\\(.)", r"\1", display).strip()
        uri = match.group(3)
    else:
        display, uri = "", value.split(";", 1)[0].strip()
    user = re.sub(r"^[a-zA-Z]+:", "", uri).split("@", 1)[0] if "@" in uri else ""
    return display, uri, user


class Phone:
    """The phone's calls, each known by a number of its own (pjsua reuses its call ids). A
    call that ended is forgotten in the main loop, never inside one of its own callbacks."""

    def __init__(self, endpoint: pj.Endpoint, args: argparse.Namespace) -> None:
        self.endpoint = endpoint
        self.args = args
        self.incoming_mode = args.incoming
        self.calls: dict[int, Call] = {}
        self.next_number = 1
        self.ended: list[Call] = []
        self.account: Account | None = None
        self.source = self._make_source()

    def _make_source(self) -> pj.AudioMedia:
        if self.args.wav:
            player = pj.AudioMediaPlayer()
            player.createPlayer(self.args.wav)  # loops by default
            return player
        tone = pj.ToneGenerator()
        tone.createToneGenerator(8000, 1)
        desc = pj.ToneDesc()
        desc.freq1, desc.freq2 = self.args.tone, 0
        desc.on_msec, desc.off_msec, desc.volume = 1000, 0, 0
        tones = pj.ToneDescVector()
        tones.append(desc)
        tone.play(tones, True)
        return tone

    def add(self, call: Call) -> int:
        number = self.next_number
        self.next_number += 1
        call.number = number
        self.calls[number] = call
        return number

    def find(self, command: str, argument: str) -> Call | None:
        if argument:
            call = self.calls.get(int(argument)) if argument.isdigit() else None
        else:
            call = self.calls[max(self.calls)] if self.calls else None
        if call is None:
            emit("error", command=command, reason=f"no such call {argument!r}")
        return call

    def dial(self, uri: str) -> None:
        assert self.account is not None
        call = Call(self, self.account)
        number = self.add(call)
        emit("calling", call=number, uri=uri)
        try:
            call.makeCall(uri, pj.CallOpParam(True))
        except pj.Error as error:
            emit("error", command="call", call=number, reason=error.info())
            del self.calls[number]

    def on_incoming(self, call: Call, message: str, source: str) -> None:
        number = self.add(call)
        info = call.getInfo()
        display, _, user = parse_name_addr(info.remoteUri)
        request_uri = message.split(" ", 2)[1] if message.startswith("INVITE ") else ""
        emit("incoming", call=number, **{"from": info.remoteUri}, from_user=user,
             display=display, to=info.localUri, request_uri=request_uri,
             call_id=info.callIdString, source=source, invite=message)
        self.respond(call, self.incoming_mode)

    def respond(self, call: Call, code: int) -> None:
        if code == 200:
            call.answer(status_param(180))  # as a phone does: it rings, then is picked up
        call.answer(status_param(code))

    def answer(self, rest: str) -> None:
        parts = rest.split()
        code = int(parts[0]) if parts else 200
        call = self.find("answer", parts[1] if len(parts) > 1 else "")
        if call is None:
            return
        try:
            call.answer(status_param(code))
        except pj.Error as error:
            emit("error", command="answer", call=call.number, reason=error.info())

    def hangup(self, argument: str) -> None:
        call = self.find("hangup", argument)
        if call is not None:
            try:
                call.hangup(pj.CallOpParam(True))
            except pj.Error as error:
                emit("error", command="hangup", call=call.number, reason=error.info())

    def dtmf(self, rest: str) -> None:
        digits, _, argument = rest.partition(" ")
        call = self.find("dtmf", argument.strip())
        if call is None:
            return
        parameters = pj.CallSendDtmfParam()
        parameters.method = pj.PJSUA_DTMF_METHOD_RFC2833
        parameters.digits = digits
        parameters.duration = DTMF_DURATION_MS
        try:
            call.sendDtmf(parameters)
        except pj.Error as error:
            emit("error", command="dtmf", call=call.number, reason=error.info())
            return
        emit("dtmf_sent", call=call.number, digits=digits)

    def hold(self, argument: str, resume: bool) -> None:
        call = self.find("resume" if resume else "hold", argument)
        if call is None:
            return
        parameters = pj.CallOpParam(True)
        try:
            if resume:
                parameters.opt.flag = pj.PJSUA_CALL_UNHOLD
                call.reinvite(parameters)
            else:
                call.setHold(parameters)
        except pj.Error as error:
            emit("error", command="resume" if resume else "hold", call=call.number,
                 reason=error.info())

    def report_stats(self, argument: str) -> None:
        call = self.find("stats", argument)
        if call is not None:
            call.read_stats()
            emit("stats", call=call.number, **call.counters())

    def tick(self, now: float) -> None:
        """Read the counters of live calls now and then; report and forget ended calls."""
        for call in list(self.calls.values()):
            if call.media_index >= 0 and now >= call.stats_due:
                call.stats_due = now + STATS_EVERY
                call.read_stats()
        while self.ended:
            call = self.ended.pop(0)
            call.close_recorder()
            if call.recording:
                wait_for_wav(self.endpoint, call.recording)
            self.calls.pop(call.number, None)
            emit("disconnected", call=call.number, code=call.final[0], reason=call.final[1],
                 recording=call.recording, **call.counters())

    def hangup_all(self) -> None:
        for call in list(self.calls.values()):
            with contextlib.suppress(pj.Error):  # already ending
                call.hangup(pj.CallOpParam(True))


def status_param(code: int) -> pj.CallOpParam:
    parameters = pj.CallOpParam(True)
    parameters.statusCode = code
    return parameters


def wait_for_wav(endpoint: pj.Endpoint, path: str, timeout: float = 3.0) -> None:
    """Until the WAV file's header counts all its data. pjproject 2.15's conference bridge
    closes a recorder's file on its own clock, after the recorder object is gone."""
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
            return


class Account(pj.Account):
    def __init__(self, phone: Phone) -> None:
        super().__init__()
        self.phone = phone

    def onRegState(self, prm: pj.OnRegStateParam) -> None:  # noqa: N802 - pjsua2's name
        info = self.getInfo()
        emit("reg_state", code=prm.code, reason=prm.reason, expires=prm.expiration,
             active=info.regIsActive)

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:  # noqa: N802
        call = Call(self.phone, self, prm.callId)
        source = prm.rdata.srcAddress
        self.phone.on_incoming(call, prm.rdata.wholeMsg, source)


class Call(pj.Call):
    def __init__(self, phone: Phone, account: Account, call_id: int = pj.PJSUA_INVALID_ID
                 ) -> None:
        super().__init__(account, call_id)
        self.phone = phone
        self.number = 0
        self.media_index = -1
        self.stats_due = 0.0
        self.rx_packets = self.tx_packets = 0  # of the stream in use
        self.rx_before = self.tx_before = 0  # of the streams a re-INVITE replaced
        self.remote_rtp = ""
        self.codec = ""
        self.final: tuple[int, str] = (0, "")
        self.recorder: pj.AudioMediaRecorder | None = None
        self.recording: str | None = None
        self.connected: set[int] = set()  # media indexes the tone is sent to

    def counters(self) -> dict[str, object]:
        return {"rx_packets": self.rx_before + self.rx_packets,
                "tx_packets": self.tx_before + self.tx_packets,
                "remote_rtp": self.remote_rtp, "codec": self.codec}

    def read_stats(self) -> None:
        if self.media_index < 0:
            return
        try:
            stat = self.getStreamStat(self.media_index)
            info = self.getStreamInfo(self.media_index)
        except pj.Error:
            return  # no stream (any more): keep the last reading
        self.rx_packets = stat.rtcp.rxStat.pkt
        self.tx_packets = stat.rtcp.txStat.pkt
        self.remote_rtp = info.remoteRtpAddress
        self.codec = info.codecName

    def onCallState(self, prm: pj.OnCallStateParam) -> None:  # noqa: N802 - pjsua2's name
        info = self.getInfo()
        emit("state", call=self.number, state=info.stateText, code=info.lastStatusCode,
             reason=info.lastReason)
        if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.read_stats()
            self.final = (info.lastStatusCode, info.lastReason)
            self.phone.ended.append(self)

    def onStreamDestroyed(self, prm: pj.OnStreamDestroyedParam) -> None:  # noqa: N802
        """A re-INVITE (hold, resume) or the end of the call replaces or ends the stream:
        keep its counters, the next stream counts from zero."""
        self.read_stats()
        self.rx_before += self.rx_packets
        self.tx_before += self.tx_packets
        self.rx_packets = self.tx_packets = 0

    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:  # noqa: N802
        info = self.getInfo()
        for media in info.media:
            if media.type != pj.PJMEDIA_TYPE_AUDIO:
                continue
            self.media_index = media.index
            self.read_stats()
            local = ""
            with contextlib.suppress(pj.Error):  # no media transport (any more)
                local = self.getMedTransportInfo(media.index).localRtpName
            emit("media", call=self.number, status=MEDIA_STATUS.get(media.status, "?"),
                 dir=DIRECTION.get(media.dir, "?"), remote_rtp=self.remote_rtp,
                 local_rtp=local, codec=self.codec)
            if media.status in (pj.PJSUA_CALL_MEDIA_ACTIVE, pj.PJSUA_CALL_MEDIA_REMOTE_HOLD):
                self.connect_audio(media.index)
            return

    def connect_audio(self, index: int) -> None:
        audio = self.getAudioMedia(index)
        self.phone.source.startTransmit(audio)
        if self.phone.args.record_dir and self.recorder is None:
            self.recording = str(Path(self.phone.args.record_dir) / f"call-{self.number}.wav")
            self.recorder = pj.AudioMediaRecorder()
            self.recorder.createRecorder(self.recording)
            audio.startTransmit(self.recorder)

    def onDtmfDigit(self, prm: pj.OnDtmfDigitParam) -> None:  # noqa: N802
        emit("dtmf", call=self.number, digit=prm.digit)

    def close_recorder(self) -> None:
        recorder, self.recorder = self.recorder, None
        if recorder is not None:
            del recorder  # writes the WAV header's sizes


def read_command(timeout: float) -> str | None:
    """One line from stdin if one arrives within `timeout`; "quit" at end of input."""
    ready, _, _ = select.select([sys.stdin], [], [], timeout)
    if not ready:
        return None
    line = sys.stdin.readline()
    return line.strip() if line else "quit"


def make_endpoint(args: argparse.Namespace) -> tuple[pj.Endpoint, int]:
    endpoint = pj.Endpoint()
    endpoint.libCreate()
    config = pj.EpConfig()
    config.uaConfig.threadCnt = 0  # no worker threads: the main loop polls libHandleEvents
    config.uaConfig.mainThreadOnly = True
    config.uaConfig.maxCalls = 8
    config.logConfig.consoleLevel = 0  # stdout carries only our JSON lines
    config.logConfig.level = 5
    config.logConfig.msgLogging = True
    config.logConfig.filename = args.log
    config.medConfig.clockRate = 8000  # the bridge at G.711's rate: no resampling
    config.medConfig.sndClockRate = 8000
    config.medConfig.ecTailLen = 0
    config.medConfig.noVad = True  # a packet every 20 ms, silence or not
    endpoint.libInit(config)
    endpoint.audDevManager().setNullDev()  # no sound card on a test machine
    transport = pj.TransportConfig()
    transport.port = args.sip_port
    transport.boundAddress = "127.0.0.1"
    transport_id = endpoint.transportCreate(pj.PJSIP_TRANSPORT_UDP, transport)
    endpoint.libStart()
    for codec in endpoint.codecEnum2():  # G.711 only, μ-law first (what the switch speaks)
        priority = {"PCMU/8000/1": 255, "PCMA/8000/1": 254}.get(codec.codecId, 0)
        endpoint.codecSetPriority(codec.codecId, priority)
    sip_port = int(endpoint.transportGetInfo(transport_id).localName.rsplit(":", 1)[1])
    return endpoint, sip_port


def make_account(phone: Phone, args: argparse.Namespace, sip_port: int) -> Account:
    config = pj.AccountConfig()
    host = args.domain or f"127.0.0.1:{sip_port}"
    uri = f"sip:{args.user}@{host}"
    config.idUri = f'"{args.display}" <{uri}>' if args.display else uri
    media = config.mediaConfig.transportConfig
    media.boundAddress = "127.0.0.1"
    media.port = args.rtp_port
    media.portRange = args.rtp_ports if args.rtp_port else 0
    if args.server:
        if not args.no_register:
            config.regConfig.registrarUri = f"sip:{args.server}"
            config.regConfig.retryIntervalSec = 0  # a failure is final: the test reads it
            config.regConfig.timeoutSec = args.expires
        if args.outbound_proxy:
            config.sipConfig.proxies.append(f"sip:{args.server};lr")
        config.sipConfig.authCreds.append(
            pj.AuthCredInfo("digest", args.realm or args.domain or "*", args.user, 0,
                            args.password))
    config.natConfig.contactRewriteUse = 0  # loopback: no NAT to discover
    config.natConfig.viaRewriteUse = 0
    config.natConfig.sdpNatRewriteUse = 0
    config.natConfig.sipOutboundUse = 0
    account = Account(phone)
    account.create(config)
    return account


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--log", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--display", default="")
    parser.add_argument("--server", default="", help="HOST:PORT of the registrar")
    parser.add_argument("--password", default="")
    parser.add_argument("--domain", default="", help="the AOR's host and the digest realm")
    parser.add_argument("--realm", default="", help="digest realm, if not --domain")
    parser.add_argument("--no-register", action="store_true")
    parser.add_argument("--outbound-proxy", action="store_true")
    parser.add_argument("--expires", type=int, default=300)
    parser.add_argument("--sip-port", type=int, default=0)
    parser.add_argument("--rtp-port", type=int, default=0, help="first RTP port (0: any)")
    parser.add_argument("--rtp-ports", type=int, default=40, help="RTP ports from --rtp-port")
    parser.add_argument("--incoming", type=int, default=200)
    parser.add_argument("--tone", type=int, default=440, help="Hz of the tone it sends")
    parser.add_argument("--wav", default="", help="a WAV file to send (looped) instead")
    parser.add_argument("--record-dir", default="", help="record each call's audio here")
    args = parser.parse_args()

    endpoint, sip_port = make_endpoint(args)
    phone = Phone(endpoint, args)
    account = phone.account = make_account(phone, args, sip_port)
    emit("started", sip_port=sip_port, rtp_port=args.rtp_port,
         uri=f"sip:{args.user}@127.0.0.1:{sip_port}")

    try:
        while True:
            endpoint.libHandleEvents(10)
            phone.tick(time.monotonic())
            command = read_command(0)
            if command is None:
                continue
            name, _, rest = command.partition(" ")
            rest = rest.strip()
            try:
                if name == "call":
                    phone.dial(rest)
                elif name == "answer":
                    phone.answer(rest)
                elif name == "hangup":
                    phone.hangup(rest)
                elif name == "dtmf":
                    phone.dtmf(rest)
                elif name in ("hold", "resume"):
                    phone.hold(rest, resume=name == "resume")
                elif name == "stats":
                    phone.report_stats(rest)
                elif name == "incoming":
                    phone.incoming_mode = int(rest)
                elif name == "register":
                    account.setRegistration(True)
                elif name == "unregister":
                    account.setRegistration(False)
                elif name == "quit":
                    break
                elif name:
                    emit("error", command=name, reason="unknown command")
            except (pj.Error, ValueError) as error:
                reason = error.info() if isinstance(error, pj.Error) else str(error)
                emit("error", command=name, reason=reason)
        phone.hangup_all()
        deadline = time.monotonic() + 0.5  # let a BYE or unREGISTER in flight finish
        while time.monotonic() < deadline:
            endpoint.libHandleEvents(20)
            phone.tick(time.monotonic())
    finally:
        for call in phone.calls.values():
            call.close_recorder()
        endpoint.hangupAllCalls()
        account.shutdown()
        endpoint.libDestroy()
        emit("stopped")
        sys.stdout.flush()
        os._exit(0)  # pjsua2's SWIG objects can crash in interpreter teardown


if __name__ == "__main__":
    main()
