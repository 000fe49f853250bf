"""Models every site trains: built-in families and user plug-ins, all input-standardized."""

from fedcare.models.builtin import Standardized, build_model, set_standardization
from fedcare.models.plugin import build_plugin

__all__ = ["Standardized", "build_model", "build_plugin", "set_standardization"]
