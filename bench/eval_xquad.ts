// Time of a full XQuAD-R evaluation (11 languages, all articles: 13,090 questions x 13,014
// candidates, all three settings) with a fixed small model, split into encoding, search (the
// engine's blockwise score matrix) and metrics; then the search back ends on the SAME vectors:
// engine exact top-k, faiss-node Flat (typed path), and FAISS in Python (faiss-cpu in .venv).
//
//   npx tsx bench/eval_xquad.ts [--data ../shared/data/xquad-r] [--max-passage-length 256] [--threads 2]
//
// The model: a randomly initialised 'small' BERT (4 layers, hidden 256, 4 heads, FFN 1024, seed 0)
// with the mBERT WordPiece vocabulary from ../shared: fixed, so every run times the same work.
// Its retrieval quality is irrelevant here; only the time is.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Encoder } from '../src/encoder.ts';
import { native } from '../src/native.ts';
import { buildWordPieceTokenizerJson } from '../src/tokenizer.ts';
import { evaluateLareqa } from '../src/eval/lareqa-eval.ts';
import { faissStatus } from '../src/search/faiss.ts';
import { FaissSearch } from '../src/search/index.ts';
import { writeNpy } from '../src/npy.ts';

const { values: args } = parseArgs({
  options: {
    data: { type: 'string', default: '../shared/data/xquad-r' },
    vocab: { type: 'string', default: '../shared/data/tokenizers/mbert-cased-wordpiece/mbert_modified_vocab.txt' },
    'max-passage-length': { type: 'string', default: '256' },
    threads: { type: 'string' },
  },
});
if (args.threads) native().setNumThreads(Number(args.threads));
const dir = mkdtempSync(join(tmpdir(), 'xlir-bench-eval-'));
writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(buildWordPieceTokenizerJson(args.vocab!, { lowercase: false })));
const enc = Encoder.create({
  arch: 'bert', vocabSize: 119547, hiddenSize: 256, numLayers: 4, numHeads: 4, intermediateSize: 1024, maxPositions: 512,
  typeVocabSize: 2, layerNormEps: 1e-12, padTokenId: 0, hiddenDropout: 0.1, attentionDropout: 0.1, pooling: 'mean',
  hasPooler: false, normalize: true, seed: 0,
}, { tokenizerPath: join(dir, 'tokenizer.json') });

const la0 = loadavg()[0];
const r = await evaluateLareqa(enc, {
  dir: args.data!, bench: 'xquad-r', context: 'paragraph', maxQueryLength: 64, maxPassageLength: Number(args['max-passage-length']),
  queryPrefix: 'Query: ', passagePrefix: 'Passage: ', batchSize: 64, seed: 0, modelPath: '(random small, seed 0)', log: () => {},
});
const t = r.timing;
const nq = Object.values(r.counts.questions).reduce((a, b) => a + b, 0), nc = Object.values(r.counts.candidates).reduce((a, b) => a + b, 0);
console.log(`# XQuAD-R evaluation time\n\nmachine: ${cpus()[0].model}, ${cpus().length} logical cores; ${native().info().threads} engine threads; ` +
  `date ${new Date().toISOString()}; 1-minute load average ${la0.toFixed(2)} at start, ${loadavg()[0].toFixed(2)} at end\n` +
  `model: random small BERT (4 x 256, mBERT vocabulary), max query 64 / passage ${args['max-passage-length']} tokens; ${nq} questions x ${nc} candidates\n`);
console.log('| part | seconds | share |\n|---|---:|---:|');
for (const [k, v] of [['encoding (tokenize + encode)', t.encodeMs], ['search (score matrix, 11 x [1190 x 13014])', t.searchMs], ['metrics (AP, R@k, rank distance; all settings)', t.metricsMs]] as const)
  console.log(`| ${k} | ${(v / 1000).toFixed(2)} | ${((100 * v) / t.totalMs).toFixed(1)}% |`);
console.log(`| total | ${(t.totalMs / 1000).toFixed(2)} | search + metrics ${((100 * (t.searchMs + t.metricsMs)) / t.totalMs).toFixed(1)}% |\n`);

// Search back ends on the same vectors: re-encode once (the evaluation does not return its vectors).
const { readLareqaDir } = await import('../src/data/lareqa.ts');
const { lareqaSides } = await import('../src/eval/lareqa-eval.ts');
const sides = lareqaSides(readLareqaDir(args.data!), { context: 'paragraph' });
const Q = await enc.encodeTexts(sides.flatMap((s) => s.questions.map((q) => q.text)), { maxLength: 64, prefix: 'Query: ' });
const C = await enc.encodeTexts(sides.flatMap((s) => s.candidates.map((c) => c.text)), { maxLength: Number(args['max-passage-length']), prefix: 'Passage: ' });
const D = enc.embeddingDim, K = 10;
const time = async <T>(f: () => Promise<T> | T): Promise<[T, number]> => {
  const s = performance.now();
  const v = await f();
  return [v, (performance.now() - s) / 1000];
};
const [exact, tExact] = await time(() => native().searchTopK(Q, C, D, K));
const [, tMatrix] = await time(() => native().scoreMatrix(Q, C, D));
console.log(`search back ends on these vectors (${nq} x ${nc} x ${D}, top ${K}):\n\n| back end | seconds | agrees with engine exact |\n|---|---:|---|`);
console.log(`| engine searchTopK (exact) | ${tExact.toFixed(3)} | - |`);
console.log(`| engine scoreMatrix (all scores) | ${tMatrix.toFixed(3)} | - |`);
const fs = faissStatus();
if (fs.available) {
  const [idx, tAdd] = await time(() => FaissSearch.build(C, D, { factory: 'Flat' }));
  const [res, tSearch] = await time(() => idx.search(Q, K));
  let same = 0;
  for (let i = 0; i < exact.ids.length; i++) same += Number(exact.ids[i] === res.ids[i]);
  console.log(`| faiss-node Flat IP (typed): add + search | ${tAdd.toFixed(3)} + ${tSearch.toFixed(3)} | ids ${same}/${exact.ids.length} |`);
} else console.log(`| faiss-node | - | not built: ${fs.reason} |`);
const py = existsSync('.venv/bin/python') ? '.venv/bin/python' : 'python3';
writeNpy(join(dir, 'q.npy'), Q, [nq, D]);
writeNpy(join(dir, 'c.npy'), C, [nc, D]);
const p = spawnSync(py, ['-c', `
import sys, time, numpy as np
try:
    import faiss
except ImportError:
    print('missing'); sys.exit(0)
q = np.load(sys.argv[1]); c = np.load(sys.argv[2]); k = int(sys.argv[3])
t = time.perf_counter(); ix = faiss.IndexFlatIP(c.shape[1]); ix.add(c); ta = time.perf_counter() - t
t = time.perf_counter(); D, I = ix.search(q, k); ts = time.perf_counter() - t
np.save(sys.argv[4], I.astype(np.int32)); print(f'{ta} {ts} {faiss.__version__}')
`, join(dir, 'q.npy'), join(dir, 'c.npy'), String(K), join(dir, 'ids.npy')], { encoding: 'utf8' });
const out = (p.stdout ?? '').trim();
if (p.status === 0 && out !== 'missing' && out) {
  const [ta, ts, ver] = out.split(' ');
  const { readFileSync } = await import('node:fs');
  const raw = readFileSync(join(dir, 'ids.npy'));
  const hdr = raw.readUInt16LE(8) + 10;
  const ids = new Int32Array(raw.buffer.slice(raw.byteOffset + hdr, raw.byteOffset + raw.length));
  let same = 0;
  for (let i = 0; i < exact.ids.length; i++) same += Number(exact.ids[i] === ids[i]);
  console.log(`| FAISS ${ver} in Python, IndexFlatIP: add + search | ${Number(ta).toFixed(3)} + ${Number(ts).toFixed(3)} | ids ${same}/${exact.ids.length} |`);
} else console.log(`| FAISS in Python | - | ${out === 'missing' ? 'faiss-cpu not installed in .venv' : `failed: ${p.stderr?.slice(-200)}`} |`);
enc.dispose();
