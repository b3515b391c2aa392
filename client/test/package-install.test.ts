// The client outside the repository: `npm pack --workspace client` makes a tarball that installs
// on its own (no workspace, no @diffid/shared), and its `diffid` runs — the way to use the CLI
// elsewhere without asking the registry for a package named `diffid` (docs/api.md).
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { ROOT } from './diffid-command.ts';

const run = promisify(execFile);

t.test('the packed client installs on its own and its diffid runs', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'diffid-client-pack-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await run('npm', ['pack', '--workspace', 'client', '--pack-destination', dir], { cwd: ROOT });
  const [tarball] = (await readdir(dir)).filter((f) => f.endsWith('.tgz'));
  t.ok(tarball, 'npm pack made a tarball');
  if (!tarball) return;
  const prefix = join(dir, 'prefix');
  // Its dependencies come from npm's cache when npm ci put them there; else from the registry.
  await run('npm', ['install', '-g', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', join(dir, tarball)], { cwd: dir });
  const { stdout } = await run(join(prefix, 'bin/diffid'), ['--help'], { cwd: dir, env: { PATH: process.env.PATH ?? '' } });
  t.match(stdout, /Usage: diffid/, 'the installed diffid answers --help');
  t.match(stdout, /generate/, 'with its commands');
});
