// POST /batches (many morphs or generates of stored identities, as JSON), GET and DELETE
// /batches/{id}, GET /batches/{id}/results.zip. Every job of a batch is settled here, as its own
// route would settle it (settleJob), before anything is stored: a batch is taken whole or not.
import type { FastifyInstance } from 'fastify';
import { DiffIdError, type BatchRequest, type Priority } from '@diffid/shared/contract';
import { settleJob, type StoredIdentity } from '@diffid/shared/job-params';
import { componentSchema } from '@diffid/shared/openapi';
import type { Owner } from '../job-service.ts';
import { notFound, type BatchSpec, type ManifestFacts } from '../batch-service.ts';

const errorSchema = componentSchema('Error');
const batchSchema = componentSchema('Batch');
const idParams = { type: 'object', required: ['id'], properties: { id: { type: 'string', maxLength: 64 } } } as const;
/** Jobs settled between turns of the event loop. */
const YIELD_EVERY = 256;
/** A batch of 10,000 pairs of ids is about 800 KB of JSON. */
const BODY_LIMIT = 4 * 1024 * 1024;

/**
 * The form fields a batch sets itself for each job, or that belong to single jobs: a request that
 * names one of them is refused rather than overridden.
 */
const SET_BY_BATCH = {
  morph: ['image_a', 'image_b', 'identity_a', 'identity_b', 'face_index_a', 'face_index_b', 'webhook_events'],
  generate: ['image', 'identity', 'face_index', 'prompt', 'webhook_events'],
} as const;
/** What each kind multiplies, and what the other kind's are (refused). */
const MULTIPLIERS = { morph: ['pairs'], generate: ['identities', 'prompts'] } as const;

export interface BatchRouteOptions {
  /** Whether the key's tenant may ask for priority=high. */
  mayAskHigh: (owner: Owner) => boolean;
}

export async function batchRoutes(app: FastifyInstance, options: BatchRouteOptions): Promise<void> {
  app.post<{ Body: BatchRequest & Record<string, unknown> }>(
    '/batches',
    { bodyLimit: BODY_LIMIT, schema: { body: componentSchema('BatchRequest'), response: { 202: batchSchema, '4xx': errorSchema, '5xx': errorSchema } } },
    async (request, reply) => {
      const { kind, pairs, alphas, identities, prompts, priority, webhook, ...fields } = request.body;
      for (const name of SET_BY_BATCH[kind]) {
        if (name in fields) throw new DiffIdError('UNEXPECTED_FIELD', `"${name}" is not taken by a ${kind} batch: it sets each job's photos, identities and ${kind === 'morph' ? 'pair' : 'prompt'} from ${MULTIPLIERS[kind].join(' and ')}`);
      }
      const other = kind === 'morph' ? { identities, prompts } : { pairs, alphas };
      for (const [name, value] of Object.entries(other)) {
        if (value !== undefined) throw new DiffIdError('UNEXPECTED_FIELD', `"${name}" is not taken by a ${kind} batch; it takes ${MULTIPLIERS[kind].join(' and ')}`);
      }
      const level = (priority ?? 'low') as Priority;
      if (level === 'high' && !options.mayAskHigh(request.owner)) {
        throw new DiffIdError('PRIORITY_NOT_ALLOWED', 'this key may not ask for priority=high (DIFFID_HIGH_PRIORITY_TENANTS lists the tenants that may); send normal or low');
      }
      const target = await app.webhooks.target(webhook, undefined);
      app.batches.checkSize(kind === 'morph' ? (pairs?.length ?? 0) : (identities?.length ?? 0) * (prompts?.length ?? 0));

      // Each identity looked up once, for this key: its photos and faces, and its name for the manifest.
      const found = new Map<string, { stored: StoredIdentity; name: string | null }>();
      const identity = async (id: string) => {
        let entry = found.get(id);
        if (!entry) {
          const stored = await app.identities.forJob(id, request.owner);
          entry = { stored, name: (await app.identities.get(id, request.owner))?.name ?? null };
          found.set(id, entry);
        }
        return entry;
      };
      const bundle = await app.jobs.bundleInfo();
      const specs: BatchSpec[] = [];
      const settle = async (job: number, facts: ManifestFacts, run: () => BatchSpec['params']) => {
        try {
          const params = run();
          app.jobs.checkCost({ kind, params } as never);
          specs.push({ params, facts });
        } catch (err) {
          if (err instanceof DiffIdError && err.status < 500) throw new DiffIdError(err.key, `job ${job} of the batch: ${err.publicMessage}`);
          throw err;
        }
        // Ten thousand jobs take about a second to settle: let other requests in between.
        if (job % YIELD_EVERY === YIELD_EVERY - 1) await new Promise((resolve) => setImmediate(resolve));
      };
      if (kind === 'morph') {
        if (!pairs) throw new DiffIdError('VALIDATION', 'a morph batch needs "pairs": [[identity A, identity B], ...]');
        const factors = alphas === undefined ? {} : { alphas: alphas.join(',') };
        for (const [i, pair] of pairs.entries()) {
          const [a, b] = [await identity(pair[0] as string), await identity(pair[1] as string)];
          const facts = { identity_a: a.stored.id, name_a: a.name, identity_b: b.stored.id, name_b: b.name };
          const form = { ...fields, ...factors, identity_a: a.stored.id, identity_b: b.stored.id, priority: level };
          await settle(i, facts, () => settleJob('morph', form, { files: {}, bundle, identities: { image_a: a.stored, image_b: b.stored } }).params);
        }
      } else {
        if (!identities || !prompts) throw new DiffIdError('VALIDATION', 'a generate batch needs "identities" and "prompts": every identity gets every prompt');
        for (const id of identities) {
          const person = await identity(id);
          for (const prompt of prompts) {
            const form = { ...fields, identity: person.stored.id, prompt, priority: level };
            await settle(specs.length, { identity_a: person.stored.id, name_a: person.name, prompt }, () => settleJob('generate', form, { files: {}, bundle, identities: { image: person.stored } }).params);
          }
        }
      }
      const batch = await app.batches.create({ owner: request.owner, kind, priority: level, ...(target ? { webhook: target.url } : {}), specs });
      return reply.code(202).header('location', batch.links.self).send(batch);
    },
  );

  app.get<{ Params: { id: string } }>('/batches/:id', { schema: { params: idParams, response: { 200: batchSchema, '4xx': errorSchema, '5xx': errorSchema } } }, async (request) => {
    const batch = await app.batches.view(request.params.id, request.owner);
    if (!batch) throw notFound(request.params.id);
    return batch;
  });

  app.delete<{ Params: { id: string } }>('/batches/:id', { schema: { params: idParams, response: { 200: batchSchema, '4xx': errorSchema, '5xx': errorSchema } } }, async (request) =>
    app.batches.cancel(request.params.id, request.owner),
  );

  app.get<{ Params: { id: string } }>('/batches/:id/results.zip', { schema: { params: idParams, response: { '4xx': errorSchema, '5xx': errorSchema } } }, async (request, reply) => {
    const { id } = request.params;
    const zip = await app.batches.results(id, request.owner);
    if (!zip) throw notFound(id);
    return reply.type('application/zip').header('content-disposition', `attachment; filename="batch-${id}.zip"`).header('cache-control', 'private, no-store').send(zip);
  });
}
