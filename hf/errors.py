"""The one error of a model that cannot be found, checked, loaded or placed on its device."""

from __future__ import annotations


class ModelError(RuntimeError):
    """A model cannot be built or run; the message says what to install, download or configure.

    ``annotators.base.AnnotatorError`` is this class, so callers that catch either catch both.
    """
