"""The `orchestrator` command and `python -m orchestrator`: the CLI.

Loading the CLI (click and ours) takes a tenth of a second or more before any handler
of ours runs; a Ctrl-C then is answered as during a command (`error: interrupted`, exit
130), not with a traceback.
"""

import signal
import sys


def main() -> None:
    if sys.argv[1:2] == ["run"]:
        # Until `run` reads the config there is nothing a SIGHUP (a reload) could
        # change: ignored, instead of ending the daemon as it starts. `run` keeps the
        # ones that come after, until the daemon takes the signal over.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        from orchestrator.cli import main as cli_main
    except KeyboardInterrupt:
        # As orchestrator.cli.INTERRUPTED, which cannot be imported while it is loading.
        sys.stderr.write("\nerror: interrupted\n")
        sys.exit(130)
    cli_main()


if __name__ == "__main__":
    main()
