// MP4 from RGB frames, by ffmpeg (the one module that runs it): H.264 in yuv420p with the index at
// the front (+faststart), so that browsers play it while it loads. ffmpeg is optional; a worker
// without it says so in its bundle info and makes WebP and GIF only.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Rgb } from '../vision/pixels.ts';

/** Whether `ffmpeg` runs here (checked once at start). */
export function ffmpegAvailable(command = 'ffmpeg'): boolean {
  return spawnSync(command, ['-hide_banner', '-version'], { stdio: 'ignore', timeout: 10_000 }).status === 0;
}

/** Encodes frames shown at `fps` as MP4 (H.264); each dimension is rounded down to even, as yuv420p needs. */
export async function encodeMp4(frames: Rgb[], fps: number, command = 'ffmpeg'): Promise<Buffer> {
  const first = frames[0];
  if (!first) throw new RangeError('a video needs at least one frame');
  const dir = await mkdtemp(join(tmpdir(), 'diffid-video-'));
  const out = join(dir, 'morph.mp4');
  try {
    const args = ['-hide_banner', '-loglevel', 'error', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', `${first.width}x${first.height}`, '-r', String(fps), '-i', 'pipe:0',
      '-vf', 'crop=trunc(iw/2)*2:trunc(ih/2)*2', '-c:v', 'libx264', '-preset', 'medium', '-crf', '20', '-pix_fmt', 'yuv420p', '-movflags', '+faststart', '-y', out];
    const child = spawn(command, args, { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-2000)));
    const exited = new Promise<number | null>((resolve, reject) => {
      child.on('error', reject);
      child.on('close', resolve);
    });
    for (const f of frames) {
      if (!child.stdin.write(f.data)) await new Promise((r) => child.stdin.once('drain', r));
    }
    child.stdin.end();
    const code = await exited;
    if (code !== 0) throw new Error(`ffmpeg exited with ${code}: ${stderr.trim()}`);
    return await readFile(out);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
