// The optimizer's cost for an XLM-R-sized vocabulary: exact (dense) AdamW over the whole
// 250,002 x 768 word-embedding table against the row-sparse update of the rows a batch touched
// (AdamW option sparseEmbeddings; semantics in native/adamw.h). A benchmark that prints a table.
//
//   npx tsx bench/embedding_update.ts [--steps 5] [--vocab 250002] [--threads 2]
//
// The model has XLM-R-base's embedding table and ONE encoder layer of the base shape: the layers'
// parameters are updated densely in both modes (7.1M per layer), so the difference measured is the
// embedding table's; the forward and backward that fill the gradients are not timed. The batch is
// the realistic mix: 128 queries of 8-32 tokens and 128 passages of 64-256 tokens, with
// token ids drawn from a Zipf law (s = 1.1) over the vocabulary, so that the number of distinct
// rows a batch touches is close to real text's (printed; uniformly random ids would touch far more).
import { cpus, loadavg, totalmem } from 'node:os';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';

import { Encoder } from '../src/encoder.ts';
import { native, type NativeModelConfig, type TokenBatch } from '../src/native.ts';
import { ContrastiveTrainer, type StepInput } from '../src/trainer.ts';
import { mulberry32 } from '../src/rng.ts';

const { values: args } = parseArgs({
  options: {
    steps: { type: 'string', default: '5' },
    vocab: { type: 'string', default: '250002' },
    threads: { type: 'string', default: '2' },
  },
});
const steps = Number(args.steps), vocab = Number(args.vocab), threads = Number(args.threads);
if (!Number.isInteger(steps) || steps < 1) throw new Error(`--steps must be a positive integer, got ${args.steps}`);
if (!Number.isInteger(vocab) || vocab < 1000) throw new Error(`--vocab must be an integer >= 1000, got ${args.vocab}`);

const nat = native();
nat.setNumThreads(threads);
const H = 768;
const cfg: NativeModelConfig = {
  arch: 'roberta', vocabSize: vocab, hiddenSize: H, numLayers: 1, numHeads: 12, intermediateSize: 3072,
  maxPositions: 514, typeVocabSize: 1, layerNormEps: 1e-5, padTokenId: 1, hiddenDropout: 0.1, attentionDropout: 0.1,
  pooling: 'mean', hasPooler: false, normalize: true, seed: 0,
};

// Zipf(s) over ids 3..vocab-1 by inverse transform on the cumulative weights.
function zipfSampler(n: number, s: number, rand: () => number): () => number {
  const cdf = new Float64Array(n);
  let acc = 0;
  for (let k = 0; k < n; k++) cdf[k] = acc += 1 / Math.pow(k + 1, s);
  return () => {
    const u = rand() * acc;
    let lo = 0, hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid] < u) lo = mid + 1;
      else hi = mid;
    }
    return 3 + lo;
  };
}

function makeBatch(): StepInput {
  const rand = mulberry32(7);
  const word = zipfSampler(vocab - 3, 1.1, rand);
  const seq = (min: number, max: number) => [0, ...Array.from({ length: min - 2 + Math.floor(rand() * (max - min + 1)) }, word), 2];
  const seqs = [...Array.from({ length: 128 }, () => seq(8, 32)), ...Array.from({ length: 128 }, () => seq(64, 256))];
  const pack = (xs: number[][]): TokenBatch => ({ ids: Int32Array.from(xs.flat()), lengths: Int32Array.from(xs.map((s) => s.length)) });
  return { queries: pack(seqs.slice(0, 128)), passages: pack(seqs.slice(128)) };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main() {
  const cpu = cpus();
  console.log('# xlir word-embedding update: dense AdamW vs row-sparse AdamW');
  console.log(`machine: ${cpu[0]?.model ?? 'unknown'}, ${cpu.length} logical cores, ${(totalmem() / 2 ** 30).toFixed(1)} GiB; threads ${threads}`);
  console.log(`date: ${new Date().toISOString()}; 1-minute load average at start ${loadavg()[0].toFixed(2)}`);
  console.log(`command: npx tsx bench/embedding_update.ts --steps ${steps} --vocab ${vocab} --threads ${threads}`);

  const encoder = Encoder.create(cfg), model = encoder.model;
  const batch = makeBatch();
  const distinct = new Set([...batch.queries.ids, ...batch.passages.ids]).size;
  const T = batch.queries.ids.length + batch.passages.ids.length;
  console.log(`model: word embeddings ${vocab} x ${H} (${(vocab * H / 1e6).toFixed(1)}M parameters) + 1 base layer; ${(model.numParameters / 1e6).toFixed(1)}M parameters in all`);
  console.log(`batch: 128 queries (8-32 tokens) + 128 passages (64-256), ${T} tokens, Zipf(1.1) ids: ${distinct} distinct rows touched (${(100 * distinct / vocab).toFixed(2)}% of the table)`);

  // Gradients of one real step (forward, InfoNCE, backward) through the trainer; not timed. Both
  // modes are then timed on these same gradients: the trainer's (dense) optimizer, and a sparse one.
  const base = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 1.0 };
  const trainer = new ContrastiveTrainer(encoder, base, { scale: 20, symmetric: false });
  await trainer.accumulate(batch, 1);

  const rows: { mode: string; ms: number[] }[] = [];
  for (const sparse of [false, true]) {
    const opt = sparse ? new nat.AdamW(model, { ...base, sparseEmbeddings: true }) : trainer.optimizer;
    await opt.step(2e-5);  // warm-up: first touch of the optimizer state's pages
    const ms: number[] = [];
    for (let s = 0; s < steps; s++) {
      const t0 = performance.now();
      await opt.step(2e-5);
      ms.push(performance.now() - t0);
    }
    rows.push({ mode: sparse ? 'row-sparse (sparseEmbeddings)' : 'dense (exact, default)', ms });
  }
  // zeroGrad visits only the touched rows of the table in both modes.
  const t0 = performance.now();
  model.zeroGrad();
  const zeroMs = performance.now() - t0;

  console.log('');
  console.log('| AdamW step (clip norm + update of every trainable tensor) | median ms | min ms |');
  console.log('|---|---:|---:|');
  for (const r of rows) console.log(`| ${r.mode} | ${median(r.ms).toFixed(1)} | ${Math.min(...r.ms).toFixed(1)} |`);
  console.log('');
  console.log(`dense / row-sparse: ${(median(rows[0].ms) / median(rows[1].ms)).toFixed(1)}x; zeroGrad after the batch: ${zeroMs.toFixed(1)} ms; load average at the end ${loadavg()[0].toFixed(2)}`);
  encoder.dispose();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
