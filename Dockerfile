# CUDA image that runs the toolkit: `docker run --gpus all IMAGE train --config ...`
# Multi-GPU: `docker run --gpus all --entrypoint torchrun IMAGE --nproc_per_node 8 run.py train ...`
# The base image already holds the pinned torch/torchvision CUDA build; pip keeps them and adds the rest.
ARG BASE=pytorch/pytorch:2.14.1-cuda13.0-cudnn9-runtime
FROM ${BASE}

ENV PYTHONUNBUFFERED=1 \
    WANDB_MODE=offline \
    MPLBACKEND=Agg

WORKDIR /app
COPY requirements.txt .
RUN python -m pip install --no-cache-dir -r requirements.txt

COPY . .
ENTRYPOINT ["python", "run.py"]
CMD ["--help"]
