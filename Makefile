# The README's commands. Each target first installs what it needs into .venv (scripts/setup.sh EXTRAS):
# the demo only the CPU engine and the local stack (no torch); tests and benchmarks everything.
.PHONY: setup demo test test-fast lint docs bench lambda chaos

# everything: both engines (whisperx pulls torch), server, worker, local stack, dev tools
setup:
	@scripts/setup.sh all,dev

# the whole system locally (moto, Redis, server, worker, beat, Flower, router loop) on the sample session;
# leaves the stack running until Ctrl-C (DEMO_ARGS=--exit stops it after the demo); ENGINE=whisperx adds torch
demo:
	@scripts/setup.sh stack
	.venv/bin/stt-router demo $(DEMO_ARGS)

# style, types, the import contracts (layers, no cycles, the router's cold start: pyproject.toml), the docs
lint: setup
	.venv/bin/ruff check .
	.venv/bin/mypy
	.venv/bin/lint-imports
	NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet

# lint, then the whole suite against real Redis, moto, Celery and Whisper (CI's command)
test: lint
	.venv/bin/pytest

# the tests that need no Redis, no moto and no model (marked from their fixtures, tests/conftest.py);
# a quick loop while editing: `make lint` and `make test` stay the checks that count
test-fast: setup
	.venv/bin/pytest -m "not redis and not moto and not model"

# the docs site (mkdocs.yml) on http://127.0.0.1:8001, rebuilt on every change
docs:
	@scripts/setup.sh stack,dev
	NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs serve --dev-addr 127.0.0.1:8001

# the router Lambda's deployment zip (docs/operating/deployment.md)
lambda:
	@scripts/setup.sh router
	.venv/bin/stt-router build-lambda --output build/router-lambda.zip

bench: setup
	.venv/bin/python -m bench.engine
	.venv/bin/python -m bench.queued
	.venv/bin/python -m bench.server
	.venv/bin/python -m bench.cost
	.venv/bin/python -m bench.router
	.venv/bin/python -m bench.chunks_per_worker
	.venv/bin/python -m bench.boundaries
	.venv/bin/python -m bench.runs
	.venv/bin/python -m bench.runs --copies 1 --cuts 5,10 --out runs_call
	.venv/bin/python -m bench.sessions_api
	.venv/bin/python -m bench.system
	.venv/bin/python -m bench.summary

# the fault-injection run (docs/reliability.md): ~10 minutes at its default size; scale it down with e.g.
# CHAOS_ARGS="--sessions 5 --chunks-per-session 4 --drain-sessions 1 --corrupt 2 --worker-kills 1 --redis-kills 1"
chaos: setup
	.venv/bin/python -m bench.chaos $(CHAOS_ARGS)
