// A learnable InfoNCE temperature (METHOD.md section 2: "optionally learnable"), learned as CLIP
// learns it: the parameter is the log of the scale (scale = 1 / temperature), so a step changes the
// temperature by a factor rather than by an amount, and it is clamped after every step to
// [0, ln 100], CLIP's bound (temperature between 0.01 and 1; open_clip clamps the same way).
//
// Its gradient needs no pass of its own. The InfoNCE loss depends on the scale and the embeddings
// only through the logits s * <q_i, p_j>, so for d loss / d q_i = g_i (what the loss already
// returns for back-propagation):
//     sum_i <g_i, q_i> = s * d loss / d s = d loss / d log s,
// the same for the passages' side; the alignment term adds its own share the same way.
// The update is Adam without weight decay, exactly torch.optim.AdamW's arithmetic for one scalar
// (weight_decay=0), in float64, with the model's betas and eps; its learning rate follows the
// model's schedule, scaled by lrRatio. It is not part of the clipped global gradient norm: one
// scalar on another scale than the encoder's weights, it would either dominate the norm or be
// scaled away with them.

export interface LearnedScaleState {
  /** ln(scale) = -ln(temperature). */
  logScale: number;
  m: number;
  v: number;
  step: number;
}

export interface LearnedScaleOptions {
  /** Temperature learning rate / model learning rate (1: CLIP's choice, the same rate). */
  lrRatio: number;
  beta1: number;
  beta2: number;
  eps: number;
}

export const MIN_LOG_SCALE = 0;              // temperature 1
export const MAX_LOG_SCALE = Math.log(100);  // temperature 0.01, CLIP's clamp

export class LearnedScale {
  private s: LearnedScaleState;

  constructor(initialScale: number, readonly options: LearnedScaleOptions) {
    if (!(initialScale >= Math.exp(MIN_LOG_SCALE) && initialScale <= Math.exp(MAX_LOG_SCALE) * (1 + 1e-12)))
      throw new Error(`a learnable temperature must start in [0.01, 1] (scale 1 to 100), got scale ${initialScale}`);
    this.s = { logScale: clamp(Math.log(initialScale)), m: 0, v: 0, step: 0 };
  }

  /** The scale the loss uses now (the engine takes it as float32). */
  get scale(): number {
    return Math.fround(Math.exp(this.s.logScale));
  }

  get temperature(): number {
    return 1 / this.scale;
  }

  /** One Adam step on ln(scale) with gradient d loss / d ln(scale), at the model's learning rate lr. */
  step(grad: number, lr: number): void {
    if (!Number.isFinite(grad)) throw new Error(`learnable temperature: gradient is ${grad}`);
    const { beta1, beta2, eps, lrRatio } = this.options;
    const s = this.s;
    s.step += 1;
    s.m = beta1 * s.m + (1 - beta1) * grad;
    s.v = beta2 * s.v + (1 - beta2) * grad * grad;
    const bc1 = 1 - beta1 ** s.step, bc2 = 1 - beta2 ** s.step;
    // torch: param -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)
    s.logScale = clamp(s.logScale - ((lr * lrRatio) / bc1) * (s.m / (Math.sqrt(s.v) / Math.sqrt(bc2) + eps)));
  }

  getState(): LearnedScaleState {
    return { ...this.s };
  }

  setState(st: LearnedScaleState): void {
    for (const k of ['logScale', 'm', 'v', 'step'] as const)
      if (typeof st?.[k] !== 'number' || !Number.isFinite(st[k])) throw new Error(`learnable temperature state: ${k} is not a finite number`);
    this.s = { ...st, logScale: clamp(st.logScale) };
  }
}

function clamp(x: number): number {
  return Math.min(MAX_LOG_SCALE, Math.max(MIN_LOG_SCALE, x));
}

/** sum_i <g_i, x_i> in float64: d loss / d ln(scale) from one side of an InfoNCE call (see the top). */
export function logScaleGradient(x: Float32Array, g: Float32Array): number {
  if (x.length !== g.length) throw new Error(`logScaleGradient: ${x.length} embedding values but ${g.length} gradient values`);
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i] * g[i];
  return s;
}
