// Ranking metrics of the LAReQA protocol (docs METHOD.md section 5): average precision over the
// full candidate pool, recall@k, success@k, rank distance, and the averaging over queries and
// settings. Pure functions on one query's score row; no search happens here.
//
// Ties. A score row of a real encoder rarely has exact ties, but duplicate candidates (the same
// sentence in the same context) do, and every definition below is independent of candidate order:
//  - average precision treats tied scores as ONE threshold, exactly as
//    sklearn.metrics.average_precision_score (precision_recall_curve computes one precision/recall
//    point per distinct score, `_binary_clf_curve` in sklearn/metrics/_ranking.py). Writing
//    n_ge(s) = #candidates with score >= s and tp_ge(s) = #relevant candidates with score >= s,
//    sklearn's AP = sum over distinct thresholds t of (r_t / R) * tp_ge(t) / n_ge(t), r_t being the
//    number of relevant candidates scoring exactly t and R the number of relevant candidates; i.e.
//    AP = (1/R) * sum over relevant candidates i of tp_ge(s_i) / n_ge(s_i).
//  - ranks are PESSIMISTIC: rank(i) = n_ge(s_i), the last position candidate i can take under any
//    ordering of its ties (1-based). A candidate is "in the top k" when rank(i) <= k, that is, in the
//    top k whatever the tie-breaking. This is the rank AP's precision is taken at, so AP, recall@k,
//    success@k and rank distance agree on what a tie means.
//
// Every function checks its input (equal lengths, no NaN score, relevant indices unique and in
// range, at least one relevant candidate) and throws with a message saying what is wrong; a query
// without a relevant candidate is a data error here (sklearn would warn and return 0).

/** One query's scores over the candidate pool (cosine similarities, any finite or infinite value, no NaN). */
export type Scores = ArrayLike<number>;

function checkScores(scores: Scores, where: string): void {
  for (let i = 0; i < scores.length; i++) {
    if (Number.isNaN(scores[i])) throw new Error(`${where}: score ${i} is NaN`);
  }
}

function checkRelevantIdx(scores: Scores, relevantIdx: readonly number[], where: string): void {
  if (relevantIdx.length === 0) throw new Error(`${where}: no relevant candidate (the metric is undefined)`);
  const seen = new Set<number>();
  for (const i of relevantIdx) {
    if (!Number.isInteger(i) || i < 0 || i >= scores.length)
      throw new Error(`${where}: relevant index ${i} outside the pool of ${scores.length} candidates`);
    if (seen.has(i)) throw new Error(`${where}: relevant index ${i} given twice`);
    seen.add(i);
  }
}

/**
 * The distinct scores of the relevant candidates, descending, and how many relevant candidates
 * score exactly each of them.
 */
function relevantThresholds(scores: Scores, relevantIdx: readonly number[], where: string): { t: Float64Array; r: Int32Array } {
  const s = Float64Array.from(relevantIdx, (i) => {
    const v = scores[i];
    if (Number.isNaN(v)) throw new Error(`${where}: score ${i} is NaN`);
    return v;
  }).sort().reverse();
  const t: number[] = [];
  const r: number[] = [];
  for (const v of s) {
    if (t.length > 0 && t[t.length - 1] === v) r[r.length - 1]++;
    else { t.push(v); r.push(1); }
  }
  return { t: Float64Array.from(t), r: Int32Array.from(r) };
}

/**
 * n_ge[j] = number of candidates with score >= t[j], for thresholds t strictly descending. One pass
 * over the row: a candidate below the lowest threshold costs one comparison, the others a binary
 * search over the (at most a dozen) thresholds. Also rejects NaN scores.
 */
function countAtOrAbove(scores: Scores, t: Float64Array, where: string): Float64Array {
  const m = t.length;
  const bucket = new Float64Array(m);
  const lowest = t[m - 1];
  for (let i = 0; i < scores.length; i++) {
    const x = scores[i];
    if (x < lowest) continue;
    if (x !== x) throw new Error(`${where}: score ${i} is NaN`);
    // First j with t[j] <= x (exists because x >= t[m-1]).
    let lo = 0;
    let hi = m - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (t[mid] <= x) hi = mid;
      else lo = mid + 1;
    }
    bucket[lo]++;
  }
  for (let j = 1; j < m; j++) bucket[j] += bucket[j - 1];
  return bucket;
}

/**
 * Average precision over the whole pool, as sklearn.metrics.average_precision_score(relevant, scores):
 * sorts the pool. `relevant[i]` true (or non-zero) marks candidate i relevant. The reference the
 * fast {@link averagePrecisionSparse} is tested against; both add the same terms in the same order,
 * so they return the same double, bit for bit.
 */
export function averagePrecision(scores: Scores, relevant: ArrayLike<boolean | number>): number {
  const where = 'averagePrecision';
  const n = scores.length;
  if (relevant.length !== n) throw new Error(`${where}: ${n} scores but ${relevant.length} relevance labels`);
  checkScores(scores, where);
  let total = 0;
  for (let i = 0; i < n; i++) if (relevant[i]) total++;
  if (total === 0) throw new Error(`${where}: no relevant candidate (the metric is undefined)`);
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[b] - scores[a] || a - b);
  let sum = 0;
  let seen = 0; // n_ge of the current threshold
  let tp = 0; // tp_ge of the current threshold
  for (let g = 0; g < n;) {
    const v = scores[order[g]];
    let end = g;
    let relInGroup = 0;
    while (end < n && scores[order[end]] === v) {
      if (relevant[order[end]]) relInGroup++;
      end++;
    }
    seen += end - g;
    tp += relInGroup;
    const precision = tp / seen;
    for (let k = 0; k < relInGroup; k++) sum += precision;
    g = end;
  }
  return sum / total;
}

/** What one pass over a score row gives: AP and the pessimistic ranks of the relevant candidates. */
export interface RowMetrics {
  /** {@link averagePrecision} of the row. */
  averagePrecision: number;
  /** Pessimistic 1-based rank of each relevant candidate, in the order of `relevantIdx`. */
  ranks: number[];
}

/**
 * AP and ranks of a full score row given the indices of its (few) relevant candidates, in one pass
 * over the row and without sorting it (O(n log R)): for each distinct relevant score s, n_ge(s) is
 * counted in the pass and tp_ge(s) from the relevant scores alone. The AP adds the same terms in
 * the same order as {@link averagePrecision}, so the two return the same double, bit for bit.
 */
export function rowMetrics(scores: Scores, relevantIdx: readonly number[]): RowMetrics {
  const where = 'rowMetrics';
  checkRelevantIdx(scores, relevantIdx, where);
  const { t, r } = relevantThresholds(scores, relevantIdx, where);
  const nGe = countAtOrAbove(scores, t, where);
  let sum = 0;
  let tp = 0;
  const rankOf = new Map<number, number>();
  for (let j = 0; j < t.length; j++) {
    tp += r[j];
    const precision = tp / nGe[j];
    for (let k = 0; k < r[j]; k++) sum += precision;
    rankOf.set(t[j], nGe[j]);
  }
  return { averagePrecision: sum / relevantIdx.length, ranks: relevantIdx.map((i) => rankOf.get(scores[i])!) };
}

/** {@link averagePrecision} from the indices of the relevant candidates (see {@link rowMetrics}). */
export function averagePrecisionSparse(scores: Scores, relevantIdx: readonly number[]): number {
  return rowMetrics(scores, relevantIdx).averagePrecision;
}

/**
 * Pessimistic 1-based rank of each relevant candidate, in the order of `relevantIdx`:
 * rank(i) = number of candidates with score >= scores[i] (tied candidates, relevant or not, all
 * count as ranked before it). Deterministic and independent of candidate order.
 */
export function relevantRanks(scores: Scores, relevantIdx: readonly number[]): number[] {
  return rowMetrics(scores, relevantIdx).ranks;
}

function checkK(k: number, where: string): void {
  if (!Number.isSafeInteger(k) || k < 1) throw new Error(`${where}: k must be a positive integer, got ${k}`);
}

/**
 * Recall@k = (number of relevant candidates ranked in the top k) / (number of relevant candidates),
 * with pessimistic ranks (see {@link relevantRanks}): the textbook and trec_eval definition
 * (`recall.k`, usnistgov/trec_eval m_recall.c: rel_so_far / num_rel). With one relevant candidate
 * (LAReQA mono and cross-lingual settings on XQuAD-R) it equals success@k; in the multilingual pool a
 * question has one relevant candidate per language (11 on XQuAD-R), so Recall@10 there is at most
 * 10/11. Neither LAReQA (which reports mAP only) nor METHOD.md defines R@k for several relevant
 * candidates; this is the standard IR reading, and {@link successAtK} is the alternative.
 */
export function recallAtK(scores: Scores, relevantIdx: readonly number[], k: number): number {
  checkK(k, 'recallAtK');
  return recallFromRanks(relevantRanks(scores, relevantIdx), k);
}

/** {@link recallAtK} from the ranks {@link rowMetrics} gave. */
export function recallFromRanks(ranks: readonly number[], k: number): number {
  checkK(k, 'recallFromRanks');
  if (ranks.length === 0) throw new Error('recallFromRanks: no relevant candidate (the metric is undefined)');
  let hit = 0;
  for (const r of ranks) if (r <= k) hit++;
  return hit / ranks.length;
}

/** Success@k (hit rate): 1 when at least one relevant candidate has pessimistic rank <= k, else 0. */
export function successAtK(scores: Scores, relevantIdx: readonly number[], k: number): number {
  checkK(k, 'successAtK');
  return relevantRanks(scores, relevantIdx).some((r) => r <= k) ? 1 : 0;
}

/**
 * Rank distance (language bias, METHOD.md section 5): max - min of the pessimistic ranks of a query's
 * parallel relevant candidates in the multilingual pool (one per language). Needs at least two:
 * with one the distance would be 0 by construction, which would flatter the average.
 */
export function rankDistance(scores: Scores, relevantIdx: readonly number[]): number {
  if (relevantIdx.length < 2)
    throw new Error(`rankDistance: needs at least 2 relevant candidates, got ${relevantIdx.length}`);
  return rankDistanceFromRanks(relevantRanks(scores, relevantIdx));
}

/** {@link rankDistance} from the ranks {@link rowMetrics} gave. */
export function rankDistanceFromRanks(ranks: readonly number[]): number {
  if (ranks.length < 2) throw new Error(`rankDistance: needs at least 2 relevant candidates, got ${ranks.length}`);
  let lo = Infinity;
  let hi = -Infinity;
  for (const r of ranks) {
    if (r < lo) lo = r;
    if (r > hi) hi = r;
  }
  return hi - lo;
}

/** Indices i with mask[i] true or non-zero (dense labels -> the sparse form). */
export function relevantIndices(mask: ArrayLike<boolean | number>): number[] {
  const out: number[] = [];
  for (let i = 0; i < mask.length; i++) if (mask[i]) out.push(i);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Averaging. A metric is first averaged over the queries of a setting (query language x pool
// language), then settings are macro-averaged: monolingual = the diagonal, cross-lingual = every
// ordered pair of different languages, multilingual = every query language against the pooled
// candidates of all languages (METHOD.md section 5; rank distance uses the multilingual settings).

/** Arithmetic mean; throws on an empty input or a NaN, which would otherwise hide a missing setting. */
export function mean(values: Iterable<number>): number {
  let sum = 0;
  let n = 0;
  for (const v of values) {
    if (Number.isNaN(v)) throw new Error('mean: NaN value');
    sum += v;
    n++;
  }
  if (n === 0) throw new Error('mean: no values');
  return sum / n;
}

/** Mean over settings, each already a mean over its queries (every setting weighs the same). */
export const macroAverage = mean;

/** Pool name of the multilingual setting in a {@link LanguageMatrix} (the union of all languages). */
export const MULTILINGUAL_POOL = '*';

/** queryLang -> poolLang (or {@link MULTILINGUAL_POOL}) -> per-setting value (a mean over queries). */
export type LanguageMatrix = Map<string, Map<string, number>>;

/** Accumulates per-query values by setting (query language, pool language) and gives the per-setting means. */
export class SettingAverager {
  private readonly sums = new Map<string, Map<string, { sum: number; n: number }>>();

  add(queryLang: string, poolLang: string, value: number): void {
    if (Number.isNaN(value)) throw new Error(`SettingAverager: NaN value for ${queryLang} -> ${poolLang}`);
    let row = this.sums.get(queryLang);
    if (!row) this.sums.set(queryLang, (row = new Map()));
    const cell = row.get(poolLang);
    if (cell) { cell.sum += value; cell.n++; } else row.set(poolLang, { sum: value, n: 1 });
  }

  /** Number of queries added for a setting (0 if none). */
  count(queryLang: string, poolLang: string): number {
    return this.sums.get(queryLang)?.get(poolLang)?.n ?? 0;
  }

  /** The per-setting means, rows and columns in first-added order. */
  matrix(): LanguageMatrix {
    const out: LanguageMatrix = new Map();
    for (const [q, row] of this.sums) out.set(q, new Map([...row].map(([p, c]) => [p, c.sum / c.n])));
    return out;
  }
}

export interface SettingSummary {
  /** Macro-average over settings with pool language = query language; null when there are none. */
  mono: number | null;
  /** Macro-average over settings with pool language != query language (pool not multilingual). */
  cross: number | null;
  /** Macro-average over query languages of the multilingual-pool settings. */
  multilingual: number | null;
  counts: { mono: number; cross: number; multilingual: number };
}

/** Splits a language matrix into its monolingual, cross-lingual and multilingual settings and macro-averages each. */
export function summarizeSettings(matrix: LanguageMatrix): SettingSummary {
  const mono: number[] = [];
  const cross: number[] = [];
  const multi: number[] = [];
  for (const [q, row] of matrix) {
    for (const [p, v] of row) {
      if (p === MULTILINGUAL_POOL) multi.push(v);
      else if (p === q) mono.push(v);
      else cross.push(v);
    }
  }
  const avg = (xs: number[]) => (xs.length ? mean(xs) : null);
  return {
    mono: avg(mono),
    cross: avg(cross),
    multilingual: avg(multi),
    counts: { mono: mono.length, cross: cross.length, multilingual: multi.length },
  };
}
