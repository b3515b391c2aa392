// Entry point of an API process: the only place that reads the environment. Listens, and exits
// cleanly on signals.
import { Redis } from 'ioredis';
import { intFromEnv } from '@diffid/shared';
import { buildApp } from './app.ts';

const env = process.env;

function intEnv(name: string, fallback: number, min: number, max?: number): number {
  try {
    return intFromEnv(env, name, fallback, min, max);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exit(2);
  }
}

const port = intEnv('PORT', 8080, 0, 65535);
const host = env.HOST ?? '0.0.0.0';
const redisUrl = env.REDIS_URL ?? 'redis://127.0.0.1:6379';
// Fail fast while Redis is away (requests get 503) instead of queueing commands in memory.
const redis = new Redis(redisUrl, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 1, commandTimeout: 5000 });
redis.on('error', () => undefined);
try {
  await redis.connect();
} catch (err) {
  process.stderr.write(`cannot reach Redis at ${redisUrl}: ${(err as Error).message}. Start Redis or set REDIS_URL.\n`);
  process.exit(1);
}

const app = await buildApp(
  {
    redis,
    prefix: env.DIFFID_REDIS_PREFIX ?? 'diffid',
    queueName: env.DIFFID_QUEUE ?? 'jobs',
    inputTtlSeconds: intEnv('DIFFID_INPUT_TTL_SECONDS', 7 * 86_400, 60),
    resultTtlSeconds: intEnv('DIFFID_RESULT_TTL_SECONDS', 86_400, 60),
    attempts: intEnv('DIFFID_JOB_ATTEMPTS', 3, 1, 20),
  },
  { logger: { level: env.LOG_LEVEL ?? 'info' } },
);

const stop = async (signal: string) => {
  app.log.info({ signal }, 'stopping');
  await app.close();
  redis.disconnect();
  process.exit(0);
};
process.once('SIGINT', () => void stop('SIGINT'));
process.once('SIGTERM', () => void stop('SIGTERM'));

await app.listen({ port, host });
