// POST /identities (store photos of one person, checked by a worker), GET /identities (a page of
// the key's), GET and DELETE /identities/{id}. The check is an `identity` job at compare's
// priority; the answer waits for it, as `Prefer: wait` does for jobs.
import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { DiffIdError, errorKeyOf } from '@diffid/shared/contract';
import { settleJob } from '@diffid/shared/job-params';
import { FORM_SCHEMAS, componentSchema, querySchema } from '@diffid/shared/openapi';
import { formReader } from '../forms.ts';
import { identityView, notFound, type IdentityRecord } from '../identity-service.ts';
import type { Owner } from '../job-service.ts';

/** How long POST /identities waits for the check before answering 202 with the identity pending. */
export const IDENTITY_CHECK_WAIT_MS = 60_000;

const errorSchema = componentSchema('Error');
const identitySchema = componentSchema('Identity');
const idParams = { type: 'object', required: ['id'], properties: { id: { type: 'string', maxLength: 64 } } } as const;
const listQuery = querySchema('/identities', 'get');

export async function identityRoutes(app: FastifyInstance): Promise<void> {
  /**
   * A pending identity as its check left it: ready (the worker marked it), still pending, or, when
   * the check failed or is gone, deleted, with the check's error thrown.
   */
  const settle = async (record: IdentityRecord, owner: Owner): Promise<IdentityRecord> => {
    if (record.status === 'ready' || record.check === undefined) return record;
    const check = await app.jobs.view(record.check, owner);
    if (check?.status === 'succeeded') return (await app.identities.get(record.id, owner)) ?? Promise.reject(notFound(record.id));
    if (check && check.status !== 'failed' && check.status !== 'canceled') return record;
    await app.identities.remove(record.id, owner);
    if (!check?.error) throw new DiffIdError('IDENTITY_NOT_FOUND', `identity ${record.id} could not be checked (its check expired); store it again`);
    throw new DiffIdError(errorKeyOf(check.error.code), `identity ${record.id} is not stored: ${check.error.message}`);
  };

  const read = formReader(FORM_SCHEMAS.identity);
  app.post('/identities', { schema: { response: { 201: identitySchema, 202: identitySchema, '4xx': errorSchema, '5xx': errorSchema } } }, async (request, reply) => {
    const { fields, files } = await read(request);
    const id = randomUUID();
    const photos = files.image ?? [];
    const { params } = settleJob('identity', fields, { files, bundle: null, identities: { image: { id, photos: photos.length } } });
    await app.identities.create({ id, owner: request.owner, photos, ...(params.name === undefined ? {} : { name: params.name }), ...(params.face_index ? { face_index: params.face_index } : {}) });
    let job: string;
    try {
      job = await app.jobs.submit('identity', params, {}, request.owner);
      await app.identities.setCheck(id, job);
    } catch (err) {
      await app.identities.remove(id, request.owner).catch(() => false);
      throw err;
    }
    await app.jobs.waitFor(job, IDENTITY_CHECK_WAIT_MS);
    const record = await app.identities.get(id, request.owner);
    if (!record) throw notFound(id);
    const settled = await settle(record, request.owner);
    return reply.code(settled.status === 'ready' ? 201 : 202).header('location', `/identities/${id}`).send(identityView(settled));
  });

  app.get<{ Querystring: { cursor?: string; limit: number } }>(
    '/identities',
    { schema: { querystring: listQuery, response: { 200: componentSchema('IdentityList'), '4xx': errorSchema, '5xx': errorSchema } } },
    async (request) => {
      const page = await app.identities.list(request.owner, request.query.cursor, request.query.limit);
      return { identities: page.identities.map(identityView), next_cursor: page.next_cursor };
    },
  );

  app.get<{ Params: { id: string } }>('/identities/:id', { schema: { params: idParams, response: { 200: identitySchema, '4xx': errorSchema, '5xx': errorSchema } } }, async (request) => {
    const record = await app.identities.get(request.params.id, request.owner);
    if (!record) throw notFound(request.params.id);
    return identityView(await settle(record, request.owner));
  });

  app.delete<{ Params: { id: string } }>('/identities/:id', { schema: { params: idParams, response: { '4xx': errorSchema, '5xx': errorSchema } } }, async (request, reply) => {
    if (!(await app.identities.remove(request.params.id, request.owner))) throw notFound(request.params.id);
    return reply.code(204).send();
  });
}
