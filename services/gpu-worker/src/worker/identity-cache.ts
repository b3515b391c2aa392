// A morph's inverted latents kept with its stored identities: z_T of a side depends on that
// side's photo and face (the identity's), the conditioning it is inverted under (prompt, strength)
// and the steps, and on the bundle; stored under a hash of those, a morph of the same identity
// under the same conditioning skips that side's inversion: with both sides stored, one of its two
// runs of `steps` U-Net calls (plannedSteps). The latents expire with their identity and are
// written only while it exists, so a deleted identity leaves none behind (identity-service.ts
// deletes those already written).
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { identityKeys, inputIdentity, type MorphParams, type PayloadOf } from '@diffid/shared/contract';
import type { InvertedLatents } from '../pipelines/pipeline.ts';

const SIDES = ['image_a', 'image_b'] as const;

/** What sets a side's z_T besides its photo: a hash, the latents' key under the identity. */
export function invertedCondition(params: Pick<MorphParams, 'prompt' | 'steps' | 'identity_scale'>, bundleDigest: string): string {
  return createHash('sha256').update(JSON.stringify([bundleDigest, params.prompt, params.steps, params.identity_scale])).digest('hex').slice(0, 32);
}

/** The sides of a morph that name a stored identity, with the key their latents have under it. */
function cachedSides(prefix: string, payload: PayloadOf<'morph'>, bundleDigest: string) {
  if (payload.params.strategy === 'embedding_only') return [];
  const condition = invertedCondition(payload.params, bundleDigest);
  return SIDES.flatMap((side) => {
    const id = inputIdentity(payload, side);
    return id === undefined ? [] : [{ side, condition, keys: identityKeys(prefix, id) }];
  });
}

/** The latents stored for a morph's identity sides (none for a side not stored yet). */
export async function readInverted(redis: Redis, prefix: string, payload: PayloadOf<'morph'>, bundleDigest: string): Promise<InvertedLatents> {
  const sides = cachedSides(prefix, payload, bundleDigest);
  if (sides.length === 0) return {};
  const found = await redis.mgetBuffer(...sides.map((s) => s.keys.inverted(s.condition)));
  const out: InvertedLatents = {};
  sides.forEach((s, i) => {
    const bytes = found[i];
    // A copy: the Buffer may sit at an offset in a pooled ArrayBuffer.
    if (bytes && bytes.length % 4 === 0) out[s.side] = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
  });
  return out;
}

// KEYS: the identity's record, the latents' key, the set of stored conditions. ARGV: the
// condition, the latents. Written only while the record exists, expiring with it.
const STORE = `
local expires = redis.call('PEXPIRETIME', KEYS[1])
if expires < 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'PXAT', expires)
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('PEXPIREAT', KEYS[3], expires)
return 1`;

/** Stores the latents a morph inverted for its identity sides. */
export async function storeInverted(redis: Redis, prefix: string, payload: PayloadOf<'morph'>, bundleDigest: string, inverted: InvertedLatents): Promise<void> {
  for (const s of cachedSides(prefix, payload, bundleDigest)) {
    const z = inverted[s.side];
    if (!z) continue;
    await redis.eval(STORE, 3, s.keys.record, s.keys.inverted(s.condition), s.keys.invertedSet, s.condition, Buffer.from(z.buffer, z.byteOffset, z.byteLength));
  }
}
