# A GPU worker: CUDA 12 + cuDNN 9 runtime, Node 24 (LTS), and onnxruntime-node's CUDA provider,
# which this image opts in to (CPU installs skip that download). No Fastify, no TypeScript at run
# time. Build from the repository root:
#   docker build -f deploy/docker/gpu-worker.Dockerfile -t diffid-gpu-worker .
# Run with the NVIDIA container runtime and a bundle mounted at /models:
#   docker run --gpus all -e REDIS_URL=redis://redis:6379 -v /srv/bundle:/models:ro diffid-gpu-worker

# Stage 1: install everything and compile TypeScript (npm ci runs the root's `prepare`: tsc -b).
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.base.json tsconfig.build.json ./
COPY shared shared
COPY services services
COPY client client
RUN ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund

# Stage 2: CUDA runtime, the worker's production dependencies, and the compiled JavaScript.
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04
COPY --from=build /usr/local/bin/node /usr/local/bin/node
COPY --from=build /usr/local/lib/node_modules /usr/local/lib/node_modules
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm
# ffmpeg writes MP4 morph animations (WebP and GIF need nothing more).
RUN apt-get update && apt-get install -y --no-install-recommends ffmpeg && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
COPY shared/package.json shared/
COPY services/gpu-worker/package.json services/gpu-worker/
COPY deploy/docker/only-workspace.mjs /tmp/
# Dependency install scripts are skipped; the CUDA provider is fetched explicitly.
RUN node /tmp/only-workspace.mjs services/gpu-worker \
 && npm install --omit=dev --ignore-scripts --no-audit --no-fund \
 && ONNXRUNTIME_NODE_INSTALL=cuda12 node node_modules/onnxruntime-node/script/install \
 && npm cache clean --force
COPY --from=build /app/shared/dist shared/dist
COPY --from=build /app/shared/src/bundle/manifest.schema.json shared/src/bundle/
COPY --from=build /app/services/gpu-worker/dist services/gpu-worker/dist
# The shipped face models (fetched by npm ci in the build stage) and their provenance table.
COPY --from=build /app/services/gpu-worker/models services/gpu-worker/models
COPY --from=build /app/services/gpu-worker/shipped-models.json services/gpu-worker/
ENV NODE_ENV=production DIFFID_EXECUTION_PROVIDER=cuda DIFFID_MODEL_DIR=/models
CMD ["node", "services/gpu-worker/dist/main.js"]
