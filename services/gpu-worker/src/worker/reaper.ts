// Finding jobs whose worker is gone. A killed worker is found by its Redis connection, not by its
// lock: every few seconds each worker looks at the active jobs, and a job whose owner's connection
// is gone has its lock removed, so that BullMQ's stalled check gives it to another worker within
// a couple of checks. A paused Redis keeps its connections, so a pause frees nothing.
import type { Redis } from 'ioredis';
import { jobKeys, queueKeys } from '@diffid/shared/contract';

/** Removes a lock if it still holds the given token (a lost worker's), atomically. */
const RELEASE_LOCK = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

/**
 * Releases the locks of active jobs whose worker no Redis connection names any more (it was
 * killed, or its host vanished). Returns the ids released.
 */
export async function reapLostWorkers(redis: Redis, prefix: string, queueName: string): Promise<string[]> {
  const keys = queueKeys(prefix, queueName);
  const active = await redis.lrange(keys.active, 0, -1);
  if (active.length === 0) return [];
  const clients = String(await redis.call('CLIENT', 'LIST'));
  const connected = new Set([...clients.matchAll(/ name=(\S*)/g)].map((m) => m[1] as string).filter((n) => n.includes(':w:')).map((n) => n.slice(n.lastIndexOf(':w:') + 3)));
  const released: string[] = [];
  for (const id of active) {
    const owner = await redis.get(jobKeys(prefix, id).owner);
    if (!owner) continue;
    const { worker, token } = JSON.parse(owner) as { worker: string; token: string };
    if (connected.has(worker)) continue;
    if ((await redis.eval(RELEASE_LOCK, 1, keys.lock(id), token)) === 1) released.push(id);
  }
  return released;
}

/** Looks for lost workers every `intervalMs`; returns the function that stops looking. */
export function startReaper(redis: Redis, prefix: string, queueName: string, intervalMs: number, log: (event: string, fields: Record<string, unknown>) => void): () => void {
  // A Redis user without CLIENT LIST leaves recovery to lock expiry: say so once.
  let warned = false;
  const timer = setInterval(
    () =>
      void reapLostWorkers(redis, prefix, queueName).then(
        (ids) => ids.forEach((id) => log('job_worker_lost', { id })),
        (err: Error) => {
          if (warned) return;
          warned = true;
          log('reaper_unavailable', { err: err.message, effect: "a killed worker's job waits for its lock to expire (DIFFID_LOCK_SECONDS)" });
        },
      ),
    intervalMs,
  );
  return () => clearInterval(timer);
}
