# The README's commands. Each target installs what it needs first (scripts/setup.sh).
.PHONY: setup demo test lint bench

setup:
	@scripts/setup.sh

demo: setup
	.venv/bin/stt-router transcribe samples/demo-session/chunks/* --format srt

test: setup
	.venv/bin/ruff check .
	.venv/bin/pytest

lint: setup
	.venv/bin/ruff check .

bench: setup
	.venv/bin/python bench/engine.py
	.venv/bin/python bench/queue.py
	.venv/bin/python bench/server.py
	.venv/bin/python bench/cost.py
