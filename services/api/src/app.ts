// Builds the Fastify app as a plugin. It reads no environment: server.ts and tests pass options.
import multipart from '@fastify/multipart';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyServerOptions } from 'fastify';
import { STATUS_CODES, type IncomingMessage } from 'node:http';
import fp from 'fastify-plugin';
import { DiffIdError, ERROR_CATALOGUE, type ErrorKey } from '@diffid/shared/contract';
import { MAX_FILE_BYTES } from './forms.ts';
import type { JobServiceOptions, Owner } from './job-service.ts';
import { accessPlugin, type AccessOptions } from './access-plugin.ts';
import { keyRing } from './auth.ts';
import { dashboardRoutes } from './dashboard-plugin.ts';
import { jobsPlugin } from './jobs-plugin.ts';
import { identitiesPlugin } from './identities-plugin.ts';
import type { IdentityLimits } from './identity-service.ts';
import { DEFAULT_SETTINGS } from '@diffid/shared/settings';
import { webhooksPlugin, type WebhookOptions } from './webhooks-plugin.ts';
import { createApiMetrics } from './metrics.ts';
import { openapiDocument } from '@diffid/shared/openapi';
import { jobRoutes } from './routes/job-routes.ts';
import { identityRoutes } from './routes/identity-routes.ts';
import { batchRoutes } from './routes/batch-routes.ts';
import { provenanceRoutes } from './routes/provenance-routes.ts';
import { batchesPlugin } from './batches-plugin.ts';
import { serviceRoutes } from './routes/service-routes.ts';
import { playgroundRoutes } from './playground-plugin.ts';

export interface AppOptions extends JobServiceOptions {
  /** API keys and per-key limits; without it the API is open and unlimited per key. */
  access?: AccessOptions & { maxStreamsPerKey: number; adminTenant?: string; highPriorityTenants?: string[] };
  /** Webhook signing and the addresses they may go to; without it requests asking for one get 400. */
  webhooks?: WebhookOptions;
  /** Stored identities' lifetime and per-key limits; without it, the settings' defaults. */
  identities?: { ttlSeconds: number; limits: IdentityLimits };
  /** Jobs a key's open batches may hold in all; without it, the settings' default. */
  batches?: { maxJobsPerKey: number; feedIntervalMs?: number };
}

function errorBody(key: ErrorKey, message: string) {
  return { error: { code: ERROR_CATALOGUE[key].code, message } };
}

/** What a client is told of an error: its catalogue key and message (5xx details stay in the logs). */
function publicError(err: FastifyError): [ErrorKey, string] {
  if (err instanceof DiffIdError) return [err.key, err.publicMessage];
  const key = fastifyErrorKey(err);
  if (key === 'NOT_MULTIPART') {
    if (err.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || err.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') return [key, `the body is not valid JSON (${err.message}); POST /batches takes JSON, the job routes multipart/form-data`];
    return [key, 'send the request as multipart/form-data (POST /batches: application/json)'];
  }
  if (key === 'FILE_TOO_LARGE') return [key, 'the body is larger than this route takes: job routes take multipart/form-data forms within their file limits, POST /batches JSON of at most 4 MB'];
  if (key) return [key, err.message];
  return ['INTERNAL', ERROR_CATALOGUE.INTERNAL.title];
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
    // The error and not-found handlers come first: a plugin registered before them (swagger-ui's
    // /docs) would keep Fastify's own and answer in its shape instead of the catalogue's.
    const metrics = createApiMetrics(() => app.jobs.counts());
    app.get('/metrics', async (_request, reply) => reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()));

    app.setErrorHandler((err: FastifyError, request, reply) => {
      const [key, message] = publicError(err);
      metrics.rejected.inc({ code: ERROR_CATALOGUE[key].code });
      if (key === 'INTERNAL' || (err instanceof DiffIdError && err.status >= 500)) request.log.error({ err }, err.message);
      const headers: Record<string, string> = {};
      if (err instanceof DiffIdError && err.retryAfterSeconds !== undefined) headers['retry-after'] = String(err.retryAfterSeconds);
      if (key === 'UNAUTHORIZED') headers['www-authenticate'] = 'Bearer realm="diffid"';
      // Refused before its body was read in full (too large, malformed, a bad form, no key):
      // answer on the socket and close it, rather than let Node read the rest of what the client
      // sends (it drains an unread body to keep the connection, and this body may never end).
      if (bodyUnread(request.raw)) {
        reply.hijack();
        request.raw.socket.write(rawErrorResponse(key, message, headers));
        return lingeringClose(request.raw);
      }
      return reply.code(ERROR_CATALOGUE[key].status).headers(headers).send(errorBody(key, message));
    });
    app.setNotFoundHandler((request, reply) =>
      reply.code(404).send(errorBody('ROUTE_NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]}; see /docs`)),
    );

    // The form reader sets each route's limits (forms.ts); these hold for any other reader.
    await app.register(multipart, { limits: { fileSize: MAX_FILE_BYTES, files: 4, fields: 16, parts: 24, fieldSize: 16 * 1024 } });
    await app.register(swagger, { mode: 'static', specification: { document: openapiDocument as never } });
    await app.register(swaggerUi, { routePrefix: '/docs' });
    await app.register(accessPlugin, { keys: options.access?.keys ?? keyRing([]), rateLimitPerMinute: options.access?.rateLimitPerMinute ?? 0, redis: options.redis, prefix: options.prefix });
    await app.register(jobsPlugin, options);
    await app.register(identitiesPlugin, {
      redis: options.redis,
      prefix: options.prefix,
      ...(options.identities ?? {
        ttlSeconds: DEFAULT_SETTINGS.identityTtlSeconds,
        limits: { maxPerKey: DEFAULT_SETTINGS.maxIdentitiesPerKey, maxBytesPerKey: DEFAULT_SETTINGS.maxIdentityMbPerKey * 2 ** 20 },
      }),
    });
    await app.register(batchesPlugin, {
      redis: options.redis,
      prefix: options.prefix,
      queueName: options.queueName,
      ttlSeconds: options.inputTtlSeconds + options.resultTtlSeconds,
      ...(options.batches ?? { maxJobsPerKey: DEFAULT_SETTINGS.maxBatchedJobsPerKey }),
    });
    await app.register(webhooksPlugin, options);
    await app.register(serviceRoutes);
    await app.register(playgroundRoutes);
    const highPriority = new Set(options.access?.highPriorityTenants ?? []);
    const mayAskHigh = (owner: Owner) => owner === null || highPriority.has(owner);
    await app.register(jobRoutes, { maxStreamsPerKey: options.access?.maxStreamsPerKey ?? Infinity, mayAskHigh });
    await app.register(identityRoutes);
    await app.register(batchRoutes, { mayAskHigh });
    await app.register(provenanceRoutes);
    await app.register(dashboardRoutes, {
      redis: options.redis,
      redisPrefix: options.prefix,
      queueName: options.queueName,
      keysConfigured: (options.access?.keys.size ?? 0) > 0,
      ...(options.access?.adminTenant === undefined ? {} : { adminTenant: options.access.adminTenant }),
    });
  },
  { name: 'diffid-api', fastify: '5.x' },
);

/** A request that has a body, not all of which has been read. */
function bodyUnread(request: IncomingMessage): boolean {
  const hasBody = request.headers['transfer-encoding'] !== undefined || Number(request.headers['content-length'] ?? 0) > 0;
  return hasBody && !request.complete && request.socket !== undefined && !request.socket.destroyed;
}

/**
 * Closes a connection whose request body is still arriving, once its answer went out: stop
 * reading (TCP back-pressure then holds the client), send FIN, and destroy the socket a moment
 * later. Destroying it at once, with the client's data unread, resets the connection and the
 * client can lose the answer before it reads it.
 */
function lingeringClose(request: IncomingMessage): void {
  const socket = request.socket;
  if (!socket || socket.destroyed) return;
  request.pause();
  socket.pause();
  socket.end();
  setTimeout(() => socket.destroy(), 1000).unref();
}

/** A whole HTTP response for a socket that Node's parser refused before Fastify saw a request. */
function rawErrorResponse(key: ErrorKey, message: string, headers: Record<string, string> = {}): string {
  const body = JSON.stringify(errorBody(key, message));
  const { status } = ERROR_CATALOGUE[key];
  const reason = STATUS_CODES[status] ?? 'Error';
  const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
  return `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}Connection: close\r\n\r\n${body}`;
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
