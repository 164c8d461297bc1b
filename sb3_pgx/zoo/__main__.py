"""``python -m sb3_pgx.zoo <script> [rl-zoo3 arguments]``: rl-zoo3's scripts with our algorithms.

Scripts: train, enjoy, record_video, record_training, all_plots, plot_train, plot_from_file.
For ``train`` with one of our algorithms and no ``--conf-file``, our ``hyperparams/<algo>.yml``
is used, so ``python -m sb3_pgx.zoo train --algo vpg --env CartPole-v1`` needs no path.
"""

import argparse
import runpy
import sys

from sb3_pgx.registry import BY_NAME
from sb3_pgx.zoo import hyperparams_file, register

SCRIPTS = {
    "train": "rl_zoo3.train",
    "enjoy": "rl_zoo3.enjoy",
    "record_video": "rl_zoo3.record_video",
    "record_training": "rl_zoo3.record_training",
    "all_plots": "rl_zoo3.plots.all_plots",
    "plot_train": "rl_zoo3.plots.plot_train",
    "plot_from_file": "rl_zoo3.plots.plot_from_file",
}


def with_default_config(script: str, args: list[str]) -> list[str]:
    """Add ``--conf-file hyperparams/<algo>.yml`` to a train command for one of our algorithms.

    ``--algo`` and ``-conf`` / ``--conf-file`` are read as rl-zoo3's argparse reads them (``--opt=value``,
    unambiguous abbreviations such as ``--conf``), so that a user's own file is never overridden.
    """
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--algo")
    parser.add_argument("-conf", "--conf-file")
    known, _ = parser.parse_known_args(args)
    if script == "train" and known.algo in BY_NAME and known.conf_file is None:
        return [*args, "--conf-file", str(hyperparams_file(known.algo))]
    return args


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in SCRIPTS:
        raise SystemExit(f"usage: python -m sb3_pgx.zoo {{{','.join(SCRIPTS)}}} [rl-zoo3 arguments]")
    script, args = argv[0], argv[1:]
    register()
    sys.argv = [f"sb3_pgx.zoo {script}", *with_default_config(script, args)]
    runpy.run_module(SCRIPTS[script], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
