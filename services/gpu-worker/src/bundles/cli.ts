// npm run bundle -- --kind tiny --out DIR [--flavor diffusers|optimum] [--seed N]
import { parseArgs } from 'node:util';
import { buildTinyBundle } from './tiny-bundle.ts';
import { DIFFUSERS_FLAVOR, OPTIMUM_FLAVOR } from './tiny-graphs.ts';
import { writeBundle } from './write-bundle.ts';

const USAGE = 'usage: npm run bundle -- --kind tiny --out DIR [--flavor diffusers|optimum] [--seed N]';

function fail(message: string): never {
  process.stderr.write(`${message}\n${USAGE}\n`);
  process.exit(2);
}

const { values } = (() => {
  try {
    return parseArgs({
      options: {
        kind: { type: 'string' },
        out: { type: 'string' },
        flavor: { type: 'string', default: 'diffusers' },
        seed: { type: 'string', default: '1' },
      },
      strict: true,
    });
  } catch (err) {
    return fail((err as Error).message);
  }
})();

if (!values.out) fail('--out DIR is required');
if (values.kind !== 'tiny') fail(`--kind must be "tiny" (got ${values.kind === undefined ? 'nothing' : `"${values.kind}"`})`);
const flavors = { diffusers: DIFFUSERS_FLAVOR, optimum: OPTIMUM_FLAVOR } as const;
const flavor = flavors[values.flavor as keyof typeof flavors];
if (!flavor) fail(`--flavor must be one of ${Object.keys(flavors).join(', ')}`);
const seed = Number(values.seed);
if (!Number.isSafeInteger(seed) || seed < 0) fail('--seed must be a non-negative integer');

const manifest = await writeBundle(values.out, buildTinyBundle({ seed, flavor }));
process.stdout.write(`wrote the ${manifest.name} bundle (${values.flavor} flavor, seed ${seed}) to ${values.out}\n`);
