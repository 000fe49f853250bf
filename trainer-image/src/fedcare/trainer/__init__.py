"""The trainer: a participant node that trains on local data and sends only model updates."""

from fedcare.trainer.node import ParticipantNode

__all__ = ["ParticipantNode"]
