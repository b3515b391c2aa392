# The API: no models, no GPU, no onnxruntime-node. Build from the repository root:
#   docker build -f deploy/docker/api.Dockerfile -t diffid-api .
# Node 24 is an LTS line in support; the code also runs on Node 22 (and on Node 20, past its end of life).

# Stage 1: install everything and compile TypeScript (npm ci runs the root's `prepare`: tsc -b).
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.base.json tsconfig.build.json ./
COPY shared shared
COPY services services
COPY client client
RUN ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund

# Stage 2: the API's production dependencies only, and the compiled JavaScript.
FROM node:24-bookworm-slim
WORKDIR /app
COPY package.json package-lock.json ./
COPY shared/package.json shared/
COPY services/api/package.json services/api/
COPY deploy/docker/only-workspace.mjs /tmp/
RUN node /tmp/only-workspace.mjs services/api \
 && npm install --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force
COPY --from=build /app/shared/dist shared/dist
COPY --from=build /app/shared/src/bundle/manifest.schema.json shared/src/bundle/
COPY --from=build /app/services/api/dist services/api/dist
COPY services/api/playground services/api/playground
COPY openapi.yaml ./
# No HOST here: without API keys the API listens on loopback only; with DIFFID_API_KEYS on every interface.
ENV NODE_ENV=production PORT=8080
EXPOSE 8080
USER node
CMD ["node", "services/api/dist/server.js"]
