// Worker thread of src/token-cache.ts: tokenizes its share of the texts. Plain JavaScript so that it
// starts without a TypeScript loader; it registers tsx itself to import the tokenizer module.
import { parentPort, workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
const { TextTokenizer } = await import('./tokenizer.ts');
const { tokenizerPath, texts, maxLength, prefix } = workerData;
const tok = TextTokenizer.fromFile(tokenizerPath);
const lengths = new Int32Array(texts.length);
const parts = texts.map((t, i) => {
  const ids = tok.encode(t, { maxLength, prefix });
  lengths[i] = ids.length;
  return ids;
});
const ids = new Int32Array(lengths.reduce((a, b) => a + b, 0));
let at = 0;
for (const p of parts) (ids.set(p, at), (at += p.length));
parentPort.postMessage({ ids, lengths }, [ids.buffer, lengths.buffer]);
