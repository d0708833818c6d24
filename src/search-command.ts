// `xlir index` and `xlir search`: use a trained model for retrieval. `index` encodes a corpus JSONL
// into a FAISS index (ids in its sidecar, FaissIndex.save) plus a small metadata file (model, prefix,
// each document's language and the start of its text), `search` encodes queries with the same model
// and prints the top hits with their language.
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Argv } from 'yargs';
import { Encoder } from './encoder.ts';
import { readJsonl } from './jsonl.ts';
import { FaissIndex } from './search/faiss.ts';
import { prepareOutputFile } from './output-path.ts';
import { resolveInputs } from './input-defaults.ts';

interface IndexMeta {
  format: 'xlir-index';
  version: 1;
  model: string;
  passagePrefix: string;
  maxPassageLength: number;
  docs: { lang: string | null; snippet: string }[];
}

const metaPath = (index: string) => `${index}.meta.json`;
const CHUNK = 4096;

export async function runIndex(o: {
  model: string; corpus: string; out: string; factory: string; batchSize: number;
  /** Default: what the model takes for passages (src/input-defaults.ts). */
  prefix?: string; maxLength?: number;
  log?: (s: string) => void;
}): Promise<{ documents: number }> {
  const log = o.log ?? ((s: string) => process.stderr.write(s + '\n'));
  prepareOutputFile(o.out, '--out');
  const enc = Encoder.load(o.model);
  try {
    const { inputs, note } = resolveInputs(enc.folderInputs, { passagePrefix: o.prefix, maxPassageLength: o.maxLength }, ['passagePrefix', 'maxPassageLength']);
    if (note) log(`passages: ${note}`);
    const ids: string[] = [], docs: IndexMeta['docs'] = [], parts: Float32Array[] = [];
    let texts: string[] = [];
    const flush = async () => {
      if (!texts.length) return;
      parts.push(await enc.encodeTexts(texts, { maxLength: inputs.maxPassageLength, prefix: inputs.passagePrefix, batchSize: o.batchSize }));
      log(`encoded ${ids.length} documents`);
      texts = [];
    };
    const seen = new Set<string>();
    for await (const { line, value } of readJsonl(o.corpus)) {
      const id = value.docid ?? value._id ?? value.id;
      if (typeof id !== 'string' && typeof id !== 'number') throw new Error(`${o.corpus}:${line}: "docid" (or "_id", "id") missing`);
      if (seen.has(String(id))) throw new Error(`${o.corpus}:${line}: document id ${JSON.stringify(id)} given twice`);
      seen.add(String(id));
      const text = value.text ?? value.positive;
      if (typeof text !== 'string' || !text.trim()) throw new Error(`${o.corpus}:${line}: "text" missing or empty`);
      const title = typeof value.title === 'string' && value.title ? `${value.title} ` : '';
      ids.push(String(id));
      docs.push({ lang: typeof value.lang === 'string' ? value.lang : null, snippet: (title + text).slice(0, 160) });
      texts.push(title + text);
      if (texts.length >= CHUNK) await flush();
    }
    await flush();
    if (!ids.length) throw new Error(`${o.corpus}: no documents`);
    const D = enc.embeddingDim;
    const all = new Float32Array(ids.length * D);
    let at = 0;
    for (const p of parts) (all.set(p, at), (at += p.length));
    const index = FaissIndex.create(D, { factory: o.factory, metric: 'ip' });
    if (!index.isTrained) index.train(all);
    index.add(all, { ids });
    index.save(o.out);
    const meta: IndexMeta = { format: 'xlir-index', version: 1, model: resolve(o.model), passagePrefix: inputs.passagePrefix, maxPassageLength: inputs.maxPassageLength, docs };
    const tmp = `${metaPath(o.out)}.tmp-${process.pid}`;
    writeFileSync(tmp, JSON.stringify(meta));
    renameSync(tmp, metaPath(o.out));
    log(`wrote ${o.out} (${o.factory}, ${ids.length} documents, dim ${D}) and ${metaPath(o.out)}`);
    return { documents: ids.length };
  } finally {
    enc.dispose();
  }
}

export interface Hit { rank: number; score: number; id: string; lang: string | null; snippet: string }

export async function runSearch(o: {
  index: string; model?: string; queries: string[]; k: number;
  /** Default: what the model takes for queries (src/input-defaults.ts). */
  prefix?: string; maxLength?: number;
  log?: (s: string) => void;
}): Promise<Hit[][]> {
  const log = o.log ?? ((s: string) => process.stderr.write(s + '\n'));
  let meta: IndexMeta;
  try {
    meta = JSON.parse(readFileSync(metaPath(o.index), 'utf8'));
  } catch (e) {
    throw new Error(`${metaPath(o.index)}: cannot read the index metadata written by xlir index (${(e as Error).message})`);
  }
  if (meta.format !== 'xlir-index') throw new Error(`${metaPath(o.index)}: not an xlir index metadata file`);
  const index = FaissIndex.load(o.index);
  const enc = Encoder.load(o.model ?? meta.model);
  try {
    if (o.model !== undefined && resolve(o.model) !== meta.model)
      log(`warning: ${o.index} was built with ${meta.model}; the scores mean something only if ${o.model} is the same model`);
    const { inputs, note } = resolveInputs(enc.folderInputs, { queryPrefix: o.prefix, maxQueryLength: o.maxLength }, ['queryPrefix', 'maxQueryLength']);
    if (note) log(`queries: ${note}`);
    if (enc.embeddingDim !== index.dim)
      throw new Error(`the model's embeddings have ${enc.embeddingDim} dimensions but ${o.index} holds ${index.dim}: use the model that built the index`);
    const q = await enc.encodeTexts(o.queries, { maxLength: inputs.maxQueryLength, prefix: inputs.queryPrefix });
    const k = Math.min(o.k, index.size);
    const r = index.search(q, k);
    return o.queries.map((_, qi) => {
      const hits: Hit[] = [];
      for (let j = 0; j < k; j++) {
        const label = r.labels[qi * k + j];
        if (label < 0) continue;
        hits.push({ rank: j + 1, score: r.scores[qi * k + j], id: String(index.idOf(label)), lang: meta.docs[label].lang, snippet: meta.docs[label].snippet });
      }
      return hits;
    });
  } finally {
    enc.dispose();
  }
}

export const indexCommand = {
  command: 'index',
  describe: 'encode a corpus JSONL ({"docid"|"_id"|"id", "text", "title"?, "lang"?} a line) into a FAISS index',
  builder: (c: Argv) => c
    .option('model', { type: 'string', demandOption: true, describe: 'model folder' })
    .option('corpus', { type: 'string', demandOption: true, describe: 'corpus JSONL' })
    .option('out', { type: 'string', demandOption: true, describe: 'index file (plus .ids.json and .meta.json beside it)' })
    .option('factory', { type: 'string', default: 'Flat', describe: 'FAISS index factory string (Flat = exact; HNSW32; IVF256,PQ16np)' })
    .option('prefix', { type: 'string', describe: 'before every document (default: the model\'s passage prefix, else "Passage: ")' })
    .option('max-length', { type: 'number', describe: 'tokens per document (default: the model\'s passage length, else 256)' })
    .option('batch-size', { type: 'number', default: 64 }),
  handler: async (a: { model: string; corpus: string; out: string; factory: string; prefix?: string; 'max-length'?: number; 'batch-size': number }) => {
    await runIndex({ model: a.model, corpus: a.corpus, out: a.out, factory: a.factory, prefix: a.prefix, maxLength: a['max-length'], batchSize: a['batch-size'] });
  },
};

export const searchCommand = {
  command: 'search',
  describe: 'search an index built by xlir index and print the top hits with their language',
  builder: (c: Argv) => c
    .option('index', { type: 'string', demandOption: true })
    .option('model', { type: 'string', describe: 'default: the model that built the index' })
    .option('query', { type: 'string', describe: 'one query' })
    .option('queries', { type: 'string', describe: 'or: a file with one query a line' })
    .option('k', { type: 'number', default: 10 })
    .option('prefix', { type: 'string', describe: 'before every query (default: the model\'s query prefix, else "Query: ")' })
    .option('max-length', { type: 'number', describe: 'tokens per query (default: the model\'s query length, else 64)' })
    .option('json', { type: 'boolean', default: false, describe: 'print JSON lines instead of a table' }),
  handler: async (a: { index: string; model?: string; query?: string; queries?: string; k: number; prefix?: string; 'max-length'?: number; json: boolean }) => {
    const queries = a.query !== undefined ? [a.query] : a.queries ? readFileSync(a.queries, 'utf8').split('\n').filter((l) => l.trim()) : [];
    if (!queries.length) throw new Error('give --query "..." or --queries FILE');
    const res = await runSearch({ index: a.index, model: a.model, queries, k: a.k, prefix: a.prefix, maxLength: a['max-length'] });
    res.forEach((hits, qi) => {
      if (a.json) return console.log(JSON.stringify({ query: queries[qi], hits }));
      console.log(`\n${queries[qi]}`);
      for (const h of hits) console.log(`${String(h.rank).padStart(3)}  ${h.score.toFixed(4)}  ${(h.lang ?? '-').padEnd(3)}  ${h.id}  ${h.snippet.slice(0, 90)}`);
    });
  },
};
