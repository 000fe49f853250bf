"""A site's local data: loading and checking tables, splitting, and synthetic data."""

from fedcare.data.loaders import SiteData, load_site, resolve_format
from fedcare.data.split import split_indices
from fedcare.data.synth import SYNTH_EVENT, SYNTH_FEATURES, SYNTH_LABEL, SYNTH_TIME, synthesize

__all__ = [
    "SYNTH_EVENT",
    "SYNTH_FEATURES",
    "SYNTH_LABEL",
    "SYNTH_TIME",
    "SiteData",
    "load_site",
    "resolve_format",
    "split_indices",
    "synthesize",
]
