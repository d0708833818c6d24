// One contrastive training step over the engine, with gradient caching (GradCache) so that the
// batch size does not depend on memory:
//   1. embed every sub-batch with dropout but without keeping activations;
//   2. compute the loss and d loss / d embeddings once, over the whole batch;
//   3. re-run each sub-batch with activations (same dropout seed and sequence keys, so the same
//      masks) and back-propagate its slice of the cached gradient; parameter gradients add up.
// When one sub-batch holds the whole batch, steps 1 and 3 collapse into a single forward.
// Queries, passages and (optionally) alignment pairs share one packed batch; the alignment term
// is InfoNCE between translations (a_i vs all b_j), weighted against the retrieval loss.
import { native, type AdamWOptions, type NativeAdamW, type TokenBatch } from './native.ts';
import { concatBatches, type Encoder } from './encoder.ts';
import { logScaleGradient, type LearnedScale } from './temperature.ts';

export interface LossOptions {
  /** 1 / temperature; METHOD.md's default temperature 0.05 is scale 20. */
  scale: number;
  symmetric: boolean;
  /** Weight of the parallel-alignment InfoNCE term (0: off). */
  alignmentWeight?: number;
  /** A learnable temperature (src/temperature.ts): its scale replaces `scale`, and step() updates it. */
  learnedScale?: LearnedScale;
}

export interface StepInput {
  /** queries[i] pairs with passages[i]; passages beyond the queries are hard negatives. */
  queries: TokenBatch;
  passages: TokenBatch;
  /** Translation pairs for the alignment term: a[i] with b[i]. */
  alignA?: TokenBatch;
  alignB?: TokenBatch;
}

export interface StepResult {
  loss: number;
  retrievalLoss: number;
  alignmentLoss: number;
  gradNorm: number;
  tokens: number;
  /** d loss / d ln(scale) of the batch (0 unless the temperature is learned). */
  logScaleGrad: number;
  /** The temperature the step's loss used. */
  temperature: number;
}

/** Sequences [from, to) of a packed batch, keeping their sequence keys. */
export function sliceBatch(b: TokenBatch, from: number, to: number): TokenBatch {
  let t0 = 0;
  for (let i = 0; i < from; i++) t0 += b.lengths[i];
  let t1 = t0;
  for (let i = from; i < to; i++) t1 += b.lengths[i];
  return {
    ids: b.ids.subarray(t0, t1), lengths: b.lengths.subarray(from, to),
    typeIds: b.typeIds?.subarray(t0, t1), seqIds: b.seqIds?.subarray(from, to),
  };
}

export class ContrastiveTrainer {
  readonly optimizer: NativeAdamW;

  constructor(readonly encoder: Encoder, optim: AdamWOptions, readonly loss: LossOptions,
    /** Sequences per engine call (queries, passages and alignment texts all count); 0: no limit. */
    readonly subBatchSize = 0) {
    this.optimizer = new (native().AdamW)(encoder.model, optim);
  }

  /** The InfoNCE scale in use: the learned one when the temperature is learned. */
  get scale(): number {
    return this.loss.learnedScale?.scale ?? this.loss.scale;
  }

  /**
   * Loss and d loss / d embeddings for embeddings laid out as concatBatches(q, p, a, b), and
   * d loss / d ln(scale) (src/temperature.ts; computed only when the temperature is learned).
   */
  lossAndGrad(emb: Float32Array, nq: number, np: number, na: number): { retrieval: number; alignment: number; grad: Float32Array; logScaleGrad: number } {
    const D = this.encoder.embeddingDim, nat = native();
    const grad = new Float32Array(emb.length);
    const scale = this.scale, learned = this.loss.learnedScale !== undefined;
    // On a GPU the fused InfoNCE kernel computes the loss (no probability matrix); elsewhere the CPU's.
    const dev = this.encoder.model.device.startsWith('cuda') ? { device: this.encoder.model.device } : {};
    const q = emb.subarray(0, nq * D);
    const r = nat.infonce(q, emb.subarray(nq * D, (nq + np) * D), nq, D, { scale, symmetric: this.loss.symmetric, ...dev });
    grad.set(r.gradQueries, 0);
    grad.set(r.gradPassages, nq * D);
    let logScaleGrad = learned ? logScaleGradient(q, r.gradQueries) : 0;
    let alignment = 0;
    const w = this.loss.alignmentWeight ?? 0;
    if (na > 0 && w > 0) {
      const a0 = (nq + np) * D;
      const a = emb.subarray(a0, a0 + na * D);
      const al = nat.infonce(a, emb.subarray(a0 + na * D, a0 + 2 * na * D), na, D, { scale, symmetric: true, ...dev });
      alignment = al.loss;
      for (let i = 0; i < na * D; i++) {
        grad[a0 + i] = w * al.gradQueries[i];
        grad[a0 + na * D + i] = w * al.gradPassages[i];
      }
      if (learned) logScaleGrad += w * logScaleGradient(a, al.gradQueries);
    }
    return { retrieval: r.loss, alignment, grad, logScaleGrad };
  }

  /** Forward, loss, backward over the batch (gradients accumulate into the model); no update. */
  async accumulate(input: StepInput, dropoutSeed: number): Promise<Omit<StepResult, 'gradNorm'>> {
    const temperature = 1 / this.scale;
    const { queries, passages } = input;
    const nq = queries.lengths.length, np = passages.lengths.length;
    if (nq < 1 || np < nq) throw new Error(`a step needs at least one passage per query (got ${nq} queries, ${np} passages)`);
    const na = input.alignA ? input.alignA.lengths.length : 0;
    if (na !== (input.alignB ? input.alignB.lengths.length : 0)) throw new Error('alignment pairs: alignA and alignB differ in length');
    const parts = [queries, passages, ...(na ? [input.alignA!, input.alignB!] : [])];
    const all = concatBatches(...parts);
    const n = all.lengths.length;
    all.seqIds = Uint32Array.from({ length: n }, (_, i) => i);  // sub-batches replay the masks of the whole
    const m = this.encoder.model, D = m.embeddingDim;
    const sub = this.subBatchSize > 0 ? this.subBatchSize : n;
    let result: { retrieval: number; alignment: number; logScaleGrad: number };
    if (sub >= n) {
      const emb = await m.forward(all, { dropoutSeed });
      const lg = this.lossAndGrad(emb, nq, np, na);
      await m.backward(lg.grad);
      result = lg;
    } else {
      const emb = new Float32Array(n * D);
      for (let s = 0; s < n; s += sub) {
        emb.set(await m.forward(sliceBatch(all, s, Math.min(n, s + sub)), { dropoutSeed, keepActivations: false }), s * D);
      }
      const lg = this.lossAndGrad(emb, nq, np, na);
      for (let s = 0; s < n; s += sub) {
        const e = Math.min(n, s + sub);
        await m.forward(sliceBatch(all, s, e), { dropoutSeed });
        await m.backward(lg.grad.slice(s * D, e * D));
      }
      result = lg;
    }
    const w = this.loss.alignmentWeight ?? 0;
    return {
      loss: result.retrieval + w * result.alignment, retrievalLoss: result.retrieval, alignmentLoss: result.alignment,
      tokens: all.ids.length, logScaleGrad: result.logScaleGrad, temperature,
    };
  }

  /** One optimizer step: zero gradients, accumulate over the batch, clip, AdamW at lr (and the temperature's step). */
  async step(input: StepInput, lr: number, dropoutSeed: number): Promise<StepResult> {
    this.encoder.model.zeroGrad();
    const r = await this.accumulate(input, dropoutSeed);
    const { gradNorm } = await this.optimizer.step(lr);
    this.loss.learnedScale?.step(r.logScaleGrad, lr);
    return { ...r, gradNorm };
  }

  /** Loss without dropout or update (validation). */
  async evaluate(input: StepInput): Promise<{ loss: number; retrievalLoss: number; alignmentLoss: number }> {
    const { queries, passages } = input;
    const nq = queries.lengths.length, np = passages.lengths.length;
    const na = input.alignA ? input.alignA.lengths.length : 0;
    const parts = [queries, passages, ...(na ? [input.alignA!, input.alignB!] : [])];
    const all = concatBatches(...parts);
    const D = this.encoder.embeddingDim, n = all.lengths.length;
    const sub = this.subBatchSize > 0 ? this.subBatchSize : n;
    const emb = new Float32Array(n * D);
    for (let s = 0; s < n; s += sub) emb.set(await this.encoder.model.encode(sliceBatch(all, s, Math.min(n, s + sub))), s * D);
    const lg = this.lossAndGrad(emb, nq, np, na);
    const w = this.loss.alignmentWeight ?? 0;
    return { loss: lg.retrieval + w * lg.alignment, retrievalLoss: lg.retrieval, alignmentLoss: lg.alignment };
  }
}
