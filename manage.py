#!/usr/bin/env python
"""Parley's command-line entry point."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatbot.settings")
    from chatbot.ops.embedded import configure_environment

    if len(sys.argv) < 2 or sys.argv[1] not in {"down", "help", "--help", "-h", "version", "--version"}:
        configure_environment()
    if sys.argv[1:2] == ["up"]:
        from chatbot.ops.devmode import up_debug_default

        up_debug_default(sys.argv[2:])

    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
