"""Plot a trust-region monitor's history: ESS, KL and clip fraction over training.

Usage::

    python -m sb3_pgx.plot_monitor run.csv [more.csv ...] -o monitor.png [--x update]
        [--min-ess 0.5] [--max-kl 0.05] [--max-clip-fraction 0.3] [--title TEXT]

``run.csv`` is written by :class:`~sb3_pgx.callbacks.TrustRegionMonitorCallback`
(``csv_path=`` or ``save_history()``). Several CSV files are drawn as one line each.
``--min-ess``, ``--max-kl`` and ``--max-clip-fraction`` draw those thresholds as dashed
lines on the ESS, KL and clip-fraction panels (use the values given to the callback).
A panel whose figure no history holds (an ``ESSCallback`` records ESS only) says so.
Needs matplotlib (``pip install sb3-pgx[test]`` or ``pip install matplotlib``).
"""

import argparse
import csv
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["load_history", "main", "plot_monitor"]

History = Mapping[str, np.ndarray]


def load_history(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a monitor CSV into one float array per column (empty cells are NaN).

    :raises FileNotFoundError: if there is no such file
    :raises ValueError: if the file holds no update (empty, or a header alone)
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"no monitor CSV at {os.fspath(path)!r}: it is written by TrustRegionMonitorCallback(csv_path=...) "
            "once the first update is measured, or by the callback's save_history(path)"
        )
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    if not rows:
        raise ValueError(f"monitor CSV {os.fspath(path)!r} holds no update (empty file or header only): nothing to plot")
    columns = list(rows[0])

    def number(text: str | None) -> float:
        return math.nan if text in (None, "") else float(text)

    return {key: np.array([number(row.get(key)) for row in rows]) for key in columns}


def _as_history(source: Any) -> dict[str, np.ndarray]:
    """A CSV path, a callback (anything with ``history_arrays()``), a list of row dicts or a dict of columns."""
    if isinstance(source, str | os.PathLike):
        return load_history(source)
    if hasattr(source, "history_arrays"):
        return source.history_arrays()
    if isinstance(source, Mapping):
        return {key: np.asarray(value, dtype=float) for key, value in source.items()}
    rows = list(source)
    keys: list[str] = []
    for row in rows:
        keys += [key for key in row if key not in keys]
    return {key: np.array([row.get(key, math.nan) for row in rows], dtype=float) for key in keys}


def _is_single_history(source: Any) -> bool:
    """True for one history; False for a list of histories."""
    if isinstance(source, str | os.PathLike | Mapping) or hasattr(source, "history_arrays"):
        return True
    # A list of row dicts (scalar values) is one history, not a list of column dicts.
    return (
        isinstance(source, Sequence)
        and len(source) > 0
        and all(isinstance(row, Mapping) for row in source)
        and all(np.ndim(value) == 0 for value in source[0].values())
    )


def plot_monitor(
    sources: Any,
    output: str | os.PathLike | None = None,
    x: str = "timesteps",
    labels: Sequence[str] | None = None,
    min_ess: float | None = None,
    max_kl: float | None = None,
    max_clip_fraction: float | None = None,
    title: str | None = None,
):
    """Draw ESS/N, KL and clip fraction of each update, one panel each, sharing the x axis.

    :param sources: one history or a list of them; a history is a CSV path, a monitor
        callback, a list of row dicts or a dict of columns
    :param output: if given, the figure is saved there (format from the extension)
    :param x: ``"timesteps"`` or ``"update"``
    :param labels: legend labels, one per source (default: file names or ``run i``)
    :param min_ess: draw this ESS threshold as a dashed line
    :param max_kl: draw this KL threshold as a dashed line
    :param max_clip_fraction: draw this clip-fraction threshold as a dashed line
    :param title: figure title
    :return: the matplotlib ``Figure``
    """
    # The object-oriented API without pyplot: no global backend or state is touched, and
    # saving goes through the Agg canvas, so this works on machines without a display.
    from matplotlib.figure import Figure

    if x not in ("timesteps", "update"):
        raise ValueError(f"x={x!r} is not allowed: expected 'timesteps' or 'update'")
    if _is_single_history(sources):
        sources = [sources]
    sources = list(sources)
    if labels is None:
        labels = [
            os.path.splitext(os.path.basename(s))[0] if isinstance(s, str | os.PathLike) else f"run {i + 1}"
            for i, s in enumerate(sources)
        ]
    histories = [_as_history(source) for source in sources]

    if not any(len(column) for history in histories for column in history.values()):
        raise ValueError("the monitor histories hold no update: nothing to plot")

    figure = Figure(figsize=(8, 8), layout="constrained")
    axes = figure.subplots(3, 1, sharex=True)
    for index, (history, label) in enumerate(zip(histories, labels, strict=True)):
        color = f"C{index}"
        steps = history.get(x, np.arange(1, len(next(iter(history.values()), [])) + 1))
        if "ess" in history:
            axes[0].plot(steps, history["ess"], color=color, marker=".", label=label)
        if "kl" in history:
            axes[1].plot(steps, history["kl"], color=color, marker=".", label=f"{label}: exact")
        if "approx_kl" in history:
            axes[1].plot(steps, history["approx_kl"], color=color, linestyle=":", label=f"{label}: k3 estimate")
        if "clip_fraction" in history:
            axes[2].plot(steps, history["clip_fraction"], color=color, marker=".", label=label)
    limits = ((axes[0], min_ess, "min_ess"), (axes[1], max_kl, "max_kl"), (axes[2], max_clip_fraction, "max_clip_fraction"))
    for axis, limit, name in limits:
        if limit is not None:
            axis.axhline(limit, color="red", linestyle="--", linewidth=1, label=f"{name} = {limit:g}")

    axes[0].set_ylabel("ESS / N")
    axes[0].set_ylim(0.0, 1.05)
    axes[1].set_ylabel("KL(old || new)")
    epsilons = [h["clip_epsilon"] for h in histories if "clip_epsilon" in h and len(h["clip_epsilon"])]
    if epsilons and all(np.allclose(e, epsilons[0][0]) for e in epsilons):
        axes[2].set_ylabel(f"clip fraction (eps = {epsilons[0][0]:g})")
    else:
        axes[2].set_ylabel("clip fraction")
    axes[2].set_ylim(bottom=0.0)
    axes[2].set_xlabel("environment steps" if x == "timesteps" else "update")
    panels = ((axes[0], ("ess",), "ESS"), (axes[1], ("kl", "approx_kl"), "KL"), (axes[2], ("clip_fraction",), "clip fraction"))
    for axis, keys, name in panels:
        if not any(np.any(np.isfinite(history[key])) for history in histories for key in keys if key in history):
            # Say so rather than leave empty axes, which read as "the figure was 0" or "the plot broke".
            axis.text(
                0.5, 0.5, f"no {name} in {'this history' if len(histories) == 1 else 'these histories'}",
                transform=axis.transAxes, ha="center", va="center", color="grey",
            )  # fmt: skip
    for axis in axes:
        axis.grid(True, alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(loc="best", fontsize="small")
    figure.suptitle(title or "Trust-region monitor: each update measured on its own batch")
    if output is not None:
        figure.savefig(output, dpi=120)
    return figure


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sb3_pgx.plot_monitor", description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="+", help="monitor CSV file(s) written by TrustRegionMonitorCallback")
    parser.add_argument("-o", "--output", default="monitor.png", help="image file to write (default: monitor.png)")
    parser.add_argument("--x", choices=("timesteps", "update"), default="timesteps", help="x axis")
    parser.add_argument(
        "--min-ess", type=float, default=None, help="draw this ESS/N threshold as a dashed line (the callback's min_ess)"
    )
    parser.add_argument(
        "--max-kl", type=float, default=None, help="draw this KL threshold as a dashed line (the callback's max_kl)"
    )
    parser.add_argument(
        "--max-clip-fraction",
        type=float,
        default=None,
        help="draw this clip-fraction threshold as a dashed line (the callback's max_clip_fraction)",
    )
    parser.add_argument("--title", default=None, help="figure title")
    args = parser.parse_args(argv)
    try:
        plot_monitor(
            args.csv,
            output=args.output,
            x=args.x,
            min_ess=args.min_ess,
            max_kl=args.max_kl,
            max_clip_fraction=args.max_clip_fraction,
            title=args.title,
        )
    except (FileNotFoundError, ValueError) as error:
        parser.error(str(error))  # one line and exit status 2, not a traceback
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
