"""The Celery app and its tasks (issue: the task system)."""
