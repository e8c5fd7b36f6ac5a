"""Data preparation for kadapter: knowledge data for the adapters and loaders for the evaluation sets.

Everything reads the real data under :func:`data_prep.paths.data_root` (``../shared/data`` beside the
repository, or ``$KADAPTER_DATA``) and never copies it into the project.
"""
from .paths import data_root
from .report import DataFormatError, SkipReport

__all__ = ["data_root", "DataFormatError", "SkipReport"]
