// The second process of api-load.ts: runs autocannon with the options it is given as JSON on
// stdin and prints autocannon's result as JSON, so that the load generator never shares the
// API's event loop.
import autocannon from 'autocannon';

const chunks: Buffer[] = [];
for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
const options = JSON.parse(Buffer.concat(chunks).toString('utf8')) as autocannon.Options & { bodyBase64?: string };
const { bodyBase64, ...rest } = options;
const result = await autocannon({ ...rest, ...(bodyBase64 ? { body: Buffer.from(bodyBase64, 'base64') } : {}) });
process.stdout.write(JSON.stringify(result));
