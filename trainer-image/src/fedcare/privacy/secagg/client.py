"""The participant's side of the protocol: :class:`SecAggClient`, one instance per round."""

from __future__ import annotations

import enum
import secrets
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from fedcare.privacy.secagg import keys, prg, quantize, shamir
from fedcare.privacy.secagg.config import SecAggConfig
from fedcare.privacy.secagg.errors import SecAggAborted, SecAggRefused
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


class ClientPhase(enum.Enum):
    """Where a :class:`SecAggClient` is in its round; each method moves it one step."""

    NEW = "new"
    ADVERTISED = "advertised"
    SHARED = "shared"
    MASKED = "masked"
    DONE = "done"


def check_adverts(
    config: SecAggConfig,
    adverts: KeyAdverts,
    verify_keys: Mapping[str, keys.VerifyKey] | None,
) -> dict[str, AdvertiseKeys]:
    """Validate the adverts of a round (members, distinct keys, signatures); key by sender.

    Raises :class:`ValueError` for a non-member, a reused public key or a bad or missing
    signature (when ``verify_keys`` is given); :class:`SecAggAborted` if fewer than t.
    """
    by_sender: dict[str, AdvertiseKeys] = {}
    seen_keys: set[bytes] = set()
    for advert in adverts.adverts:
        config.check_member(advert.sender, "advert sender")
        if advert.c_public in seen_keys or advert.s_public in seen_keys:
            raise ValueError(f"advert of {advert.sender!r} reuses another advert's public key")
        seen_keys.update((advert.c_public, advert.s_public))
        if verify_keys is not None:
            verify_advert(config, advert, verify_keys)
        by_sender[advert.sender] = advert
    if len(by_sender) < config.threshold:
        raise SecAggAborted(
            f"only {len(by_sender)} participants advertised keys; threshold is {config.threshold}"
        )
    return by_sender


def verify_advert(
    config: SecAggConfig, advert: AdvertiseKeys, verify_keys: Mapping[str, keys.VerifyKey]
) -> None:
    """Raise :class:`ValueError` unless ``advert`` is signed by its sender's long-term key."""
    key = verify_keys.get(advert.sender)
    if key is None:
        raise ValueError(f"no verification key for {advert.sender!r}")
    payload = keys.advert_payload(config, advert.sender, advert.c_public, advert.s_public)
    if not advert.signature or not keys.verify(key, payload, advert.signature):
        raise ValueError(f"advert of {advert.sender!r} has a missing or invalid signature")


class SecAggClient:
    """One participant in one secure-aggregation round (Bonawitz et al. 2017, semi-honest).

    Call :meth:`advertise`, :meth:`share_keys`, :meth:`masked_input` and :meth:`unmask` in
    this order, at most once each; a call out of order raises :class:`RuntimeError`. A
    client that dropped simply stops being called. Secrets (private keys, the self-mask
    seed, the shares of others) live only in this object and never leave it unencrypted
    except as the shares :meth:`unmask` reveals.

    ``signing_key`` signs the advert (Ed25519, or the ECDSA key of the site certificate);
    ``verify_keys`` (participant -> public key) makes :meth:`share_keys` reject adverts
    that are not signed by their sender, so a coordinator cannot substitute keys.
    """

    def __init__(
        self,
        config: SecAggConfig,
        participant_id: str,
        *,
        signing_key: keys.SigningKey | None = None,
        verify_keys: Mapping[str, keys.VerifyKey] | None = None,
        rng: np.random.Generator | None = None,
    ) -> None:
        """Prepare a client; ``rng`` drives stochastic rounding only (not key material)."""
        config.check_member(participant_id)
        self.config = config
        self.participant_id = participant_id
        self.phase = ClientPhase.NEW
        self._signing_key = signing_key
        self._verify_keys = verify_keys
        self._rng = rng
        self._c_key = keys.generate_key()
        self._s_key = keys.generate_key()
        self._self_seed = b""
        self._adverts: dict[str, AdvertiseKeys] = {}
        #: Shares held for each owner (own shares included): (s_sk share, b share).
        self._held: dict[str, tuple[bytes, bytes]] = {}
        self._u2: frozenset[str] = frozenset()

    def _expect(self, phase: ClientPhase, step: str) -> None:
        if self.phase is not phase:
            raise RuntimeError(f"{step} called in phase {self.phase.value}, expected {phase.value}")

    def advertise(self) -> AdvertiseKeys:
        """Step 0: this round's two public keys, signed if a signing key was given."""
        self._expect(ClientPhase.NEW, "advertise")
        c_public = keys.public_bytes(self._c_key)
        s_public = keys.public_bytes(self._s_key)
        signature = b""
        if self._signing_key is not None:
            payload = keys.advert_payload(self.config, self.participant_id, c_public, s_public)
            signature = keys.sign(self._signing_key, payload)
        self.phase = ClientPhase.ADVERTISED
        return AdvertiseKeys(self.participant_id, c_public, s_public, signature)

    def share_keys(self, adverts: KeyAdverts) -> ShareBundle:
        """Step 1: Shamir-share s_sk and a fresh self-mask seed b among the advertisers U1.

        Each other advertiser gets its two shares encrypted under the channel key; the
        client keeps its own. Raises :class:`ValueError` if the adverts are malformed, do not
        contain this client's advert unchanged, or fail signature checks, and
        :class:`SecAggAborted` if fewer than t participants advertised.
        """
        self._expect(ClientPhase.ADVERTISED, "share_keys")
        by_sender = check_adverts(self.config, adverts, self._verify_keys)
        mine = by_sender.get(self.participant_id)
        if mine is None or (mine.c_public, mine.s_public) != (
            keys.public_bytes(self._c_key),
            keys.public_bytes(self._s_key),
        ):
            raise ValueError("the adverts do not contain this participant's keys unchanged")
        self._adverts = by_sender
        self._self_seed = secrets.token_bytes(prg.SEED_BYTES)
        index = {p: self.config.index_of(p) for p in by_sender}
        xs = list(index.values())
        s_shares = shamir.split(keys.private_bytes(self._s_key), xs, self.config.threshold)
        b_shares = shamir.split(self._self_seed, xs, self.config.threshold)
        me = self.participant_id
        out: list[EncryptedShare] = []
        for peer in sorted(by_sender):
            x = index[peer]
            if peer == me:
                self._held[me] = (s_shares[x], b_shares[x])
                continue
            key = keys.channel_key(self.config, self._c_key, by_sender[peer].c_public)
            ad = keys.share_associated_data(self.config, me, peer)
            nonce, ciphertext = keys.encrypt(key, s_shares[x] + b_shares[x], ad)
            out.append(EncryptedShare(me, peer, nonce, ciphertext))
        self.phase = ClientPhase.SHARED
        return ShareBundle(me, tuple(out))

    def masked_input(
        self, request: MaskingRequest, update: npt.NDArray[np.floating]
    ) -> MaskedInput:
        """Step 2: decrypt the shares received, quantize ``update`` and mask it.

        ``update`` is the already weighted float vector (``p_i * delta_i``) of
        ``config.vector_length`` values. The result is
        ``q(update) + PRG(b) + sum_{v in U2, v > u} PRG(s_uv) - sum_{v in U2, v < u} PRG(s_uv)``
        mod 2^k. Raises :class:`ValueError` if a share is missing, misaddressed or fails
        authentication, and :class:`SecAggAborted` if fewer than t completed step 1.
        """
        self._expect(ClientPhase.SHARED, "masked_input")
        cfg, me = self.config, self.participant_id
        if request.receiver != me:
            raise ValueError(f"masking request for {request.receiver!r} sent to {me!r}")
        if update.shape != (cfg.vector_length,):
            raise ValueError(f"update has shape {update.shape}, expected ({cfg.vector_length},)")
        u2 = frozenset(request.survivors)
        if me not in u2:
            raise ValueError("the survivors of step 1 do not include this participant")
        unknown = sorted(u2 - self._adverts.keys())
        if unknown:
            raise ValueError(f"survivors that never advertised keys: {unknown}")
        if len(u2) < cfg.threshold:
            raise SecAggAborted(
                f"only {len(u2)} participants completed the share step; "
                f"threshold is {cfg.threshold}"
            )
        senders = {s.sender for s in request.shares}
        if senders != u2 - {me}:
            raise ValueError(
                f"shares from {sorted(senders)} do not match the other survivors "
                f"{sorted(u2 - {me})}"
            )
        for share in request.shares:
            key = keys.channel_key(cfg, self._c_key, self._adverts[share.sender].c_public)
            ad = keys.share_associated_data(cfg, share.sender, me)
            try:
                plain = keys.decrypt(key, share.nonce, share.ciphertext, ad)
            except ValueError as exc:
                raise ValueError(f"share from {share.sender!r}: {exc}") from None
            self._held[share.sender] = (plain[: shamir.SHARE_BYTES], plain[shamir.SHARE_BYTES :])
        self._u2 = u2

        vector = quantize.quantize(update, cfg.clip_range, cfg.levels, cfg.modulus_bits, self._rng)
        prg.add_mask(vector, self._self_seed, cfg.modulus_bits, sign=1)
        for peer in sorted(u2 - {me}):
            seed = keys.mask_seed(cfg, self._s_key, self._adverts[peer].s_public)
            prg.add_mask(vector, seed, cfg.modulus_bits, sign=1 if me < peer else -1)
        prg.reduce(vector, cfg.modulus_bits)
        self.phase = ClientPhase.MASKED
        return MaskedInput.from_vector(me, cfg.modulus_bits, vector)

    def unmask(self, request: UnmaskRequest) -> UnmaskResponse:
        """Step 3: reveal the b shares of survivors and the s_sk shares of dropped participants.

        Refuses (:class:`SecAggRefused`) a request naming a participant in both lists,
        naming this client as dropped, or coming a second time: any of these could let the
        server unmask an individual input. Raises :class:`ValueError` if the lists are not a
        partition of the step-1 survivors U2, and :class:`SecAggAborted` if fewer than t
        survivors remain.
        """
        if self.phase is ClientPhase.DONE:
            raise SecAggRefused("this participant already answered an unmask request this round")
        self._expect(ClientPhase.MASKED, "unmask")
        me, cfg = self.participant_id, self.config
        survivors, dropped = set(request.survivors), set(request.dropped)
        both = sorted(survivors & dropped)
        if both:
            raise SecAggRefused(
                f"asked for both the self-mask and the key share of {both}: that would "
                "reveal their individual inputs"
            )
        if me in dropped:
            raise SecAggRefused("asked for the key share of this participant, which sent its input")
        if survivors | dropped != self._u2:
            raise ValueError(
                "survivors and dropped must partition the participants of step 1 "
                f"{sorted(self._u2)}"
            )
        if me not in survivors:
            raise ValueError("this participant sent its input but is not listed as a survivor")
        if len(survivors) < cfg.threshold:
            raise SecAggAborted(
                f"only {len(survivors)} masked inputs arrived; threshold is {cfg.threshold}"
            )
        self.phase = ClientPhase.DONE
        response = UnmaskResponse(
            me,
            {p: self._held[p][1] for p in sorted(survivors)},
            {p: self._held[p][0] for p in sorted(dropped)},
        )
        self._forget()
        return response

    def _forget(self) -> None:
        """Drop references to secrets once the round is over (best effort in Python)."""
        self._held = {}
        self._self_seed = b""
