# The README's commands. Each target installs what it needs first (scripts/setup.sh).
.PHONY: setup demo test lint bench lambda chaos

setup:
	@scripts/setup.sh

# the whole system locally (moto, Redis, server, worker, beat, Flower, router loop) on the sample session;
# leaves the stack running until Ctrl-C (DEMO_ARGS=--exit stops it after the demo)
demo: setup
	.venv/bin/stt-router demo $(DEMO_ARGS)

test: setup
	.venv/bin/ruff check .
	.venv/bin/pytest

lint: setup
	.venv/bin/ruff check .

# the router Lambda's deployment zip (see the README's Deployment section)
lambda: setup
	.venv/bin/stt-router build-lambda --output build/router-lambda.zip

bench: setup
	.venv/bin/python bench/engine.py
	.venv/bin/python bench/queue.py
	.venv/bin/python bench/server.py
	.venv/bin/python bench/cost.py
	.venv/bin/python bench/router.py
	.venv/bin/python bench/chunks_per_worker.py
	.venv/bin/python bench/boundaries.py
	.venv/bin/python bench/system.py
	.venv/bin/python bench/summary.py

# the fault-injection run (README "Reliability"): ~10 minutes at its default size; scale it down with e.g.
# CHAOS_ARGS="--sessions 5 --chunks-per-session 4 --drain-sessions 1 --corrupt 2 --worker-kills 1 --redis-kills 1"
chaos: setup
	.venv/bin/python bench/chaos.py $(CHAOS_ARGS)
