// Watching jobs: one QueueEvents subscription per API process (opened on first use) fans BullMQ's
// events out to the watchers of each job id; a slow poll covers changes that have no event (a
// cancel made through another API process).

import { QueueEvents } from 'bullmq';
import type { Redis } from 'ioredis';
import { blockingConnection } from './redis-connections.ts';
import { isTerminal, type JobView } from './job-view.ts';

export interface JobWatcherOptions {
  redis: Redis;
  prefix: string;
  queueName: string;
  /** Reads a job's current view (null: no such job). */
  view(id: string): Promise<JobView | null>;
  /** How often each watcher re-reads its job without an event. */
  pollMs?: number;
}

export interface JobWatcher {
  /** Calls `onChange` with the job's view now and on every change; returns an unsubscribe. */
  watch(id: string, onChange: (view: JobView | null) => void): () => void;
  /** Resolves with the job's view once it is finished, or as it is when `ms` have passed. */
  waitFor(id: string, ms: number): Promise<JobView | null>;
  /** Tells the watchers of `id` to re-read it now (after a change this process made). */
  notify(id: string): void;
  close(): Promise<void>;
}

const EVENTS = ['active', 'progress', 'completed', 'failed', 'removed', 'waiting'] as const;

export function createJobWatcher(options: JobWatcherOptions): JobWatcher {
  const watchers = new Map<string, Set<() => void>>();
  let events: QueueEvents | null = null;
  let eventsConnection: Redis | null = null;

  const notify = (id: string) => watchers.get(id)?.forEach((fn) => fn());

  const ensureEvents = () => {
    if (events) return;
    eventsConnection = blockingConnection(options.redis);
    events = new QueueEvents(options.queueName, { connection: eventsConnection, prefix: options.prefix });
    events.on('error', () => undefined);
    for (const name of EVENTS) events.on(name, ((args: { jobId: string }) => notify(args.jobId)) as never);
  };

  const watch = (id: string, onChange: (view: JobView | null) => void): (() => void) => {
    ensureEvents();
    let last = '';
    let stopped = false;
    const refresh = () => {
      options.view(id).then(
        (v) => {
          const text = JSON.stringify(v);
          if (!stopped && text !== last) {
            last = text;
            onChange(v);
          }
        },
        () => undefined,
      );
    };
    const set = watchers.get(id) ?? new Set();
    set.add(refresh);
    watchers.set(id, set);
    const timer = setInterval(refresh, options.pollMs ?? 2000);
    refresh();
    return () => {
      stopped = true;
      clearInterval(timer);
      set.delete(refresh);
      if (set.size === 0) watchers.delete(id);
    };
  };

  const waitFor = (id: string, ms: number): Promise<JobView | null> =>
    new Promise((resolve) => {
      let latest: JobView | null = null;
      let settled = false;
      const settle = () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        // The subscription may not exist yet when the first view is already final.
        queueMicrotask(() => unsubscribe());
        resolve(latest);
      };
      const timer = setTimeout(settle, ms);
      const unsubscribe = watch(id, (view) => {
        latest = view;
        if (!view || isTerminal(view.status)) settle();
      });
    });

  return {
    watch,
    waitFor,
    notify,
    async close() {
      await events?.close();
      eventsConnection?.disconnect();
    },
  };
}
