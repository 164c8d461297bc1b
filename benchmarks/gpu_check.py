"""CUDA check of every sb3_pgx algorithm: placement, host syncs per gradient step, FPS against SB3.

    python -m benchmarks.gpu_check [--timesteps 5000] [--seeds 3]

For each FPS pair of :mod:`benchmarks.studies` (CartPole-v1, ``device="cuda"``): trains ``--timesteps``
steps and checks that the policy's parameters and buffers and the optimiser's state live on the GPU
(the optimiser's scalar ``step`` counters, which torch keeps on the CPU unless ``capturable``,
excepted); counts the synchronising CUDA calls inside ``train()`` (``set_sync_debug_mode("warn")``)
per ``train()`` and per gradient step; measures FPS side by side with the SB3 counterpart (``--seeds``
repeats). Writes ``benchmarks/results/<out>.{csv,md}``; exits 1 if a tensor is off the GPU, 0 with a
message when there is no CUDA device.
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timesteps", type=int, default=5_000, help="training steps of the placement and sync check")
    parser.add_argument("--seeds", type=int, default=3, help="side-by-side repeats of the FPS comparison (0: none)")
    parser.add_argument("--out", default="gpu_check", help="stem of the result files under benchmarks/results/")
    args = parser.parse_args(argv)
    if not th.cuda.is_available():
        print(SKIP_MESSAGE)
        return 0

    from benchmarks.harness import RESULTS, write_results
    from benchmarks.studies import FPS_PAIRS, fps_label, fps_model, run_pair

    rows, failed = [], False
    for key in FPS_PAIRS:
        model = fps_model(key, "ours", seed=0, device="cuda")
        counts = count_syncs(model)
        model.learn(args.timesteps)
        off_gpu = off_gpu_tensors(model)
        failed |= bool(off_gpu)
        ratios = [run_pair(key, repeat, seed=repeat, device="cuda") for repeat in range(args.seeds)]
        rows.append({
            "pair": fps_label(key), "device": th.cuda.get_device_name(),
            "on_gpu": "yes" if not off_gpu else "no: " + ", ".join(off_gpu[:5]),
            "syncs_per_train": counts["syncs"] / max(counts["trains"], 1),
            "syncs_per_gradient_step": counts["syncs"] / max(counts["sgd_steps"], 1),
            **{name: statistics.median(r[name] for r in ratios) if ratios else float("nan")
               for name in ("ours_fps", "theirs_fps", "fps_ratio")},
        })  # fmt: skip
        print(rows[-1], flush=True)
    intro = (
        f"On {rows[0]['device']}, torch {th.__version__}. Syncs: synchronising CUDA calls inside train() "
        "(set_sync_debug_mode); FPS ratio: ours / SB3's counterpart, median of side-by-side repeats (fps_table settings)."
    )
    print("\n".join(write_results(RESULTS / args.out, "GPU check", intro, rows, rows)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
