# The router: the AWS Lambda function (container image), and in docker compose the local EventBridge
# loop (`stt-router router-local`) from the same image. Only the `router` extra: no torch, whisperx,
# FastAPI or engine, so a cold start stays short.
#
#   docker build -f docker/router.Dockerfile -t stt-router-lambda .
ARG BASE_IMAGE=public.ecr.aws/lambda/python:3.11
FROM ${BASE_IMAGE}

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1

COPY pyproject.toml README.md /tmp/src/
COPY transcription /tmp/src/transcription
COPY app /tmp/src/app
COPY tasks /tmp/src/tasks
COPY gpu_worker /tmp/src/gpu_worker
COPY router_lambda /tmp/src/router_lambda
COPY devstack /tmp/src/devstack
COPY beat_schedule.py /tmp/src/
RUN pip install "/tmp/src[router]" && rm -rf /tmp/src

# Lambda runs the handler; docker compose overrides the entrypoint with `stt-router router-local`.
CMD ["router_lambda.handler.handler"]
