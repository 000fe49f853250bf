"""Secure aggregation by masking: client and server time per protocol step.

Runs full in-memory rounds of ``fedcare.privacy.secagg`` with ``--participants`` clients
(default 10) and ``--size`` parameters (default 1M), every message serialized to bytes and
decoded again as the coordinator would relay it. Two scenarios:

- ``all``: everyone completes the round;
- ``drop``: one participant drops after the share step (before its masked input), so the
  server also reconstructs its seed key and removes its pairwise masks with every survivor.

Client times are per client (mean over the clients; in production they run in parallel on
their own machines), server times are for the whole step (all ``add_*`` calls plus the
``close_*`` / ``finish`` call), best of ``--repeat`` rounds. The PRG (AES-256-CTR keystream
to a vector over Z_(2^k)) is timed separately for a 1M-element expansion. The last line is
one JSON object. Run: ``.venv/bin/python bench/secagg.py`` (a few seconds on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import ParamSpec, TypeVar

import numpy as np
import numpy.typing as npt

from fedcare.privacy.secagg import (
    AdvertiseKeys,
    KeyAdverts,
    MaskedInput,
    MaskingRequest,
    SecAggClient,
    SecAggConfig,
    SecAggServer,
    ShareBundle,
    UnmaskRequest,
    UnmaskResponse,
    prg,
)

T = TypeVar("T")
P = ParamSpec("P")
STEPS = ("advertise", "share_keys", "masked_input", "unmask")


def cpu_line() -> str:
    """One line describing the CPU, its count and the load average."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"machine: {model}, {os.cpu_count()} CPUs, load average {load:.2f}, "
        f"Python {platform.python_version()}, numpy {np.__version__}"
    )


def timed(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> tuple[T, float]:
    """Run ``fn(*args, **kwargs)`` once; return its result and the wall time in seconds."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def relay(data: bytes, cls: type[T]) -> T:
    """Decode ``data`` as ``cls`` (what the coordinator and receivers do with relayed bytes)."""
    return cls.from_bytes(data)  # type: ignore[attr-defined,no-any-return]


def client_advertise(client: SecAggClient) -> bytes:
    """Client step 0, serialized."""
    return client.advertise().to_bytes()


def client_share_keys(client: SecAggClient, broadcast: bytes) -> bytes:
    """Client step 1: decode the adverts, produce the encrypted shares, serialize."""
    return client.share_keys(relay(broadcast, KeyAdverts)).to_bytes()


def client_masked_input(
    client: SecAggClient, request: bytes, update: npt.NDArray[np.float32]
) -> bytes:
    """Client step 2: decode the request, quantize and mask the update, serialize."""
    return client.masked_input(relay(request, MaskingRequest), update).to_bytes()


def client_unmask(client: SecAggClient, request: bytes) -> bytes:
    """Client step 3: decode the unmask request, answer with shares, serialize."""
    return client.unmask(relay(request, UnmaskRequest)).to_bytes()


def one_round(
    cfg: SecAggConfig, updates: dict[str, npt.NDArray[np.float32]], drop: str | None
) -> tuple[dict[str, float], dict[str, float], dict[str, int], float]:
    """One round; returns client times per step, server times, bytes per message, max error."""
    ids = cfg.participants
    client_t: dict[str, list[float]] = {s: [] for s in STEPS}
    server_t: dict[str, float] = {}
    sizes: dict[str, int] = {}
    clients = {p: SecAggClient(cfg, p) for p in ids}
    server = SecAggServer(cfg)

    adverts: dict[str, bytes] = {}
    for p, c in clients.items():
        msg, t = timed(client_advertise, c)
        client_t["advertise"].append(t)
        adverts[p] = msg
    sizes["AdvertiseKeys"] = len(adverts[ids[0]])

    def step0() -> bytes:
        for data in adverts.values():
            server.add_advert(relay(data, AdvertiseKeys))
        return server.close_adverts().to_bytes()

    broadcast, server_t["advertise"] = timed(step0)
    sizes["KeyAdverts"] = len(broadcast)

    bundles: dict[str, bytes] = {}
    for p, c in clients.items():
        msg, t = timed(client_share_keys, c, broadcast)
        client_t["share_keys"].append(t)
        bundles[p] = msg
    sizes["ShareBundle"] = len(bundles[ids[0]])

    def step1() -> dict[str, bytes]:
        for data in bundles.values():
            server.add_shares(relay(data, ShareBundle))
        return {p: r.to_bytes() for p, r in server.close_shares().items()}

    requests, server_t["share_keys"] = timed(step1)
    sizes["MaskingRequest"] = len(requests[ids[0]])

    survivors = [p for p in ids if p != drop]
    masked: dict[str, bytes] = {}
    for p in survivors:
        msg, t = timed(client_masked_input, clients[p], requests[p], updates[p])
        client_t["masked_input"].append(t)
        masked[p] = msg
    sizes["MaskedInput"] = len(masked[survivors[0]])

    def step2() -> bytes:
        for data in masked.values():
            server.add_masked_input(relay(data, MaskedInput))
        return server.close_inputs().to_bytes()

    unmask, server_t["masked_input"] = timed(step2)
    sizes["UnmaskRequest"] = len(unmask)

    responses: list[bytes] = []
    for p in survivors:
        msg, t = timed(client_unmask, clients[p], unmask)
        client_t["unmask"].append(t)
        responses.append(msg)
    sizes["UnmaskResponse"] = len(responses[0])

    def step3() -> npt.NDArray[np.float64]:
        for data in responses:
            server.add_unmask_response(relay(data, UnmaskResponse))
        return server.finish().total

    total, server_t["unmask"] = timed(step3)
    expected = np.sum([updates[p].astype(np.float64) for p in survivors], axis=0)
    error = float(np.max(np.abs(total - expected)))
    bound = len(survivors) * cfg.quantum
    if error > bound * (1 + 1e-6):
        raise SystemExit(f"wrong sum: max error {error:.3g} above the bound {bound:.3g}")
    return {s: statistics.fmean(v) for s, v in client_t.items()}, server_t, sizes, error


def best_of(
    repeat: int,
    cfg: SecAggConfig,
    updates: dict[str, npt.NDArray[np.float32]],
    drop: str | None,
) -> tuple[dict[str, float], dict[str, float], dict[str, int], float]:
    """Best time per step over ``repeat`` rounds (sizes and error from the last round)."""
    client_best = dict.fromkeys(STEPS, float("inf"))
    server_best = dict.fromkeys(STEPS, float("inf"))
    sizes: dict[str, int] = {}
    error = 0.0
    for _ in range(repeat):
        client_t, server_t, sizes, error = one_round(cfg, updates, drop)
        for s in STEPS:
            client_best[s] = min(client_best[s], client_t[s])
            server_best[s] = min(server_best[s], server_t[s])
    return client_best, server_best, sizes, error


def prg_ms(size: int, modulus_bits: int, repeat: int) -> float:
    """Best time in ms to expand one 32-byte seed into ``size`` words mod 2^modulus_bits."""
    seed = os.urandom(prg.SEED_BYTES)
    best = float("inf")
    for _ in range(max(repeat, 3)):
        _, t = timed(prg.expand, seed, size, modulus_bits)
        best = min(best, t)
    return best * 1e3


def table(title: str, client: dict[str, float], server: dict[str, float]) -> None:
    """Print one scenario's times as a markdown table."""
    print(f"\n{title}")
    print(f"| {'step':<14} | {'client ms':>10} | {'server ms':>10} |")
    print(f"|{'-' * 16}|{'-' * 11}:|{'-' * 11}:|")
    for s in STEPS:
        print(f"| {s:<14} | {client[s] * 1e3:10.1f} | {server[s] * 1e3:10.1f} |")
    print(
        f"| {'total':<14} | {sum(client.values()) * 1e3:10.1f} | "
        f"{sum(server.values()) * 1e3:10.1f} |"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print a report ending with one JSON line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000, help="parameters per update")
    parser.add_argument("--participants", type=int, default=10)
    parser.add_argument("--modulus-bits", type=int, default=32)
    parser.add_argument("--clip", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=3, help="rounds per scenario; best kept")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    ids = tuple(f"site-{i:02d}" for i in range(args.participants))
    cfg = SecAggConfig(
        job_id="bench",
        round_number=1,
        participants=ids,
        vector_length=args.size,
        threshold=args.participants // 2 + 1,
        clip_range=args.clip,
        modulus_bits=args.modulus_bits,
    )
    rng = np.random.default_rng(args.seed)
    share = 1.0 / args.participants
    updates = {p: (share * rng.normal(0.0, 0.3, args.size)).astype(np.float32) for p in ids}
    print(cpu_line())
    print(
        f"workload: {args.participants} participants x {args.size:,} parameters, "
        f"Z_2^{args.modulus_bits}, t = {cfg.threshold}, best of {args.repeat} rounds"
    )
    prg32 = prg_ms(1_000_000, 32, args.repeat)
    prg62 = prg_ms(1_000_000, 62, args.repeat)
    print(f"PRG (AES-256-CTR) 1M-element expansion: {prg32:.2f} ms uint32, {prg62:.2f} ms uint64")

    c_all, s_all, sizes, err_all = best_of(args.repeat, cfg, updates, None)
    table("scenario all (no dropout)", c_all, s_all)
    c_drop, s_drop, _, err_drop = best_of(args.repeat, cfg, updates, ids[-1])
    table(f"scenario drop ({ids[-1]} drops before its masked input)", c_drop, s_drop)
    print("\nbytes per message: " + ", ".join(f"{k} {v:,}" for k, v in sizes.items()))
    print(
        f"max abs error of the sum: {err_all:.2e} (all), {err_drop:.2e} (drop); "
        f"bound m*2c/L = {args.participants * cfg.quantum:.2e}"
    )

    def ms(times: dict[str, float]) -> dict[str, float]:
        return {s: round(t * 1e3, 2) for s, t in times.items()}

    result = {
        "bench": "secagg",
        "participants": args.participants,
        "size": args.size,
        "modulus_bits": args.modulus_bits,
        "threshold": cfg.threshold,
        "repeat": args.repeat,
        "cpus": os.cpu_count(),
        "prg_1m_uint32_ms": round(prg32, 3),
        "prg_1m_uint64_ms": round(prg62, 3),
        "client_ms": ms(c_all),
        "server_ms": ms(s_all),
        "client_ms_one_dropped": ms(c_drop),
        "server_ms_one_dropped": ms(s_drop),
        "bytes": sizes,
        "max_abs_error": err_all,
        "max_abs_error_one_dropped": err_drop,
        "error_bound": args.participants * cfg.quantum,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
