import { loadBundle } from './src/bundle-loader.ts';
const b = await loadBundle('/tmp/b1');
console.log(b.dims);
console.log(JSON.stringify(b.ports.unet));
