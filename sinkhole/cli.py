"""The `sinkhole` command: run, check-config, and the tools that read the daemon's data.

Exit codes: 0 ok, 1 runtime failure, 2 bad config or usage. Every subcommand takes `-c FILE`
the same way, so the CLI always reads the config of the daemon it talks to.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

import yaml

from sinkhole import __version__
from sinkhole.config import Config, ConfigError, load_config, to_plain

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2
log = logging.getLogger("sinkhole")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sinkhole", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"sinkhole {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-c", "--config", metavar="FILE",
                        help="YAML config file (default: the embedded defaults)")
    common.add_argument("--debug", action="store_true", help="debug logs, tracebacks on errors")
    sub.add_parser("run", parents=[common], help="run the daemon in the foreground",
                   description="Run the DNS daemon in the foreground, logging to stderr.")
    cc = sub.add_parser("check-config", parents=[common], help="validate and print the config",
                        description="Validate the config and print the effective settings "
                                    "(secrets redacted). Exit 2 if invalid or if a list path "
                                    "does not exist or cannot be read.")
    cc.add_argument("--fetch", action="store_true",
                    help="also download every URL list once and parse it (exit 1 on failure)")
    chk = sub.add_parser("check", parents=[common], help="which list blocks or allows NAME",
                         description="Say which list and rule (file:line) blocks or allows a "
                                     "name, or that none does.")
    chk.add_argument("name", metavar="NAME")
    upd = sub.add_parser("update-lists", parents=[common],
                         help="git pull the list checkouts, validate, reload the daemon",
                         description="Run `git pull --ff-only` in every list folder that is a "
                                     "git checkout, validate every list, then reload the "
                                     "running daemon. Exit 1 on any failure; the running "
                                     "policy is untouched then.")
    upd.add_argument("--no-reload", action="store_true", help="pull and validate only")
    sub.add_parser("reload", parents=[common], help="reload the running daemon's lists",
                   description="Ask the running daemon (listen.http) to reload every list now.")
    lst = sub.add_parser("lists", parents=[common], help="every list: source, entries, freshness",
                         description="One row per list: name, source (path or URL), format, "
                                     "entries, last success, last error, next refresh. Asks "
                                     "the running daemon; without one, reads the files.")
    lst.add_argument("--json", action="store_true", help="a JSON array of objects")
    from sinkhole import cli_data, cli_import
    cli_data.add_parsers(sub, common)
    cli_import.add_parser(sub, common)
    sub.add_parser("test-alert", parents=[common], help="send a test alert through every sink",
                   description="Send a test alert through every configured sink and report "
                               "each result. Exit 1 if any sink failed, 2 if none is "
                               "configured.")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as err:
        print(f"sinkhole: invalid config{f' {args.config}' if args.config else ''}:",
              file=sys.stderr)
        for line in err.errors:
            print(f"  {line}", file=sys.stderr)
        return EXIT_USAGE
    from sinkhole import cli_data, cli_import, cli_lists
    from sinkhole.alerts.cli import cmd_test_alert

    handler = {"run": cmd_run, "check-config": cmd_check_config, "check": cli_lists.cmd_check,
               "update-lists": cli_lists.cmd_update_lists, "lists": cli_lists.cmd_lists,
               "reload": lambda c, _a: cli_lists.reload_daemon(c),
               "hits": cli_data.cmd_hits, "clients": cli_data.cmd_clients,
               "retrohunt": cli_data.cmd_retrohunt, "suspicions": cli_data.cmd_suspicions,
               "import": cli_import.cmd_import,
               "test-alert": cmd_test_alert}[args.command]
    try:
        return handler(config, args)
    except KeyboardInterrupt:
        return EXIT_OK


def cmd_check_config(config: Config, args: argparse.Namespace) -> int:
    print(yaml.safe_dump(to_plain(config), sort_keys=False), end="")
    from sinkhole import cli_lists
    problems = cli_lists.path_problems(config)
    for line in problems:
        print(f"sinkhole: {line}", file=sys.stderr)
    if problems:
        return EXIT_USAGE
    if args.fetch:
        return cli_lists.fetch_once(config)
    return EXIT_OK


def cmd_run(config: Config, args: argparse.Namespace) -> int:
    from sinkhole.daemon import StartupError, serve
    from sinkhole.logsetup import setup_logging
    from sinkhole.privdrop import PrivilegeError

    setup_logging(config.log.level, config.log.format, args.debug)
    try:
        asyncio.run(serve(config, config_path=args.config))
    except StartupError as err:
        log.error("cannot start: %s", err, exc_info=args.debug)
        return EXIT_USAGE
    except (OSError, PrivilegeError) as err:
        log.error("cannot start: %s", err, exc_info=args.debug)
        return EXIT_RUNTIME
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
