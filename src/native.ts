// Loads the native addon (build/Release/xlir.node) and declares its surface.
// Everything heavy runs in the addon off the JavaScript thread; this file only types it.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export type Arch = 'bert' | 'roberta';
export type Pooling = 'cls' | 'mean' | 'pooler';
export type Precision = 'fp32' | 'bf16';

/** Architecture of an encoder as the engine sees it (mapped from a Hugging Face config.json). */
export interface NativeModelConfig {
  arch: Arch;
  vocabSize: number;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  intermediateSize: number;
  maxPositions: number;
  typeVocabSize: number;
  layerNormEps: number;
  /** RoBERTa: position ids start at padTokenId + 1 and skip padding tokens. */
  padTokenId: number;
  hiddenDropout: number;
  attentionDropout: number;
  pooling: Pooling;
  /** Whether pooler.dense.{weight,bias} exist (required by pooling 'pooler'). */
  hasPooler: boolean;
  /** sentence-transformers 2_Dense after pooling (LaBSE): linear.weight [out, in], linear.bias. */
  dense?: { outFeatures: number; activation: 'tanh' | 'identity'; bias: boolean };
  normalize: boolean;
  /** Seed of the random initialisation (normal(0, 0.02) weights, as transformers initialises). */
  seed: number;
}

/**
 * A batch in packed form: the tokens of all sequences back to back, no padding.
 * ids[T], lengths[B] with sum(lengths) = T. typeIds[T] defaults to 0.
 * seqIds[B] keys each sequence's dropout masks (default: its index in the batch), so that a
 * sub-batch replayed with the same dropoutSeed and seqIds draws exactly the masks it drew inside
 * the full batch (gradient caching relies on this).
 */
export interface TokenBatch {
  ids: Int32Array;
  lengths: Int32Array;
  typeIds?: Int32Array;
  seqIds?: Uint32Array;
}

export interface ParameterInfo {
  /** Hugging Face name without the `bert.` / `roberta.` prefix, e.g. `encoder.layer.0.attention.self.query.weight`;
   * the pooler is `pooler.dense.*`, the sentence-transformers Dense module `dense.linear.*`. */
  name: string;
  shape: number[];
  /** False when frozen (freezeWordEmbeddings / freezeLayers): no gradient, no update. */
  trainable: boolean;
  /** Offset (in floats) of this tensor in the flat parameter / optimizer-state buffers. */
  offset: number;
}

export interface NativeModel {
  readonly embeddingDim: number;
  readonly hiddenSize: number;
  readonly numParameters: number;
  parameters(): ParameterInfo[];
  /** A copy of the tensor. Throws naming the tensor when it does not exist. */
  getParameter(name: string): Float32Array;
  /** Copies data in; throws naming the tensor and both shapes when `shape` differs. */
  setParameter(name: string, data: Float32Array, shape: number[]): void;
  getGradient(name: string): Float32Array;
  setPrecision(p: Precision): void;
  setFrozen(opts: { freezeWordEmbeddings: boolean; freezeLayers: number }): void;
  /** Sentence embeddings [B, embeddingDim], inference mode (no dropout, no saved activations). */
  encode(batch: TokenBatch): Promise<Float32Array>;
  /** Last-layer hidden states [T, hiddenSize] of the packed tokens, inference mode. */
  hiddenStates(batch: TokenBatch): Promise<Float32Array>;
  /**
   * Training forward (dropout on): embeddings [B, embeddingDim]. Keeps activations for the next
   * backward() unless keepActivations is false (the first, gradient-free pass of gradient caching).
   */
  forward(batch: TokenBatch, opts: { dropoutSeed: number; keepActivations?: boolean }): Promise<Float32Array>;
  /** Back-propagates d loss / d embeddings [B, embeddingDim] of the last forward(); gradients accumulate (+=). */
  backward(gradEmbeddings: Float32Array): Promise<void>;
  zeroGrad(): void;
  /**
   * Moves the model: 'cpu', 'cuda:N' (throws with the reason when CUDA or that device is not
   * usable) or 'emulated' (the device code path run by the CPU functions: a test back end).
   * Weights, gradients and optimizer state follow; nothing is copied until a side needs it, and
   * getParameter / setParameter / checkpoints work the same on every device.
   */
  toDevice(device: string): void;
  /**
   * Device back ends: a training forward keeps only each layer's input and backward rebuilds the
   * layer's activations (about a third more compute, far less memory; identical gradients). The
   * CPU keeps its activations regardless.
   */
  setActivationRecompute(on: boolean): void;
  /** 'cpu', 'cuda:N' or 'emulated'. */
  readonly device: string;
  /** Device memory the model holds (parameters, gradients, bf16 weights, moments, activations); 0 on the CPU. */
  readonly deviceBytes: number;
  /** Frees the model (device memory included). */
  dispose(): void;
}

export interface AdamWOptions {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** Global-norm clipping of the trainable gradients; 0 disables it. */
  maxGradNorm: number;
  /**
   * Row-sparse ("lazy") update of the word-embedding matrix: only the rows whose tokens occurred in
   * the step's batches are updated. Rows that did not occur keep their weights and moments as they
   * are, where the exact (default, dense) update would decay their moments, move them by their
   * momentum and apply weight decay. Far cheaper for a 250k-row vocabulary; default false.
   */
  sparseEmbeddings?: boolean;
}

export interface NativeAdamW {
  /** One AdamW step at learning rate lr (decoupled decay, none on biases and LayerNorm weights). */
  step(lr: number): Promise<{ gradNorm: number }>;
  getState(): { step: number; m: Float32Array; v: Float32Array };
  setState(s: { step: number; m: Float32Array; v: Float32Array }): void;
}

export interface InfoNCEResult {
  loss: number;
  gradQueries: Float32Array;
  gradPassages: Float32Array;
}

export interface NativeAddon {
  Model: new (cfg: NativeModelConfig) => NativeModel;
  AdamW: new (model: NativeModel, opts: AdamWOptions) => NativeAdamW;
  /**
   * InfoNCE of query i against all passages (positive of query i = passage i; passages beyond
   * numQueries are extra negatives). scale = 1 / temperature. symmetric adds the
   * passage-to-query term over the first numQueries passages and averages the two.
   */
  infonce(queries: Float32Array, passages: Float32Array, numQueries: number, dim: number,
    opts: { scale: number; symmetric: boolean; device?: string }): InfoNCEResult;
  setNumThreads(n: number): void;
  /** Seconds for `iters` fp32-output products [M,K] x [K,N] through the engine's gemm (benchmarks). */
  benchGemm(M: number, N: number, K: number, precision: Precision, iters: number): number;
  /**
   * Engine build. cuda: a CUDA device can be used now; cudaBuilt: the CUDA back end was compiled in;
   * cudaReason: the devices found, or why there are none.
   */
  info(): {
    version: string; threads: number; cuda: boolean; cudaBuilt: boolean; cudaDevices: number; cudaReason: string;
    isa: string;
  };
  /**
   * Exact top-k inner-product search (native/search.h), off the JavaScript thread: queries
   * [nq, dim] x corpus [nc, dim], row-major fp32. Resolves with row-major [nq, k] scores and corpus
   * row ids, best first; equal scores are ordered by lower corpus index. Scores are computed in
   * blocks of 1024 queries x 4096 corpus rows (16 MiB) through the engine's oneDNN gemm.
   * Every error rejects the promise: lengths that are not whole rows of dim, k < 1, k > nc (an error,
   * not a clamp: a result always has k columns), non-finite values. The inputs are read in place:
   * do not modify them before the promise settles.
   * opts.device 'cuda:N': the GPU search (matrix product + k-selection, k <= 1024) with the same
   * results and tie order; queries and corpus must fit in GPU memory.
   */
  searchTopK(queries: Float32Array, corpus: Float32Array, dim: number, k: number,
    opts?: { device?: string }): Promise<SearchTopKResult>;
  /**
   * All scores, row-major [nq, nc] (e.g. average precision over a whole candidate pool), computed
   * blockwise (1024 query rows per gemm) straight into the result. nq x nc x 4 bytes: 13k x 13k is 676 MB
   * (and a fresh buffer of that size costs the kernel about as much as the product to map in): to
   * bound memory, call it per block of queries (queries.subarray). Errors reject as for searchTopK.
   */
  scoreMatrix(queries: Float32Array, corpus: Float32Array, dim: number): Promise<Float32Array>;
}

/** searchTopK's result: row-major [nq, k]. */
export interface SearchTopKResult {
  scores: Float32Array;
  ids: Int32Array;
}

function findAddon(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [
    process.env.XLIR_ADDON,
    join(here, '..', 'build', 'Release', 'xlir.node'),
  ].filter((p): p is string => !!p);
  for (const p of candidates) if (existsSync(p)) return p;
  throw new Error(`xlir native addon not found (looked in: ${candidates.join(', ')}); run \`npm run build\` first`);
}

let cached: NativeAddon | undefined;
export function native(): NativeAddon {
  if (!cached) cached = createRequire(import.meta.url)(findAddon()) as NativeAddon;
  return cached;
}
