"""The command line and the transports as an operator meets them."""

import signal
import socket
import time
from pathlib import Path

import pytest

from softswitch.sip.parser import check_response, parse_datagram

from .support import ServerProcess, SipClient, options, softswitch, status_of, write_config


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def test_check_config_names_file_field_and_problem(tmp_path: Path) -> None:
    good = write_config(tmp_path, 5060)
    result = softswitch("check-config", str(good))
    assert result.returncode == 0 and "4 subscribers" in result.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(good.read_text().replace("line: A", "line: X"))
    result = softswitch("check-config", str(bad))
    assert result.returncode == 2
    assert "bad.yaml" in result.stderr and "subscribers[2].line" in result.stderr
    missing = softswitch("check-config", str(tmp_path / "nowhere.yaml"))
    assert missing.returncode == 2 and "nowhere.yaml" in missing.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("sip: [unclosed\n")
    result = softswitch("check-config", str(broken))
    assert result.returncode == 2 and "broken.yaml" in result.stderr and "line" in result.stderr


def test_run_refuses_a_bad_config_and_show_an_unknown_number(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("sip:\n  domain: x\nsubscribers:\n  - number: '0901234'\n    sim: voice\n")
    result = softswitch("run", "--config", str(bad), timeout=30)
    assert result.returncode == 2 and "subscribers[0].number" in result.stderr
    server = ServerProcess(tmp_path).start()
    try:
        assert server.config is not None
        unknown = softswitch("show", "09099998888", "--config", str(server.config))
        assert unknown.returncode == 1 and "09099998888" in unknown.stderr
        state = server.show("+81 90-1111-0001")
        assert state["number"] == "09011110001" and state["sim"] == "voice"
        assert "network_pin" not in str(state) and "1234" not in str(state)
    finally:
        assert server.stop() == 0  # SIGTERM: a clean exit


def test_oversized_tcp_message_gets_513_and_the_connection_closes(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, sip_overrides={"max_message_size": 2000}).start()
    try:
        client = SipClient(server.port, "tcp")
        padding = "x" * 3000
        message = options(client.local_port, "too-big", "TCP").replace(
            b"Content-Length: 0", f"Content-Length: {len(padding)}".encode()) + padding.encode()
        client.send(message)
        assert status_of(client.receive()) == 513
        client.sock.settimeout(2)
        assert client.sock.recv(100) == b""  # closed by the server, not merely silent
        client.close()
        fresh = SipClient(server.port, "tcp")
        fresh.send(options(fresh.local_port, "after-too-big", "TCP"))
        assert status_of(fresh.receive()) == 200
        fresh.close()
    finally:
        server.stop()


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_ipv4_and_ipv6_listeners(tmp_path: Path) -> None:
    probe = ServerProcess(tmp_path)
    probe.sip_overrides = {"listen": [f"127.0.0.1:{probe.port}", f"[::1]:{probe.port}"]}
    server = probe.start()
    try:
        for host in ("127.0.0.1", "::1"):
            for transport in ("udp", "tcp"):
                client = SipClient(server.port, transport, host)
                call_id = f"v6-{host.replace(':', 'x')}-{transport}"
                client.send(options(client.local_port, call_id, transport.upper()))
                answer = check_response(parse_datagram(client.receive() or b""))
                assert answer.status == 200, (host, transport)
                assert answer.top_via is not None
                if host == "::1":  # our received= for an IPv6 source reads back
                    assert answer.top_via.params.get("received") == "::1"
                client.close()
    finally:
        server.stop()


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_tcp_on_every_ipv4_and_every_ipv6_address_of_one_port(tmp_path: Path) -> None:
    """[::] over TCP is IPv6 only (as asyncio makes it): 0.0.0.0 can listen beside it, and an
    IPv4 client is seen as itself, not as ::ffff:127.0.0.1."""
    probe = ServerProcess(tmp_path)
    probe.sip_overrides = {"listen": [f"0.0.0.0:{probe.port}", f"[::]:{probe.port}"],
                           "transports": ["tcp"]}
    server = probe.start()
    try:
        client = SipClient(server.port, "tcp", "127.0.0.1")
        client.send(options(client.local_port, "v4-on-any", "TCP"))
        answer = check_response(parse_datagram(client.receive() or b""))
        assert answer.status == 200 and answer.top_via is not None
        assert answer.top_via.params.get("received") in (None, "127.0.0.1")
        client.close()
    finally:
        server.stop()


def test_pipelined_requests_on_one_tcp_connection(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path).start()
    try:
        client = SipClient(server.port, "tcp")
        burst = b"".join(options(client.local_port, f"burst-{i}", "TCP") for i in range(300))
        client.send(burst)
        answers = [client.receive() for _ in range(300)]
        assert [status_of(a) for a in answers] == [200] * 300
        client.close()
    finally:
        server.stop()
    log = server.log_text()
    assert "Traceback" not in log and "RecursionError" not in log


def test_udp_answers_leave_from_the_address_the_request_reached(tmp_path: Path) -> None:
    probe = ServerProcess(tmp_path)
    probe.sip_overrides = {"listen": [f"127.0.0.1:{probe.port}", f"127.0.0.2:{probe.port}"],
                           "transports": ["udp"]}
    server = probe.start()
    try:
        for host in ("127.0.0.1", "127.0.0.2"):
            client = SipClient(server.port, "udp")
            client.sock.sendto(options(client.local_port, f"from-{host}"), (host, server.port))
            _, source = client.sock.recvfrom(65535)
            assert source == (host, server.port)
            client.close()
    finally:
        server.stop()


def test_debug_trace_hides_digest_responses(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path).start()
    try:
        client = SipClient(server.port, "udp")
        secret = "0123456789abcdef0123456789abcdef"
        register = options(client.local_port, "trace").replace(
            b"OPTIONS sip:softswitch.test", b"REGISTER sip:softswitch.test").replace(
            b"CSeq: 1 OPTIONS", b"CSeq: 1 REGISTER").replace(
            b"To: <sip:softswitch.test>", b"To: <sip:09011110001@softswitch.test>").replace(
            b"Content-Length: 0", b'Authorization: Digest username="09011110001", '
            b'realm="softswitch.test", nonce="n", uri="sip:softswitch.test", '
            b'response="' + secret.encode() + b'"\r\nContent-Length: 0')
        client.send(register)
        assert status_of(client.receive()) in (401, 403)
        client.close()
    finally:
        server.stop()
    log = server.log_text()
    assert "SIP from udp" in log and secret not in log


def _soft_open_files(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no open-file limit in /proc")


def test_run_lifts_the_open_file_limit_for_its_rtp_ports(tmp_path: Path) -> None:
    """A soft limit of 256 would stop calls at about 250; the server lifts it as far as the
    RTP port range and TCP connections need, and warns when the hard limit is in the way."""
    import resource

    from softswitch.app import SPARE_FILES
    from softswitch.config import parse_config
    from softswitch.net.transports import MAX_TCP_CONNECTIONS

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 8192:
        pytest.skip(f"hard open-file limit {hard} leaves no room to test")
    roomy = ServerProcess(tmp_path / "roomy", open_files=(256, hard))
    (tmp_path / "roomy").mkdir()
    roomy.start()
    try:
        assert roomy.process is not None and roomy.config is not None
        media = parse_config(roomy.config.read_text()).media
        needed = (media.rtp_port_max - media.rtp_port_min + 1 + MAX_TCP_CONNECTIONS
                  + SPARE_FILES)
        assert _soft_open_files(roomy.process.pid) == needed
    finally:
        roomy.stop()
    assert "open-file limit" not in roomy.log_text()

    (tmp_path / "cramped").mkdir()
    cramped = ServerProcess(tmp_path / "cramped", open_files=(256, 512))
    cramped.start()
    try:
        assert cramped.process is not None
        assert _soft_open_files(cramped.process.pid) == 512
    finally:
        cramped.stop()
    assert f"open-file limit 512 is below the {needed}" in cramped.log_text()


@pytest.mark.parametrize("taken", ["udp", "tcp"])
def test_a_taken_port_is_named_with_the_reason_before_the_store_is_touched(
        tmp_path: Path, taken: str) -> None:
    """Bind first, provision after (issue 8 item 6): the error says which transport and
    address and why, and the store file is not even created."""
    kind = socket.SOCK_DGRAM if taken == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as holder:
        holder.bind(("127.0.0.1", 0))
        if taken == "tcp":
            holder.listen()
        port = holder.getsockname()[1]
        config = write_config(tmp_path, port)
        result = softswitch("run", "--config", str(config), timeout=30)
    assert result.returncode == 1
    assert f"{taken} 127.0.0.1:{port}: Address already in use" in result.stderr
    assert not (tmp_path / "softswitch.db").exists()


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(child) for child in (task / "children").read_text().split()}
    return found


def _scheduling_policy(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[38])


def test_the_pin_check_processes_start_with_the_server_and_end_with_it_even_killed(
        tmp_path: Path) -> None:
    server = ServerProcess(tmp_path).start()
    assert server.process is not None
    checkers = {pid for pid in _children(server.process.pid)
                if _scheduling_policy(pid) == 5}  # SCHED_IDLE: see softswitch.services.pin
    assert checkers  # started before the first call, not at it
    server.stop(signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in checkers):
        assert time.monotonic() < deadline, "PIN-check processes outlived a killed server"
        time.sleep(0.1)
