"""Layer 3: what differs between tasks, one module each (tasks/base.py describes the seam)."""
from imgcls.tasks.base import Task
from imgcls.tasks.classification import Classification
from imgcls.tasks.multilabel import MultiLabel
from imgcls.tasks.segmentation import Segmentation

__all__ = ["Classification", "MultiLabel", "Segmentation", "Task", "task_class"]


def task_class(kind: str) -> type:
    """The task of a kind; its transforms are known before the data (they need no class names), the task
    object itself is made from the classes the data holds."""
    tasks = {"classification": Classification, "segmentation": Segmentation, "multilabel": MultiLabel}
    try:
        return tasks[kind]
    except KeyError:
        raise ValueError(f"unknown task {kind!r}; known: {', '.join(tasks)}") from None
