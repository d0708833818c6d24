// Pieces the benchmarks share: the XLM-R model configuration that bench/torch_train_step.py also
// builds for the PyTorch peer, the InfoNCE loss and embedding gradient of a training step, and the
// python that runs the peer.
import { existsSync } from 'node:fs';
import { native, type NativeModelConfig } from '../src/native.ts';

export const PAD_ID = 1;

export interface EncoderShape {
  layers: number;
  hidden: number;
  heads: number;
  ffn: number;
  vocab: number;
}

/** XLM-R conventions: 514 positions, one token type, pad 1, dropout 0.1, mean pooling, normalised. */
export function xlmrConfig(s: EncoderShape): NativeModelConfig {
  return {
    arch: 'roberta',
    vocabSize: s.vocab,
    hiddenSize: s.hidden,
    numLayers: s.layers,
    numHeads: s.heads,
    intermediateSize: s.ffn,
    maxPositions: 514,
    typeVocabSize: 1,
    layerNormEps: 1e-5,
    padTokenId: PAD_ID,
    hiddenDropout: 0.1,
    attentionDropout: 0.1,
    pooling: 'mean',
    hasPooler: false, // mean pooling: a pooler would get no gradient (torch's has none either)
    normalize: true,
    seed: 1234,
  };
}

/** InfoNCE of nq queries against the passages after them (embeddings laid out [queries | passages]). */
export function lossAndGrad(emb: Float32Array, nq: number, D: number, scale: number): { loss: number; grad: Float32Array } {
  const r = native().infonce(emb.subarray(0, nq * D), emb.subarray(nq * D), nq, D, { scale, symmetric: false });
  const grad = new Float32Array(emb.length);
  grad.set(r.gradQueries, 0);
  grad.set(r.gradPassages, nq * D);
  return { loss: r.loss, grad };
}

/** The python that runs the PyTorch peer: $XLIR_PYTHON, else the venv of scripts/setup.sh. */
export function pythonPath(): string | undefined {
  if (process.env.XLIR_PYTHON) return process.env.XLIR_PYTHON;
  for (const p of ['.venv/bin/python', '/tmp/venv/bin/python']) if (existsSync(p)) return p;
  return undefined;
}
