"""Florence-2 as one leaf package (imports storage and hf only): token format, training targets,
per-item scores, test-time views, answer parsing, the loss, the offline checkpoint builder and
:class:`florence2.model.Florence2Model` with ``generate`` / ``parse`` / ``predict``."""
