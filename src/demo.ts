// The built-in first run: trains a tiny encoder from random initialisation on synthetic
// "cross-lingual" pairs and prints the falling loss and retrieval accuracy before and after.
// Needs no data, no download and no tokenizer, so it works on any fresh machine.
//
// The data: a vocabulary split into two "languages" with a hidden word-for-word dictionary. A query
// is a random bag of 6-14 language-A words; its passage is the translation of those words into
// language B, shuffled, with a few random distractor words. The model must learn the dictionary to
// match a query with its passage, so held-out accuracy rising far above chance shows that the
// forward, backward, loss and optimizer all work together.
import { Encoder } from './encoder.ts';
import { ContrastiveTrainer } from './trainer.ts';
import type { NativeModelConfig, TokenBatch } from './native.ts';
import { mulberry32 } from './rng.ts';

export interface DemoOptions {
  steps: number;
  batchSize: number;
  seed: number;
  lr: number;
  log: (line: string) => void;
}

const CLS = 2, SEP = 3, FIRST = 5, WORDS = 400;


export function makePairs(n: number, seed: number): { queries: number[][]; passages: number[][] } {
  const r = mulberry32(seed);
  const dict = Array.from({ length: WORDS }, (_, i) => i);  // fixed permutation: language A word i -> B word dict[i]
  const dr = mulberry32(12345);
  for (let i = WORDS - 1; i > 0; i--) {
    const j = Math.floor(dr() * (i + 1));
    [dict[i], dict[j]] = [dict[j], dict[i]];
  }
  const queries: number[][] = [], passages: number[][] = [];
  for (let k = 0; k < n; k++) {
    const len = 6 + Math.floor(r() * 9);
    const words = Array.from({ length: len }, () => Math.floor(r() * WORDS));
    const trans = words.map((w) => FIRST + WORDS + dict[w]);
    for (let d = 0; d < 3; d++) trans.push(FIRST + WORDS + Math.floor(r() * WORDS));
    for (let i = trans.length - 1; i > 0; i--) {
      const j = Math.floor(r() * (i + 1));
      [trans[i], trans[j]] = [trans[j], trans[i]];
    }
    queries.push([CLS, ...words.map((w) => FIRST + w), SEP]);
    passages.push([CLS, ...trans, SEP]);
  }
  return { queries, passages };
}

function pack(seqs: number[][]): TokenBatch {
  return { ids: Int32Array.from(seqs.flat()), lengths: Int32Array.from(seqs.map((s) => s.length)) };
}

/** Top-1 accuracy of retrieving each query's passage among all passages of the set. */
export async function top1(enc: Encoder, queries: number[][], passages: number[][]): Promise<number> {
  const D = enc.embeddingDim;
  const q = await enc.encodeTokens(pack(queries)), p = await enc.encodeTokens(pack(passages));
  let hits = 0;
  for (let i = 0; i < queries.length; i++) {
    let best = -Infinity, arg = -1;
    for (let j = 0; j < passages.length; j++) {
      let s = 0;
      for (let d = 0; d < D; d++) s += q[i * D + d] * p[j * D + d];
      if (s > best) (best = s), (arg = j);
    }
    hits += arg === i ? 1 : 0;
  }
  return hits / queries.length;
}

export const DEMO_CONFIG: NativeModelConfig = {
  arch: 'bert', vocabSize: FIRST + 2 * WORDS, hiddenSize: 64, numLayers: 2, numHeads: 4, intermediateSize: 256,
  maxPositions: 64, typeVocabSize: 2, layerNormEps: 1e-12, padTokenId: 0, hiddenDropout: 0.1, attentionDropout: 0.1,
  pooling: 'mean', hasPooler: false, normalize: true, seed: 0,
};

export async function runDemo(o: DemoOptions): Promise<{ before: number; after: number; losses: number[] }> {
  const enc = Encoder.create({ ...DEMO_CONFIG, seed: o.seed });
  const train = makePairs(4096, o.seed + 1), held = makePairs(200, o.seed + 2);
  const trainer = new ContrastiveTrainer(enc, { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 1 },
    { scale: 20, symmetric: false });
  const before = await top1(enc, held.queries, held.passages);
  o.log(`xlir demo: tiny encoder (2 layers, hidden 64) from random init, synthetic cross-lingual pairs, seed ${o.seed}`);
  o.log(`held-out top-1 accuracy before training: ${(100 * before).toFixed(1)}% (chance ${(100 / held.queries.length).toFixed(1)}%)`);
  const losses: number[] = [];
  const warm = Math.max(1, Math.floor(o.steps / 10));
  const t0 = performance.now();
  let tokens = 0, window = 0, count = 0;
  for (let s = 0; s < o.steps; s++) {
    const lr = o.lr * (s < warm ? (s + 1) / warm : (o.steps - s) / (o.steps - warm));  // warm-up, then linear decay
    const i0 = (s * o.batchSize) % (train.queries.length - o.batchSize);
    const q = pack(train.queries.slice(i0, i0 + o.batchSize)), p = pack(train.passages.slice(i0, i0 + o.batchSize));
    const r = await trainer.step({ queries: q, passages: p }, lr, o.seed * 1_000_003 + s);
    losses.push(r.loss);
    tokens += r.tokens;
    window += r.loss;
    count++;
    if ((s + 1) % Math.max(1, Math.floor(o.steps / 10)) === 0 || s === o.steps - 1) {
      const sec = (performance.now() - t0) / 1000;
      o.log(`step ${String(s + 1).padStart(4)}/${o.steps}  loss ${(window / count).toFixed(4)}  lr ${lr.toExponential(2)}  ` +
        `${Math.round(tokens / sec)} tokens/s  ${sec.toFixed(1)}s`);
      window = 0;
      count = 0;
    }
  }
  const after = await top1(enc, held.queries, held.passages);
  o.log(`held-out top-1 accuracy after training: ${(100 * after).toFixed(1)}%`);
  enc.dispose();
  return { before, after, losses };
}
