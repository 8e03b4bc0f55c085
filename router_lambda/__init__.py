"""The router Lambda (issue: the router)."""
