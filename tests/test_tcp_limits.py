"""TCP connection limits (security.tcp) over real sockets: connections per source, the header
timeout, the idle timeout, and their log lines."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from softswitch.app import Server
from softswitch.config import parse_config

from .support import (
    DOMAIN,
    SUBSCRIBERS,
    ServerProcess,
    SipClient,
    in_process_server,
    options,
    status_of,
)
from .test_registrar import Phone as RegisteringPhone

DEFAULT_PER_SOURCE = 64  # security.tcp.max_connections_per_source as shipped


def test_one_source_at_its_cap_is_refused_while_another_source_registers(
        tmp_path: Path) -> None:
    server = ServerProcess(tmp_path).start()
    clients: list[SipClient] = []
    try:
        for i in range(DEFAULT_PER_SOURCE):
            client = SipClient(server.port, "tcp")
            clients.append(client)
            client.send(options(client.local_port, f"cap-{i}", "TCP"))
            assert status_of(client.receive()) == 200, i
        refused = SipClient(server.port, "tcp")
        with contextlib.suppress(ConnectionError):  # closed by the server at once
            refused.send(options(refused.local_port, "over-the-cap", "TCP"))
            assert refused.receive() is None
        refused.close()

        phone = RegisteringPhone(server, "09011110001", "pw-one", "tcp")
        phone.client.close()
        phone.client = SipClient(server.port, "tcp", source="127.0.0.2")
        answer = phone.register([f"<sip:09011110001@127.0.0.2:{phone.client.local_port};"
                                 "transport=tcp>"])
        assert answer.status == 200
        phone.close()

        clients.pop().close()  # a slot of the first source frees up
        deadline = time.monotonic() + 5
        while True:
            again = SipClient(server.port, "tcp")
            try:
                again.send(options(again.local_port, "after-one-left", "TCP"))
                if status_of(again.receive(timeout=1)) == 200:
                    break
            except ConnectionError:
                pass
            finally:
                again.close()
            assert time.monotonic() < deadline, "the freed slot was never given back"
            time.sleep(0.1)
    finally:
        for client in clients:
            client.close()
        server.stop()
    refusals = [line.split(" ", 2)[2] for line in server.log_text().splitlines()
                if "tcp-refused" in line]
    assert refusals[0] == (f"WARNING softswitch.security: tcp-refused "
                           f"source=tcp:127.0.0.1:{refused.local_port} reason=per-source-limit")
    assert all("source=tcp:127.0.0.1:" in line for line in refusals)


# ---- timeouts: an in-process server with the setting under test shortened ------------------
@pytest.fixture
async def server(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Server]:
    """A TCP-only server; `security.tcp` keys from `@pytest.mark.parametrize("server", [{...}],
    indirect=True)`."""
    config = parse_config(yaml.safe_dump({
        "sip": {"listen": ["127.0.0.1:0"], "domain": DOMAIN, "transports": ["tcp"]},
        "store": {"url": f"sqlite+aiosqlite:///{tmp_path / 'softswitch.db'}"},
        "security": {"tcp": request.param},
        "subscribers": SUBSCRIBERS[:1],
    }))
    async with in_process_server(config) as running:
        yield running


async def connect(server: Server) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, int]:
    port = next(address.port for kind, address in server.stack.bound if kind == "tcp")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    return reader, writer, writer.get_extra_info("sockname")[1]


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    """Whether the server closes the connection within `seconds` (what it sends is read)."""
    try:
        async with asyncio.timeout(seconds):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    return True


async def answers(reader: asyncio.StreamReader, count: int) -> list[int]:
    statuses = []
    for _ in range(count):
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        statuses.append(int(head.split(b" ", 2)[1]))
    return statuses


def security_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.levelname} {r.getMessage()}" for r in caplog.records
            if r.name == "softswitch.security"]


@pytest.mark.parametrize("server", [{"header_timeout_seconds": 1}], indirect=True)
async def test_a_slow_sender_is_closed_at_the_header_timeout(
        server: Server, caplog: pytest.LogCaptureFixture) -> None:
    """One byte every 0.1 s keeps the connection busy (the idle timeout never runs out) but
    never completes a message within the header timeout."""
    caplog.set_level(logging.INFO, logger="softswitch")
    reader, writer, local_port = await connect(server)
    message = options(local_port, "trickle", "TCP")

    async def trickle() -> None:
        for octet in message:
            writer.write(bytes([octet]))
            await asyncio.sleep(0.1)

    sender = asyncio.create_task(trickle())
    try:
        assert await closed_within(reader, 5)
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await sender
        writer.close()
    assert security_lines(caplog) == [
        f"WARNING tcp-refused source=tcp:127.0.0.1:{local_port} reason=header-timeout"]


@pytest.mark.parametrize("server", [{"header_timeout_seconds": 1}], indirect=True)
async def test_messages_each_whole_in_time_keep_the_connection(
        server: Server, caplog: pytest.LogCaptureFixture) -> None:
    """Every read completes one message and starts the next (the header timeout counts from
    each message's first byte, not the connection's), for longer than the timeout."""
    caplog.set_level(logging.INFO, logger="softswitch")
    reader, writer, local_port = await connect(server)
    messages = [options(local_port, f"split-{i}", "TCP") for i in range(7)]
    writer.write(messages[0][:40])
    for i in range(6):
        await asyncio.sleep(0.4)
        writer.write(messages[i][40:] + messages[i + 1][:40])
    assert await answers(reader, 6) == [200] * 6
    assert not await closed_within(reader, 0.3)
    writer.close()
    assert security_lines(caplog) == []


@pytest.mark.parametrize("server", [{"header_timeout_seconds": 0.5}], indirect=True)
async def test_a_connection_that_sends_nothing_is_closed_at_the_header_timeout(
        server: Server, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="softswitch")
    reader, writer, local_port = await connect(server)
    assert await closed_within(reader, 5)
    writer.close()
    assert security_lines(caplog) == [
        f"WARNING tcp-refused source=tcp:127.0.0.1:{local_port} reason=header-timeout"]


@pytest.mark.parametrize("server", [{"header_timeout_seconds": 0.5, "idle_timeout_seconds": 2}],
                         indirect=True)
async def test_a_quiet_connection_is_closed_at_the_idle_timeout(
        server: Server, caplog: pytest.LogCaptureFixture) -> None:
    """After a whole message, silence is idleness, not a slow header."""
    caplog.set_level(logging.INFO, logger="softswitch")
    reader, writer, local_port = await connect(server)
    writer.write(options(local_port, "then-quiet", "TCP"))
    assert await answers(reader, 1) == [200]
    started = asyncio.get_running_loop().time()
    assert not await closed_within(reader, 1)  # past the header timeout, still open
    assert await closed_within(reader, 5)
    assert asyncio.get_running_loop().time() - started >= 1.5
    writer.close()
    assert security_lines(caplog) == []
    assert any(f"TCP connection from 127.0.0.1:{local_port} idle for 2 s" in r.getMessage()
               for r in caplog.records)
