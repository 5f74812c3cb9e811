"""Command line: run the server, check a config, and the operator's view and settings of a
subscriber in the store (the same services the phone menus use, so the same rules hold).

Exit status: 0 done (or already so: blocking a number already blocked), 1 refused (not a
number, the subscriber's own number, a full list, an unknown subscriber, a data SIM ...: the
message says which, and nothing was changed), 2 a bad command line or config.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from .config import Config, ConfigError, load_config
from .numbering import normalise_number

if TYPE_CHECKING:  # imported when needed: check-config stays quick
    from .services import Services
    from .store.store import Store

EXIT_REFUSED = 1
EXIT_CONFIG = 2


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "check-config":
        if (args.path is None) == (args.config is None):
            parser.error("check-config: give the config file once, as PATH or --config PATH")
        args.config = args.path or args.config
    if args.command == "forwarding" and args.mode is not None and args.to is None:
        parser.error("forwarding: --mode goes with --to")
    if args.command == "voicemail" and args.on is None and args.ring_time is None:
        parser.error("voicemail: give --on, --off or --ring-time")

    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(f"softswitch: {error}", file=sys.stderr)
        return EXIT_CONFIG

    if args.command == "check-config":
        print(f"{args.config}: ok ({len(config.subscribers)} subscribers)")
        return 0
    if args.command == "run":
        return _run(config)
    try:
        number = normalise_number(args.number)
    except ValueError as error:
        print(f"softswitch: {error}", file=sys.stderr)
        return EXIT_REFUSED
    return asyncio.run(_operate(config, args, number))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="softswitch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str, *, number: bool = True) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help)
        if number:
            sub.add_argument("number", help="the subscriber, e.g. 090-1234-5678")
        sub.add_argument("--config", required=name != "check-config", help="YAML config file")
        return sub

    command("run", "run the server in the foreground", number=False)
    check = command("check-config", "validate a config file and exit", number=False)
    check.add_argument("path", nargs="?", help="the config file (or --config PATH)")
    show = command("show", "a subscriber's state in the store, as JSON")
    show.add_argument("--json", action="store_true", help="one JSON object (the default)")

    blocklist = commands.add_parser("blocklist", help="a subscriber's blocked callers")
    actions = blocklist.add_subparsers(dest="action", required=True)
    for action, what in (("add", "block a caller"), ("remove", "unblock a caller")):
        sub = actions.add_parser(action, help=what)
        sub.add_argument("number", help="the subscriber")
        sub.add_argument("caller", help="the caller's number")
        sub.add_argument("--config", required=True, help="YAML config file")
    listing = actions.add_parser("list", help="the blocked numbers, oldest first")
    listing.add_argument("number", help="the subscriber")
    listing.add_argument("--config", required=True, help="YAML config file")
    listing.add_argument("--json", action="store_true", help="a JSON list")

    forwarding = command("forwarding", "start forwarding to a destination, or stop it")
    target = forwarding.add_mutually_exclusive_group(required=True)
    target.add_argument("--to", metavar="DEST", help="forward to this number (and start)")
    target.add_argument("--off", action="store_true", help="stop forwarding")
    forwarding.add_argument("--mode", choices=("immediate", "no-answer"),
                            help="forward at once, or when not answered in the ring time")

    voicemail = command("voicemail", "switch voicemail on or off, set the ring time")
    switch = voicemail.add_mutually_exclusive_group()
    switch.add_argument("--on", dest="on", action="store_const", const=True)
    switch.add_argument("--off", dest="on", action="store_const", const=False)
    voicemail.add_argument("--ring-time", type=int, metavar="SECONDS",
                           help="seconds before voicemail answers (0-120)")

    pin = commands.add_parser("pin", help="the subscriber's network PIN")
    pin_actions = pin.add_subparsers(dest="action", required=True)
    unlock = pin_actions.add_parser("unlock", help="unlock a locked PIN, clear its failures")
    unlock.add_argument("number", help="the subscriber")
    unlock.add_argument("--config", required=True, help="YAML config file")
    return parser


def _run(config: Config) -> int:
    logging.basicConfig(
        level=config.log_level.upper(), stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # aiosqlite's debug lines carry SQL parameters: PIN hashes, digest HA1s. Never log them.
    logging.getLogger("aiosqlite").setLevel(logging.INFO)
    from .app import run as run_server

    try:
        run_server(config)
    except OSError as error:  # a port taken, a store directory we may not write ...
        print(f"softswitch: cannot start: {error}", file=sys.stderr)
        return 1
    return 0


async def _operate(config: Config, args: argparse.Namespace, number: str) -> int:
    """Open the store, do the command (through the services, but `show`), say what happened."""
    from .store.store import Store

    store = await Store.open(config.store.url)
    try:
        if args.command == "show":
            return await _show(store, number)
        from .services import build_services
        from .services.errors import ServiceError
        from .store.repositories import sql_repositories

        services = build_services(config, sql_repositories(store))
        handler = _HANDLERS[(args.command, getattr(args, "action", None))]
        try:
            return await handler(services, args, number)
        except ServiceError as error:
            print(f"softswitch: {error}; nothing changed", file=sys.stderr)
            return EXIT_REFUSED
        finally:
            await services.close()
    finally:
        await store.close()


async def _show(store: Store, number: str) -> int:
    state = await store.subscriber_state(number)
    if state is None:
        print(f"softswitch: no subscriber {number} in the store", file=sys.stderr)
        return EXIT_REFUSED
    print(json.dumps(state, ensure_ascii=False))
    return 0


Handler = Callable[["Services", argparse.Namespace, str], Awaitable[int]]


async def _blocklist_add(services: Services, args: argparse.Namespace,
                         number: str) -> int:
    from .services.repositories import BlockResult

    result = await services.blocklist.add(number, args.caller)
    caller = normalise_number(args.caller)  # the service accepted it
    if result is BlockResult.FULL:
        print(f"softswitch: the blocklist of {number} is full "
              f"({services.blocklist.max_entries} numbers); nothing changed", file=sys.stderr)
        return EXIT_REFUSED
    if result is BlockResult.DUPLICATE:
        print(f"{caller} is already blocked for {number}")
    else:
        print(f"{caller} blocked for {number}")
    return 0


async def _blocklist_remove(services: Services, args: argparse.Namespace,
                            number: str) -> int:
    removed = await services.blocklist.remove(number, args.caller)
    caller = normalise_number(args.caller)
    print(f"{caller} {'unblocked' if removed else 'was not blocked'} for {number}")
    return 0


async def _blocklist_list(services: Services, args: argparse.Namespace,
                          number: str) -> int:
    blocked = await services.blocklist.list(number)
    if args.json:
        print(json.dumps(blocked))
    else:
        for caller in blocked:
            print(caller)
    return 0


async def _forwarding(services: Services, args: argparse.Namespace,
                      number: str) -> int:
    if args.off:
        await services.forwarding.stop(number)
        print(f"forwarding off for {number}")
        return 0
    mode = None if args.mode is None else args.mode.replace("-", "_")
    settings = await services.forwarding.configure(number, destination=args.to, mode=mode,
                                                   enabled=True)
    when = "at once" if settings.mode == "immediate" else "when not answered"
    print(f"{number} forwards to {settings.destination} {when}")
    return 0


async def _voicemail(services: Services, args: argparse.Namespace,
                     number: str) -> int:
    settings = await services.voicemail.configure(number, enabled=args.on,
                                                  ring_time=args.ring_time)
    print(f"voicemail {'on' if settings.enabled else 'off'} for {number}, "
          f"ring time {settings.ring_time} s")
    return 0


async def _pin_unlock(services: Services, args: argparse.Namespace,
                      number: str) -> int:
    await services.pin.unlock(number)
    print(f"PIN of {number} unlocked")
    return 0


_HANDLERS: dict[tuple[str, str | None], Handler] = {
    ("blocklist", "add"): _blocklist_add,
    ("blocklist", "remove"): _blocklist_remove,
    ("blocklist", "list"): _blocklist_list,
    ("forwarding", None): _forwarding,
    ("voicemail", None): _voicemail,
    ("pin", "unlock"): _pin_unlock,
}


if __name__ == "__main__":
    sys.exit(main())
