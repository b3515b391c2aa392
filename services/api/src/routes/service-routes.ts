// Health, readiness, and the API's own contract.
import type { FastifyInstance } from 'fastify';
import { componentSchema, openapiText } from '@diffid/shared/openapi';

export async function serviceRoutes(app: FastifyInstance): Promise<void> {
  const health = componentSchema('Health');
  const error = componentSchema('Error');
  app.get('/healthz', { schema: { response: { 200: health } } }, async () => ({ status: 'ok' }));
  app.get('/readyz', { schema: { response: { 200: health, 503: error } } }, async () => {
    await app.jobs.ping();
    return { status: 'ready' };
  });
  app.get('/openapi.yaml', async (_request, reply) => reply.type('application/yaml; charset=utf-8').send(openapiText));
}
