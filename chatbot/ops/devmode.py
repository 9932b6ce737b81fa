"""Whether `manage.py up` (and so `make run`) runs with DEBUG on: only for local development, that is when it serves
on a loopback address and the operator did not set DEBUG. Read before the settings exist (by manage.py), since the
settings decide from DEBUG whether a SECRET_KEY is required and how static files are served."""

import argparse
import ipaddress
import os

# Set by `up_debug_default` so that `up` can say why DEBUG is on.
DEBUG_FOR_LOOPBACK = "PARLEY_DEBUG_FOR_LOOPBACK"


def host_is_loopback(host: str) -> bool:
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def up_debug_default(argv: list[str]) -> None:
    """For `up` with these arguments: DEBUG=1 in the environment when it serves on a loopback address (its --host,
    else HOST, else 127.0.0.1) and DEBUG is unset. Anything else keeps the production default, DEBUG off."""
    if "DEBUG" in os.environ:
        return
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--host", default=os.environ.get("HOST") or "127.0.0.1")
    host = parser.parse_known_args(argv)[0].host
    if host_is_loopback(host):
        os.environ["DEBUG"] = "1"
        os.environ[DEBUG_FOR_LOOPBACK] = host
