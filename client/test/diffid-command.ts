// Runs the diffid command as users run it — the built bin that npm links when `npm run build` made
// one, else the source under tsx — for the CLI tests.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** As npm installed it: the linked `diffid` (node_modules/.bin), which runs the built CLI. */
export const LINKED = join(ROOT, 'node_modules/.bin/diffid');
const BUILT = existsSync(join(ROOT, 'client/dist/bin.js'));
const command = BUILT ? [LINKED] : [process.execPath, '--conditions=diffid-source', '--import', 'tsx', join(ROOT, 'client/src/bin.ts')];

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs diffid; `onStderr` may act on what it prints (send Ctrl-C, say). */
export function diffid(args: string[], env: Record<string, string>, onStderr?: (text: string, child: ReturnType<typeof spawn>) => void): Promise<Run> {
  return new Promise((resolve) => {
    const [program = LINKED, ...rest] = command;
    const child = spawn(program, [...rest, ...args], { cwd: ROOT, env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString();
      onStderr?.(stderr, child);
    });
    // A run that hangs is killed, so that the test reports what it printed instead of timing out.
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
