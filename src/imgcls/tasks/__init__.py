"""Layer 3: what differs between tasks, one module each (tasks/base.py describes the seam)."""
from imgcls.tasks.base import Task
from imgcls.tasks.classification import Classification, task_class
from imgcls.tasks.segmentation import Segmentation

__all__ = ["Classification", "Segmentation", "Task", "task_class"]
