// Pages of a Redis sorted set of ids scored by time (ms), for the list routes (GET /identities,
// GET /jobs): a page's cursor is the score and id of its last entry, `${score}.${id}`, and the
// next page starts strictly after it. Ties (one score, several ids) sort by id in the page's
// direction, so a cursor inside a tie goes on where it stopped.
import type { Redis } from 'ioredis';
import { DiffIdError } from '@diffid/shared/contract';

/** Where the page before ended. */
export interface Cursor {
  score: number;
  id: string;
}

export interface Entry {
  id: string;
  score: number;
}

const CURSOR = /^([0-9]{1,15})\.([0-9a-f-]{36})$/;

/** A cursor as a client sent it; undefined when none; 400 when it is not one this API gave. */
export function parseCursor(text: string | undefined): Cursor | undefined {
  if (text === undefined) return undefined;
  const m = CURSOR.exec(text);
  if (!m) throw new DiffIdError('VALIDATION', '"cursor" is not one this API gave; pass next_cursor from the page before, or leave it out');
  return { score: Number(m[1]), id: m[2] as string };
}

/** The cursor that ends a page at this entry. */
export const cursorAt = (e: Entry): string => `${e.score}.${e.id}`;

/**
 * Up to `count` entries after `cursor`, ascending by score from `floor` (entries below it are
 * left out: expired ones) or descending.
 */
export async function sortedPage(redis: Redis, key: string, o: { cursor?: Cursor; count: number; descending: boolean; floor?: number }): Promise<Entry[]> {
  const { cursor, count, descending } = o;
  // At most 64 ties at the cursor's score are passed over; more than that in one millisecond
  // would need a finer score.
  const take = count + 64;
  const raw = descending
    ? await redis.zrevrangebyscore(key, cursor ? cursor.score : '+inf', '-inf', 'WITHSCORES', 'LIMIT', 0, take)
    : await redis.zrangebyscore(key, Math.max(o.floor ?? 0, cursor?.score ?? 0), '+inf', 'WITHSCORES', 'LIMIT', 0, take);
  const entries: Entry[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) entries.push({ id: raw[i] as string, score: Number(raw[i + 1]) });
  const later = (e: Entry) => {
    if (!cursor || e.score !== cursor.score) return true;
    return descending ? e.id < cursor.id : e.id > cursor.id;
  };
  // zrevrangebyscore orders ties by id descending, zrangebyscore ascending: the filter matches both.
  return entries.filter((e) => !cursor || (descending ? e.score < cursor.score : e.score > cursor.score) || later(e)).slice(0, count);
}
