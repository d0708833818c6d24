// The model configuration the benchmarks build: XLM-R conventions, as bench/torch_train_step.py
// builds the PyTorch peer (514 positions, one token type, pad 1, dropout 0.1, mean pooling,
// normalised embeddings), for a given depth and width.
import type { NativeModelConfig } from '../src/native.ts';

export const PAD_ID = 1;

export interface EncoderShape {
  layers: number;
  hidden: number;
  heads: number;
  ffn: number;
  vocab: number;
}

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
