// One contrastive training step over the engine: queries and passages go through the encoder in
// one packed call, InfoNCE gives the loss and d loss / d embeddings, backward accumulates the
// parameter gradients, AdamW updates. The training loop (schedules, gradient caching, checkpoints)
// builds on this.
import { native, type AdamWOptions, type NativeAdamW, type TokenBatch } from './native.ts';
import { concatBatches, type Encoder } from './encoder.ts';

export interface StepOptions {
  /** 1 / temperature; METHOD.md's default temperature 0.05 is scale 20. */
  scale: number;
  symmetric: boolean;
}

export interface StepResult {
  loss: number;
  gradNorm: number;
  tokens: number;
}

export class ContrastiveTrainer {
  readonly optimizer: NativeAdamW;

  constructor(readonly encoder: Encoder, optim: AdamWOptions, readonly loss: StepOptions) {
    this.optimizer = new (native().AdamW)(encoder.model, optim);
  }

  /**
   * queries[i] is paired with passages[i]; passages beyond queries.lengths.length are extra
   * (hard) negatives shared by the batch. dropoutSeed keys the step's dropout masks.
   */
  async step(queries: TokenBatch, passages: TokenBatch, lr: number, dropoutSeed: number): Promise<StepResult> {
    const nq = queries.lengths.length;
    if (passages.lengths.length < nq)
      throw new Error(`a step needs at least one passage per query (got ${nq} queries, ${passages.lengths.length} passages)`);
    const m = this.encoder.model, D = m.embeddingDim;
    m.zeroGrad();
    const emb = await m.forward(concatBatches(queries, passages), { dropoutSeed });
    const r = native().infonce(emb.subarray(0, nq * D), emb.subarray(nq * D), nq, D, this.loss);
    const g = new Float32Array(emb.length);
    g.set(r.gradQueries, 0);
    g.set(r.gradPassages, nq * D);
    await m.backward(g);
    const { gradNorm } = await this.optimizer.step(lr);
    return { loss: r.loss, gradNorm, tokens: queries.ids.length + passages.ids.length };
  }
}
