# anomalyclip in a container. CPU by default:
#
#   docker build -t anomalyclip .
#   docker run --rm -v "$PWD/runs:/runs" anomalyclip                      # the demo, into ./runs/demo
#
# A GPU image: a CUDA runtime base and the torch build for it (the runtime must match the wheel's CUDA):
#
#   docker build -t anomalyclip:cuda \
#       --build-arg BASE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 \
#       --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 .
#   docker run --rm --gpus all -v "$PWD/data:/data" -v "$PWD/runs:/runs" anomalyclip:cuda train ...
#
# Optional extras (onnx, tensorboard, mlflow): --build-arg EXTRAS=onnx,tensorboard
ARG BASE=python:3.11-slim
FROM ${BASE}

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG EXTRAS=

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    HF_HOME=/cache/huggingface \
    PATH=/opt/venv/bin:$PATH

# The CUDA images have no Python: Debian's or Ubuntu's. Everything goes into one virtual environment
# (Ubuntu 24.04 refuses pip installs into its own Python).
RUN if ! command -v python3 >/dev/null 2>&1; then \
        apt-get update && apt-get install -y --no-install-recommends python3 python3-venv && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3 -m venv /opt/venv

# torch first, from the index of the wanted build, so that the package's own install does not pull
# another (constraints.txt pins the same version).
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"

WORKDIR /opt/anomalyclip
COPY pyproject.toml constraints.txt README.md ./
COPY src ./src
RUN pip install -c constraints.txt ".${EXTRAS:+[${EXTRAS}]}" && anomalyclip --help >/dev/null

# /data: datasets and features; /runs: run folders; /cache: the Hugging Face cache (CLIP weights)
VOLUME ["/data", "/runs", "/cache"]
WORKDIR /runs
ENTRYPOINT ["anomalyclip"]
CMD ["demo", "--out", "/runs/demo"]
