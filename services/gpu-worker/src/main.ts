// Entry point of a worker process: reads the settings, starts the service, stops on signals.
import { join } from 'node:path';
import { Redis } from 'ioredis';
import pino from 'pino';
import { settingsOrExit } from '@diffid/shared/settings';
import { ensureDefaultBundle } from './bundles/default-bundle.ts';
import { serveMetrics } from './worker/metrics.ts';
import { startWorkerService } from './worker/service.ts';

const settings = settingsOrExit();
const logger = pino({ name: 'diffid-worker', level: settings.logLevel });

let modelDir = settings.modelDir;
if (!modelDir) {
  const made = await ensureDefaultBundle(settings.dataDir).catch((err: unknown) => {
    // A missing or altered shipped model: the message names the file and the fix.
    logger.fatal({ code: (err as { code?: string }).code }, (err as Error).message);
    process.exit(1);
  });
  modelDir = made.dir;
  logger.info({ dir: made.dir, generated: made.generated }, 'DIFFID_MODEL_DIR is not set: using the embedded default bundle');
}

const redis = new Redis(settings.redisUrl, { maxRetriesPerRequest: null });
redis.on('error', (err) => logger.warn({ err: err.message }, 'redis connection error'));

try {
  const service = await startWorkerService({
    redis,
    prefix: settings.redisPrefix,
    queueName: settings.queueName,
    resultTtlSeconds: settings.resultTtlSeconds,
    modelDir,
    executionProvider: settings.executionProvider,
    intraOpThreads: settings.intraOpThreads,
    maxBatch: settings.maxBatch,
    heapMb: settings.inferenceHeapMb,
    graphCacheDir: settings.graphCacheDir === 'off' ? undefined : (settings.graphCacheDir ?? join(settings.dataDir, 'graph-cache')),
    memoryMb: settings.memoryMb,
    batchJobs: settings.batchJobs,
    lockDurationMs: settings.lockSeconds * 1000,
    stalledIntervalMs: settings.stalledCheckSeconds * 1000,
    jobAttempts: settings.jobAttempts,
    c2pa: { dir: join(settings.dataDir, 'c2pa'), ...(settings.c2paKey ? { keyFile: settings.c2paKey } : {}), ...(settings.c2paCert ? { certFile: settings.c2paCert } : {}) },
    log: (event, fields) => logger.info(fields, event),
  });
  if (settings.workerMetricsPort !== undefined) {
    await serveMetrics(service.metrics, settings.workerMetricsPort);
    logger.info({ port: settings.workerMetricsPort }, 'metrics at /metrics');
  }
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
