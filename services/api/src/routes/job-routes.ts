// POST /generate, /morph and /compare (one route per job kind, each its form read, settled into
// the job's parameters and queued), GET and DELETE /jobs/{id}, result images and the event stream.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ANIMATION_FORMATS, ANIMATION_TYPES, DiffIdError, IDENTITY_FIELDS, JOB_INPUTS, SUBMITTED_JOB_KINDS, type InputName } from '@diffid/shared/contract';
import { settleJob, type StoredIdentity } from '@diffid/shared/job-params';
import { FORM_SCHEMAS, componentSchema, querySchema } from '@diffid/shared/openapi';
import type { JobListQuery, Owner } from '../job-service.ts';
import { isTerminal, jobLinks } from '../job-view.ts';
import { formReader } from '../forms.ts';
import { notFound as batchNotFound } from '../batch-service.ts';

const errorSchema = componentSchema('Error');
const jobSchema = componentSchema('Job');
const idParams = { type: 'object', required: ['id'], properties: { id: { type: 'string', maxLength: 64 } } } as const;

/** Seconds of `Prefer: wait=N` (RFC 7240), capped at 60; undefined when not asked for. */
export function preferWait(header: string | string[] | undefined): number | undefined {
  const text = Array.isArray(header) ? header.join(',') : (header ?? '');
  const m = /(?:^|[,;\s])wait\s*=\s*"?(\d+)"?/i.exec(text);
  return m ? Math.min(60, Number(m[1])) : undefined;
}

/**
 * 202 with the job's id; with `Prefer: wait=N`, the job itself once it finishes (200) or as it
 * is after N seconds (202).
 */
async function accepted(app: FastifyInstance, request: FastifyRequest, reply: FastifyReply, id: string) {
  reply.header('location', jobLinks(id).self);
  const wait = preferWait(request.headers.prefer);
  if (wait === undefined) {
    return reply.code(202).send({ id, status: 'queued', links: jobLinks(id) });
  }
  // With wait=0 the timer can beat the first read; then read the job once more.
  const view = (await app.jobs.waitFor(id, wait * 1000)) ?? (await app.jobs.view(id, request.owner));
  if (!view) throw notFound(id);
  return reply.code(isTerminal(view.status) ? 200 : 202).header('preference-applied', `wait=${wait}`).send(view);
}

const notFound = (id: string) => new DiffIdError('JOB_NOT_FOUND', `no job ${id}; it may have expired`);

/** Adds `by` to a counter of open streams, dropping it at zero. */
function bump(map: Map<string, number>, key: string, by: number): void {
  const n = (map.get(key) ?? 0) + by;
  if (n > 0) map.set(key, n);
  else map.delete(key);
}

/** Event streams one job may have open on one API process. */
export const MAX_STREAMS_PER_JOB = 10;

export interface JobRouteOptions {
  maxStreamsPerKey: number;
  /** Whether the key's tenant may ask for priority=high (owner null: the API has no keys). */
  mayAskHigh: (owner: Owner) => boolean;
}

export async function jobRoutes(app: FastifyInstance, options: JobRouteOptions): Promise<void> {
  const streams = { perJob: new Map<string, number>(), perOwner: new Map<string, number>() };
  const acceptedResponses = {
    200: jobSchema,
    202: { anyOf: [componentSchema('Accepted'), jobSchema] },
    '4xx': errorSchema,
    '5xx': errorSchema,
  };

  for (const kind of SUBMITTED_JOB_KINDS) {
    const read = formReader(FORM_SCHEMAS[kind]);
    const inputs = Object.keys(JOB_INPUTS[kind]) as InputName[];
    app.post(`/${kind}`, { schema: { response: acceptedResponses } }, async (request, reply) => {
      const { fields, files } = await read(request);
      // Stored identities named in place of photos, looked up for this key (another key's is none).
      const identities: Partial<Record<InputName, StoredIdentity>> = {};
      for (const input of inputs) {
        const id = fields[IDENTITY_FIELDS[input]];
        if (id !== undefined) identities[input] = await app.identities.forJob(id, request.owner);
      }
      const { form, params } = settleJob(kind, fields, { files, bundle: await app.jobs.bundleInfo(), identities });
      if (params.priority === 'high' && !options.mayAskHigh(request.owner)) {
        throw new DiffIdError('PRIORITY_NOT_ALLOWED', 'this key may not ask for priority=high (DIFFID_HIGH_PRIORITY_TENANTS lists the tenants that may); send normal or low');
      }
      const webhook = await app.webhooks.target(form.webhook, form.webhook_events);
      const id = await app.jobs.submit(kind, params, files, request.owner, webhook);
      return accepted(app, request, reply, id);
    });
  }

  app.get<{ Querystring: JobListQuery }>(
    '/jobs',
    { schema: { querystring: querySchema('/jobs', 'get'), response: { 200: componentSchema('JobList'), '4xx': errorSchema, '5xx': errorSchema } } },
    async (request) => {
      const { batch } = request.query;
      // A batch's list is read only for the key that made the batch.
      if (batch !== undefined && !(await app.batches.view(batch, request.owner))) throw batchNotFound(batch);
      return app.jobs.list(request.owner, request.query);
    },
  );

  app.get<{ Params: { id: string } }>('/jobs/:id', { schema: { params: idParams, response: { 200: jobSchema, '4xx': errorSchema, '5xx': errorSchema } } }, async (request) => {
    const view = await app.jobs.view(request.params.id, request.owner);
    if (!view) throw notFound(request.params.id);
    return view;
  });

  app.delete<{ Params: { id: string } }>('/jobs/:id', { schema: { params: idParams, response: { 200: jobSchema, '4xx': errorSchema, '5xx': errorSchema } } }, async (request) =>
    app.jobs.cancel(request.params.id, request.owner),
  );

  app.get<{ Params: { id: string; file: string } }>('/jobs/:id/images/:file', { schema: { response: { '4xx': errorSchema, '5xx': errorSchema } } }, async (request, reply) => {
    const { id, file } = request.params;
    const index = /^(0|[1-9][0-9]{0,3})\.png$/.exec(file)?.[1];
    const png = index === undefined ? null : await app.jobs.image(id, Number(index), request.owner);
    if (!png) {
      if (!(await app.jobs.view(id, request.owner))) throw notFound(id);
      throw new DiffIdError('IMAGE_NOT_FOUND', `job ${id} has no result image "${file}"; see result.images in GET /jobs/${id}`);
    }
    return reply.type('image/png').header('cache-control', 'private, max-age=3600, immutable').send(png);
  });

  for (const format of ANIMATION_FORMATS) {
    app.get<{ Params: { id: string } }>(`/jobs/:id/animation.${format}`, { schema: { params: idParams, response: { '4xx': errorSchema, '5xx': errorSchema } } }, async (request, reply) => {
      const { id } = request.params;
      const bytes = await app.jobs.animation(id, format, request.owner);
      if (!bytes) {
        if (!(await app.jobs.view(id, request.owner))) throw notFound(id);
        throw new DiffIdError('IMAGE_NOT_FOUND', `job ${id} has no ${format} animation; ask for one with animation=${format} on POST /morph (see result.animations)`);
      }
      return reply.type(ANIMATION_TYPES[format]).header('cache-control', 'private, max-age=3600, immutable').send(bytes);
    });
  }

  app.get<{ Params: { id: string } }>('/jobs/:id/events', { schema: { params: idParams, response: { '4xx': errorSchema, '5xx': errorSchema } } }, async (request, reply) => {
    const { id } = request.params;
    if (!(await app.jobs.view(id, request.owner))) throw notFound(id);
    // Each open stream polls Redis: cap them per job and per key on this process.
    const ownerKey = request.owner ?? '';
    if ((streams.perJob.get(id) ?? 0) >= MAX_STREAMS_PER_JOB || (streams.perOwner.get(ownerKey) ?? 0) >= options.maxStreamsPerKey) {
      throw new DiffIdError('TOO_MANY_STREAMS', `at most ${MAX_STREAMS_PER_JOB} event streams per job and ${options.maxStreamsPerKey} per key may be open; close one or poll GET /jobs/${id}`, { retryAfterSeconds: 5 });
    }
    bump(streams.perJob, id, 1);
    bump(streams.perOwner, ownerKey, 1);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      bump(streams.perJob, id, -1);
      bump(streams.perOwner, ownerKey, -1);
    };
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    res.write(': diffid job events\n\n');
    const heartbeat = setInterval(() => res.write(': keep-alive\n\n'), 15_000);
    const finish = () => {
      clearInterval(heartbeat);
      unsubscribe();
      release();
      res.end();
    };
    let unsubscribe = () => {};
    try {
      unsubscribe = app.jobs.watch(id, (view) => {
        if (!view) return finish();
        res.write(`event: job\ndata: ${JSON.stringify(view)}\n\n`);
        if (isTerminal(view.status)) finish();
      });
    } catch (err) {
      request.log.error({ err }, 'cannot watch the job');
      finish();
    }
    request.raw.on('close', () => {
      clearInterval(heartbeat);
      unsubscribe();
      release();
    });
  });
}
