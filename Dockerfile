# stetho serve: the HTTP + WebSocket scoring service with its web page, on CPU.
#
#   docker build -t stetho .
#   docker run --rm -p 8000:8000 -v "$PWD/runs/try1:/model:ro" stetho
#   docker run --rm -p 8000:8000 -v "$PWD/pipe:/model:ro" -e STETHO_API_KEY=... stetho
#
# The model (a finished run folder or an exported scoring pipeline) is mounted at /model, read
# only; settings come from STETHO_* variables (see docs/serving.md). Weights are safetensors or
# ONNX: nothing is unpickled.

# ---- build: a virtual environment with CPU-only torch and stetho[serve] ----------------------
FROM python:3.11-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /build
COPY constraints.txt ./
# CPU wheels from PyTorch's index (no CUDA: ~200 MB instead of several GB). The pins in
# constraints.txt (torch==2.14.1, torchvision==0.29.1) also match the +cpu builds.
RUN pip install --index-url https://download.pytorch.org/whl/cpu \
        -c constraints.txt torch torchvision

COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install -c constraints.txt ".[serve]" \
    && python -c "import torch, onnxruntime, soundfile, stetho.serve; assert not torch.cuda.is_available()"

# ---- runtime: the environment, a non-root user, nothing else --------------------------------
FROM python:3.11-slim-bookworm

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/home/stetho \
    MPLCONFIGDIR=/tmp/matplotlib \
    STETHO_MODEL_PATH=/model \
    STETHO_HOST=0.0.0.0 \
    STETHO_PORT=8000 \
    STETHO_WORKERS=2 \
    STETHO_TORCH_THREADS=1

RUN groupadd --system --gid 10001 stetho \
    && useradd --system --uid 10001 --gid stetho --create-home --home-dir /home/stetho stetho

COPY --from=build /opt/venv /opt/venv

USER stetho:stetho
WORKDIR /home/stetho
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('STETHO_PORT', '8000'), timeout=4)" || exit 1

# Flags given to `docker run IMAGE ...` are appended: e.g. --alert-windows 2 --log-level warning
ENTRYPOINT ["stetho", "serve"]
CMD []
