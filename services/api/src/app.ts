// Builds the Fastify app as a plugin. It reads no environment: server.ts and tests pass options.
import multipart from '@fastify/multipart';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyServerOptions } from 'fastify';
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
    // The form reader sets each route's limits (forms.ts); these hold for any other reader.
    await app.register(multipart, { limits: { fileSize: MAX_FILE_BYTES, files: 4, fields: 16, parts: 24, fieldSize: 16 * 1024 } });
    await app.register(swagger, { mode: 'static', specification: { document: openapiDocument as never } });
    await app.register(swaggerUi, { routePrefix: '/docs' });
    await app.register(jobsPlugin, options);

    app.setErrorHandler((err: FastifyError, request, reply) => {
      // A request refused before its body was read in full (too large, malformed, a bad form):
      // answer, then close the connection rather than read the rest of what the client sends.
      if (!request.raw.complete) {
        reply.header('connection', 'close');
        reply.raw.once('finish', () => request.raw.socket?.destroy());
      }
      if (err instanceof DiffIdError) {
        if (err.status >= 500) request.log.error({ err, code: err.code }, err.message);
        return reply.code(err.status).send({ error: { code: err.code, message: err.publicMessage } });
      }
      const key = fastifyErrorKey(err);
      if (key) {
        const message =
          key === 'NOT_MULTIPART'
            ? 'send the request as multipart/form-data'
            : key === 'FILE_TOO_LARGE'
              ? 'the body is larger than this route takes; its requests are multipart/form-data forms'
              : err.message;
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

/** A whole HTTP response for a socket that Node's parser refused before Fastify saw a request. */
function rawErrorResponse(key: ErrorKey, message: string): string {
  const body = JSON.stringify(errorBody(key, message));
  const { status } = ERROR_CATALOGUE[key];
  const reason = { 400: 'Bad Request', 408: 'Request Timeout', 431: 'Request Header Fields Too Large' }[status as 400 | 408 | 431] ?? 'Error';
  return `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
}

/**
 * Errors Node's HTTP parser raises before a request exists (oversize headers, unknown methods,
 * broken framing, slow senders): answered in the error envelope, then the socket is closed.
 */
function clientErrorHandler(err: NodeJS.ErrnoException & { code?: string }, socket: import('node:net').Socket): void {
  if (!socket.writable) return void socket.destroy();
  const [key, message]: [ErrorKey, string] =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? ['HEADERS_TOO_LARGE', 'the request line and headers may be at most 16 KB together; shorten the URL or the headers']
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? ['REQUEST_TIMEOUT', `the request was not received within ${REQUEST_TIMEOUT_MS / 1000} s; send it faster or smaller`]
        : ['MALFORMED_REQUEST', `the HTTP request cannot be parsed (${err.code ?? 'malformed'}): check the method, the URL and the Content-Length`];
  socket.end(rawErrorResponse(key, message));
}

/** How long a whole request may take to arrive: ample for 4 × 20 MB on a slow link, finite for a drip. */
export const REQUEST_TIMEOUT_MS = 120_000;

/** A Fastify instance with the API registered; call `ready()` or `listen()` on it. */
export async function buildApp(options: AppOptions, server: FastifyServerOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    // Only multipart bodies are taken (and bounded by the form reader); any other body is refused
    // after at most this much.
    bodyLimit: 64 * 1024,
    requestTimeout: REQUEST_TIMEOUT_MS,
    clientErrorHandler,
    // Fastify's own routing errors (a URL that cannot be decoded) in the envelope too.
    frameworkErrors: (err, _request, reply) => {
      void (reply as FastifyReply).code(400).send(errorBody('MALFORMED_REQUEST', `the URL cannot be decoded (${err.message}); percent-encode it correctly`));
    },
    ...server,
  });
  await app.register(diffIdApi, options);
  return app;
}
