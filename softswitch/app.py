"""Wiring: config -> store -> services -> switch -> transports, and the process's life."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import resource
import signal
from dataclasses import dataclass
from typing import cast

from .config import Config
from .ivr.context import FlowContext
from .ivr.flows import build_flows
from .ivr.voicemail_deposit import deposit_flow
from .media.prompts import PromptLibrary
from .net.rtp import RtpEngine
from .net.transports import MAX_TCP_CONNECTIONS, SipStack
from .services import Services, build_services
from .services.model import CallRecord, Outcome
from .sip.digest import DigestAuthenticator
from .sip.endpoint import SipEndpoint
from .store.repositories import sql_repositories
from .store.store import Store
from .switch.admission import CallAdmission
from .switch.auth import SipAuthenticator
from .switch.b2bua import B2bua
from .switch.calls import CallRouter, RegisteredPhones
from .switch.core import SwitchCore
from .switch.identity import CallerIdentity
from .switch.ivr_calls import Flow, IvrCalls
from .switch.owners import Owners
from .switch.registrar import BindingWriter, Registrar
from .switch.router import Router

log = logging.getLogger("softswitch")

MAX_SWEEP_INTERVAL = 30.0  # seconds between removals of expired bindings, at most
SPARE_FILES = 64  # the store, logs, listening sockets and the like
MAX_CALL_SECONDS = 4 * 60 * 60  # a bridged call whose ends vanished without a BYE


@dataclass(slots=True)
class Server:
    config: Config
    store: Store
    services: Services
    stack: SipStack
    registrar: Registrar
    core: SwitchCore
    calls: IvrCalls
    router: CallRouter
    _sweeper: asyncio.Task[None]

    @property
    def listening(self) -> list[str]:
        return [f"{transport} {address}" for transport, address in self.stack.bound]

    async def close(self) -> None:
        self._sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._sweeper
        await self.router.close()  # BYE to every call while the sockets are open
        await self.stack.close()
        await self.registrar.writer.drain()  # acknowledged bindings reach the store
        await self.services.close()  # queued call records and last callers too
        await self.store.close()


async def start(config: Config) -> Server:
    sip = config.sip
    endpoint = SipEndpoint(max_message_size=sip.max_message_size, server_name=sip.user_agent)
    stack = SipStack(endpoint, tcp=config.security.tcp)
    # Bind first: a port in use is reported before anything touches the store.
    try:
        for address in sip.listen:
            await stack.listen(address, sip.transports)
    except OSError:
        await stack.close()
        raise
    try:
        store = await Store.open(config.store.url)
    except BaseException:
        await stack.close()
        raise
    try:
        return await _serve_on(config, stack, store)
    except BaseException:
        await stack.close()
        await store.close()
        raise


async def _serve_on(config: Config, stack: SipStack, store: Store) -> Server:
    summary = await store.provision(config)
    log.info("provisioned subscribers: %s", summary)
    sip = config.sip
    # The nonce secret is shared by every instance on this store (a nonce from another one is
    # recognised, and answered stale); the instance id in each nonce is this process's own.
    digest = DigestAuthenticator(
        realm=sip.domain, secret=sip.auth.secret or await store.shared_secret("digest-nonce"),
        nonce_lifetime=sip.auth.nonce_lifetime, algorithms=tuple(sip.auth.algorithms))
    # Only the subscribers of this config may register: one taken out of the YAML stays in
    # the store (with its history) but loses its SIP access.
    configured = {subscriber.number for subscriber in config.subscribers}
    credentials = {username: c for username, c in (await store.load_credentials()).items()
                   if c.number in configured}
    authenticator = SipAuthenticator(digest=digest, credentials=credentials,
                                     security=config.security,
                                     trusted_peers=sip.trusted_peers + sip.subscriber_peers)
    registrar = Registrar(config=sip.registrar, domain=sip.domain, authenticator=authenticator,
                          writer=BindingWriter(store))
    # Views and bindings are read after the directory's feed position: nothing falls between.
    services = build_services(config, sql_repositories(store))
    services.directory.on_bindings(registrar.reload)
    await services.start()
    await store.delete_expired_bindings(registrar.clock())
    bindings = await store.read_bindings()
    registrar.load(bindings)
    for aor, rows in bindings.by_aor.items():  # phones registered before keep their access
        for row in rows:
            authenticator.remember(aor, row.source)

    owners = Owners()
    calls = _ivr_calls(config, stack, owners)
    router = _call_router(config, stack, owners, calls, services, registrar, authenticator)
    core = SwitchCore(registrar=registrar, responder=stack, server_name=sip.user_agent,
                      owners=owners, invites=router)
    stack.handler = core.handle
    calls.listening(stack.bound)
    authenticator.listening(address for _, address in stack.bound)
    stack.endpoint.sent_by = str(stack.bound[0][1])  # our Via: the address really bound
    interval = min(MAX_SWEEP_INTERVAL, max(1.0, sip.registrar.min_expires / 2))
    sweeper = asyncio.create_task(_sweep(registrar, services, interval))
    # What startup built lives as long as the process: keep the collector off it, and let
    # it run less often (per-message objects are short-lived and mostly freed by refcount).
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    return Server(config, store, services, stack, registrar, core, calls, router, sweeper)


def _call_router(config: Config, stack: SipStack, owners: Owners, ivr: IvrCalls,
                 services: Services, registrar: Registrar,
                 authenticator: SipAuthenticator) -> CallRouter:
    """INVITEs: identity, the router, and who carries calls out. The dial-code -> flow table
    is built here, so a new service never edits switch/."""
    sip, codes = config.sip, config.dial_codes
    voicemail = config.services.voicemail
    staging = voicemail.audio_dir / "incoming"  # recordings until they are kept
    flows: dict[str, Flow] = build_flows(FlowContext(
        services, config.menus, staging,
        disconnect_after=config.services.remote_control.disconnect_after))
    code_names = {getattr(codes, spec.name): spec.name for spec in dataclasses.fields(codes)}
    outbound = config.calls.outbound_route
    router = Router(codes=code_names, public_numbers=config.public_numbers,
                    max_forwarding_hops=config.calls.max_forwarding_hops,
                    reject_anonymous=config.calls.anonymous_callers == "reject",
                    outbound=outbound is not None)

    def deposit(mailbox: str) -> Flow:
        return deposit_flow(mailbox, services.voicemail, staging, voicemail.max_seconds)

    b2bua = B2bua(sip=stack, owners=owners, server_name=sip.user_agent, contact=ivr.contact,
                  max_call_seconds=MAX_CALL_SECONDS)
    identity = CallerIdentity(trusted_peers=sip.trusted_peers, authenticator=authenticator,
                              public_numbers=config.public_numbers,
                              subscriber_peers=sip.subscriber_peers)
    return CallRouter(identity=identity, router=router, directory=services.directory,
                      contacts=RegisteredPhones(registrar), ivr=ivr, b2bua=b2bua,
                      admission=CallAdmission(config.security.calls_per_source), flows=flows,
                      voicemail=deposit, call_log=ServicesCallLog(services), domain=sip.domain,
                      outbound=outbound)


@dataclass(slots=True, frozen=True)
class ServicesCallLog:
    """Call records and last callers, as the call router reports them."""

    services: Services

    def record(self, call_id: str, caller: str | None, callee: str, outcome: str,
               started_at: float, answered_at: float | None, ended_at: float,
               detail: str) -> None:
        duration = 0.0 if answered_at is None else max(0.0, ended_at - answered_at)
        self.services.call_records.record(CallRecord(
            call_id, caller, callee, cast(Outcome, outcome), started_at, answered_at,
            ended_at, round(duration, 3), detail))

    def last_caller(self, number: str, caller: str | None) -> None:
        self.services.last_caller.record(number, caller)


def _ivr_calls(config: Config, stack: SipStack, owners: Owners) -> IvrCalls:
    """The IVR-call runner: RTP on the first SIP listen address, prompts in the configured
    language."""
    host = config.sip.listen[0].host
    media = RtpEngine(host, config.media.rtp_port_min, config.media.rtp_port_max,
                      silence=config.media.silence,
                      keepalive_seconds=config.media.keepalive_seconds)
    prompts = PromptLibrary.load(config.media.language, config.media.prompts_dir)
    return IvrCalls(sip=stack, owners=owners, media=media, prompts=prompts,
                    server_name=config.sip.user_agent, media_host=host)


async def _sweep(registrar: Registrar, services: Services, interval: float) -> None:
    """Expired bindings, and voicemail messages past retention."""
    while True:
        await asyncio.sleep(interval)
        try:
            removed = await registrar.sweep()
            if removed:
                log.info("removed %d expired bindings", removed)
            await services.voicemail.expire()
        except Exception:
            log.exception("sweeping expired bindings and voicemail failed")


def raise_open_file_limit(config: Config) -> None:
    """Every call holds a UDP socket: lift the soft limit on open files (often 1,024) as far
    as the RTP port range and the TCP connections may need, up to the hard limit, and warn
    when that is short."""
    needed = (config.media.rtp_port_max - config.media.rtp_port_min + 1 + MAX_TCP_CONNECTIONS
              + SPARE_FILES)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        if wanted > soft:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
                soft = wanted
            except (ValueError, OSError) as error:
                log.warning("could not raise the open-file limit to %d: %s", wanted, error)
    if soft != resource.RLIM_INFINITY and soft < needed:
        log.warning("open-file limit %d is below the %d that %d RTP ports and %d TCP "
                    "connections may need: raise it (systemd LimitNOFILE, ulimit -n)", soft,
                    needed, needed - MAX_TCP_CONNECTIONS - SPARE_FILES, MAX_TCP_CONNECTIONS)


async def serve(config: Config) -> None:
    """Run until SIGINT or SIGTERM, then close cleanly."""
    raise_open_file_limit(config)
    server = await start(config)
    for line in server.listening:
        print(f"softswitch listening on {line}", flush=True)
    log.info("softswitch serving domain %s", config.sip.domain)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await server.close()


def run(config: Config) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(config))
    else:
        uvloop.run(serve(config))
