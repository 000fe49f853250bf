"""The coordinator's side of the protocol: :class:`SecAggServer`, one instance per round."""

from __future__ import annotations

import enum
import functools
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Concatenate, ParamSpec, TypeVar

import numpy as np
import numpy.typing as npt

from fedcare.privacy.secagg import keys, prg, quantize, shamir
from fedcare.privacy.secagg.client import check_adverts, verify_advert
from fedcare.privacy.secagg.config import SecAggConfig
from fedcare.privacy.secagg.errors import SecAggAborted
from fedcare.privacy.secagg.messages import (
    AdvertiseKeys,
    EncryptedShare,
    KeyAdverts,
    MaskedInput,
    MaskingRequest,
    ShareBundle,
    UnmaskRequest,
    UnmaskResponse,
)
from fedcare.privacy.secagg.prg import UIntArray

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _locked(
    method: Callable[Concatenate[SecAggServer, _P], _R],
) -> Callable[Concatenate[SecAggServer, _P], _R]:
    """Run ``method`` under the server's lock (gRPC handlers call from several threads)."""

    def wrapper(self: SecAggServer, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self._lock:
            return method(self, *args, **kwargs)

    functools.update_wrapper(wrapper, method)
    return wrapper


class ServerPhase(enum.Enum):
    """Which messages a :class:`SecAggServer` accepts now; each ``close_*`` moves it on."""

    ADVERTS = "adverts"
    SHARES = "shares"
    INPUTS = "inputs"
    UNMASK = "unmask"
    DONE = "done"
    ABORTED = "aborted"


@dataclass(frozen=True)
class SecAggResult:
    """The unmasked aggregate of one round."""

    #: Sum of the survivors' (weighted, clipped) updates, float64, ``vector_length`` values.
    total: npt.NDArray[np.float64]
    #: Number of inputs in the sum, m = |U3|.
    count: int
    #: Participants whose inputs are in the sum (U3), sorted.
    contributors: tuple[str, ...]
    #: Participants that completed the share step but not the input step (U2 - U3).
    dropped: tuple[str, ...]
    #: Per-coordinate bound on the quantization error of ``total``: m * 2c / L.
    error_bound: float


class SecAggServer:
    """Relays and aggregates one round; learns only the sum of the surviving inputs.

    Phases: adverts -> :meth:`close_adverts` -> shares -> :meth:`close_shares` -> inputs ->
    :meth:`close_inputs` -> unmask -> :meth:`finish`. The coordinator decides when to close
    a phase (all expected messages in, or a deadline); whoever has not sent by then is
    treated as dropped. A ``close_*`` or :meth:`finish` with fewer than t participants
    raises :class:`SecAggAborted`, after which every call raises :class:`RuntimeError`
    (the abort reason is kept in :attr:`abort_reason`).

    Masked inputs are summed as they arrive into one accumulator of ``vector_length``
    words; unmasking streams the masks block by block: memory stays O(model).
    Malformed, duplicate, unknown-sender or late messages raise :class:`ValueError` and
    change nothing. Every public method takes an internal lock, so concurrent transport
    handlers may call it from several threads (the sum is folded one input at a time).
    """

    def __init__(
        self, config: SecAggConfig, *, verify_keys: Mapping[str, keys.VerifyKey] | None = None
    ) -> None:
        """Start a round; ``verify_keys`` makes the server reject unsigned adverts early."""
        self.config = config
        self.phase = ServerPhase.ADVERTS
        self.abort_reason: str | None = None
        self._verify_keys = verify_keys
        self._adverts: dict[str, AdvertiseKeys] = {}
        self._bundles: dict[str, ShareBundle] = {}
        self._u2: tuple[str, ...] = ()
        self._acc: UIntArray | None = None
        self._u3: list[str] = []
        self._responses: dict[str, UnmaskResponse] = {}
        self._request: UnmaskRequest | None = None
        self._lock = threading.RLock()

    # -- helpers ------------------------------------------------------------------------------

    def _expect(self, phase: ServerPhase, step: str) -> None:
        if self.phase is ServerPhase.ABORTED:
            raise RuntimeError(f"{step}: the round was aborted ({self.abort_reason})")
        if self.phase is not phase:
            raise RuntimeError(f"{step} in phase {self.phase.value}, expected {phase.value}")

    def _accepting(self, phase: ServerPhase, what: str, sender: str) -> None:
        if self.phase is ServerPhase.ABORTED:
            raise RuntimeError(f"{what} from {sender!r}: the round was aborted")
        if self.phase is not phase:
            raise ValueError(
                f"{what} from {sender!r} arrived in phase {self.phase.value} (late or early)"
            )

    def _abort(self, reason: str) -> SecAggAborted:
        self.phase = ServerPhase.ABORTED
        self.abort_reason = reason
        self._acc = None
        self._bundles = {}
        return SecAggAborted(reason)

    def _check_quorum(self, count: int, what: str) -> None:
        if count < self.config.threshold:
            raise self._abort(f"only {count} {what}; threshold is {self.config.threshold}")

    # -- step 0 -------------------------------------------------------------------------------

    @_locked
    def add_advert(self, advert: AdvertiseKeys) -> None:
        """Collect one participant's advert (U1 grows)."""
        self._accepting(ServerPhase.ADVERTS, "advert", advert.sender)
        self.config.check_member(advert.sender, "advert sender")
        if advert.sender in self._adverts:
            raise ValueError(f"second advert from {advert.sender!r}")
        if self._verify_keys is not None:
            verify_advert(self.config, advert, self._verify_keys)
        self._adverts[advert.sender] = advert

    @_locked
    def close_adverts(self) -> KeyAdverts:
        """End step 0; the returned message goes to every advertiser (U1 >= t, else abort)."""
        self._expect(ServerPhase.ADVERTS, "close_adverts")
        self._check_quorum(len(self._adverts), "participants advertised keys")
        adverts = KeyAdverts(tuple(self._adverts[p] for p in sorted(self._adverts)))
        try:
            check_adverts(self.config, adverts, None)
        except ValueError as exc:
            raise self._abort(f"unusable adverts: {exc}") from None
        self.phase = ServerPhase.SHARES
        return adverts

    # -- step 1 -------------------------------------------------------------------------------

    @_locked
    def add_shares(self, bundle: ShareBundle) -> None:
        """Collect one participant's encrypted shares (U2 grows); the server cannot read them."""
        self._accepting(ServerPhase.SHARES, "share bundle", bundle.sender)
        if bundle.sender not in self._adverts:
            raise ValueError(f"share bundle from {bundle.sender!r}, which did not advertise keys")
        if bundle.sender in self._bundles:
            raise ValueError(f"second share bundle from {bundle.sender!r}")
        receivers = {s.receiver for s in bundle.shares}
        expected = self._adverts.keys() - {bundle.sender}
        if receivers != expected:
            raise ValueError(
                f"share bundle of {bundle.sender!r} is addressed to {sorted(receivers)}, "
                f"expected every other advertiser {sorted(expected)}"
            )
        self._bundles[bundle.sender] = bundle

    @_locked
    def close_shares(self) -> dict[str, MaskingRequest]:
        """End step 1; returns, for each participant of U2, the request to send it."""
        self._expect(ServerPhase.SHARES, "close_shares")
        self._check_quorum(len(self._bundles), "participants sent their shares")
        u2 = tuple(sorted(self._bundles))
        inbox: dict[str, list[EncryptedShare]] = {p: [] for p in u2}
        for sender in u2:
            for share in self._bundles[sender].shares:
                if share.receiver in inbox:
                    inbox[share.receiver].append(share)
        self._bundles = {}
        self._u2 = u2
        self._acc = np.zeros(self.config.vector_length, dtype=self.config.dtype)
        self.phase = ServerPhase.INPUTS
        return {p: MaskingRequest(p, u2, tuple(inbox[p])) for p in u2}

    # -- step 2 -------------------------------------------------------------------------------

    @_locked
    def add_masked_input(self, masked: MaskedInput) -> None:
        """Add one masked input to the running sum mod 2^k (U3 grows); nothing else is kept."""
        self._accepting(ServerPhase.INPUTS, "masked input", masked.sender)
        cfg = self.config
        if masked.sender not in self._u2:
            raise ValueError(
                f"masked input from {masked.sender!r}, which did not complete the share step"
            )
        if masked.sender in self._u3:
            raise ValueError(f"second masked input from {masked.sender!r}")
        if masked.modulus_bits != cfg.modulus_bits:
            raise ValueError(
                f"masked input of {masked.sender!r} is mod 2^{masked.modulus_bits}, "
                f"expected 2^{cfg.modulus_bits}"
            )
        if masked.length != cfg.vector_length:
            raise ValueError(
                f"masked input of {masked.sender!r} has {masked.length} values, "
                f"expected {cfg.vector_length}"
            )
        assert self._acc is not None
        np.add(self._acc, masked.vector(), out=self._acc)
        self._u3.append(masked.sender)

    @_locked
    def close_inputs(self) -> UnmaskRequest:
        """End step 2; the returned request goes to every participant in U3 (U3 >= t)."""
        self._expect(ServerPhase.INPUTS, "close_inputs")
        self._check_quorum(len(self._u3), "masked inputs arrived")
        survivors = tuple(sorted(self._u3))
        dropped = tuple(sorted(set(self._u2) - set(survivors)))
        self._request = UnmaskRequest(survivors, dropped)
        self.phase = ServerPhase.UNMASK
        return self._request

    # -- step 3 -------------------------------------------------------------------------------

    @_locked
    def add_unmask_response(self, response: UnmaskResponse) -> None:
        """Collect one survivor's shares; it must hold exactly the shares requested."""
        self._accepting(ServerPhase.UNMASK, "unmask response", response.sender)
        assert self._request is not None
        if response.sender not in self._request.survivors:
            raise ValueError(f"unmask response from {response.sender!r}, which is not a survivor")
        if response.sender in self._responses:
            raise ValueError(f"second unmask response from {response.sender!r}")
        if set(response.self_mask_shares) != set(self._request.survivors) or set(
            response.key_shares
        ) != set(self._request.dropped):
            raise ValueError(
                f"unmask response of {response.sender!r} does not hold the requested shares"
            )
        self._responses[response.sender] = response

    @property
    def responses(self) -> int:
        """Number of unmask responses received so far."""
        return len(self._responses)

    @_locked
    def finish(self) -> SecAggResult:
        """Reconstruct the masks, remove them, and return the dequantized sum.

        Needs at least t unmask responses; otherwise, or if the shares are inconsistent
        (a reconstructed key does not match its advert), raises :class:`SecAggAborted` and
        returns no sum.
        """
        self._expect(ServerPhase.UNMASK, "finish")
        cfg = self.config
        self._check_quorum(len(self._responses), "survivors answered the unmask request")
        assert self._acc is not None and self._request is not None
        acc = self._acc
        index = {p: cfg.index_of(p) for p in self._responses}
        survivors, dropped = self._request.survivors, self._request.dropped
        try:
            for owner in survivors:
                seed = shamir.combine(
                    {index[w]: r.self_mask_shares[owner] for w, r in self._responses.items()},
                    cfg.threshold,
                )
                prg.add_mask(acc, seed, cfg.modulus_bits, sign=-1)
            for owner in dropped:
                secret = shamir.combine(
                    {index[w]: r.key_shares[owner] for w, r in self._responses.items()},
                    cfg.threshold,
                )
                s_key = keys.load_private(secret)
                if keys.public_bytes(s_key) != self._adverts[owner].s_public:
                    raise ValueError(
                        f"the reconstructed key of {owner!r} is not its advertised key"
                    )
                for peer in survivors:
                    seed = keys.mask_seed(cfg, s_key, self._adverts[peer].s_public)
                    # The survivor added +PRG if it sorts before the dropped one, else -PRG.
                    prg.add_mask(acc, seed, cfg.modulus_bits, sign=-1 if peer < owner else 1)
        except ValueError as exc:
            raise self._abort(f"cannot unmask: {exc}") from None
        prg.reduce(acc, cfg.modulus_bits)
        m = len(survivors)
        total = quantize.dequantize(acc, m, cfg.clip_range, cfg.levels)
        self._acc = None
        self.phase = ServerPhase.DONE
        return SecAggResult(
            total=total,
            count=m,
            contributors=tuple(survivors),
            dropped=tuple(dropped),
            error_bound=quantize.error_bound(m, cfg.clip_range, cfg.levels),
        )
