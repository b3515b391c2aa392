// Entry point of an API process: the only place that reads the environment (through the shared
// settings table). Listens, and exits cleanly on signals.
import { Redis } from 'ioredis';
import { settingsOrExit } from '@diffid/shared';
import { buildApp } from './app.ts';

const settings = settingsOrExit();

// Fail fast while Redis is away (requests get 503) instead of queueing commands in memory.
const redis = new Redis(settings.redisUrl, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 1, commandTimeout: 5000 });
redis.on('error', () => undefined);
try {
  await redis.connect();
} catch (err) {
  process.stderr.write(`cannot reach Redis at ${settings.redisUrl}: ${(err as Error).message}. Start Redis or set REDIS_URL.\n`);
  process.exit(1);
}

const app = await buildApp(
  {
    redis,
    prefix: settings.redisPrefix,
    queueName: settings.queueName,
    inputTtlSeconds: settings.inputTtlSeconds,
    resultTtlSeconds: settings.resultTtlSeconds,
    attempts: settings.jobAttempts,
  },
  { logger: { level: settings.logLevel } },
);

const stop = async (signal: string) => {
  app.log.info({ signal }, 'stopping');
  await app.close();
  redis.disconnect();
  process.exit(0);
};
process.once('SIGINT', () => void stop('SIGINT'));
process.once('SIGTERM', () => void stop('SIGTERM'));

await app.listen({ port: settings.port, host: settings.host });
