// Who may call the API, and how often. With keys configured, every route but health, readiness
// and metrics needs `Authorization: Bearer KEY`; the key's tenant owns the jobs it makes
// (`request.owner`) and its requests per minute are counted in Redis, so the limit holds across
// API replicas. Without keys the API is open (and binds to loopback unless told otherwise).
import fp from 'fastify-plugin';
import type { Redis } from 'ioredis';
import { DiffIdError, rateWindowKey } from '@diffid/shared/contract';
import type { KeyRing } from './auth.ts';
import type { Owner } from './job-service.ts';
import { PAGE_PATHS } from './playground-plugin.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** The tenant whose key made the request; null when the API runs without keys. */
    owner: Owner;
  }
}

export interface AccessOptions {
  keys: KeyRing;
  /** Requests per minute of a key whose entry does not say. */
  rateLimitPerMinute: number;
}

/**
 * Routes that answer without a key: liveness, readiness and metrics for the platform, and the
 * playground's static page (it asks for the key and sends it with its API calls).
 */
export const OPEN_PATHS: ReadonlySet<string> = new Set(['/healthz', '/readyz', '/metrics', ...PAGE_PATHS]);

export const accessPlugin = fp<AccessOptions & { redis: Redis; prefix: string }>(
  async (app, options) => {
    app.decorateRequest('owner', null);
    if (options.keys.size === 0) return;
    app.addHook('onRequest', async (request) => {
      if (OPEN_PATHS.has(request.url.split('?')[0] ?? '')) return;
      const tenant = options.keys.identify(request.headers.authorization);
      if (!tenant) {
        // The error handler adds WWW-Authenticate to every UNAUTHORIZED answer.
        throw new DiffIdError('UNAUTHORIZED', 'this API needs a key: send Authorization: Bearer <your key>');
      }
      request.owner = tenant.name;
      // A fixed one-minute window per key: one INCR, expiring with its window. When Redis cannot
      // count (down, or full and refusing writes), the request goes on unlimited — deliberately:
      // a submission then fails on Redis itself (503), while reads of finished jobs, which a full
      // Redis still answers, keep working. docs/operations.md says so.
      const limit = tenant.ratePerMinute ?? options.rateLimitPerMinute;
      const now = Date.now();
      const window = Math.floor(now / 60_000);
      const key = rateWindowKey(options.prefix, tenant.name, window);
      const results = await options.redis.multi().incr(key).pexpire(key, 61_000).exec().catch(() => null);
      const count = Number(results?.[0]?.[1] ?? 0);
      if (count > limit) {
        throw new DiffIdError('RATE_LIMITED', `this key may make ${limit} requests a minute; wait for the next minute`, {
          retryAfterSeconds: Math.max(1, Math.ceil(((window + 1) * 60_000 - now) / 1000)),
        });
      }
    });
  },
  { name: 'diffid-access', fastify: '5.x' },
);
