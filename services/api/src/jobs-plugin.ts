// Makes the job service available to routes as `app.jobs`, and closes it with the app.
import fp from 'fastify-plugin';
import { createJobService, type JobService, type JobServiceOptions } from './job-service.ts';

declare module 'fastify' {
  interface FastifyInstance {
    jobs: JobService;
  }
}

export const jobsPlugin = fp<JobServiceOptions>(
  async (app, options) => {
    const jobs = createJobService(options);
    app.decorate('jobs', jobs);
    app.addHook('onClose', async () => jobs.close());
  },
  { name: 'diffid-jobs', fastify: '5.x' },
);
