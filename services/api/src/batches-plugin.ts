// Makes the batch service available to routes as `app.batches`, and stops its feeder with the app.
import fp from 'fastify-plugin';
import { createBatchService, type BatchService, type BatchServiceOptions } from './batch-service.ts';

declare module 'fastify' {
  interface FastifyInstance {
    batches: BatchService;
  }
}

export const batchesPlugin = fp<Omit<BatchServiceOptions, 'jobs' | 'log'>>(
  async (app, options) => {
    const batches = createBatchService({ ...options, jobs: app.jobs, log: (event, fields) => app.log.warn(fields, event) });
    app.decorate('batches', batches);
    app.addHook('onClose', async () => batches.close());
  },
  { name: 'diffid-batches', fastify: '5.x', dependencies: ['diffid-jobs'] },
);
