// Test support: a Redis connection scoped to a fresh key prefix, removed again afterwards.
// Tests share the machine's Redis, so they never FLUSHDB: they delete their own prefix only.
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';

export const TEST_REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

/** The real photos of ../shared/faces (SOURCES.md there), beside the repository; absent on some machines. */
export const SHARED_PHOTOS = fileURLToPath(new URL('../../../../shared/faces/photos', import.meta.url));

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

/**
 * A synthetic face-like RGB image (skin-toned disc, darker eyes and mouth) whose colours depend
 * on a seed, so that different seeds are different "people".
 */
export function facePattern(seed: number, width = 160, height = 160): { data: Uint8Array; width: number; height: number } {
  const data = new Uint8Array(width * height * 3);
  const tone = [180 + (seed * 37) % 60, 130 + (seed * 53) % 60, 100 + (seed * 71) % 60];
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const u = (x / width - 0.5) * 2;
      const v = (y / height - 0.5) * 2;
      const inFace = u * u / 0.5 + v * v / 0.75 < 1;
      const eye = (Math.hypot(u + 0.3, v + 0.2) < 0.1 || Math.hypot(u - 0.3, v + 0.2) < 0.1) && inFace;
      const mouth = Math.abs(v - 0.4) < 0.05 && Math.abs(u) < 0.25 + 0.05 * (seed % 3);
      for (let c = 0; c < 3; c++) {
        const base = inFace ? (tone[c] as number) : 40 + ((x + y + seed * 13) % 50);
        data[(y * width + x) * 3 + c] = eye || mouth ? 30 + 10 * c : base;
      }
    }
  }
  return { data, width, height };
}
