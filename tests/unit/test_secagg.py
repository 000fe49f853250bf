"""Secure aggregation by masking (fedcare.privacy.secagg): full in-memory protocol runs.

Every message crosses a simulated coordinator as bytes (``to_bytes`` -> ``from_bytes``), so
the runs also exercise the wire format. Five participants, 10k-value updates.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from fedcare.privacy.secagg import (
    AdvertiseKeys,
    EncryptedShare,
    KeyAdverts,
    MaskedInput,
    MaskingRequest,
    SecAggAborted,
    SecAggClient,
    SecAggConfig,
    SecAggRefused,
    SecAggResult,
    SecAggServer,
    ServerPhase,
    ShareBundle,
    UnmaskRequest,
    UnmaskResponse,
    VerifyKey,
    decode_message,
    keys,
    prg,
    quantize,
    shamir,
)
from fedcare.privacy.secagg import client as client_module
from fedcare.spec.privacy import SecureAggregationSpec

IDS = tuple(f"hospital-{c}" for c in "abcde")
SIZE = 10_000
CLIP = 0.5
F32 = npt.NDArray[np.float32]
#: Chi-square critical value at p = 0.001 for 255 degrees of freedom (256 byte values),
#: scipy.stats.chi2.ppf(0.999, 255) = 330.52 (fixed here so the test needs no scipy).
CHI2_CRITICAL_0_001 = 330.52
#: ... and at p = 1e-12: plaintext must be rejected far beyond this.
CHI2_CRITICAL_1E_12 = 447.51


def _chi2_bytes(data: bytes) -> float:
    """Pearson's chi-square statistic of the byte values of ``data`` against uniform."""
    counts = np.bincount(np.frombuffer(data, dtype=np.uint8), minlength=256).astype(np.float64)
    expected = len(data) / 256.0
    return float(np.sum((counts - expected) ** 2) / expected)


def _config(**overrides: object) -> SecAggConfig:
    base: dict[str, object] = {
        "job_id": "mnist-fedavg",
        "round_number": 7,
        "participants": IDS,
        "vector_length": SIZE,
        "threshold": 3,
        "clip_range": CLIP,
        "modulus_bits": 32,
    }
    base.update(overrides)
    return SecAggConfig(**base)  # type: ignore[arg-type]


def _updates(seed: int = 0, ids: Collection[str] = IDS) -> dict[str, F32]:
    """Weighted updates p_i * delta_i, inside the clipping range."""
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.ones(len(ids)))
    return {
        p: (w * rng.normal(0.0, 0.4, SIZE)).clip(-CLIP, CLIP).astype(np.float32)
        for p, w in zip(sorted(ids), weights, strict=True)
    }


def _wire(msg: object) -> object:
    """What the coordinator relays: bytes in, a freshly decoded message out."""
    return decode_message(msg.to_bytes())  # type: ignore[attr-defined]


@dataclass
class Run:
    """Everything a protocol run produced or the coordinator saw."""

    clients: dict[str, SecAggClient]
    server: SecAggServer
    masked: dict[str, bytes] = field(default_factory=dict)
    bundles: dict[str, ShareBundle] = field(default_factory=dict)
    requests: dict[str, MaskingRequest] = field(default_factory=dict)
    unmask: UnmaskRequest | None = None
    result: SecAggResult | None = None


def _run(
    cfg: SecAggConfig,
    updates: Mapping[str, F32],
    *,
    drop_before_shares: Collection[str] = (),
    drop_before_input: Collection[str] = (),
    drop_before_unmask: Collection[str] = (),
    finish: bool = True,
    client_kwargs: Callable[[str], dict[str, Any]] | None = None,
    server_verify: Mapping[str, VerifyKey] | None = None,
) -> Run:
    """One round in memory; the three ``drop_*`` sets stop answering from that step on."""
    clients = {
        p: SecAggClient(
            cfg, p, rng=np.random.default_rng(i), **(client_kwargs(p) if client_kwargs else {})
        )
        for i, p in enumerate(cfg.participants)
    }
    server = SecAggServer(cfg, verify_keys=server_verify)
    run = Run(clients, server)
    for p, c in clients.items():
        advert = _wire(c.advertise())
        assert isinstance(advert, AdvertiseKeys) and advert.sender == p
        server.add_advert(advert)
    adverts = _wire(server.close_adverts())
    assert isinstance(adverts, KeyAdverts)
    alive = [p for p in clients if p not in drop_before_shares]
    for p in alive:
        bundle = _wire(clients[p].share_keys(adverts))
        assert isinstance(bundle, ShareBundle)
        run.bundles[p] = bundle
        server.add_shares(bundle)
    requests = server.close_shares()
    alive = [p for p in alive if p not in drop_before_input]
    for p in alive:
        request = _wire(requests[p])
        assert isinstance(request, MaskingRequest)
        run.requests[p] = request
        masked = _wire(clients[p].masked_input(request, updates[p]))
        assert isinstance(masked, MaskedInput)
        run.masked[p] = masked.data
        server.add_masked_input(masked)
    unmask = _wire(server.close_inputs())
    assert isinstance(unmask, UnmaskRequest)
    run.unmask = unmask
    for p in alive:
        if p not in drop_before_unmask:
            response = _wire(clients[p].unmask(unmask))
            assert isinstance(response, UnmaskResponse)
            server.add_unmask_response(response)
    if finish:
        run.result = server.finish()
    return run


def _plain_sum(updates: Mapping[str, F32], ids: Collection[str]) -> npt.NDArray[np.float64]:
    total = np.zeros(SIZE, np.float64)
    for p in ids:
        total += updates[p]
    return total


def _assert_sum(result: SecAggResult, cfg: SecAggConfig, expected: npt.NDArray[np.float64]) -> None:
    bound = result.count * 2.0 * cfg.clip_range / cfg.levels  # m * 2c / L, computed here
    assert result.error_bound == pytest.approx(bound)
    err = float(np.max(np.abs(result.total - expected)))
    assert err <= bound + 1e-12, f"max error {err} above the quantization bound {bound}"


# -- (a) correctness -------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [16, 32, 48])
def test_sum_equals_plaintext_sum_within_quantization_error(bits: int) -> None:
    cfg = _config(modulus_bits=bits)
    updates = _updates()
    run = _run(cfg, updates)
    assert run.result is not None
    assert run.result.count == 5 and run.result.contributors == IDS and run.result.dropped == ()
    _assert_sum(run.result, cfg, _plain_sum(updates, IDS))
    assert run.server.phase is ServerPhase.DONE


def test_clipping_is_applied_before_quantization() -> None:
    cfg = _config()
    updates = {p: np.full(SIZE, 3.0 if i % 2 else -7.0, np.float32) for i, p in enumerate(IDS)}
    run = _run(cfg, updates)
    assert run.result is not None
    expected = _plain_sum({p: np.clip(u, -CLIP, CLIP) for p, u in updates.items()}, IDS)
    _assert_sum(run.result, cfg, expected)


def test_stochastic_rounding_is_unbiased_and_bounded() -> None:
    levels = quantize.levels(8, 1)
    x = np.full(200_000, 0.1234, np.float32)
    q = quantize.quantize(x, 1.0, levels, 16, np.random.default_rng(1))
    assert q.min() >= 0 and q.max() <= levels
    decoded = quantize.dequantize(q, 1, 1.0, levels)
    assert np.all(np.abs(decoded - 0.1234) < 2.0 / levels)
    assert abs(decoded.mean() - 0.1234) < 0.01 * (2.0 / levels)  # about 9 standard errors
    with pytest.raises(ValueError, match="NaN"):
        quantize.quantize(np.array([np.nan], np.float32), 1.0, levels, 16)


def test_config_from_spec_defaults_to_majority_threshold() -> None:
    spec = SecureAggregationSpec.model_validate(
        {"mode": "masking", "clipRange": 2.0, "modulusBits": 40}
    )
    cfg = SecAggConfig.from_spec(
        spec, job_id="j", round_number=0, participants=reversed(IDS), vector_length=4
    )
    assert cfg.threshold == 3 and cfg.is_majority_threshold
    assert cfg.participants == IDS and cfg.index_of(IDS[0]) == 1 and cfg.index_of(IDS[4]) == 5
    assert cfg.clip_range == 2.0 and cfg.dtype == np.dtype("<u8")
    assert cfg.levels * 5 <= 2**40 - 1 < (cfg.levels + 1) * 5
    too_high = SecureAggregationSpec.model_validate({"mode": "masking", "threshold": 9})
    with pytest.raises(ValueError, match="threshold"):
        SecAggConfig.from_spec(
            too_high, job_id="j", round_number=0, participants=IDS, vector_length=4
        )


# -- (b) what the server sees ----------------------------------------------------------------


@pytest.fixture
def seeded_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Derive the clients' X25519 keys and self-mask seeds from a fixed seed.

    With fresh OS randomness, five tests at p = 0.001 would fail about once in 200 runs;
    with fixed key material the uniformity test is reproducible. Nothing else changes.
    """
    rng = np.random.default_rng(20170101)

    def token_bytes(n: int) -> bytes:
        return rng.bytes(n)

    monkeypatch.setattr(
        keys, "generate_key", lambda: X25519PrivateKey.from_private_bytes(rng.bytes(32))
    )
    monkeypatch.setattr(client_module, "secrets", SimpleNamespace(token_bytes=token_bytes))


@pytest.mark.usefixtures("seeded_secrets")
def test_masked_inputs_look_uniform_and_differ_from_plaintext() -> None:
    cfg = _config()
    updates = _updates(1)
    run = _run(cfg, updates)
    for i, p in enumerate(IDS):
        assert len(run.masked[p]) == SIZE * 4
        chi2 = _chi2_bytes(run.masked[p])
        assert chi2 < CHI2_CRITICAL_0_001, f"{p}: chi-square {chi2:.1f} on 255 dof"
        # The client's quantized plaintext (same stochastic-rounding stream as in the run).
        plain = quantize.quantize(
            updates[p], CLIP, cfg.levels, cfg.modulus_bits, np.random.default_rng(i)
        )
        masked = np.frombuffer(run.masked[p], dtype=cfg.dtype)
        assert np.mean(masked == plain) < 0.001
        # The test has power: the plaintext itself is far from uniform.
        assert _chi2_bytes(plain.tobytes()) > CHI2_CRITICAL_1E_12
        # And the floats are not in there either.
        assert updates[p].tobytes()[:16] not in run.masked[p]


# -- (c), (d) dropouts -------------------------------------------------------------------------


def test_drop_after_masked_input_keeps_its_input_in_the_sum() -> None:
    cfg = _config()
    updates = _updates(2)
    gone = IDS[2]
    run = _run(cfg, updates, drop_before_unmask={gone})
    assert run.result is not None and run.result.count == 5
    assert run.unmask is not None and run.unmask.dropped == ()
    _assert_sum(run.result, cfg, _plain_sum(updates, IDS))


def test_drop_before_masked_input_removes_its_pairwise_masks() -> None:
    cfg = _config()
    updates = _updates(3)
    gone = IDS[1]
    run = _run(cfg, updates, drop_before_input={gone})
    assert run.result is not None
    assert run.result.count == 4 and run.result.dropped == (gone,)
    assert gone not in run.result.contributors
    _assert_sum(run.result, cfg, _plain_sum(updates, set(IDS) - {gone}))


def test_drops_at_every_step_at_once() -> None:
    cfg = _config(threshold=2)
    updates = _updates(4)
    run = _run(
        cfg,
        updates,
        drop_before_shares={IDS[4]},
        drop_before_input={IDS[0]},
        drop_before_unmask={IDS[3]},
    )
    assert run.result is not None
    assert run.result.contributors == (IDS[1], IDS[2], IDS[3]) and run.result.dropped == (IDS[0],)
    _assert_sum(run.result, cfg, _plain_sum(updates, run.result.contributors))


# -- (e) too few -----------------------------------------------------------------------------


def test_fewer_than_t_masked_inputs_aborts_without_a_sum() -> None:
    cfg = _config()
    with pytest.raises(SecAggAborted, match="only 2 masked inputs arrived; threshold is 3") as e:
        _run(cfg, _updates(), drop_before_input=set(IDS[:3]))
    assert "threshold" in e.value.reason


def test_fewer_than_t_unmask_responses_aborts_without_a_sum() -> None:
    cfg = _config()
    run = _run(cfg, _updates(), drop_before_unmask=set(IDS[:3]), finish=False)
    assert run.server.responses == 2
    with pytest.raises(SecAggAborted, match="only 2 survivors answered"):
        run.server.finish()
    assert run.server.phase is ServerPhase.ABORTED and run.result is None
    with pytest.raises(RuntimeError, match="aborted"):
        run.server.finish()


def test_fewer_than_t_at_the_key_steps_aborts() -> None:
    cfg = _config(participants=IDS[:3], threshold=3)
    server = SecAggServer(cfg)
    server.add_advert(SecAggClient(cfg, IDS[0]).advertise())
    with pytest.raises(SecAggAborted, match="only 1 participants advertised keys"):
        server.close_adverts()
    with pytest.raises(SecAggAborted, match="only 2 participants sent their shares"):
        _run(cfg, _updates(ids=IDS[:3]), drop_before_shares={IDS[2]})


# -- (f) refusing to unmask an individual input ----------------------------------------------


def test_client_refuses_both_shares_of_one_participant() -> None:
    cfg = _config()
    run = _run(cfg, _updates(), drop_before_unmask=set(IDS), finish=False)
    client = run.clients[IDS[0]]
    greedy = UnmaskRequest(survivors=IDS, dropped=(IDS[3],))
    with pytest.raises(SecAggRefused, match="both the self-mask and the key share"):
        client.unmask(_wire(greedy))  # type: ignore[arg-type]
    with pytest.raises(SecAggRefused, match="sent its input"):
        client.unmask(UnmaskRequest(survivors=IDS[1:], dropped=(IDS[0],)))
    with pytest.raises(ValueError, match="partition"):
        client.unmask(UnmaskRequest(survivors=IDS[:4], dropped=()))
    response = client.unmask(UnmaskRequest(survivors=IDS, dropped=()))
    assert set(response.self_mask_shares) == set(IDS) and not response.key_shares
    with pytest.raises(SecAggRefused, match="already answered"):
        client.unmask(UnmaskRequest(survivors=IDS[:4], dropped=(IDS[4],)))


# -- (g) shares are sealed end to end ---------------------------------------------------------


def _after_share_step(
    cfg: SecAggConfig,
) -> tuple[dict[str, SecAggClient], dict[str, MaskingRequest], dict[str, AdvertiseKeys]]:
    clients = {p: SecAggClient(cfg, p) for p in cfg.participants}
    server = SecAggServer(cfg)
    adverts = {p: c.advertise() for p, c in clients.items()}
    for advert in adverts.values():
        server.add_advert(advert)
    broadcast = server.close_adverts()
    for c in clients.values():
        server.add_shares(c.share_keys(broadcast))
    return clients, server.close_shares(), adverts


def _share_from(request: MaskingRequest, sender: str) -> EncryptedShare:
    return next(s for s in request.shares if s.sender == sender)


def _flip(data: bytes) -> bytes:
    out = bytearray(data)
    out[5] ^= 1
    return bytes(out)


def test_shares_are_unreadable_to_the_server() -> None:
    cfg = _config()
    clients, requests, adverts = _after_share_step(cfg)
    sender, receiver = IDS[0], IDS[1]
    share = _share_from(requests[receiver], sender)
    ad = keys.share_associated_data(cfg, sender, receiver)
    # All the server can do: agree a key of its own with the receiver's public channel key.
    forged = keys.channel_key(cfg, keys.generate_key(), adverts[receiver].c_public)
    for wrong in (forged, bytes(32)):
        with pytest.raises(ValueError, match="failed authentication"):
            keys.decrypt(wrong, share.nonce, share.ciphertext, ad)
    # The right key (test-only access to the sender's private channel key) opens it...
    right = keys.channel_key(cfg, clients[sender]._c_key, adverts[receiver].c_public)
    plain = keys.decrypt(right, share.nonce, share.ciphertext, ad)
    assert len(plain) == 2 * shamir.SHARE_BYTES
    assert plain[: shamir.SHARE_BYTES] not in share.ciphertext
    # ...but only for this sender, receiver, job and round (all in the associated data).
    for other in (
        keys.share_associated_data(cfg, sender, IDS[2]),
        keys.share_associated_data(cfg, receiver, sender),
        keys.share_associated_data(_config(round_number=8), sender, receiver),
        keys.share_associated_data(_config(job_id="other-job"), sender, receiver),
    ):
        with pytest.raises(ValueError, match="failed authentication"):
            keys.decrypt(right, share.nonce, share.ciphertext, other)


def test_tampered_or_swapped_shares_are_rejected_by_the_receiver() -> None:
    cfg = _config()
    clients, requests, _ = _after_share_step(cfg)
    receiver = IDS[1]
    request = requests[receiver]
    zeros = np.zeros(SIZE, np.float32)
    flipped = replace(
        request,
        shares=tuple(
            replace(s, ciphertext=_flip(s.ciphertext)) if s.sender == IDS[0] else s
            for s in request.shares
        ),
    )
    with pytest.raises(ValueError, match="share from 'hospital-a': ciphertext failed auth"):
        clients[receiver].masked_input(flipped, zeros)
    a, c = _share_from(request, IDS[0]), _share_from(request, IDS[2])
    swap = {IDS[0]: c, IDS[2]: a}
    swapped = replace(
        request,
        shares=tuple(
            replace(s, nonce=swap[s.sender].nonce, ciphertext=swap[s.sender].ciphertext)
            if s.sender in swap
            else s
            for s in request.shares
        ),
    )
    with pytest.raises(ValueError, match="failed authentication"):
        clients[receiver].masked_input(swapped, zeros)
    missing = replace(request, shares=request.shares[1:])
    with pytest.raises(ValueError, match="do not match the other survivors"):
        clients[receiver].masked_input(missing, zeros)
    clients[receiver].masked_input(request, zeros)  # the genuine request still works


def test_clients_with_different_configs_cannot_open_each_others_shares() -> None:
    cfg = _config()
    other = _config(clip_range=0.25)
    clients = {p: SecAggClient(other if p == IDS[1] else cfg, p) for p in IDS}
    server = SecAggServer(cfg)
    for c in clients.values():
        server.add_advert(c.advertise())
    broadcast = server.close_adverts()
    for c in clients.values():
        server.add_shares(c.share_keys(broadcast))
    requests = server.close_shares()
    with pytest.raises(ValueError, match="failed authentication"):
        clients[IDS[0]].masked_input(requests[IDS[0]], np.zeros(SIZE, np.float32))


# -- signed adverts (the active-variant mitigation against key substitution) -----------------


@pytest.mark.parametrize("curve", ["ed25519", "p256"])
def test_signed_adverts_verify_and_substitution_is_rejected(curve: str) -> None:
    cfg = _config()
    signing = {
        p: Ed25519PrivateKey.generate()
        if curve == "ed25519"
        else ec.generate_private_key(ec.SECP256R1())
        for p in IDS
    }
    verify: dict[str, VerifyKey] = {p: k.public_key() for p, k in signing.items()}
    updates = _updates(5)
    run = _run(
        cfg,
        updates,
        client_kwargs=lambda p: {"signing_key": signing[p], "verify_keys": verify},
        server_verify=verify,
    )
    assert run.result is not None
    _assert_sum(run.result, cfg, _plain_sum(updates, IDS))

    # A coordinator that swaps in its own keys for hospital-c cannot get them accepted.
    clients = {p: SecAggClient(cfg, p, signing_key=signing[p], verify_keys=verify) for p in IDS}
    adverts = [c.advertise() for c in clients.values()]
    mitm = SecAggClient(cfg, IDS[2]).advertise()
    forged = replace(mitm, signature=adverts[2].signature)
    with pytest.raises(ValueError, match="invalid signature"):
        clients[IDS[0]].share_keys(KeyAdverts((*adverts[:2], forged, *adverts[3:])))
    with pytest.raises(ValueError, match="invalid signature"):
        SecAggServer(cfg, verify_keys=verify).add_advert(mitm)
    # Its own advert, substituted, is noticed by the client even without signatures.
    plain = {p: SecAggClient(cfg, p) for p in IDS}
    plain_adverts = [c.advertise() for c in plain.values()]
    plain_adverts[0] = SecAggClient(cfg, IDS[0]).advertise()
    with pytest.raises(ValueError, match="unchanged"):
        plain[IDS[0]].share_keys(KeyAdverts(tuple(plain_adverts)))


# -- messages --------------------------------------------------------------------------------


def test_messages_round_trip_and_reject_malformed_bytes() -> None:
    cfg = _config()
    client = SecAggClient(cfg, IDS[0])
    advert = client.advertise()
    data = advert.to_bytes()
    assert AdvertiseKeys.from_bytes(data) == advert == decode_message(data)
    with pytest.raises(ValueError, match="trailing"):
        AdvertiseKeys.from_bytes(data + b"x")
    with pytest.raises(ValueError, match="truncated"):
        AdvertiseKeys.from_bytes(data[:-1])
    with pytest.raises(ValueError, match="bad magic"):
        decode_message(b"XYZ" + data[3:])
    with pytest.raises(ValueError, match="expected 1"):
        AdvertiseKeys.from_bytes(UnmaskRequest(IDS, ()).to_bytes())
    with pytest.raises(ValueError, match="c_public must be 32 bytes, got 31"):
        AdvertiseKeys(IDS[0], advert.c_public[:31], advert.s_public)
    with pytest.raises(ValueError, match="nonce must be 12 bytes"):
        EncryptedShare(IDS[0], IDS[1], bytes(11), bytes(148))
    with pytest.raises(ValueError, match="ciphertext must be 148 bytes"):
        EncryptedShare(IDS[0], IDS[1], bytes(12), bytes(147))
    with pytest.raises(ValueError, match="not a vector of 4-byte words"):
        MaskedInput(IDS[0], 32, bytes(10))
    with pytest.raises(ValueError, match="duplicates"):
        UnmaskRequest((IDS[0], IDS[0]), ())
    with pytest.raises(ValueError, match="share of 'hospital-a' must be 66 bytes"):
        UnmaskResponse(IDS[0], {IDS[0]: bytes(65)}, {})
    response = UnmaskResponse(IDS[0], {IDS[1]: bytes(66)}, {IDS[2]: bytes(range(66))})
    assert UnmaskResponse.from_bytes(response.to_bytes()) == response


def test_server_rejects_unknown_duplicate_and_late_messages() -> None:
    cfg = _config()
    server = SecAggServer(cfg)
    clients = {p: SecAggClient(cfg, p) for p in IDS}
    with pytest.raises(ValueError, match="'mallory' is not a participant"):
        server.add_advert(AdvertiseKeys("mallory", bytes(range(32)), bytes(range(1, 33))))
    adverts = {p: c.advertise() for p, c in clients.items()}
    for a in adverts.values():
        server.add_advert(a)
    with pytest.raises(ValueError, match="second advert"):
        server.add_advert(adverts[IDS[0]])
    broadcast = server.close_adverts()
    with pytest.raises(ValueError, match="late or early"):
        server.add_advert(adverts[IDS[0]])
    bundles = {p: c.share_keys(broadcast) for p, c in clients.items()}
    with pytest.raises(ValueError, match="addressed to"):
        server.add_shares(replace(bundles[IDS[0]], shares=bundles[IDS[0]].shares[1:]))
    for b in bundles.values():
        server.add_shares(b)
    requests = server.close_shares()
    masked = clients[IDS[0]].masked_input(requests[IDS[0]], np.zeros(SIZE, np.float32))
    with pytest.raises(ValueError, match="has 9999 values"):
        server.add_masked_input(replace(masked, data=masked.data[:-4]))
    with pytest.raises(ValueError, match="mod 2"):
        server.add_masked_input(replace(masked, modulus_bits=48))
    server.add_masked_input(masked)
    with pytest.raises(ValueError, match="second masked input"):
        server.add_masked_input(masked)
    with pytest.raises(RuntimeError, match="expected unmask"):
        server.finish()


# -- building blocks -------------------------------------------------------------------------


def test_shamir_any_t_shares_recover_and_inconsistency_is_detected() -> None:
    secret = bytes(range(32))
    shares = shamir.split(secret, range(1, 6), 3)
    for subset in ((1, 2, 3), (1, 4, 5), (2, 3, 5)):
        assert shamir.combine({x: shares[x] for x in subset}, 3) == secret
    assert shamir.combine(shares, 3) == secret
    with pytest.raises(ValueError, match="2 shares, 3 needed"):
        shamir.combine({1: shares[1], 2: shares[2]}, 3)
    bad = dict(shares)
    bad[5] = shamir.encode_share((shamir.decode_share(bad[5]) + 1) % shamir.PRIME)
    with pytest.raises(ValueError, match="inconsistent"):
        shamir.combine(bad, 3)
    # t - 1 shares say nothing: interpolating them as if t = 2 gives an unrelated value.
    assert shamir._interpolate_at_zero(
        [(1, shamir.decode_share(shares[1])), (2, shamir.decode_share(shares[2]))]
    ) != int.from_bytes(secret, "big")


def test_prg_is_deterministic_reduced_and_streams_across_blocks() -> None:
    seed = bytes(range(32))
    n = prg.BLOCK * 2 + 17
    a = prg.expand(seed, n, 32)
    assert a.dtype == np.dtype("<u4") and np.array_equal(a, prg.expand(seed, n, 32))
    assert not np.array_equal(a, prg.expand(bytes(32), n, 32))
    assert np.array_equal(prg.expand(seed, 100, 32), a[:100])  # one stream, block boundaries
    b = prg.expand(seed, n, 20)
    assert int(b.max()) < 2**20 and np.array_equal(b, a & (2**20 - 1))
    assert prg.expand(seed, 10, 48).dtype == np.dtype("<u8")
    v = np.zeros(n, np.uint32)
    prg.add_mask(v, seed, 32, 1)
    prg.add_mask(v, seed, 32, -1)
    assert not v.any()


def test_server_folds_inputs_from_concurrent_handlers() -> None:
    """gRPC handlers run in a thread pool: concurrent add_masked_input calls must all count."""
    cfg = _config()
    updates = _updates(6)
    clients = {p: SecAggClient(cfg, p) for p in IDS}
    server = SecAggServer(cfg)
    for c in clients.values():
        server.add_advert(c.advertise())
    broadcast = server.close_adverts()
    for c in clients.values():
        server.add_shares(c.share_keys(broadcast))
    requests = server.close_shares()
    masked = [clients[p].masked_input(requests[p], updates[p]) for p in IDS]
    with ThreadPoolExecutor(max_workers=5) as pool:
        list(pool.map(server.add_masked_input, masked))
    unmask = server.close_inputs()
    for c in clients.values():
        server.add_unmask_response(c.unmask(unmask))
    _assert_sum(server.finish(), cfg, _plain_sum(updates, IDS))
