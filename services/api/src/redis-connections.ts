// The API's Redis connections, made here for server.ts and the tests alike, so a test runs with
// the options production runs with.
import { Redis } from 'ioredis';

/** How long a request's Redis command may take before the request gets a 503. */
const COMMAND_TIMEOUT_MS = 5000;

/**
 * The API's command connection (not yet connected): it fails fast while Redis is away — requests
 * get a 503 — instead of queueing commands in memory, and a command that hangs times out.
 */
export function apiRedis(url: string): Redis {
  const redis = new Redis(url, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 1, commandTimeout: COMMAND_TIMEOUT_MS });
  redis.on('error', () => undefined); // reconnects on its own; readiness reports the outage
  return redis;
}

/**
 * A connection for BullMQ's blocking reads (a Worker, QueueEvents), from `redis`'s address. Its
 * reads block for seconds by design, so it has no command timeout — inherited, one would end each
 * idle read in an error and the reader would stop taking work — and it queues commands while it
 * reconnects, as BullMQ requires.
 */
export function blockingConnection(redis: Redis): Redis {
  const connection = redis.duplicate({ commandTimeout: undefined, enableOfflineQueue: true, maxRetriesPerRequest: null, lazyConnect: false });
  connection.on('error', () => undefined); // BullMQ reports through its own 'error' event
  return connection;
}
