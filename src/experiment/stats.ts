// Statistics of an experiment: spread over seeds, and the paired bootstrap over queries.
import { mulberry32 } from '../rng.ts';

export interface Spread {
  mean: number;
  /** Sample standard deviation (n - 1); 0 for one value, NaN for none. */
  sd: number;
  min: number;
  max: number;
  n: number;
}

/** Mean, sample sd, min and max of the defined (non-NaN) values. */
export function spread(values: readonly number[]): Spread {
  const v = values.filter((x) => !Number.isNaN(x));
  const n = v.length;
  if (!n) return { mean: NaN, sd: NaN, min: NaN, max: NaN, n: 0 };
  const mean = v.reduce((a, b) => a + b, 0) / n;
  const sd = n > 1 ? Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1)) : 0;
  return { mean, sd, min: Math.min(...v), max: Math.max(...v), n };
}

export interface BootstrapResult {
  /** Mean of b - a over the queries (the observed difference). */
  diff: number;
  /** 95% percentile interval of the resampled differences. */
  lo: number;
  hi: number;
  /** Two-sided p-value of "no difference" (see pairedBootstrap). */
  p: number;
  /** Queries compared. */
  n: number;
  /** Units resampled: clusters, or the queries. */
  units: number;
  resamples: number;
}

export interface BootstrapOptions {
  resamples: number;
  seed: number;
  /** Confidence level of the interval (default 0.95). */
  level?: number;
  /**
   * Cluster of each query (integers 0..C-1): resample whole clusters instead of single queries
   * (e.g. a question and its translations, which are not independent). Default: each query alone.
   */
  clusters?: ArrayLike<number>;
}

/**
 * Paired bootstrap over queries for several comparisons on the SAME queries at once: `diffs[k][i]`
 * is system B minus system A on query i in comparison k (for example per-query AP averaged over
 * seeds). Each resample draws n queries with replacement (one draw shared by every comparison, so
 * the comparisons are consistent with each other), from a mulberry32 stream seeded by `seed`:
 * the same inputs and seed give the same numbers.
 *
 * The p-value tests "mean difference = 0" by the shifted bootstrap distribution (Efron and
 * Tibshirani 1993, section 16.4; Koehn 2004): p = (1 + #{b : |d*_b - d| >= |d|}) / (B + 1), where
 * d is the observed mean difference and d*_b the mean of resample b. Identical systems give
 * d = 0 and p = 1; a difference far outside the resampling spread gives p = 1 / (B + 1).
 * The interval is the percentile interval of d*_b.
 *
 * With `clusters`, a resample draws C clusters with replacement and d*_b is the mean over the
 * queries of the drawn clusters (a cluster bootstrap: correlated queries move together).
 */
export function pairedBootstrap(diffs: readonly ArrayLike<number>[], o: BootstrapOptions): BootstrapResult[] {
  if (!diffs.length) return [];
  const n = diffs[0].length;
  for (const d of diffs) if (d.length !== n) throw new Error(`pairedBootstrap: comparisons over different numbers of queries (${d.length} vs ${n})`);
  const B = o.resamples;
  if (!(Number.isInteger(B) && B >= 1)) throw new Error(`pairedBootstrap: resamples must be a positive integer, got ${B}`);
  if (n === 0) return diffs.map(() => ({ diff: NaN, lo: NaN, hi: NaN, p: NaN, n: 0, units: 0, resamples: B }));
  const K = diffs.length;
  const cols = diffs.map((d) => Float64Array.from(d as ArrayLike<number>));
  for (const c of cols) for (let i = 0; i < n; i++) if (!Number.isFinite(c[i])) throw new Error(`pairedBootstrap: non-finite difference at query ${i}`);
  const observed = cols.map((c) => c.reduce((a, b) => a + b, 0) / n);
  // Units of resampling: clusters (sums and sizes) or single queries.
  let units = cols, size: Float64Array | null = null;
  if (o.clusters) {
    if (o.clusters.length !== n) throw new Error(`pairedBootstrap: ${o.clusters.length} cluster ids for ${n} queries`);
    let C = 0;
    for (let i = 0; i < n; i++) {
      const c = o.clusters[i];
      if (!(Number.isInteger(c) && c >= 0)) throw new Error(`pairedBootstrap: cluster id ${c} at query ${i} is not an integer >= 0`);
      C = Math.max(C, c + 1);
    }
    size = new Float64Array(C);
    units = cols.map(() => new Float64Array(C));
    for (let i = 0; i < n; i++) {
      size[o.clusters[i]]++;
      for (let k = 0; k < K; k++) units[k][o.clusters[i]] += cols[k][i];
    }
  }
  const U = units[0].length;
  const rnd = mulberry32(o.seed);
  const means = cols.map(() => new Float64Array(B));
  const sums = new Float64Array(K);
  for (let b = 0; b < B; b++) {
    sums.fill(0);
    let count = 0;
    for (let i = 0; i < U; i++) {
      const j = Math.floor(rnd() * U);
      count += size ? size[j] : 1;
      for (let k = 0; k < K; k++) sums[k] += units[k][j];
    }
    for (let k = 0; k < K; k++) means[k][b] = count ? sums[k] / count : 0;
  }
  const level = o.level ?? 0.95;
  return cols.map((_, k) => {
    const d = observed[k];
    const m = means[k];
    let extreme = 0;
    // A tolerance keeps float noise in the means of identical systems from counting as "less extreme".
    const tol = 1e-12 * Math.max(1, Math.abs(d));
    for (let b = 0; b < B; b++) if (Math.abs(m[b] - d) >= Math.abs(d) - tol) extreme++;
    const sorted = Float64Array.from(m).sort();
    const q = (p: number) => {
      const x = p * (B - 1);
      const lo = Math.floor(x), hi = Math.ceil(x);
      return sorted[lo] + (sorted[hi] - sorted[lo]) * (x - lo);
    };
    return { diff: d, lo: q((1 - level) / 2), hi: q(1 - (1 - level) / 2), p: (1 + extreme) / (B + 1), n, units: U, resamples: B };
  });
}

/**
 * pairedBootstrap of b - a over the queries both results hold (keyed, e.g. "lang\u0000question id"),
 * resampling clusters of keys (cluster(key): a question and its translations move together). Keys
 * with a non-finite value on either side are left out, and so are keys only one side has; both
 * are counted in `unpaired`.
 */
export function pairedByKey(
  a: ReadonlyMap<string, number>, b: ReadonlyMap<string, number>, cluster: (key: string) => string, o: { resamples: number; seed: number },
): BootstrapResult & { unpaired: number } {
  const keys = [...a.keys()].filter((k) => b.has(k) && Number.isFinite(a.get(k)) && Number.isFinite(b.get(k)));
  const ids = new Map<string, number>();
  const clusters = keys.map((k) => {
    const c = cluster(k);
    let i = ids.get(c);
    if (i === undefined) ids.set(c, (i = ids.size));
    return i;
  });
  const [r] = pairedBootstrap([keys.map((k) => b.get(k)! - a.get(k)!)], { ...o, clusters });
  return { ...r, unpaired: a.size + b.size - 2 * keys.length };
}
