"""How a GPU worker starts (issue: the task system)."""
