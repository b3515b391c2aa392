// Entry point of an API process: the only place that reads the environment (through the shared
// settings table). Listens, and exits cleanly on signals.
import { readFileSync } from 'node:fs';
import { settingsOrExit } from '@diffid/shared/settings';
import { MB, admissionLimits } from '@diffid/shared/admission';
import { webhookKey } from '@diffid/shared/contract';
import { buildApp } from './app.ts';
import { apiRedis } from './redis-connections.ts';
import { keyRing, parseApiKeys } from './auth.ts';
import { webhookPolicy } from './webhook-policy.ts';

const settings = settingsOrExit();

// Keys from the variable and the file, parsed once; only their digests are kept.
let keyText = settings.apiKeys ?? '';
if (settings.apiKeysFile) {
  try {
    keyText += `\n${readFileSync(settings.apiKeysFile, 'utf8')}`;
  } catch (err) {
    process.stderr.write(`cannot read DIFFID_API_KEYS_FILE ${settings.apiKeysFile}: ${(err as Error).message}\n`);
    process.exit(2);
  }
}
const parsedKeys = parseApiKeys(keyText);
if (parsedKeys.problems.length > 0) {
  process.stderr.write(`invalid API keys (DIFFID_API_KEYS / DIFFID_API_KEYS_FILE):\n  - ${parsedKeys.problems.join('\n  - ')}\n`);
  process.exit(2);
}
const keys = keyRing(parsedKeys.tenants);
keyText = '';
const policy = webhookPolicy(settings.webhookAllow);
if ('error' in policy) {
  process.stderr.write(`invalid DIFFID_WEBHOOK_ALLOW: ${policy.error}\n`);
  process.exit(2);
}
// Checked by the settings table already: a string here is a valid secret.
const webhookSigningKey = settings.webhookSecret === undefined ? undefined : (webhookKey(settings.webhookSecret) as Buffer);

// Without keys anyone who can reach the port can use the API: listen on loopback unless told.
const host = settings.host ?? (keys.size > 0 ? '0.0.0.0' : '127.0.0.1');

const redis = apiRedis(settings.redisUrl);
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
    limits: admissionLimits(settings),
    webhooks: { policy, ...(webhookSigningKey ? { key: webhookSigningKey } : {}) },
    identities: { ttlSeconds: settings.identityTtlSeconds, limits: { maxPerKey: settings.maxIdentitiesPerKey, maxBytesPerKey: settings.maxIdentityMbPerKey * MB } },
    batches: { maxJobsPerKey: settings.maxBatchedJobsPerKey },
    access: {
      keys,
      rateLimitPerMinute: settings.rateLimitPerMinute,
      maxStreamsPerKey: settings.maxStreamsPerKey,
      ...(settings.adminTenant ? { adminTenant: settings.adminTenant } : {}),
      highPriorityTenants: (settings.highPriorityTenants ?? '').split(',').map((t) => t.trim()).filter(Boolean),
    },
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

await app.listen({ port: settings.port, host });
if (keys.size === 0) {
  app.log.warn(
    { host },
    host === '127.0.0.1' || host === '::1' || host === 'localhost'
      ? 'no API keys configured (DIFFID_API_KEYS): listening on loopback only; set keys before setting HOST to expose it'
      : 'no API keys configured (DIFFID_API_KEYS) and HOST exposes the API: anyone who reaches it can use it',
  );
} else {
  app.log.info({ host, tenants: keys.size }, 'API keys required');
}
if (policy.everyPort.length > 0) {
  app.log.warn({ entries: policy.everyPort }, 'DIFFID_WEBHOOK_ALLOW entries without a port admit every port of their hosts, a Redis port included; name the port (host:PORT)');
}
