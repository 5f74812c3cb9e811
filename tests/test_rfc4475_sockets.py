"""Every RFC 4475 torture message sent to a running softswitch over UDP and over TCP.

Valid messages must not get 400; invalid ones get the status RFC 4475 names; stray and
broken responses get no answer at all; and the server still answers OPTIONS afterwards.
"""

from pathlib import Path

import pytest

from .conftest import rfc4475_index, rfc4475_message
from .support import ServerProcess, SipClient, options, status_of

# What softswitch answers each message with, as RFC 4475 (and INDEX.tsv) allows. None: no
# answer. A valid INVITE to anyone but a public number is challenged (407) before anything
# else is looked at, so that a stranger learns nothing of who is served; the table says
# which answer we chose.
EXPECTED: dict[str, set[int | None]] = {
    "wsinv": {481}, "intmeth": {501}, "esc01": {407}, "escnull": {401},
    "esc02": {501}, "lwsdisp": {200}, "longreq": {407}, "dblreq": {401}, "semiuri": {200},
    "transports": {200}, "mpart01": {501, 405}, "unreason": {None}, "noreason": {None},
    "badinv01": {400}, "clerr": {400}, "ncl": {400}, "scalar02": {400}, "scalarlg": {None},
    "quotbal": {400}, "ltgtruri": {400}, "lwsruri": {400}, "lwsstart": {400}, "trws": {400},
    "escruri": {407, 400}, "baddate": {407}, "regbadct": {400}, "badaspec": {400},
    "baddn": {400}, "badvers": {505}, "mismatch01": {400}, "mismatch02": {400},
    "bigcode": {None}, "badbranch": {200}, "insuf": {400}, "unkscm": {416}, "novelsc": {416},
    "unksm2": {400}, "bext01": {420}, "invut": {415}, "regaut01": {401}, "multi01": {400},
    "mcl01": {400}, "bcast": {None}, "zeromf": {200}, "cparam01": {401}, "cparam02": {401},
    "regescrt": {401}, "sdp01": {406}, "inv2543": {407},
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> ServerProcess:
    process = ServerProcess(Path(tmp_path_factory.mktemp("rfc4475"))).start()
    yield process  # type: ignore[misc]
    assert process.stop() == 0
    assert "Traceback" not in process.log_text()  # every message handled, none crashed


def test_expectations_cover_the_corpus() -> None:
    assert {e["file"].removesuffix(".dat") for e in rfc4475_index()} == set(EXPECTED)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_torture_message(server: ServerProcess, transport: str, name: str) -> None:
    if transport == "tcp" and name in ("clerr", "dblreq"):
        pytest.skip("over TCP the trailing octets are the start of the next message")
    client = SipClient(server.port, transport)
    try:
        client.send(rfc4475_message(name))
        answer = client.receive(timeout=0.5 if None in EXPECTED[name] else 5)
        assert status_of(answer) in EXPECTED[name], answer
    finally:
        client.close()
    probe = SipClient(server.port, transport)
    try:
        probe.send(options(probe.local_port, f"after-{name}-{transport}", transport.upper()))
        assert status_of(probe.receive()) == 200, f"no OPTIONS answer after {name}"
    finally:
        probe.close()


def test_clerr_over_tcp_waits_for_the_rest(server: ServerProcess) -> None:
    client = SipClient(server.port, "tcp")
    try:
        client.send(rfc4475_message("clerr"))
        assert client.receive(timeout=0.5) is None  # the stream waits for more bytes
    finally:
        client.close()
    fresh = SipClient(server.port, "tcp")
    try:
        fresh.send(options(fresh.local_port, "after-clerr", "TCP"))
        assert status_of(fresh.receive()) == 200
    finally:
        fresh.close()
