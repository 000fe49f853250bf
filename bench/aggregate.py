"""Aggregation throughput: numpy ``acc += v`` against ``fedcare.strategies.StreamingMean.fold``.

Folds ``--updates`` vectors of ``--size`` float32 values (default 10 x 10M, i.e. 400 MB of
update data) and reports the best of ``--repeat`` runs of each. GB/s counts the bytes of the
*updates* folded (``updates * size * 4`` / time), so both columns measure the same work; each
fold also reads and writes the 40 MB accumulator, which the figure does not count.

Two cases are timed for each method:

- ``warm``: the accumulator already exists and its pages are mapped, as for every update after
  the first in a round. This is the case the target (StreamingMean >= 0.5x numpy) is about.
- ``fresh``: a new accumulator per run (``np.zeros`` / ``StreamingMean(size)``), so the first
  update also pays the page faults; this is what one coordinator round costs end to end.

The weighted mean computed by StreamingMean is checked against a float64 numpy reference.
StreamingMean.fold is one fused torch pass (``add_`` with ``alpha``) on the same memory;
``--torch-threads`` (default 1, as in a coordinator that ``fedcare run`` forks) sets its threads.
Run: ``.venv/bin/python bench/aggregate.py`` (about 30 s on a 2-core machine, 1 GB of RAM).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from benchutil import CpuWatch, machine_line, tree_line, wait_for_quiet
from fedcare.strategies import StreamingMean

F32 = npt.NDArray[np.float32]
TARGET_RATIO = 0.5


Case = tuple[Callable[[], object], Callable[[object], None]]


def interleaved_best(repeat: int, cases: dict[str, Case]) -> dict[str, float]:
    """Best wall time in seconds of ``body(setup())`` per case over ``repeat`` rounds.

    The cases take turns within each round, so a noisy neighbour or a frequency change hits
    them alike and the ratio stays meaningful. ``setup`` is not timed.
    """
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(repeat):
        for name, (setup, body) in cases.items():
            state = setup()
            start = time.perf_counter()
            body(state)
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def make_cases(updates: Sequence[F32], weights: Sequence[float], size: int) -> dict[str, Case]:
    """The four timed cases: (numpy | StreamingMean) x (warm | fresh accumulator)."""
    zeros = np.zeros(size, dtype=np.float32)

    def numpy_warm_setup() -> F32:
        acc = np.zeros(size, dtype=np.float32)  # a new one each run, like StreamingMean's
        acc.fill(0.0)  # touched: no page faults in the timed part
        return acc

    def numpy_body(state: object) -> None:
        a = np.zeros(size, dtype=np.float32) if state is None else state
        assert isinstance(a, np.ndarray)
        for v in updates:
            a += v

    def streaming_warm_setup() -> StreamingMean:
        agg = StreamingMean(size)
        agg.fold(zeros, 1.0)  # maps the accumulator's pages, public API only
        return agg

    def streaming_body(state: object) -> None:
        agg = StreamingMean(size) if state is None else state
        assert isinstance(agg, StreamingMean)
        for v, w in zip(updates, weights, strict=True):
            agg.fold(v, w)

    def none() -> None:
        return None

    return {
        "numpy/warm": (numpy_warm_setup, numpy_body),
        "streaming/warm": (streaming_warm_setup, streaming_body),
        "numpy/fresh": (none, numpy_body),
        "streaming/fresh": (none, streaming_body),
    }


def check_mean(updates: Sequence[F32], weights: Sequence[float], size: int) -> float:
    """Max abs error of ``StreamingMean.mean()`` against a float64 reference."""
    agg = StreamingMean(size)
    ref = np.zeros(size, dtype=np.float64)
    for v, w in zip(updates, weights, strict=True):
        agg.fold(v, w)
        ref += np.float64(w) * v
    ref /= sum(weights)
    return float(np.max(np.abs(agg.mean().astype(np.float64) - ref)))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the table and a final JSON line; 0 when the target is met."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000_000, help="values per update")
    parser.add_argument("--updates", type=int, default=10, help="updates per aggregation")
    parser.add_argument("--repeat", type=int, default=5, help="runs per case; best is kept")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=120.0,
        help="seconds to wait at most for the machine to go idle before timing (0: no wait)",
    )
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch intra-op threads for StreamingMean.fold (default 1, what a coordinator "
        "forked by `fedcare run` has; numpy's ufuncs use one thread)",
    )
    args = parser.parse_args(argv)
    import torch  # StreamingMean.fold's fused pass runs in torch

    torch.set_num_threads(args.torch_threads)

    rng = np.random.default_rng(args.seed)
    updates = [rng.standard_normal(args.size, dtype=np.float32) for _ in range(args.updates)]
    # sample counts like the round benchmark's sites (about 800k training rows each)
    weights = [float(800_000 + 1_000 * k) for k in range(args.updates)]
    data_gb = args.updates * args.size * 4 / 1e9

    print(
        machine_line(f", numpy {np.__version__}")
        + " (left as found; numpy's ufuncs do not call OpenBLAS)"
    )
    print(tree_line())
    print(f"torch intra-op threads for the fold: {torch.get_num_threads()}")
    print(
        f"workload: {args.updates} updates x {args.size:,} float32 "
        f"({data_gb * 1e3:.0f} MB of updates), best of {args.repeat}"
    )
    error = check_mean(updates, weights, args.size)
    print(f"check: StreamingMean.mean() max abs error vs float64 reference = {error:.2e}")

    if args.quiet_wait > 0:
        waited, share = wait_for_quiet(args.quiet_wait)
        print(f"waited {waited:.0f} s for an idle machine (busy share now {share:.0%})")
    watch = CpuWatch()
    best = interleaved_best(args.repeat, make_cases(updates, weights, args.size))
    other_share = watch.others()[1]
    labels = {"numpy": "numpy acc += v", "streaming": "StreamingMean.fold"}
    print()
    print(f"| {'method':<20} | {'accumulator':<11} | {'best ms':>8} | {'GB/s':>6} | {'ratio':>5} |")
    print(f"|{'-' * 22}|{'-' * 13}|{'-' * 9}:|{'-' * 7}:|{'-' * 6}:|")
    ratios: dict[str, float] = {}
    for case in ("warm", "fresh"):
        base = best[f"numpy/{case}"]
        for method in ("numpy", "streaming"):
            t = best[f"{method}/{case}"]
            ratios[f"{method}/{case}"] = base / t
            print(
                f"| {labels[method]:<20} | {case:<11} | {t * 1e3:8.1f} | {data_gb / t:6.1f} | "
                f"{base / t:5.2f} |"
            )
    ok = ratios["streaming/warm"] >= TARGET_RATIO
    print()
    print(
        f"StreamingMean / numpy throughput (warm): {ratios['streaming/warm']:.2f} "
        f"(target >= {TARGET_RATIO}): {'met' if ok else 'NOT met'}"
    )
    print(f"other processes on the machine while timing: {other_share:.0%} of the CPUs' time")
    result = {
        "bench": "aggregate",
        "updates": args.updates,
        "size": args.size,
        "repeat": args.repeat,
        "numpy_warm_ms": round(best["numpy/warm"] * 1e3, 2),
        "streaming_warm_ms": round(best["streaming/warm"] * 1e3, 2),
        "numpy_fresh_ms": round(best["numpy/fresh"] * 1e3, 2),
        "streaming_fresh_ms": round(best["streaming/fresh"] * 1e3, 2),
        "numpy_warm_gbps": round(data_gb / best["numpy/warm"], 2),
        "streaming_warm_gbps": round(data_gb / best["streaming/warm"], 2),
        "numpy_fresh_gbps": round(data_gb / best["numpy/fresh"], 2),
        "streaming_fresh_gbps": round(data_gb / best["streaming/fresh"], 2),
        "ratio_warm": round(ratios["streaming/warm"], 3),
        "ratio_fresh": round(ratios["streaming/fresh"], 3),
        "target_ratio": TARGET_RATIO,
        "target_met": ok,
        "max_abs_error": error,
        "other_cpu_share": round(other_share, 3),
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
    }
    print(json.dumps(result, sort_keys=False))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
