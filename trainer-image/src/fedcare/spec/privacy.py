"""Privacy settings of a FederatedJob (``spec.privacy``) and a Participant's budget."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, model_validator

from fedcare.spec._base import SpecModel


class SecureAggregationMode(StrEnum):
    """How updates are hidden from the coordinator."""

    NONE = "none"
    #: Pairwise + self masks over a ring (Bonawitz et al. 2017); survives dropouts.
    MASKING = "masking"
    #: CKKS homomorphic encryption (TenSEAL); the coordinator holds only the public context.
    CKKS = "ckks"


class SecureAggregationSpec(SpecModel):
    """``spec.privacy.secureAggregation``."""

    mode: SecureAggregationMode = SecureAggregationMode.NONE
    #: Masking: survivors needed to unmask (Shamir threshold t); default: a majority.
    threshold: int | None = Field(default=None, ge=2, le=10_000)
    #: Masking: each (weighted) update value is clipped to [-clipRange, clipRange] before
    #: quantization.
    clip_range: float = Field(default=1.0, gt=0.0, le=1e6)
    #: Masking: bits of the ring Z_(2^k) the masked sum lives in.
    modulus_bits: int = Field(default=32, ge=16, le=62)


class DpMode(StrEnum):
    """Where differential-privacy noise is added."""

    NONE = "none"
    #: DP-SGD in each trainer (Opacus): per-sample clipping and noise.
    LOCAL = "local"
    #: Each update clipped to maxGradNorm on the server, Gaussian noise added to the aggregate.
    CENTRAL = "central"


class Accountant(StrEnum):
    """Privacy accountant."""

    RDP = "rdp"
    PRV = "prv"


class DifferentialPrivacySpec(SpecModel):
    """``spec.privacy.dp``."""

    mode: DpMode = DpMode.NONE
    noise_multiplier: float | None = Field(default=None, ge=0.0, le=100.0)
    #: Local mode only: pick the noise multiplier that spends this epsilon over all rounds.
    target_epsilon: float | None = Field(default=None, gt=0.0, le=1000.0)
    max_grad_norm: float = Field(default=1.0, gt=0.0, le=1e6)
    delta: float = Field(default=1e-5, gt=0.0, lt=1.0)
    accountant: Accountant = Accountant.RDP

    @model_validator(mode="after")
    def _noise_given(self) -> DifferentialPrivacySpec:
        if self.mode is DpMode.NONE:
            return self
        if self.noise_multiplier is None and self.target_epsilon is None:
            raise ValueError("dp needs noiseMultiplier or targetEpsilon")
        if self.noise_multiplier is not None and self.target_epsilon is not None:
            raise ValueError("dp takes noiseMultiplier or targetEpsilon, not both")
        if self.mode is DpMode.CENTRAL and self.target_epsilon is not None:
            raise ValueError("central dp takes noiseMultiplier (targetEpsilon is for local dp)")
        return self


class PrivacySpec(SpecModel):
    """``spec.privacy``: secure aggregation and differential privacy."""

    secure_aggregation: SecureAggregationSpec = Field(default_factory=SecureAggregationSpec)
    dp: DifferentialPrivacySpec = Field(default_factory=DifferentialPrivacySpec)


class PrivacyBudget(SpecModel):
    """A site's total privacy budget across every job it takes part in."""

    epsilon: float = Field(gt=0.0, le=1000.0)
    delta: float = Field(default=1e-5, gt=0.0, lt=1.0)
