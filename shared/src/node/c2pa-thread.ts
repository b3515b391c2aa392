// The thread c2paVerifier runs: each file's C2PA check, its verdict posted back with its id.
import { parentPort } from 'node:worker_threads';
import { verifyC2pa } from './c2pa.ts';

parentPort?.postMessage({ ready: true });
parentPort?.on('message', (m: { id: number; bytes: Uint8Array }) => {
  void verifyC2pa(m.bytes).then((verdict) => parentPort?.postMessage({ id: m.id, verdict }));
});
