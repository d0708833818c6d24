// Top-k inner-product search behind one interface, for evaluation:
//  - EngineExactSearch: the engine's exact search (native searchTopK): blocked oneDNN products on
//    the CPU, or the GPU's product + k-selection with device 'cuda:N' when k <= 1024 and the
//    corpus fits in GPU memory (else the CPU, with the reason passed to onFallback);
//  - FaissSearch with 'Flat': FAISS exhaustive inner-product search, exact;
//  - FaissSearch with 'HNSW32', 'IVF256,PQ16', ...: approximate; measureRecall() reports its
//    recall@k against an exact back end.
// Ids are corpus row numbers (insertion order), -1 where an approximate index found fewer than k.
import { native } from '../native.ts';
import { FaissIndex, type TransferPath } from './faiss.ts';

/** Row-major [nq, k], best first. */
export interface SearchResult {
  scores: Float32Array;
  ids: Int32Array;
  k: number;
}

export interface SearchBackend {
  readonly name: string;
  readonly dim: number;
  /** Number of corpus vectors. */
  readonly size: number;
  /** Whether results are the exact top k (up to the order of equal scores). */
  readonly exact: boolean;
  /** Top k (1 <= k <= size) for queries [nq, dim]. */
  search(queries: Float32Array, k: number): Promise<SearchResult>;
}

/**
 * The engine's exact search over a corpus held in memory (not copied: do not modify it while a
 * search runs). Equal scores are ordered by lower corpus row.
 */
export class EngineExactSearch implements SearchBackend {
  readonly name: string;
  readonly exact = true;
  readonly size: number;
  private readonly device: string | undefined;

  constructor(private readonly corpus: Float32Array, readonly dim: number,
    opts: { device?: string; onFallback?: (reason: string) => void } = {}) {
    if (!Number.isInteger(dim) || dim < 1) throw new Error(`EngineExactSearch: dim must be a positive integer, got ${dim}`);
    if (!(corpus instanceof Float32Array) || corpus.length % dim !== 0) {
      throw new Error(`EngineExactSearch: the corpus must be a Float32Array of whole rows of dim ${dim}`);
    }
    this.size = corpus.length / dim;
    this.device = opts.device?.startsWith('cuda') ? opts.device : undefined;
    this.onFallback = opts.onFallback ?? (() => {});
    this.name = this.device ? `engine-exact:${this.device}` : 'engine-exact';
  }
  private readonly onFallback: (reason: string) => void;

  async search(queries: Float32Array, k: number): Promise<SearchResult> {
    if (this.device) {
      // The GPU selection sorts in shared memory (k <= 1024); a corpus that does not fit in GPU
      // memory is searched on the CPU. Both give the same ids in the same order.
      if (k > 1024) this.onFallback(`k = ${k} is above the GPU search's 1024: searching on the CPU`);
      else {
        try {
          const r = await native().searchTopK(queries, this.corpus, this.dim, k, { device: this.device });
          return { scores: r.scores, ids: r.ids, k };
        } catch (e) {
          if (!/cannot allocate/.test(String(e))) throw e;
          this.onFallback(`${String((e as Error).message ?? e)}: searching on the CPU`);
        }
      }
    }
    const r = await native().searchTopK(queries, this.corpus, this.dim, k);
    return { scores: r.scores, ids: r.ids, k };
  }

  /** Every score, row-major [nq, size] (e.g. average precision over the whole candidate pool). */
  scoreMatrix(queries: Float32Array): Promise<Float32Array> {
    return native().scoreMatrix(queries, this.corpus, this.dim);
  }
}

export interface FaissBuildOptions {
  /** FAISS index factory string; default 'Flat' (exact). */
  factory?: string;
  /** Training vectors for indexes that need training (IVF, PQ); default the corpus itself. */
  train?: Float32Array;
  /** Search-time parameters, e.g. { efSearch: 128 } (HNSW) or { nprobe: 16 } (IVF). */
  params?: Record<string, number>;
  /** How vectors cross into faiss-node; default 'typed'. */
  path?: TransferPath;
}

/** FAISS with the inner-product metric, through faiss-node (src/search/faiss.ts). */
export class FaissSearch implements SearchBackend {
  readonly name: string;
  readonly exact: boolean;

  constructor(readonly index: FaissIndex, readonly path: TransferPath = 'typed') {
    if (index.metric !== 'ip') throw new Error(`FaissSearch: the index must use the inner-product metric, it uses '${index.metric}'`);
    this.name = `faiss:${index.factory}`;
    this.exact = /^(IDMap2?,)?Flat$/.test(index.factory.replace(/\s+/g, ''));
  }

  /** Builds an index over corpus [n, dim]: create, train when needed, add, set parameters. */
  static build(corpus: Float32Array, dim: number, opts: FaissBuildOptions = {}): FaissSearch {
    const index = FaissIndex.create(dim, { factory: opts.factory ?? 'Flat', metric: 'ip' });
    if (!index.isTrained) index.train(opts.train ?? corpus, opts.path);
    index.add(corpus, { path: opts.path });
    for (const [name, value] of Object.entries(opts.params ?? {})) index.setParam(name, value);
    return new FaissSearch(index, opts.path);
  }

  get dim(): number {
    return this.index.dim;
  }
  get size(): number {
    return this.index.size;
  }

  /** Runs synchronously (faiss-node has no asynchronous search) and resolves with the result. */
  async search(queries: Float32Array, k: number): Promise<SearchResult> {
    const r = this.index.search(queries, k, this.path);
    return { scores: r.scores, ids: r.labels, k };
  }
}

/**
 * Recall@k of `approx` against `exact` (same queries and k): the mean over queries of the fraction
 * of the exact top-k ids that the approximate top k contains. Where several corpus rows tie at the
 * exact k-th score, an approximate result holding a different one of them counts it as a miss.
 */
export function recallAtK(approx: SearchResult, exact: SearchResult): number {
  if (approx.k !== exact.k || approx.ids.length !== exact.ids.length) {
    throw new Error(`recallAtK: results differ in shape (k ${approx.k} vs ${exact.k}, ${approx.ids.length} vs ${exact.ids.length} ids)`);
  }
  const k = exact.k;
  const nq = exact.ids.length / k;
  if (nq === 0) return 1;
  let hits = 0;
  for (let q = 0; q < nq; q++) {
    const want = new Set(exact.ids.subarray(q * k, (q + 1) * k));
    for (const id of approx.ids.subarray(q * k, (q + 1) * k)) if (want.has(id)) hits++;
  }
  return hits / (nq * k);
}

/** Searches both back ends and reports recall@k of `approx` against `exact`, with timings. */
export async function measureRecall(approx: SearchBackend, exact: SearchBackend, queries: Float32Array, k: number):
Promise<{ recall: number; approxSeconds: number; exactSeconds: number }> {
  let t = performance.now();
  const a = await approx.search(queries, k);
  const approxSeconds = (performance.now() - t) / 1000;
  t = performance.now();
  const e = await exact.search(queries, k);
  const exactSeconds = (performance.now() - t) / 1000;
  return { recall: recallAtK(a, e), approxSeconds, exactSeconds };
}

/**
 * Agreement of two exact results (e.g. the engine and FAISS Flat, whose fp32 sums differ in order):
 * the largest score difference, and id mismatches counted only at ranks whose score (in `a`) is
 * more than `tol` away from both neighbours' (elsewhere equal-within-rounding scores may swap);
 * the last rank is never checked (its neighbour below is not in the result).
 */
export function compareTopK(a: SearchResult, b: SearchResult, tol: number):
{ maxScoreDiff: number; idMismatches: number; idsChecked: number } {
  if (a.k !== b.k || a.ids.length !== b.ids.length) throw new Error('compareTopK: results differ in shape');
  const k = a.k;
  let maxScoreDiff = 0;
  let idMismatches = 0;
  let idsChecked = 0;
  for (let i = 0; i < a.ids.length; i++) {
    maxScoreDiff = Math.max(maxScoreDiff, Math.abs(a.scores[i] - b.scores[i]));
    const r = i % k;
    const clearAbove = r === 0 || a.scores[i - 1] - a.scores[i] > tol;
    // The last rank has an unknown neighbour below (row k + 1): search k + 1 to check k ranks.
    const clearBelow = r < k - 1 && a.scores[i] - a.scores[i + 1] > tol;
    if (!clearAbove || !clearBelow) continue;
    idsChecked++;
    if (a.ids[i] !== b.ids[i]) idMismatches++;
  }
  return { maxScoreDiff, idMismatches, idsChecked };
}
