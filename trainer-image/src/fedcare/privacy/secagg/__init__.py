"""Secure aggregation by masking (Bonawitz et al. 2017), semi-honest server, with dropouts.

A pure, transport-agnostic library: :class:`SecAggClient` (one per participant and round)
and :class:`SecAggServer` (the coordinator, one per round) exchange the messages of
:mod:`.messages`, which serialize with ``to_bytes()`` / ``from_bytes()``. The server learns
the sum of the surviving participants' quantized updates and nothing else about any
individual update, as long as fewer than t participants collude with it.

Call sequence (the coordinator relays every message; U1 ⊇ U2 ⊇ U3 are the participants
still present after each step)::

    cfg = SecAggConfig.from_spec(spec, job_id=..., round_number=..., participants=...,
                                 vector_length=...)                      # both sides
    client = SecAggClient(cfg, me)             server = SecAggServer(cfg)
    0  advert = client.advertise()         ->  server.add_advert(advert)
                                               adverts = server.close_adverts()  # U1
    1  bundle = client.share_keys(adverts) ->  server.add_shares(bundle)
                                               requests = server.close_shares()  # U2
    2  masked = client.masked_input(requests[me], update)
                                           ->  server.add_masked_input(masked)   # streaming sum
                                               unmask = server.close_inputs()    # U3
    3  reply = client.unmask(unmask)       ->  server.add_unmask_response(reply)
                                               result = server.finish()          # needs t

Trust model. The coordinator is semi-honest: it follows the protocol but may try to learn
from what it sees. Shares travel end-to-end encrypted (AES-256-GCM, X25519 + HKDF), so it
cannot read them; each client reveals, per participant, either the self-mask share or the
key share, never both, and answers one unmask request per round. Adverts are relayed by the
coordinator over per-participant mTLS channels; a *malicious* coordinator could substitute
public keys (man in the middle on the share channel), which Bonawitz's active variant
prevents by signing adverts with a PKI key: pass ``signing_key`` / ``verify_keys`` (Ed25519
or the ECDSA P-256 key of each site certificate) to enable it. Against a coordinator that
lies about who dropped (telling some clients "v dropped" and others "v survived"), the
threshold must exceed n/2 (:attr:`SecAggConfig.is_majority_threshold`, the spec's default),
since each client answers only one unmask request.
"""

from __future__ import annotations

from fedcare.privacy.secagg.client import ClientPhase, SecAggClient
from fedcare.privacy.secagg.config import SecAggConfig, default_threshold
from fedcare.privacy.secagg.errors import SecAggAborted, SecAggError, SecAggRefused
from fedcare.privacy.secagg.keys import SigningKey, VerifyKey
from fedcare.privacy.secagg.messages import (
    AdvertiseKeys,
    EncryptedShare,
    KeyAdverts,
    MaskedInput,
    MaskingRequest,
    Message,
    ShareBundle,
    UnmaskRequest,
    UnmaskResponse,
    decode_message,
)
from fedcare.privacy.secagg.server import SecAggResult, SecAggServer, ServerPhase

__all__ = [
    "AdvertiseKeys",
    "ClientPhase",
    "EncryptedShare",
    "KeyAdverts",
    "MaskedInput",
    "MaskingRequest",
    "Message",
    "SecAggAborted",
    "SecAggClient",
    "SecAggConfig",
    "SecAggError",
    "SecAggRefused",
    "SecAggResult",
    "SecAggServer",
    "ServerPhase",
    "ShareBundle",
    "SigningKey",
    "UnmaskRequest",
    "UnmaskResponse",
    "VerifyKey",
    "decode_message",
    "default_threshold",
]
