// Averages recomputed from a result's matrix and per-language entries: restricted to a subset of
// the languages (language groups in the report, the common languages in a comparison of runs), and
// as a check of the summary the evaluation wrote.

import type { LareqaResult } from './types.ts';

export interface Aggregate {
  mono: { map: number; r1: number };
  cross: { map: number; r1: number };
  multi: { map: number; r10: number };
  rankDistance: number;
  /** Number of settings each mAP average is over (those with a value): mono languages, cross (query, pool) pairs, multi query languages. */
  settings: { mono: number; cross: number; multi: number };
}

/** Mean of the defined values (NaN = a setting without queries, skipped as the evaluation's summary skips it); NaN when none. */
function mean(xs: number[]): number {
  let s = 0;
  let n = 0;
  for (const x of xs) {
    if (Number.isNaN(x)) continue;
    s += x;
    n++;
  }
  return n ? s / n : NaN;
}

function defined(xs: number[]): number {
  return xs.filter((x) => !Number.isNaN(x)).length;
}

/**
 * Pair selection of the cross-lingual average:
 *  - 'both':   query AND pool language in the subset (the cross-lingual setting of an evaluation run
 *              on the subset alone; used when comparing runs on their common languages),
 *  - 'either': query OR pool language in the subset, the other one any evaluated language (every pair
 *              that involves a language of a group; used for the language-group rows of the report).
 */
export type CrossPairs = 'both' | 'either';

/**
 * mono / cross / multi averages over `subset` (languages of `r` not in the subset are ignored;
 * subset languages the result does not have are ignored too). Missing values (NaN: a setting
 * without queries) are skipped, as in the evaluation's summary. Multilingual mAP, R@10 and rank
 * distance are the per-query-language values averaged over the subset: their pool is still the
 * union of ALL of the run's languages. An empty setting averages to NaN.
 */
export function aggregate(r: LareqaResult, subset: readonly string[] = r.languages, cross: CrossPairs = 'both'): Aggregate {
  const inSub = new Set(subset);
  const idx = r.languages.map((l, i) => [l, i] as const);
  const mono = idx.filter(([l]) => inSub.has(l)).map(([, i]) => i);
  const pairs: [number, number][] = [];
  for (const [lq, i] of idx)
    for (const [lp, j] of idx) {
      if (i === j) continue;
      const ok = cross === 'both' ? inSub.has(lq) && inSub.has(lp) : inSub.has(lq) || inSub.has(lp);
      if (ok) pairs.push([i, j]);
    }
  const multiLangs = r.languages.filter((l) => inSub.has(l));
  return {
    mono: { map: mean(mono.map((i) => r.matrix.map[i][i])), r1: mean(mono.map((i) => r.matrix.r1[i][i])) },
    cross: { map: mean(pairs.map(([i, j]) => r.matrix.map[i][j])), r1: mean(pairs.map(([i, j]) => r.matrix.r1[i][j])) },
    multi: { map: mean(multiLangs.map((l) => r.multilingual[l].map)), r10: mean(multiLangs.map((l) => r.multilingual[l].r10)) },
    rankDistance: mean(multiLangs.map((l) => r.multilingual[l].rankDistance)),
    settings: {
      mono: defined(mono.map((i) => r.matrix.map[i][i])),
      cross: defined(pairs.map(([i, j]) => r.matrix.map[i][j])),
      multi: defined(multiLangs.map((l) => r.multilingual[l].map)),
    },
  };
}

/** Mean of a row (query language i over the other pools) or a column (pool j under the other queries), diagonal excluded. */
export function offDiagonalMean(m: number[][], index: number, along: 'row' | 'column'): number {
  const xs: number[] = [];
  for (let k = 0; k < m.length; k++) if (k !== index) xs.push(along === 'row' ? m[index][k] : m[k][index]);
  return mean(xs);
}

/**
 * Where the summary the evaluation wrote disagrees with the averages of its own matrix and
 * per-language entries (beyond floating-point noise): one line per disagreeing metric. Empty when
 * consistent. A mismatch means the result was edited or produced with another averaging.
 */
export function summaryMismatches(r: LareqaResult, tolerance = 1e-6): string[] {
  const a = aggregate(r);
  const out: string[] = [];
  const check = (name: string, written: number, recomputed: number, from: string) => {
    if (Number.isNaN(written) && Number.isNaN(recomputed)) return;
    if (Number.isNaN(written) !== Number.isNaN(recomputed)) {
      out.push(`summary.${name} is ${written} but the ${from} averages to ${recomputed}`);
      return;
    }
    if (Math.abs(written - recomputed) > tolerance * Math.max(1, Math.abs(recomputed)))
      out.push(`summary.${name} is ${written} but the ${from} averages to ${recomputed}`);
  };
  check('mono.map', r.summary.mono.map, a.mono.map, 'diagonal of matrix.map');
  check('mono.r1', r.summary.mono.r1, a.mono.r1, 'diagonal of matrix.r1');
  check('cross.map', r.summary.cross.map, a.cross.map, 'off-diagonal of matrix.map');
  check('cross.r1', r.summary.cross.r1, a.cross.r1, 'off-diagonal of matrix.r1');
  check('multi.map', r.summary.multi.map, a.multi.map, 'multilingual[*].map');
  check('multi.r10', r.summary.multi.r10, a.multi.r10, 'multilingual[*].r10');
  check('rankDistance', r.summary.rankDistance, a.rankDistance, 'multilingual[*].rankDistance');
  return out;
}
