# The API: no models, no GPU. Build from the repository root:
#   docker build -f deploy/docker/api.Dockerfile -t diffid-api .
FROM node:20-bookworm-slim
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
COPY shared/package.json shared/
COPY services/api/package.json services/api/
COPY services/gpu-worker/package.json services/gpu-worker/
RUN ONNXRUNTIME_NODE_INSTALL=skip npm ci --omit=dev --no-audit --no-fund
COPY tsconfig.base.json openapi.yaml ./
COPY shared shared
COPY services services
ENV NODE_ENV=production PORT=8080 HOST=0.0.0.0
EXPOSE 8080
USER node
CMD ["node", "--import", "tsx", "services/api/src/server.ts"]
