"""Command line: `softswitch run | check-config | show`."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys

from .config import Config, ConfigError, load_config
from .numbering import normalise_number

EXIT_CONFIG = 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="softswitch", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the server in the foreground")
    run.add_argument("--config", required=True, help="YAML config file")
    check = commands.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("path")
    show = commands.add_parser("show", help="a subscriber's state from the store")
    show.add_argument("number")
    show.add_argument("--config", required=True)
    show.add_argument("--json", action="store_true", help="one JSON object (the default)")
    args = parser.parse_args(argv)

    try:
        config = load_config(args.path if args.command == "check-config" else args.config)
    except ConfigError as error:
        print(f"softswitch: {error}", file=sys.stderr)
        return EXIT_CONFIG

    if args.command == "check-config":
        print(f"{args.path}: ok ({len(config.subscribers)} subscribers)")
        return 0
    if args.command == "show":
        return _show(config, args.number)
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


def _show(config: Config, number_text: str) -> int:
    from .store.store import Store

    try:
        number = normalise_number(number_text)
    except ValueError as error:
        print(f"softswitch: {error}", file=sys.stderr)
        return 1

    async def read() -> dict[str, object] | None:
        store = await Store.open(config.store.url)
        try:
            return await store.subscriber_state(number)
        finally:
            await store.close()

    state = asyncio.run(read())
    if state is None:
        print(f"softswitch: no subscriber {number} in the store", file=sys.stderr)
        return 1
    print(json.dumps(state, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
