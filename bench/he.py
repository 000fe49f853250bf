"""Homomorphic aggregation (CKKS, TenSEAL) against plaintext FedAvg at 1M parameters.

Each of ``--clients`` participants encrypts its weighted update (``p_i * w_i``, weights summing
to 1) with :func:`fedcare.privacy.ckks.encrypt_vector` and serializes it to a stream; the
coordinator folds the streams into a :class:`fedcare.privacy.ckks.CiphertextSum` with the
public context only; one participant decrypts the aggregate. Timed per phase, against the
plaintext equivalent (float32 bytes on the wire, numpy weighted sum). The decrypted aggregate is
checked against the float64 FedAvg.

For reference, one client is also encrypted the way TenSEAL's tutorials do it (public-key,
"asymmetric" encryption, which the library does not use; see
``fedcare.privacy.ckks.context``).

Run: ``.venv/bin/python bench/he.py`` (about 25 s once the machine is idle; 0.5 GB of RAM
and 0.8 GB of temporary files, the uploads, at the defaults). It waits for an idle machine
first (``--quiet-wait``) and prints how much CPU other processes took meanwhile.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import tenseal as ts  # type: ignore[import-untyped]

from benchutil import CpuWatch, machine_line, tree_line, wait_for_quiet
from fedcare.privacy.ckks import (
    DEFAULT_COEFF_MOD_BIT_SIZES,
    DEFAULT_POLY_MODULUS_DEGREE,
    DEFAULT_SCALE_BITS,
    CiphertextSum,
    create_contexts,
    decrypt_vector,
    encrypt_vector,
    has_secret_key,
    load_context,
    read_stream_file,
    slot_count,
    write_stream,
)

F32 = npt.NDArray[np.float32]
MB = 1e6


def rss_mb(field: str = "VmRSS") -> float:
    """Resident set size of this process in MB (``VmHWM``: its peak), from /proc/self/status.

    ``VmHWM`` belongs to the process image, unlike ``ru_maxrss``, which a child started with
    fork + exec inherits from its parent.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024 / MB
    except OSError:
        pass
    return float("nan")


class Timer:
    """Wall and CPU time of a block (CPU/wall near 1 means the machine was not contended)."""

    def __enter__(self) -> Timer:
        """Start timing."""
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop timing."""
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu


def coordinator(public_bytes: bytes, uploads: list[str], length: int, out: str) -> dict[str, float]:
    """The coordinator's round in a process of its own: fold the uploads, write the aggregate.

    Runs in a fresh (spawned) process holding only the public context, so its resident
    memory is the aggregate's, not the participants'. Uploads are read from files one chunk
    at a time, as a coordinator that spooled them to disk would.

    Returns:
        Seconds per :meth:`CiphertextSum.add`, the aggregate's serialization time, and RSS
        (MB) before the sum was created, after all adds, and at peak.
    """
    public = load_context(public_bytes)
    assert not has_secret_key(public)
    rss_start = rss_mb()
    aggregate = CiphertextSum(public, length)
    times: dict[str, float] = {"rss_start_mb": rss_start}
    for i, path in enumerate(uploads):
        with open(path, "rb") as fh, Timer() as t:
            aggregate.add(read_stream_file(fh))
        times[f"add_{i}"] = t.wall
        times[f"rss_{i}"] = rss_mb() - rss_start
    times["rss_sum_mb"] = rss_mb() - rss_start
    with open(out, "wb") as fh, Timer() as t:
        write_stream(aggregate.to_chunks(), fh)
    times["serialize"] = t.wall
    times["peak_rss_mb"] = rss_mb("VmHWM")
    return times


def asymmetric_reference(values: F32) -> tuple[float, int]:
    """Seconds and stream bytes to encrypt ``values`` with a public-key TenSEAL context."""
    ctx = ts.context(
        ts.SCHEME_TYPE.CKKS,
        DEFAULT_POLY_MODULUS_DEGREE,
        coeff_mod_bit_sizes=list(DEFAULT_COEFF_MOD_BIT_SIZES),
    )
    ctx.global_scale = float(2**DEFAULT_SCALE_BITS)
    slots = DEFAULT_POLY_MODULUS_DEGREE // 2
    with Timer() as t:
        chunks = [
            ts.ckks_vector(ctx, values[i : i + slots].tolist())
            for i in range(0, values.size, slots)
        ]
    size = sum(len(c.serialize()) for c in chunks)
    return t.wall, size


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the table and a final JSON line; 0 when the check passes."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--params", type=int, default=1_000_000, help="values per update")
    parser.add_argument("--clients", type=int, default=10, help="participants per round")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=120.0,
        help="seconds to wait at most for the machine to go idle before timing (0: no wait)",
    )
    parser.add_argument(
        "--no-reference", action="store_true", help="skip the public-key encryption reference"
    )
    args = parser.parse_args(argv)
    n, k = args.params, args.clients

    rng = np.random.default_rng(args.seed)
    updates = [rng.normal(scale=0.05, size=n).astype(np.float32) for _ in range(k)]
    samples = rng.integers(50_000, 1_000_000, size=k).astype(np.float64)
    weights = samples / samples.sum()
    weighted = [(p * u).astype(np.float32) for p, u in zip(weights, updates, strict=True)]

    with Timer() as t_ctx:
        secret_bytes, public_bytes = create_contexts()
    secret, public = load_context(secret_bytes), load_context(public_bytes)
    assert has_secret_key(secret) and not has_secret_key(public)
    print(machine_line(f", TenSEAL {ts.__version__}, numpy {np.__version__}"))
    print(tree_line())
    print(
        f"workload: {k} clients x {n:,} float32 parameters; CKKS N={DEFAULT_POLY_MODULUS_DEGREE}"
        f", coeff_mod_bit_sizes={list(DEFAULT_COEFF_MOD_BIT_SIZES)}, scale 2^{DEFAULT_SCALE_BITS}"
        f", {slot_count(public)} values per ciphertext, secret-key encryption"
    )
    print(
        f"contexts: created in {t_ctx.wall:.2f} s; secret {len(secret_bytes) / 1e3:.0f} kB "
        f"(participants), public {len(public_bytes)} B (coordinator: parameters only)"
    )

    if args.quiet_wait > 0:
        waited, share = wait_for_quiet(args.quiet_wait)
        print(f"waited {waited:.0f} s for an idle machine (busy share now {share:.0%})")
    watch = CpuWatch()
    with tempfile.TemporaryDirectory(prefix="fedcare-he-") as tmp:
        # Participants: encrypt, then serialize into the stream they upload (kept in files,
        # as the coordinator would receive them).
        enc_s: list[float] = []
        ser_s: list[float] = []
        cpu_share: list[float] = []
        uploads: list[str] = []
        bytes_per_client = chunks_per_client = 0
        for i, values in enumerate(weighted):
            with Timer() as t_enc:
                encrypted = encrypt_vector(secret, values)
            with Timer() as t_ser:
                stream = list(encrypted.to_chunks())
            del encrypted
            enc_s.append(t_enc.wall)
            ser_s.append(t_ser.wall)
            cpu_share.append((t_enc.cpu + t_ser.cpu) / (t_enc.wall + t_ser.wall))
            bytes_per_client = sum(len(c) for c in stream)
            chunks_per_client = len(stream) - 1
            uploads.append(str(Path(tmp) / f"client-{i}.stream"))
            with open(uploads[-1], "wb") as fh:
                write_stream(stream, fh)
            del stream

        # Coordinator: public context only, in a process of its own.
        agg_path = str(Path(tmp) / "aggregate.stream")
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            coord = pool.apply(coordinator, (public_bytes, uploads, n, agg_path))
        add_s = [coord[f"add_{i}"] for i in range(k)]
        agg_wall = sum(add_s)
        agg_bytes = Path(agg_path).stat().st_size - 8 * (chunks_per_client + 1)

        # A participant decrypts the aggregate (deserialization included).
        with open(agg_path, "rb") as fh, Timer() as t_dec:
            result = decrypt_vector(secret, read_stream_file(fh), length=n)
        with open(agg_path, "rb") as fh:
            raw = decrypt_vector(secret, read_stream_file(fh), length=n, quantum_bits=None)
    other_share = watch.others()[1]
    expected = np.average(np.stack(updates).astype(np.float64), axis=0, weights=samples)
    error = float(np.max(np.abs(result.astype(np.float64) - expected)))
    raw_error = float(np.max(np.abs(raw.astype(np.float64) - expected)))

    # Plaintext FedAvg: float32 on the wire, numpy weighted sum at the coordinator.
    plain_bytes = n * 4
    plain_best = float("inf")
    for _ in range(5):
        with Timer() as t_plain:
            acc = np.zeros(n, dtype=np.float32)
            for p, u in zip(weights, updates, strict=True):
                acc += np.float32(p) * u
        plain_best = min(plain_best, t_plain.wall)

    ref_s, ref_bytes = (float("nan"), 0) if args.no_reference else asymmetric_reference(weighted[0])

    enc_mean = float(np.mean(enc_s))
    plain_mb = plain_bytes / MB
    ser_mean = float(np.mean(ser_s))
    print()
    print(f"| {'phase (' + f'{n:,} params, {k} clients)':<42} | {'CKKS':>12} | {'plaintext':>12} |")
    print(f"|{'-' * 44}|{'-' * 13}:|{'-' * 13}:|")
    rows = [
        ("encrypt per client (s)", f"{enc_mean:.3f}", "-"),
        ("serialize per client (s)", f"{ser_mean:.3f}", "-"),
        ("bytes per client (MB)", f"{bytes_per_client / MB:.1f}", f"{plain_bytes / MB:.1f}"),
        (f"aggregate, sum of {k} (ms)", f"{agg_wall * 1e3:.0f}", f"{plain_best * 1e3:.2f}"),
        ("  per client after the first (ms)", f"{float(np.mean(add_s[1:])) * 1e3:.0f}", "-"),
        ("serialize the aggregate (s)", f"{coord['serialize']:.3f}", "-"),
        ("aggregate bytes (MB)", f"{agg_bytes / MB:.1f}", f"{plain_bytes / MB:.1f}"),
        ("decrypt the aggregate (s)", f"{t_dec.wall:.3f}", "-"),
        ("coordinator: RSS of the sum, 1 client (MB)", f"{coord['rss_0']:.0f}", f"{plain_mb:.0f}"),
        (f"  ... after {k} clients (MB)", f"{coord['rss_sum_mb']:.0f}", f"{plain_mb:.0f}"),
        ("coordinator process: peak RSS (MB)", f"{coord['peak_rss_mb']:.0f}", "-"),
        ("max abs error vs float64 FedAvg", f"{error:.1e}", "-"),
        ("  ... unrounded (quantum_bits=None)", f"{raw_error:.1e}", "-"),
    ]
    for label, he, plain in rows:
        print(f"| {label:<42} | {he:>12} | {plain:>12} |")
    print()
    print(
        f"bytes: {bytes_per_client / plain_bytes:.1f}x float32 "
        f"({chunks_per_client} ciphertexts of {bytes_per_client / chunks_per_client / 1e3:.0f}"
        " kB)"
        f"; aggregate time {agg_wall / plain_best:.0f}x numpy"
    )
    if not args.no_reference:
        print(
            f"reference, public-key encryption (TenSEAL default): {ref_s:.3f} s per client, "
            f"{ref_bytes / MB:.1f} MB; secret-key encryption is {ref_s / enc_mean:.1f}x faster"
        )
    print(
        f"other processes on the machine while timing: {other_share:.0%} of the CPUs' time; "
        f"CPU/wall while encrypting: {float(np.mean(cpu_share)):.2f} (1.0: uncontended)"
    )
    ok = error <= 1e-4
    result_json = {
        "bench": "he",
        "params": n,
        "clients": k,
        "poly_modulus_degree": DEFAULT_POLY_MODULUS_DEGREE,
        "coeff_mod_bit_sizes": list(DEFAULT_COEFF_MOD_BIT_SIZES),
        "scale_bits": DEFAULT_SCALE_BITS,
        "encrypt_s_per_client": round(enc_mean, 4),
        "encrypt_s_min": round(min(enc_s), 4),
        "serialize_s_per_client": round(ser_mean, 4),
        "bytes_per_client": bytes_per_client,
        "plaintext_bytes_per_client": plain_bytes,
        "aggregate_s": round(agg_wall, 4),
        "aggregate_s_per_extra_client": round(float(np.mean(add_s[1:])), 4),
        "plaintext_aggregate_s": round(plain_best, 5),
        "aggregate_serialize_s": round(coord["serialize"], 4),
        "aggregate_bytes": agg_bytes,
        "decrypt_s": round(t_dec.wall, 4),
        "coordinator_sum_rss_mb_1": round(coord["rss_0"], 1),
        "coordinator_sum_rss_mb": round(coord["rss_sum_mb"], 1),
        "coordinator_peak_rss_mb": round(coord["peak_rss_mb"], 1),
        "max_abs_error": error,
        "max_abs_error_unrounded": raw_error,
        "asymmetric_encrypt_s": None if args.no_reference else round(ref_s, 4),
        "asymmetric_bytes": None if args.no_reference else ref_bytes,
        "secret_context_bytes": len(secret_bytes),
        "public_context_bytes": len(public_bytes),
        "cpu_over_wall_encrypt": round(float(np.mean(cpu_share)), 3),
        "other_cpu_share": round(other_share, 3),
        "ok": ok,
    }
    print(json.dumps(result_json))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
