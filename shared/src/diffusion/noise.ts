// Seeded noise. Every image draws from its own generator, so a seed names one image whatever else
// shares its batch (the complaint in diffusers #2659). The stream is xoshiro128** seeded through
// splitmix64, with Box–Muller pairs in float64: stable across platforms and Node versions.

const MASK64 = (1n << 64n) - 1n;

function splitmix64(state: bigint): [bigint, bigint] {
  const next = (state + 0x9e3779b97f4a7c15n) & MASK64;
  let z = next;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
  return [next, z ^ (z >> 31n)];
}

/** A deterministic uniform generator; `nextUint32` and `nextFloat` advance the same stream. */
export class SeededRandom {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  /** `seed`: a non-negative safe integer (0 … 2^53 − 1). */
  constructor(seed: number) {
    if (!Number.isSafeInteger(seed) || seed < 0) throw new RangeError(`seed must be an integer in 0…${Number.MAX_SAFE_INTEGER}, got ${seed}`);
    let st = BigInt(seed);
    let a: bigint;
    let b: bigint;
    [st, a] = splitmix64(st);
    [st, b] = splitmix64(st);
    this.s0 = Number(a & 0xffffffffn) | 0;
    this.s1 = Number(a >> 32n) | 0;
    this.s2 = Number(b & 0xffffffffn) | 0;
    this.s3 = Number(b >> 32n) | 0;
  }

  /** xoshiro128** (Blackman & Vigna). */
  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform in [0, 1) with 53 random bits. */
  nextFloat(): number {
    const hi = this.nextUint32() >>> 5;
    const lo = this.nextUint32() >>> 6;
    return (hi * 67108864 + lo) / 9007199254740992;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** Fills `out` with standard-normal values (Box–Muller) drawn from `rng`. */
export function fillGaussian(rng: SeededRandom, out: Float32Array): Float32Array {
  for (let i = 0; i < out.length; i += 2) {
    // 1 − u keeps the logarithm's argument in (0, 1].
    const u1 = 1 - rng.nextFloat();
    const u2 = rng.nextFloat();
    const r = Math.sqrt(-2 * Math.log(u1));
    out[i] = r * Math.cos(2 * Math.PI * u2);
    if (i + 1 < out.length) out[i + 1] = r * Math.sin(2 * Math.PI * u2);
  }
  return out;
}

/** `length` standard-normal values from the generator seeded with `seed`. */
export function gaussianNoise(seed: number, length: number): Float32Array {
  return fillGaussian(new SeededRandom(seed), new Float32Array(length));
}
