// What the tests' harness and the bench use of the API: the app and its Redis connection, made
// as server.ts makes them.
export { buildApp, type AppOptions } from './app.ts';
export { apiRedis } from './redis-connections.ts';
