// Builds the Fastify app as a plugin. It reads no environment: server.ts and tests pass options.
import multipart from '@fastify/multipart';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyServerOptions } from 'fastify';
import fp from 'fastify-plugin';
import { DiffIdError, ERROR_CATALOGUE, type ErrorKey } from '@diffid/shared';
import { MAX_FILE_BYTES } from './forms.ts';
import type { JobServiceOptions } from './job-service.ts';
import { jobsPlugin } from './jobs-plugin.ts';
import { openapiDocument } from './openapi.ts';
import { jobRoutes } from './routes/job-routes.ts';
import { serviceRoutes } from './routes/service-routes.ts';

export type AppOptions = JobServiceOptions;

function errorBody(key: ErrorKey, message: string) {
  return { error: { code: ERROR_CATALOGUE[key].code, message } };
}

/** Fastify's own errors, mapped into the catalogue. */
function fastifyErrorKey(err: FastifyError): ErrorKey | null {
  if (err.validation) return 'VALIDATION';
  switch (err.code) {
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_INVALID_MULTIPART_CONTENT_TYPE':
      return 'NOT_MULTIPART';
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return 'FILE_TOO_LARGE';
    case 'FST_MP_PREMATURE_CLOSE':
    case 'FST_PROTO_VIOLATION':
      return 'VALIDATION';
    default:
      return null;
  }
}

export const diffIdApi = fp<AppOptions>(
  async (app, options) => {
    await app.register(multipart, { limits: { fileSize: MAX_FILE_BYTES, files: 3, fields: 16, parts: 24, fieldSize: 16 * 1024 } });
    await app.register(swagger, { mode: 'static', specification: { document: openapiDocument as never } });
    await app.register(swaggerUi, { routePrefix: '/docs' });
    await app.register(jobsPlugin, options);

    app.setErrorHandler((err: FastifyError, request, reply) => {
      if (err instanceof DiffIdError) {
        if (err.status >= 500) request.log.error({ err, code: err.code }, err.message);
        return reply.code(err.status).send({ error: { code: err.code, message: err.publicMessage } });
      }
      const key = fastifyErrorKey(err);
      if (key) {
        const message = key === 'NOT_MULTIPART' ? 'send the request as multipart/form-data' : err.message;
        return reply.code(ERROR_CATALOGUE[key].status).send(errorBody(key, message));
      }
      request.log.error({ err }, 'unhandled error');
      return reply.code(500).send(errorBody('INTERNAL', ERROR_CATALOGUE.INTERNAL.title));
    });
    app.setNotFoundHandler((request, reply) =>
      reply.code(404).send(errorBody('ROUTE_NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]}; see /docs`)),
    );

    await app.register(serviceRoutes);
    await app.register(jobRoutes);
  },
  { name: 'diffid-api', fastify: '5.x' },
);

/** A Fastify instance with the API registered; call `ready()` or `listen()` on it. */
export async function buildApp(options: AppOptions, server: FastifyServerOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({ bodyLimit: 3 * MAX_FILE_BYTES + 1024 * 1024, ...server });
  await app.register(diffIdApi, options);
  return app;
}
