"""The FastAPI transcription server (issue: the server)."""
