// The embedded default: a bundle generated on first start when none is configured.
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { MANIFEST_FILE } from '@diffid/shared';
import { buildDemoBundle } from './demo-bundle.ts';
import { writeBundle } from './write-bundle.ts';

export const DEFAULT_BUNDLE_KIND = 'demo';

/** Returns the default bundle's directory under `dataDir`, generating it if it is not there. */
export async function ensureDefaultBundle(dataDir: string): Promise<{ dir: string; generated: boolean }> {
  const dir = join(dataDir, 'bundles', DEFAULT_BUNDLE_KIND);
  if (existsSync(join(dir, MANIFEST_FILE))) return { dir, generated: false };
  await mkdir(dirname(dir), { recursive: true });
  // Written aside and renamed into place, so that workers starting together never see half a bundle.
  const tmp = await mkdtemp(`${dir}.tmp-`);
  try {
    await writeBundle(tmp, buildDemoBundle());
    await rename(tmp, dir);
    return { dir, generated: true };
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    if (existsSync(join(dir, MANIFEST_FILE))) return { dir, generated: false };
    throw err;
  }
}
