"""Errors raised by modules that are slow to import (torch, transformers), defined apart so that
the app can name them in its messages before those modules load."""
from __future__ import annotations


class ModelLoadError(RuntimeError):
    """A model that cannot be loaded; the message says why and what to do."""
