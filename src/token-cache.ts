// Tokenize once, train many times: texts are tokenized in worker threads (all cores) and the ids
// are cached in one binary file keyed by the tokenizer, the options and the texts, so a second run
// (or a resumed one) reads ids instead of tokenizing. Training then only slices Int32Arrays.
//
// File layout (little-endian): "XLIRTOK1", uint32 count, uint32 total, int32 offsets[count + 1],
// int32 ids[total].
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';

const MAGIC = 'XLIRTOK1';

export interface TokenizeOptions {
  tokenizerPath: string;
  maxLength: number;
  prefix: string;
  /** Folder of cache files; none: no caching. */
  cacheDir?: string;
  workers?: number;
}

/** Token ids of texts[i], as views into one buffer. */
export class TokenStore {
  constructor(readonly offsets: Int32Array, readonly ids: Int32Array, readonly key: string, readonly fromCache: boolean) {}
  get count(): number {
    return this.offsets.length - 1;
  }
  get(i: number): Int32Array {
    return this.ids.subarray(this.offsets[i], this.offsets[i + 1]);
  }
  length(i: number): number {
    return this.offsets[i + 1] - this.offsets[i];
  }
}

export function cacheKey(texts: readonly string[], o: TokenizeOptions): string {
  const h = createHash('sha256');
  h.update(readFileSync(o.tokenizerPath));
  h.update(JSON.stringify({ maxLength: o.maxLength, prefix: o.prefix, n: texts.length }));
  for (const t of texts) h.update(t).update('\u0000');
  return h.digest('hex').slice(0, 32);
}

function readCache(path: string, key: string): TokenStore {
  const buf = readFileSync(path);
  if (buf.length < 16 || buf.toString('latin1', 0, 8) !== MAGIC) throw new Error(`${path}: not an xlir token cache file`);
  const count = buf.readUInt32LE(8), total = buf.readUInt32LE(12);
  const want = 16 + 4 * (count + 1) + 4 * total;
  if (buf.length !== want) throw new Error(`${path}: truncated token cache (${buf.length} bytes, expected ${want})`);
  const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length);
  return new TokenStore(new Int32Array(ab, 16, count + 1), new Int32Array(ab, 16 + 4 * (count + 1), total), key, true);
}

function writeCache(path: string, s: TokenStore): void {
  const head = Buffer.alloc(16);
  head.write(MAGIC, 0, 'latin1');
  head.writeUInt32LE(s.count, 8);
  head.writeUInt32LE(s.ids.length, 12);
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, Buffer.concat([head, Buffer.from(s.offsets.buffer, s.offsets.byteOffset, s.offsets.byteLength),
    Buffer.from(s.ids.buffer, s.ids.byteOffset, s.ids.byteLength)]));
  renameSync(tmp, path);  // atomic: a killed run never leaves a half-written cache under the real name
}

function runWorker(texts: string[], o: TokenizeOptions): Promise<{ ids: Int32Array; lengths: Int32Array }> {
  return new Promise((resolve, reject) => {
    const w = new Worker(new URL('./token-worker.mjs', import.meta.url), {
      workerData: { tokenizerPath: o.tokenizerPath, texts, maxLength: o.maxLength, prefix: o.prefix },
    });
    w.once('message', resolve);
    w.once('error', reject);
    w.once('exit', (code) => code !== 0 && reject(new Error(`tokenizer worker exited with code ${code}`)));
  });
}

export async function tokenizeAll(texts: readonly string[], o: TokenizeOptions): Promise<TokenStore> {
  const key = cacheKey(texts, o);
  const path = o.cacheDir ? join(o.cacheDir, `${key}.tok`) : undefined;
  if (path && existsSync(path)) return readCache(path, key);
  const nw = Math.max(1, Math.min(o.workers ?? availableParallelism(), Math.ceil(texts.length / 256)));
  const per = Math.ceil(texts.length / nw);
  const results = await Promise.all(Array.from({ length: nw }, (_, k) => runWorker(texts.slice(k * per, (k + 1) * per), o)));
  const offsets = new Int32Array(texts.length + 1);
  const ids = new Int32Array(results.reduce((n, r) => n + r.ids.length, 0));
  let i = 0, at = 0;
  for (const r of results) {
    ids.set(r.ids, at);
    for (const L of r.lengths) (offsets[i + 1] = offsets[i] + L), i++;
    at += r.ids.length;
  }
  const store = new TokenStore(offsets, ids, key, false);
  if (path) {
    mkdirSync(o.cacheDir!, { recursive: true });
    writeCache(path, store);
  }
  return store;
}
