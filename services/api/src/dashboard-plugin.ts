// The queue dashboard (bull-board) at /admin/queues, read-only: a job removed or retried from it
// would skip the service's own clean-up of uploads and results. With API keys it is the admin
// tenant's alone (DIFFID_ADMIN_TENANT), since it shows every tenant's jobs and prompts; without
// keys (a loopback-only API) it is open like the rest.
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import { Queue } from 'bullmq';
import type { FastifyInstance } from 'fastify';
import type { Redis } from 'ioredis';
import { DiffIdError } from '@diffid/shared/contract';

export const DASHBOARD_PATH = '/admin/queues';

export interface DashboardOptions {
  redis: Redis;
  /** Not `prefix`: Fastify reads that register option as the routes' URL prefix. */
  redisPrefix: string;
  queueName: string;
  /** Whether the API has keys; with keys only `adminTenant` may open the dashboard. */
  keysConfigured: boolean;
  adminTenant?: string;
}

export async function dashboardRoutes(app: FastifyInstance, options: DashboardOptions): Promise<void> {
  const queue = new Queue(options.queueName, { connection: options.redis, prefix: options.redisPrefix });
  app.addHook('onClose', async () => queue.close());
  app.addHook('onRequest', async (request) => {
    if (options.keysConfigured && (options.adminTenant === undefined || request.owner !== options.adminTenant)) {
      // The same answer as for a route that does not exist: the dashboard is not there for others.
      throw new DiffIdError('ROUTE_NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]}; see /docs`);
    }
  });
  const adapter = new FastifyAdapter();
  adapter.setBasePath(DASHBOARD_PATH);
  createBullBoard({ queues: [new BullMQAdapter(queue, { readOnlyMode: true })], serverAdapter: adapter });
  // bull-board answers errors in its own context (set after createBullBoard, which sets its own):
  // keep the service's envelope and statuses there too. Its types list fewer statuses than HTTP has.
  adapter.setErrorHandler((err) => {
    const e = err instanceof DiffIdError ? err : new DiffIdError('INTERNAL', err.message);
    return { status: e.status as never, body: { error: { code: e.code, message: e.publicMessage } } as never };
  });
  await app.register(adapter.registerPlugin(), { prefix: DASHBOARD_PATH });
}
