// @diffid/shared/contract: what the API and the workers agree on — job kinds and parameters,
// payloads and results, the error catalogue, webhook deliveries and Redis key names. No
// environment, no native modules, no Redis client: both services and the tools import it.
export * from './jobs.ts';
export * from './errors.ts';
export * from './webhooks.ts';
export * from './redis-keys.ts';
