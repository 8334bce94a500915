# raycond with the CUDA toolchain: the custom kernels (torch_utils/ops) are compiled by ninja +
# nvcc on first use inside the container, into TORCH_EXTENSIONS_DIR (mount a volume there to keep
# them). Nothing here needs a GPU at image-build time.
#
#   docker build --tag raycond .
#   docker run --gpus all -it --rm -v "$PWD":/scratch -v raycond-cache:/cache \
#       raycond python gen_images.py --network=checkpoints/... --outdir=/scratch/out --seeds=0-3
#
# The torch pin below must equal environment.yml's (tests/test_dockerfile.py checks it); every
# other dependency comes from pyproject.toml through `pip install .`.
FROM nvidia/cuda:12.8.1-cudnn-devel-ubuntu22.04

ARG PYTHON=python3.11
ARG TORCH=torch==2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    TORCH_EXTENSIONS_DIR=/cache/torch_extensions \
    DNNLIB_CACHE_DIR=/cache/dnnlib \
    TORCH_CUDA_ARCH_LIST="8.0;8.6;8.9;9.0"

# Distribution packages follow the base image's release; pinning them would break on its updates.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        python3.11 python3.11-venv python3.11-dev ninja-build \
        libgl1 libegl1 libglib2.0-0 xvfb xauth \
    && rm -rf /var/lib/apt/lists/*

RUN ${PYTHON} -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /workspace
COPY . /workspace
# torch is pinned through ARG TORCH; the project's own pins live in pyproject.toml.
# hadolint ignore=DL3013
RUN pip install --index-url "${TORCH_INDEX}" "${TORCH}" \
    && pip install -e . "${TORCH}" \
    && mkdir -p /cache

VOLUME ["/cache"]
CMD ["python", "gen_images.py", "--help"]
