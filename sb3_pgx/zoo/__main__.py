"""``python -m sb3_pgx.zoo <script> [rl-zoo3 arguments]``: rl-zoo3's scripts with our algorithms.

Scripts: train, enjoy, record_video, record_training, all_plots, plot_train, plot_from_file.
For ``train`` with one of our algorithms and no ``--conf-file``, our ``hyperparams/<algo>.yml``
is used, so ``python -m sb3_pgx.zoo train --algo vpg --env CartPole-v1`` needs no path.
"""

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


def _algo(args: list[str]) -> str | None:
    for i, arg in enumerate(args):
        if arg == "--algo" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--algo="):
            return arg.split("=", 1)[1]
    return None


def with_default_config(script: str, args: list[str]) -> list[str]:
    """Add ``--conf-file hyperparams/<algo>.yml`` to a train command for one of our algorithms."""
    algo = _algo(args)
    has_conf = any(arg in ("-conf", "--conf-file") or arg.startswith("--conf-file=") for arg in args)
    if script == "train" and algo in BY_NAME and not has_conf:
        return [*args, "--conf-file", str(hyperparams_file(algo))]
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
