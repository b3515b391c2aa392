# A GPU worker: CUDA 12 + cuDNN 9 runtime, Node 20, and onnxruntime-node's CUDA provider, which
# this image opts in to (CPU installs skip that download). Build from the repository root:
#   docker build -f deploy/docker/gpu-worker.Dockerfile -t diffid-gpu-worker .
# Run with the NVIDIA container runtime and a bundle mounted at /models:
#   docker run --gpus all -e REDIS_URL=redis://redis:6379 -v /srv/bundle:/models:ro diffid-gpu-worker
FROM node:20-bookworm-slim AS node

FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04
COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=node /usr/local/lib/node_modules /usr/local/lib/node_modules
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
COPY shared/package.json shared/
COPY services/api/package.json services/api/
COPY services/gpu-worker/package.json services/gpu-worker/
# npm ci runs no dependency install scripts (allowScripts); fetch the CUDA provider explicitly.
RUN ONNXRUNTIME_NODE_INSTALL=skip npm ci --omit=dev --no-audit --no-fund \
 && ONNXRUNTIME_NODE_INSTALL=cuda12 node node_modules/onnxruntime-node/script/install
COPY tsconfig.base.json openapi.yaml ./
COPY shared shared
COPY services services
ENV NODE_ENV=production DIFFID_EXECUTION_PROVIDER=cuda DIFFID_MODEL_DIR=/models
CMD ["node", "--import", "tsx", "services/gpu-worker/src/main.ts"]
