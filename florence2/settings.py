"""The typed settings of a Florence-2 model as it annotates and is evaluated (one dataclass for
``[annotators.florence2]``, ``[model.annotator]`` and the evaluation, so the same model is
scored the same way whichever command runs it)."""

from __future__ import annotations

import re
from dataclasses import MISSING, dataclass, field

from florence2.format import TASK_DEPENDS, TASK_ORDER, task_names
from florence2.views import VIEW_TASKS, check_views
from hf.settings import ModelSettings, check_int, check_number, check_positive_int

DEVICE_RE = re.compile(r"^(cpu|cuda|cuda:\d+|auto)$")


@dataclass(frozen=True)
class Florence2Settings(ModelSettings):
    """Settings of a Florence-2 model (``[annotators.florence2]`` merged with ``[model.annotator]``).

    ``model`` (required), ``device`` (default auto, checked against a GPU only at ``load()``),
    ``dtype``, ``batch_size``: see :class:`~hf.settings.ModelSettings`;
    ``tasks``: task names (default all eight; grounding needs CAPTION, segmentation needs OD);
    generation is greedy when ``num_beams`` is 1, beam search otherwise; ``score_window``: the
    ``k`` of the score formula (module docstring), in location bins either side of a generated
    coordinate (0: only the generated bin's own probability); ``views``: transformed views
    (``hflip``, ``vflip``; default none) whose boxes confirm the OD / DENSE_REGION_CAPTION boxes
    (module docstring; needs one of those tasks), generated with the original images: a box task's
    ``generate`` call then holds ``batch_size`` images with all their views; ``view_iou``: the
    IoU in (0, 1] a view's box needs to confirm an original box (default 0.5);
    ``view_min_confirmations``: how many views must confirm a box for it to score above 0
    (0..len(views); default 0); ``view_fusion``: fuse the boxes of all views (weighted box
    fusion, boxes only the views found included) instead of rescoring the original's boxes
    (default false; module docstring).
    """

    model: str = field(default=MISSING)  # required: no inherited "" default
    device: str = "auto"
    batch_size: int = 8
    tasks: tuple[str, ...] = TASK_ORDER
    max_new_tokens: int = 1024
    num_beams: int = 3
    score_window: int = 2
    views: tuple[str, ...] = ()
    view_iou: float = 0.5
    view_min_confirmations: int = 0
    view_fusion: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "model", str(self.model))
        names = task_names("tasks", self.tasks)  # refuses a string and unknown names
        if not names or len(set(names)) != len(names):
            raise ValueError(f"tasks must be a non-empty list without repeats, got {list(self.tasks)!r}")
        for task, needed in TASK_DEPENDS.items():
            if task in names and needed not in names:
                raise ValueError(f"task {task} needs task {needed} in tasks, got {list(names)!r}")
        object.__setattr__(self, "tasks", tuple(t for t in TASK_ORDER if t in names))
        if not DEVICE_RE.match(self.device):
            raise ValueError(f"device must be cpu, cuda, cuda:N or auto; got {self.device!r}")
        check_positive_int("max_new_tokens", self.max_new_tokens)
        check_positive_int("num_beams", self.num_beams)
        check_int("score_window", self.score_window, 0)
        object.__setattr__(self, "views", check_views(self.views))
        if self.views and not any(t in VIEW_TASKS for t in self.tasks):
            raise ValueError(f"views need a box task ({', '.join(VIEW_TASKS)}) in tasks, got {list(self.tasks)!r}")
        check_number("view_iou", self.view_iou, 0.0, 1.0)
        if self.view_iou == 0:
            raise ValueError(f"view_iou must be a number in (0, 1], got {self.view_iou!r}")
        check_int("view_min_confirmations", self.view_min_confirmations, 0)
        if self.view_min_confirmations > len(self.views):
            raise ValueError(f"view_min_confirmations must be at most the number of views ({len(self.views)}), "
                             f"got {self.view_min_confirmations!r}")
        if not isinstance(self.view_fusion, bool):
            raise ValueError(f"view_fusion must be true or false, got {self.view_fusion!r}")
