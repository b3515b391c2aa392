// Worker threads do not inherit tsx's loader from `--import tsx`: from source, this plain-JS entry
// registers it in the thread, then loads the TypeScript entry named in workerData.
import { workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
await import(workerData.entry);
