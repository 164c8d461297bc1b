"""CUDA check of every sb3_pgx algorithm: placement, host syncs per gradient step, FPS against SB3.

    python -m benchmarks.gpu_check [--timesteps 5000] [--repeats 3]

For each algorithm (CartPole-v1, the settings of ``benchmarks/fps_table.py``, ``device="cuda"``):

1. trains ``--timesteps`` steps and checks that the policy's parameters and buffers and the
   optimiser's state tensors live on the GPU (the optimiser's scalar ``step`` counters, which torch
   keeps on the CPU unless ``capturable``, excepted);
2. counts the host-device syncs made inside ``train()`` with ``torch.cuda.set_sync_debug_mode("warn")``
   (one warning per synchronising call), per ``train()`` and per gradient step (``train/sgd_steps``);
3. measures FPS side by side with its SB3 counterpart on the same GPU (``fps_table.run_pair``).

Writes ``benchmarks/results/gpu_check.csv`` and ``.md`` and exits 1 if a tensor is off the GPU.
Without a CUDA device it prints that it skipped and exits 0.
"""

import argparse
import statistics
import sys
import warnings

import torch as th

SKIP_MESSAGE = "gpu_check: skipped, no CUDA device (torch.cuda.is_available() is False); nothing was checked."


def off_gpu_tensors(model) -> list[str]:
    """Names of the policy's parameters and buffers and of the optimiser's state tensors not on a CUDA device."""
    names = [f"parameter {name}" for name, tensor in model.policy.named_parameters() if not tensor.is_cuda]
    names += [f"buffer {name}" for name, tensor in model.policy.named_buffers() if not tensor.is_cuda]
    for index, state in enumerate(model.policy.optimizer.state.values()):
        for key, value in state.items():
            if isinstance(value, th.Tensor) and not value.is_cuda and not (key == "step" and value.ndim == 0):
                names.append(f"optimizer state {index}.{key}")
    return names


def count_syncs(model) -> dict[str, int]:
    """Wrap ``model.train`` to count the synchronising CUDA calls it makes, its calls and its gradient steps."""
    counts = {"syncs": 0, "trains": 0, "sgd_steps": 0}
    train = model.train

    def counted_train() -> None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            th.cuda.set_sync_debug_mode("warn")
            try:
                train()
            finally:
                th.cuda.set_sync_debug_mode("default")
        counts["syncs"] += sum("synchroniz" in str(warning.message) for warning in caught)
        counts["trains"] += 1
        counts["sgd_steps"] += int(model.logger.name_to_value.get("train/sgd_steps", 1))

    model.train = counted_train
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timesteps", type=int, default=5_000, help="training steps of the placement and sync check")
    parser.add_argument("--repeats", type=int, default=3, help="side-by-side repeats of the FPS comparison (0: none)")
    parser.add_argument("--out", default="gpu_check", help="stem of the result files under benchmarks/results/")
    args = parser.parse_args()
    if not th.cuda.is_available():
        print(SKIP_MESSAGE)
        return 0

    from benchmarks.fps_table import PAIRS, RESULTS, label, make_model, run_pair, write_csv

    rows, failed = [], False
    for key in PAIRS:
        model = make_model(key, "ours", seed=0, device="cuda")
        counts = count_syncs(model)
        model.learn(args.timesteps)
        off_gpu = off_gpu_tensors(model)
        failed |= bool(off_gpu)
        ratios = [run_pair(key, repeat, seed=repeat, device="cuda") for repeat in range(args.repeats)]
        row = {
            "pair": label(key),
            "device": th.cuda.get_device_name(),
            "on_gpu": "yes" if not off_gpu else "no: " + ", ".join(off_gpu[:5]),
            "syncs_per_train": counts["syncs"] / max(counts["trains"], 1),
            "syncs_per_gradient_step": counts["syncs"] / max(counts["sgd_steps"], 1),
            "ours_fps": statistics.median(r["ours_fps"] for r in ratios) if ratios else float("nan"),
            "theirs_fps": statistics.median(r["theirs_fps"] for r in ratios) if ratios else float("nan"),
            "fps_ratio": statistics.median(r["fps_ratio"] for r in ratios) if ratios else float("nan"),
        }
        rows.append(row)
        print(", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)

    stem = RESULTS / args.out
    write_csv(rows, stem)
    lines = [
        "# GPU check",
        "",
        f"`python -m benchmarks.gpu_check --timesteps {args.timesteps} --repeats {args.repeats}` on {rows[0]['device']}, "
        f"torch {th.__version__}. Syncs: synchronising CUDA calls inside train() (set_sync_debug_mode); FPS ratio: ours / "
        "SB3's counterpart, median of side-by-side repeats (fps_table settings).",
        "",
        "| pair | all tensors on the GPU | syncs per train() | syncs per gradient step | ours FPS | theirs FPS | FPS ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['pair']} | {row['on_gpu']} | {row['syncs_per_train']:.1f} | {row['syncs_per_gradient_step']:.2f} "
            f"| {row['ours_fps']:.0f} | {row['theirs_fps']:.0f} | {row['fps_ratio']:.2f} |"
        )
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
