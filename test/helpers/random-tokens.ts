// Seeded random token sequences for engine-level tests: each is [bos, w_1 .. w_n, eos] with n drawn
// uniformly from [minWords, maxWords] and every w from [lo, hi). The ids stay clear of the special
// tokens, so tests exercise real embedding rows, and the same seed gives the same batch everywhere.
import { mulberry32 } from '../../src/rng.ts';
import type { TokenBatch } from '../../src/native.ts';

export interface TokenSpec {
  bos: number;
  eos: number;
  minWords: number;
  maxWords: number;
  /** Word ids are drawn from [lo, hi). */
  lo: number;
  hi: number;
}

export function randomSequences(n: number, seed: number, spec: TokenSpec): number[][] {
  const r = mulberry32(seed);
  const span = spec.maxWords - spec.minWords + 1;
  return Array.from({ length: n }, () => {
    const words = Array.from({ length: spec.minWords + Math.floor(r() * span) }, () => spec.lo + Math.floor(r() * (spec.hi - spec.lo)));
    return [spec.bos, ...words, spec.eos];
  });
}

/** Packed batch (ids back to back, one length per sequence), as the engine takes it. */
export function packBatch(seqs: number[][]): TokenBatch {
  return { ids: Int32Array.from(seqs.flat()), lengths: Int32Array.from(seqs.map((s) => s.length)) };
}

export function randomBatch(n: number, seed: number, spec: TokenSpec): TokenBatch {
  return packBatch(randomSequences(n, seed, spec));
}
