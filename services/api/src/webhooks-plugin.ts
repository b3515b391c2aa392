// Webhooks for routes (`app.webhooks.target`: the checked target of a request's webhook fields)
// and their dispatcher, started and closed with the app.
import fp from 'fastify-plugin';
import { DiffIdError, type WebhookTarget } from '@diffid/shared/contract';
import { startWebhookDispatcher } from './webhook-dispatcher.ts';
import { checkWebhook, type WebhookPolicy } from './webhook-policy.ts';

export interface WebhookOptions {
  /** The signing key (DIFFID_WEBHOOK_SECRET); without it no webhook is taken. */
  key?: Buffer;
  policy: WebhookPolicy;
  timeoutMs?: number;
}

declare module 'fastify' {
  interface FastifyInstance {
    webhooks: {
      /** The request's webhook, checked (undefined when it asks for none). */
      target(url: string | undefined, events: string | undefined): Promise<WebhookTarget | undefined>;
    };
  }
}

export const webhooksPlugin = fp<{ webhooks?: WebhookOptions; redis: import('ioredis').Redis; prefix: string; queueName: string }>(
  async (app, options) => {
    const w = options.webhooks;
    app.decorate('webhooks', {
      async target(url, events) {
        if (url === undefined) {
          if (events !== undefined) throw new DiffIdError('VALIDATION', '"webhook_events" needs "webhook", the URL to send them to');
          return undefined;
        }
        if (!w?.key) throw new DiffIdError('WEBHOOK_REFUSED', 'this server sends no webhooks: it has no signing secret (DIFFID_WEBHOOK_SECRET); poll GET /jobs/{id} or follow /jobs/{id}/events instead');
        return checkWebhook(w.policy, url, events);
      },
    });
    if (!w?.key) return;
    const dispatcher = startWebhookDispatcher({
      redis: options.redis,
      prefix: options.prefix,
      queueName: options.queueName,
      key: w.key,
      policy: w.policy,
      view: (id, owner) => app.jobs.view(id, owner),
      batchView: (id, owner) => app.batches.view(id, owner),
      ...(w.timeoutMs === undefined ? {} : { timeoutMs: w.timeoutMs }),
      log: (event, fields) => app.log.info(fields, event),
    });
    app.addHook('onClose', async () => dispatcher.close());
  },
  { name: 'diffid-webhooks', fastify: '5.x', dependencies: ['diffid-jobs'] },
);
