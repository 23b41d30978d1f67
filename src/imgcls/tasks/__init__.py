"""Layer 3: what differs between tasks, one module each (tasks/base.py describes the seam)."""
from imgcls.tasks.base import Task
from imgcls.tasks.classification import Classification, task_class

__all__ = ["Classification", "Task", "task_class"]
