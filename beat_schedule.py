"""The Celery beat schedule (issue: beat)."""
