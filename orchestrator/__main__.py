"""The `orchestrator` command and `python -m orchestrator`: the CLI.

Loading the CLI (click and ours) takes a tenth of a second or more before any handler
of ours runs; a Ctrl-C then is answered as during a command (`error: interrupted`, exit
130), not with a traceback.
"""

import sys


def main() -> None:
    try:
        from orchestrator.cli import main as cli_main
    except KeyboardInterrupt:
        # As orchestrator.cli.INTERRUPTED, which cannot be imported while it is loading.
        sys.stderr.write("\nerror: interrupted\n")
        sys.exit(130)
    cli_main()


if __name__ == "__main__":
    main()
