// Entry point of a worker process: reads the environment, starts the service, stops on signals.
import { join } from 'node:path';
import { Redis } from 'ioredis';
import pino from 'pino';
import { intFromEnv } from '@diffid/shared';
import { ensureDefaultBundle } from './bundles/default-bundle.ts';
import type { ExecutionProvider } from './onnx.ts';
import { startWorkerService } from './worker-service.ts';

const env = process.env;
const logger = pino({ name: 'diffid-worker', level: env.LOG_LEVEL ?? 'info' });

function intEnv(name: string, fallback: number, min: number): number {
  try {
    return intFromEnv(env, name, fallback, min);
  } catch (err) {
    logger.fatal((err as Error).message);
    process.exit(2);
  }
}

const provider = (env.DIFFID_EXECUTION_PROVIDER ?? 'cpu') as ExecutionProvider;
if (provider !== 'cpu' && provider !== 'cuda') {
  logger.fatal(`DIFFID_EXECUTION_PROVIDER must be "cpu" or "cuda", got "${provider}"`);
  process.exit(2);
}
const dataDir = env.DIFFID_DATA_DIR ?? join(import.meta.dirname, '../../../var');
let modelDir = env.DIFFID_MODEL_DIR;
if (!modelDir) {
  const made = await ensureDefaultBundle(dataDir);
  modelDir = made.dir;
  logger.info({ dir: made.dir, generated: made.generated }, 'DIFFID_MODEL_DIR is not set: using the embedded default bundle');
}

const redis = new Redis(env.REDIS_URL ?? 'redis://127.0.0.1:6379', { maxRetriesPerRequest: null });
redis.on('error', (err) => logger.warn({ err: err.message }, 'redis connection error'));

try {
  const service = await startWorkerService({
    redis,
    prefix: env.DIFFID_REDIS_PREFIX ?? 'diffid',
    queueName: env.DIFFID_QUEUE ?? 'jobs',
    resultTtlSeconds: intEnv('DIFFID_RESULT_TTL_SECONDS', 86_400, 60),
    modelDir,
    executionProvider: provider,
    intraOpThreads: intEnv('DIFFID_INTRA_OP_THREADS', 0, 0),
    maxBatch: intEnv('DIFFID_MAX_BATCH', 8, 1),
    log: (event, fields) => logger.info(fields, event),
  });
  logger.info({ bundle: service.inference.bundle.name }, 'worker ready');
  const stop = async (signal: string) => {
    logger.info({ signal }, 'stopping: finishing the current job');
    await service.close();
    redis.disconnect();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop('SIGINT'));
  process.once('SIGTERM', () => void stop('SIGTERM'));
  // SIGHUP reloads the bundle from DIFFID_MODEL_DIR on a fresh inference thread.
  process.on('SIGHUP', () => {
    logger.info('SIGHUP: reloading the bundle');
    service.inference.restart().then(
      () => logger.info('bundle reloaded'),
      (err: Error) => logger.error({ err: err.message }, 'bundle reload failed'),
    );
  });
} catch (err) {
  const e = err as Error & { code?: string };
  logger.fatal({ code: e.code }, e.message);
  redis.disconnect();
  process.exit(1);
}
