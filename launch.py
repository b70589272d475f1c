"""`python launch.py ...`: the `simplex-scaling` command (sweeps/cli.py) for a checkout that is not pip-installed.

    python launch.py sweeps/demo.yaml --dry-run        # a sweep file first means `run`
    python launch.py status sweeps/demo.yaml           # any subcommand of `simplex-scaling --help`
"""

import sys

from sweeps.cli import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    # `launch.py SWEEP.yaml ...` predates the subcommands: a first word that names a YAML file means `run`
    if argv and argv[0].endswith((".yaml", ".yml")):
        argv.insert(0, "run")
    sys.exit(main(argv, prog="launch.py"))
