// Reading settings from an environment map. Only the entry points (server.ts, main.ts) call this.

/** An integer setting: `fallback` when unset or empty; throws naming the variable when invalid. */
export function intFromEnv(env: Record<string, string | undefined>, name: string, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new RangeError(`${name} must be an integer in ${min}…${max}, got "${raw}"`);
  }
  return n;
}
