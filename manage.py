#!/usr/bin/env python
import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    from django.core.management import execute_from_command_line

    from portal.embedded import ServiceNotRunning

    try:
        execute_from_command_line(sys.argv)
    except Exception as exc:
        # An embedded service that is stopped is a state, not a bug: say what to run.
        cause = exc
        while cause is not None and not isinstance(cause, ServiceNotRunning):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        sys.stderr.write(f"{cause}\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
