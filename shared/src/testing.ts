// Test support: a Redis connection scoped to a fresh key prefix, removed again afterwards.
// Tests share the machine's Redis, so they never FLUSHDB: they delete their own prefix only.
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';

export const TEST_REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

export interface RedisScope {
  redis: Redis;
  prefix: string;
  /** Deletes every key under the prefix and closes the connection. */
  cleanup(): Promise<void>;
}

/** Deletes every key that starts with `prefix:`; returns how many. */
export async function deletePrefix(redis: Redis, prefix: string): Promise<number> {
  let cursor = '0';
  let deleted = 0;
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 500);
    cursor = next;
    if (keys.length > 0) deleted += await redis.del(...keys);
  } while (cursor !== '0');
  return deleted;
}

export async function redisScope(label: string): Promise<RedisScope> {
  const prefix = `diffid-test-${label}-${randomUUID().slice(0, 8)}`;
  const redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null, lazyConnect: true });
  await redis.connect();
  return {
    redis,
    prefix,
    async cleanup() {
      await deletePrefix(redis, prefix);
      redis.disconnect();
    },
  };
}
