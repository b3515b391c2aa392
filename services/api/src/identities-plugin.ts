// Makes the identity store available to routes as `app.identities`.
import fp from 'fastify-plugin';
import { createIdentityService, type IdentityService, type IdentityServiceOptions } from './identity-service.ts';

declare module 'fastify' {
  interface FastifyInstance {
    identities: IdentityService;
  }
}

export const identitiesPlugin = fp<IdentityServiceOptions>(
  async (app, options) => {
    app.decorate('identities', createIdentityService(options));
  },
  { name: 'diffid-identities', fastify: '5.x' },
);
