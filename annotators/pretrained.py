"""``PretrainedAnnotator``: the base of the annotators backed by one transformers checkpoint
(settings, checkpoint resolution and checks, device/dtype, a lazy idempotent load)."""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

from annotators.base import Annotator
from hf.checkpoint_check import check_checkpoint
from hf.loading import checkpoint_version, load_pretrained, move_inputs, require_package, resolve_model_dir, torch_device_dtype
from hf.settings import ModelSettings, settings_from_kwargs


class PretrainedAnnotator(Annotator):
    """Base of the annotators backed by one transformers checkpoint (a model and its processor).

    A subclass sets ``settings_class`` (a :class:`~hf.settings.ModelSettings`
    subclass), ``model_class`` and ``processor_class`` (names in ``transformers``), and
    ``required_packages`` (modules checked at construction besides torch/transformers).
    Construction validates the settings (unknown names raise ``ValueError``), checks the
    packages, resolves the checkpoint directory and the device/dtype, so a bad setting or a
    missing model fails there; :meth:`load` loads the model once (idempotent) and
    :meth:`prepare_processor` lets a subclass adjust the processor before first use.
    """

    settings_class: ClassVar[type[ModelSettings]] = ModelSettings
    model_class: ClassVar[str] = ""
    processor_class: ClassVar[str] = "AutoProcessor"
    required_packages: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **settings: Any) -> None:
        self.settings = settings_from_kwargs(self.settings_class, settings, self.name)
        self.batch_size = self.settings.batch_size
        for module in self.required_packages:
            require_package(module)
        self.model_dir = resolve_model_dir(self.settings.model, self.name)
        check_checkpoint(self.model_dir, self.name, self.settings.allow_pickle_weights)
        self._device, self._dtype = torch_device_dtype(self.settings.device, self.settings.dtype)
        self._version: str | None = None
        self._model: Any = None
        self._processor: Any = None

    @property
    def version(self) -> str:
        """:func:`checkpoint_version` of the checkpoint directory (computed once)."""
        if self._version is None:
            self._version = checkpoint_version(self.model_dir)
        return self._version

    def load(self) -> None:
        if self._model is not None:
            return
        model, processor = load_pretrained(self.model_dir, self.model_class, self.processor_class,
                                           self._device, self._dtype, self.name)
        self.prepare_processor(processor)
        self._processor, self._model = processor, model

    def prepare_processor(self, processor: Any) -> None:
        """Adjust the freshly loaded processor (padding side, pad token...); nothing by default."""

    def model_inputs(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """:func:`move_inputs` onto this annotator's device and dtype."""
        return move_inputs(inputs, self._device, self._dtype)
