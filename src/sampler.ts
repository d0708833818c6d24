// Batch composition (METHOD.md §3 and §4): which records make up each training batch, and which
// translations make up its alignment pairs. Pure (no I/O), seeded, and exactly resumable.
//
// Indices. A triplet {query, positive} names RECORDS: the query text of record `query` and the
// positive passage of record `positive`. In a mono triplet they are the same record; in an X-Y
// triplet two records of one group in different languages; in a multilingual triplet either.
// Alignment pairs {a, b} index one combined list: a value < n (the number of records) is that
// record's query text, a value >= n is bitext item (value - n); a and b are two members of one
// group in different languages. (train-loop.ts reads both through its query store, which therefore
// holds the n record queries followed by the bitext texts.)
//
// Batch types. Each batch first draws its dataset, in proportion to the dataset's number of usable
// groups (a group is one (query, positive) pair, however many translations it has; a batch
// consumes groups, so this weighting makes every dataset's epochs advance at the same rate), then
// its type:
//   mono  (X-X-mono) one language for the whole batch, drawn over the dataset's languages;
//   cross (X-Y)      per triplet a query language and a different passage language;
//   multi (§4)       per triplet a query and a passage language drawn independently (equal or not),
//                    so the in-batch negatives are multilingual.
// The options' `mode` picks the mixture: 'mono', 'cross', 'hybrid' (mono with probability alpha,
// else cross: the paper's method) or 'multilingual' (every batch multi). `multilingualFraction` p
// combines multilingual batches with the other modes: each batch is multi with probability p, else
// what the mode would draw; 'multilingual' is the same as p = 1.
// Languages are drawn with weight n_lang^(1/T), n_lang = the dataset's records in that language
// ('uniform', the paper's draw over the training languages, is T -> infinity). Per-triplet draws are
// restricted to the languages the triplet's group has: the query language by those weights, the X-Y
// passage language by those of the remaining languages; with fully parallel data the query language
// then follows the target exactly.
// A usable group has a member in a training language; when the mixture has only X-Y batches
// (mode 'cross', or alpha 0, with no multilingual ones) it also needs two languages. A dataset with
// fewer translated groups than a batch (a monolingual one, such as TyDi QA beside XQuAD-R) takes
// part in a mixture with X-Y batches all the same: its X-Y draws become mono batches (so with
// alpha 0.5 it gives only mono batches, and the share of X-Y batches overall is that of the
// translated datasets' batches); only a mixture of X-Y batches alone refuses it.
//
// Epochs and coverage. Each dataset keeps an epoch order: a seeded permutation of its groups. A batch
// takes, in order, the first groups of the remaining order that it can use (a mono batch needs its
// language, an X-Y triplet two languages), so a batch never holds two members of one group. When
// fewer than batchSize usable groups remain, a new epoch begins and the batch is filled from its
// order: the groups the last epoch left unused, first, then a fresh permutation of all the others.
// Every epoch's order thus holds every group once: a group is used at most once per epoch, and one
// that had to wait is first in line in the next; when every group can serve every batch (e.g. fully
// parallel data) and batchSize divides the number of groups, each epoch uses every group exactly
// once. Batches never shrink: construction throws when a dataset cannot fill a batch of a type the
// mixture can draw (a language with fewer groups than batchSize where mono batches can be drawn,
// fewer than batchSize groups with two languages where X-Y batches can).
//
// Alignment pairs (§4, off by default) come from their own epoch order over one pool: the bitext
// groups when any bitext is left after holding languages out (bitext exists for this purpose, and
// keeps retrieval queries out of the alignment term), else the records' groups (their queries), of
// all datasets (the alignment term is an InfoNCE of its own, so it need not be single-dataset). Only
// groups with two or more languages serve; the pairs of one batch come from distinct groups, since
// two pairs from one group would be false negatives of each other; languages are drawn as for X-Y
// triplets, with the pool's language counts.
//
// Shared passages. Items may carry a `conflict` key (the caller's: the positive passage's language
// and text, or a bitext sentence's); two groups whose members share a key never meet in one batch
// or one batch's alignment pairs: the passage of one would be a false negative of the other's query,
// in that language and, through its translations, in the others (SQuAD-derived sets such as
// XQuAD-R ask several questions about one sentence), the case of sentence-transformers'
// NoDuplicatesBatchSampler. A batch takes the first usable groups of its order that share no key
// with the ones it has already taken; a group skipped for that waits in the order like any other.
// Since the first group of a set of groups linked by shared keys is always taken, construction
// counts such sets, not groups, when it checks that a batch can be filled.
//
// Held-out languages (zero-shot evaluation languages, e.g. el and vi on XQuAD-R) are removed before
// anything else: they never appear in a triplet or an alignment pair, a group keeps its other
// members, and a dataset with nothing left is dropped.
//
// State and randomness. Draws come from a counter-based generator (draw k is a hash of (seed, k)),
// so getState() is the draw counter, the batch count and, per dataset (and for the alignment pool),
// the epoch number, the groups used so far in it (progress) and the remaining order; restore()
// continues with exactly the batches the original would have produced, and refuses a state of other
// data or options.
import { createHash } from 'node:crypto';

/** A retrieval record or a bitext item: records of one group are translations of each other. */
export interface Item {
  group: string;
  lang: string;
  dataset: string;
  /** Groups whose items share a key never share a batch (see the opening comment). */
  conflict?: string;
}

export interface SamplerData {
  records: readonly Item[];
  /** Translations of single sentences, used only for the alignment term. */
  bitext?: readonly Item[];
}

export type SamplerMode = 'mono' | 'cross' | 'hybrid' | 'multilingual';
export type BatchMode = 'mono' | 'cross' | 'multi';

export interface SamplerOptions {
  /** Triplets per batch. Default 100, the paper's. */
  batchSize?: number;
  /** Non-negative integer: the same seed, data and options give the same batches. */
  seed: number;
  /** Default 'hybrid', the paper's method. */
  mode?: SamplerMode;
  /** Probability of a mono batch in 'hybrid' mode (ignored otherwise). Default 0.5, the paper's (stable 0.4-0.6). */
  alpha?: number;
  /** Probability that a batch is multilingual, in modes mono, cross and hybrid. Default 0: the paper has none. */
  multilingualFraction?: number;
  /** T in p(lang) ∝ n_lang^(1/T); T = 1 is proportional. Default 'uniform', the paper's draw. */
  languageTemperature?: number | 'uniform';
  /** Languages excluded from training (zero-shot evaluation languages). Default none. */
  heldOutLanguages?: readonly string[];
  /** Alignment pairs per batch; 0 (the default) turns the term off. */
  alignmentPairs?: number;
}

export interface Triplet {
  query: number;
  positive: number;
}

export interface Batch {
  mode: BatchMode;
  dataset: string;
  /** The batch language of a mono batch. */
  language?: string;
  /** The dataset's epoch the batch was drawn from (1 for the first pass). */
  epoch: number;
  triplets: Triplet[];
  /** Present when alignmentPairs > 0. */
  alignment?: { a: number; b: number }[];
}

export interface QueueState {
  epoch: number;
  /** Groups in the pool, and how many of them this epoch has used: the progress through the epoch. */
  groups: number;
  used: number;
  /** The epoch order's unused groups, in order. */
  order: number[];
}

export interface SamplerState {
  version: 1;
  /** Of the data and the resolved options; a state is refused by a sampler of other data or options. */
  fingerprint: string;
  draws: number;
  batches: number;
  datasets: Record<string, QueueState>;
  alignment?: QueueState;
}

const OPTION_KEYS = new Set(['batchSize', 'seed', 'mode', 'alpha', 'multilingualFraction', 'languageTemperature', 'heldOutLanguages', 'alignmentPairs']);
const MODES: readonly SamplerMode[] = ['mono', 'cross', 'hybrid', 'multilingual'];
const BATCH_MODES: readonly BatchMode[] = ['mono', 'cross', 'multi'];
const TWO32 = 4294967296;

// lowbias32 (C. Wellons, hash-prospector): a well-mixing bijection on 32-bit integers.
function mix32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

/** Counter-based generator: draw k is a hash of (seed, k), so its whole state is the counter. */
class Rng {
  private readonly k0: number;
  private readonly k1: number;
  constructor(seed: number, public draws = 0) {
    this.k0 = mix32((seed % TWO32) ^ 0x9e3779b9);
    this.k1 = mix32(Math.floor(seed / TWO32) ^ this.k0);
  }
  /** Uniform in [0, 1). */
  uniform(): number {
    const c = this.draws++;
    return mix32(mix32((c % TWO32) ^ this.k0) ^ mix32(Math.floor(c / TWO32) ^ this.k1)) / TWO32;
  }
  /** Index i in [0, count) with probability weight(i) / sum; some weight must be positive. */
  pick(count: number, weight: (i: number) => number): number {
    let total = 0;
    for (let i = 0; i < count; i++) total += weight(i);
    let u = this.uniform() * total, last = -1;
    for (let i = 0; i < count; i++) {
      const w = weight(i);
      if (w <= 0) continue;
      last = i;
      if ((u -= w) < 0) return i;
    }
    return last;  // only when rounding left u >= 0 after the last positive weight
  }
  shuffle(a: number[]): void {
    for (let i = a.length - 1; i > 0; i--) {
      const j = Math.floor(this.uniform() * (i + 1));
      [a[i], a[j]] = [a[j], a[i]];
    }
  }
}

/** A parallel group: its members' language ids and item indices, side by side. */
interface Group {
  lang: number[];
  item: number[];
  /** Conflict keys shared with another group (ids); empty for most groups. */
  keys: number[];
}

/** An epoch order over a pool of groups 0..size-1 (see the opening comment). */
class GroupQueue {
  /** The remaining order is order[head..]; what lies before head is used. */
  private head = 0;
  constructor(readonly size: number, public epoch = 0, private order: number[] = []) {}

  /**
   * The first k usable groups of the remaining order that share no conflict key, removed from it; a
   * new epoch when fewer are left.
   */
  take(k: number, usable: (g: number) => boolean, keys: (g: number) => readonly number[], rng: Rng): number[] {
    let picked = this.pick(k, usable, keys);
    if (!picked) {
      this.newEpoch(rng);
      picked = this.pick(k, usable, keys);
      // Construction checks that every drawable batch type has k usable groups in every dataset.
      if (!picked) throw new Error(`sampler: fewer than ${k} groups usable in a whole epoch`);
    }
    return picked;
  }

  // Scans from the head; the groups it skipped move up behind the taken ones, keeping their order,
  // so a batch costs what it scans rather than the length of the order.
  private pick(k: number, usable: (g: number) => boolean, keys: (g: number) => readonly number[]): number[] | null {
    const o = this.order, picked: number[] = [], skipped: number[] = [], taken = new Set<number>();
    const free = (g: number) => {
      const ks = keys(g);
      if (ks.some((x) => taken.has(x))) return false;
      for (const x of ks) taken.add(x);
      return true;
    };
    let i = this.head;
    for (; i < o.length && picked.length < k; i++) (usable(o[i]) && free(o[i]) ? picked : skipped).push(o[i]);
    if (picked.length < k) return null;
    this.head = i - skipped.length;
    skipped.forEach((g, j) => (o[this.head + j] = g));
    return picked;
  }

  private newEpoch(rng: Rng): void {
    const left = this.order.slice(this.head), waiting = new Uint8Array(this.size);
    for (const g of left) waiting[g] = 1;
    const fresh: number[] = [];
    for (let g = 0; g < this.size; g++) if (!waiting[g]) fresh.push(g);
    rng.shuffle(fresh);
    this.order = left.concat(fresh);
    this.head = 0;
    this.epoch++;
  }

  state(): QueueState {
    const order = this.order.slice(this.head);
    return { epoch: this.epoch, groups: this.size, used: this.size - order.length, order };
  }

  static restore(size: number, s: QueueState | undefined, what: string): GroupQueue {
    const bad = (why: string) => new Error(`sampler state: ${what}: ${why}`);
    if (!s || typeof s !== 'object') throw bad('missing');
    if (!Number.isSafeInteger(s.epoch) || s.epoch < 0) throw bad(`epoch ${JSON.stringify(s.epoch)} is not a non-negative integer`);
    if (s.groups !== size) throw bad(`${s.groups} groups, this data has ${size}`);
    if (!Array.isArray(s.order)) throw bad('order is not an array');
    const seen = new Uint8Array(size);
    for (const g of s.order) {
      if (!Number.isInteger(g) || g < 0 || g >= size || seen[g]) throw bad(`order holds ${JSON.stringify(g)}: not a distinct group index below ${size}`);
      seen[g] = 1;
    }
    return new GroupQueue(size, s.epoch, [...s.order]);
  }
}

/** A pool of groups with its language weights and epoch order. */
interface Pool {
  name: string;
  groups: Group[];
  /** Per language id; 0 for a language the pool lacks. */
  weight: Float64Array;
  /** Added to a member's item index to make the index the batch reports. */
  offset: number;
  queue: GroupQueue;
  /** A dataset with too few translated groups for an X-Y batch: its X-Y draws become mono batches. */
  monoOnly?: boolean;
}

interface Resolved {
  batchSize: number;
  seed: number;
  mode: SamplerMode;
  alpha: number;
  multilingualFraction: number;
  languageTemperature: number | 'uniform';
  heldOutLanguages: readonly string[];
  alignmentPairs: number;
}

function resolveOptions(o: SamplerOptions): Resolved {
  if (!o || typeof o !== 'object') throw new Error('sampler: options must be an object');
  for (const k of Object.keys(o)) if (!OPTION_KEYS.has(k)) throw new Error(`sampler: unknown option "${k}" (known: ${[...OPTION_KEYS].join(', ')})`);
  const r: Resolved = {
    batchSize: o.batchSize ?? 100,
    seed: o.seed,
    mode: o.mode ?? 'hybrid',
    alpha: o.alpha ?? 0.5,
    multilingualFraction: o.multilingualFraction ?? 0,
    languageTemperature: o.languageTemperature ?? 'uniform',
    heldOutLanguages: o.heldOutLanguages ?? [],
    alignmentPairs: o.alignmentPairs ?? 0,
  };
  const fail = (what: string) => { throw new Error(`sampler: ${what}`); };
  if (!Number.isSafeInteger(r.batchSize) || r.batchSize < 1) fail(`batchSize must be a positive integer, got ${JSON.stringify(o.batchSize)}`);
  if (!Number.isSafeInteger(r.seed) || r.seed < 0) fail(`seed must be a non-negative integer, got ${JSON.stringify(o.seed)}`);
  if (!MODES.includes(r.mode)) fail(`unknown mode ${JSON.stringify(o.mode)} (one of ${MODES.join(', ')})`);
  for (const k of ['alpha', 'multilingualFraction'] as const)
    if (typeof r[k] !== 'number' || !(r[k] >= 0 && r[k] <= 1)) fail(`${k} must be in [0, 1], got ${JSON.stringify(o[k])}`);
  const t = r.languageTemperature;
  if (t !== 'uniform' && !(typeof t === 'number' && t > 0 && Number.isFinite(t)))
    fail(`languageTemperature must be a positive number or 'uniform', got ${JSON.stringify(t)}`);
  if (!Array.isArray(r.heldOutLanguages) || !r.heldOutLanguages.every((l) => typeof l === 'string'))
    fail(`heldOutLanguages must be an array of language codes, got ${JSON.stringify(o.heldOutLanguages)}`);
  r.heldOutLanguages = [...new Set(r.heldOutLanguages)].sort();  // a canonical form for the fingerprint
  if (!Number.isSafeInteger(r.alignmentPairs) || r.alignmentPairs < 0) fail(`alignmentPairs must be a non-negative integer, got ${JSON.stringify(o.alignmentPairs)}`);
  return r;
}

/** Probabilities of mono, cross and multi batches (in BATCH_MODES order). */
function batchMix(r: Resolved): number[] {
  if (r.mode === 'multilingual') return [0, 0, 1];
  const p = r.multilingualFraction;
  const mono = r.mode === 'mono' ? 1 : r.mode === 'cross' ? 0 : r.alpha;
  return [(1 - p) * mono, (1 - p) * (1 - mono), p];
}

function checkItems(items: readonly Item[], what: string): void {
  if (!Array.isArray(items)) throw new Error(`sampler: ${what} must be an array`);
  items.forEach((it, i) => {
    for (const f of ['group', 'lang', 'dataset'] as const)
      if (typeof it?.[f] !== 'string' || it[f] === '') throw new Error(`sampler: ${what}[${i}].${f} must be a non-empty string, got ${JSON.stringify(it?.[f])}`);
    if (it.conflict !== undefined && typeof it.conflict !== 'string') throw new Error(`sampler: ${what}[${i}].conflict must be a string when given, got ${JSON.stringify(it.conflict)}`);
  });
}

function groupError(what: string, first: number, second: number, group: string, why: string): Error {
  return new Error(`sampler: ${what} ${first} and ${second}: group ${JSON.stringify(group)} ${why}`);
}

/**
 * The groups of the items, each under its dataset, in order of first appearance, with their members
 * of training languages (ids below `train`; held-out languages have the ids above). Group names are
 * global: a group with items in two datasets, or with two items of one language (held out or not),
 * is an error.
 */
function groupItems(items: readonly Item[], langId: Map<string, number>, train: number, what: string): Map<string, Group[]> {
  const byKey = new Map<string, { dataset: string; first: number; all: Group }>();
  items.forEach((it, i) => {
    let e = byKey.get(it.group);
    if (!e) byKey.set(it.group, (e = { dataset: it.dataset, first: i, all: { lang: [], item: [], keys: [] } }));
    if (e.dataset !== it.dataset) throw groupError(what, e.first, i, it.group, `spans datasets ${JSON.stringify(e.dataset)} and ${JSON.stringify(it.dataset)}`);
    const l = langId.get(it.lang)!, twin = e.all.lang.indexOf(l);
    if (twin >= 0) throw groupError(what, e.all.item[twin], i, it.group, `has two items in language ${JSON.stringify(it.lang)}`);
    e.all.lang.push(l);
    e.all.item.push(i);
  });
  const byDataset = new Map<string, Group[]>();
  // Conflict keys of the training members, as ids; a key only one group has is dropped.
  const keyId = new Map<string, number>(), holders: number[] = [];
  for (const { dataset, all } of byKey.values()) {
    const g: Group = { lang: [], item: [], keys: [] };
    for (let k = 0; k < all.lang.length; k++) {
      if (all.lang[k] >= train) continue;
      g.lang.push(all.lang[k]);
      g.item.push(all.item[k]);
      const c = items[all.item[k]].conflict;
      if (c === undefined) continue;
      let id = keyId.get(c);
      if (id === undefined) (keyId.set(c, (id = holders.length)), holders.push(0));
      if (!g.keys.includes(id)) (g.keys.push(id), holders[id]++);
    }
    if (g.lang.length === 0) continue;
    if (!byDataset.has(dataset)) byDataset.set(dataset, []);
    byDataset.get(dataset)!.push(g);
  }
  for (const gs of byDataset.values()) for (const g of gs) g.keys = g.keys.filter((id) => holders[id] > 1);
  return byDataset;
}

/**
 * How many of the groups that pass `filter` a batch can surely take together: the sets of them
 * linked by shared conflict keys (a batch's scan always takes the first group of each set).
 */
function separableCount(groups: Group[], filter: (g: Group) => boolean): number {
  const parent = Int32Array.from(groups, (_, i) => i);
  const find = (x: number) => {
    while (parent[x] !== x) x = parent[x] = parent[parent[x]];
    return x;
  };
  const firstWith = new Map<number, number>();
  let n = 0;
  groups.forEach((g, i) => {
    if (!filter(g)) return;
    n++;
    for (const k of g.keys) {
      const f = firstWith.get(k);
      if (f === undefined) firstWith.set(k, i);
      else if (find(i) !== find(f)) (parent[find(i)] = find(f), n--);
    }
  });
  return n;
}

/** Records per language id; since a group has at most one member per language, also groups per language. */
function languageCounts(groups: Group[], languages: number): Float64Array {
  const n = new Float64Array(languages);
  for (const g of groups) for (const l of g.lang) n[l]++;
  return n;
}

function languageWeights(n: Float64Array, t: number | 'uniform'): Float64Array {
  const max = Math.max(...n);
  // (n / max)^(1/T) rather than n^(1/T): the same ratios, without overflow at small T.
  return n.map((c) => (c === 0 ? 0 : t === 'uniform' ? 1 : (c / max) ** (1 / t)));
}

/** Of what a state's numbers refer to: the options, the language ids and every pool's groups. */
function fingerprint(r: Resolved, languages: readonly string[], pools: Pool[]): string {
  const h = createHash('sha256').update(JSON.stringify({ r, languages }));
  for (const p of pools) {
    const flat = new Int32Array(p.groups.reduce((n, g) => n + 1 + 2 * g.lang.length, 0));
    let at = 0;
    for (const g of p.groups) {
      flat[at++] = g.lang.length;
      for (const x of [...g.lang, ...g.item]) flat[at++] = x;
    }
    h.update(`\n${p.name} ${p.offset}\n`).update(flat);
    // Conflict keys only where there are any, so that the states of data without them stay valid.
    if (p.groups.some((g) => g.keys.length)) h.update(JSON.stringify(p.groups.map((g) => g.keys)));
  }
  return h.digest('hex').slice(0, 16);
}

export class BatchSampler {
  /** Training languages (not held out), sorted; a language id indexes this list. */
  private readonly languages: readonly string[];
  private readonly o: Resolved;
  private readonly mix: number[];
  private readonly rng: Rng;
  private readonly datasets: Pool[];
  private readonly align: Pool | null;
  private readonly fingerprint: string;
  private batches = 0;
  /** Groups that share a conflict key with another (kept apart in batches); 0 when none do. */
  readonly separatedGroups: number;

  /** Datasets whose X-Y draws become mono batches (too few translated groups for X-Y). */
  get monoOnlyDatasets(): string[] {
    return this.datasets.filter((d) => d.monoOnly).map((d) => d.name);
  }

  constructor(data: SamplerData, options: SamplerOptions) {
    const o = (this.o = resolveOptions(options));
    this.mix = batchMix(o);
    if (!data || typeof data !== 'object') throw new Error('sampler: data must be { records, bitext? }');
    checkItems(data.records, 'records');
    if (data.bitext !== undefined) checkItems(data.bitext, 'bitext');
    if (data.records.length === 0) throw new Error('sampler: no training records');

    // Language ids: the training languages first (sorted), then the held-out ones.
    const heldOut = new Set(o.heldOutLanguages);
    const useBitext = o.alignmentPairs > 0 && (data.bitext ?? []).some((it) => !heldOut.has(it.lang));
    const codes = new Set<string>();
    for (const it of data.records) codes.add(it.lang);
    if (useBitext) for (const it of data.bitext!) codes.add(it.lang);
    this.languages = [...codes].filter((l) => !heldOut.has(l)).sort();
    const langId = new Map([...this.languages, ...[...codes].filter((l) => heldOut.has(l))].map((l, i) => [l, i]));
    const L = this.languages.length, B = o.batchSize;
    const [monoP, crossP] = this.mix;
    const crossOnly = this.mix[1] === 1;

    // Datasets in name order, so that the input's order of datasets does not change the draws.
    const byDataset = groupItems(data.records, langId, L, 'records');
    this.datasets = [...byDataset.keys()].sort().map((name) => {
      // In a cross-only mix a one-language group can serve no batch: it is no part of the data.
      const groups = byDataset.get(name)!.filter((g) => !crossOnly || g.lang.length >= 2);
      const where = `dataset ${JSON.stringify(name)}`;
      // Groups that share a passage count once (the opening comment): the counts are of what a batch can hold.
      const shared = groups.some((g) => g.keys.length > 0) ? ' (groups sharing a passage count once)' : '';
      const all = separableCount(groups, () => true);
      if (all < B)
        throw new Error(`sampler: ${where} has ${all} usable groups${crossOnly ? ' (with two or more languages, as X-Y needs)' : ''}${shared}, fewer than batchSize ${B}`);
      const multi = separableCount(groups, (g) => g.lang.length >= 2);
      // Monolingual data (TyDi QA, say) beside parallel data: where an X-Y batch cannot be filled,
      // that dataset's X-Y draws become mono batches, so its batches need only what mono ones need.
      const monoOnly = crossP > 0 && multi < B;
      const counts = languageCounts(groups, L);
      if (monoP > 0 || monoOnly) counts.forEach((n, l) => {
        const have = n > 0 ? separableCount(groups, (g) => g.lang.includes(l)) : 0;
        if (n > 0 && have < B)
          throw new Error(`sampler: ${where} has ${have} groups in language "${this.languages[l]}"${shared}, fewer than batchSize ${B}, so it cannot fill a mono batch: hold the language out, lower batchSize, or use a mode without mono batches`);
      });
      return { name, groups, weight: languageWeights(counts, o.languageTemperature), offset: 0, queue: new GroupQueue(groups.length), ...(monoOnly ? { monoOnly } : {}) };
    });
    if (this.datasets.length === 0) throw new Error(`sampler: no records left after holding out ${o.heldOutLanguages.join(', ')}`);

    this.align = null;
    if (o.alignmentPairs > 0) {
      const source = useBitext ? groupItems(data.bitext!, langId, L, 'bitext') : byDataset;
      const groups = [...source.values()].flat().filter((g) => g.lang.length >= 2);
      const n = separableCount(groups, () => true);
      if (n < o.alignmentPairs)
        throw new Error(`sampler: alignmentPairs ${o.alignmentPairs} needs as many ${useBitext ? 'bitext' : 'record'} groups with two or more languages; there are ${n}` +
          (n < groups.length ? ' (groups sharing a text count once)' : ''));
      this.align = {
        name: 'alignment', groups, weight: languageWeights(languageCounts(groups, L), o.languageTemperature),
        offset: useBitext ? data.records.length : 0, queue: new GroupQueue(groups.length),
      };
    }
    const pools = this.align ? [...this.datasets, this.align] : this.datasets;
    this.fingerprint = fingerprint(o, this.languages, pools);
    // (Distinct groups: an alignment pool of records shares its group objects with the datasets.)
    this.separatedGroups = new Set(pools.flatMap((p) => p.groups.filter((g) => g.keys.length > 0))).size;
    this.rng = new Rng(o.seed);
  }

  /** A sampler that continues exactly where the one whose getState() gave `state` was. */
  static restore(data: SamplerData, options: SamplerOptions, state: unknown): BatchSampler {
    const s = new BatchSampler(data, options);
    const st = state as SamplerState;
    if (!st || typeof st !== 'object' || st.version !== 1) throw new Error('sampler state: not a version 1 sampler state');
    if (st.fingerprint !== s.fingerprint) throw new Error('sampler state: it belongs to other data or options');
    if (!Number.isSafeInteger(st.draws) || st.draws < 0 || !Number.isSafeInteger(st.batches) || st.batches < 0)
      throw new Error('sampler state: draws and batches must be non-negative integers');
    if (typeof st.datasets !== 'object' || st.datasets === null) throw new Error('sampler state: datasets missing');
    for (const p of s.datasets) p.queue = GroupQueue.restore(p.groups.length, st.datasets[p.name], `dataset ${JSON.stringify(p.name)}`);
    if (s.align) s.align.queue = GroupQueue.restore(s.align.groups.length, st.alignment, 'alignment');
    s.rng.draws = st.draws;
    s.batches = st.batches;
    return s;
  }

  getState(): SamplerState {
    const st: SamplerState = {
      version: 1, fingerprint: this.fingerprint, draws: this.rng.draws, batches: this.batches,
      datasets: Object.fromEntries(this.datasets.map((p) => [p.name, p.queue.state()])),
    };
    if (this.align) st.alignment = this.align.queue.state();
    return st;
  }

  next(): Batch {
    const rng = this.rng, B = this.o.batchSize;
    const d = this.datasets[rng.pick(this.datasets.length, (i) => this.datasets[i].groups.length)];
    const drawn = BATCH_MODES[rng.pick(3, (i) => this.mix[i])];
    const mode = drawn === 'cross' && d.monoOnly ? 'mono' : drawn;
    let triplets: Triplet[];
    let language: string | undefined;
    if (mode === 'mono') {
      const l = rng.pick(this.languages.length, (i) => d.weight[i]);
      language = this.languages[l];
      triplets = d.queue.take(B, (g) => d.groups[g].lang.includes(l), (g) => d.groups[g].keys, rng).map((g) => {
        const r = d.groups[g].item[d.groups[g].lang.indexOf(l)];
        return { query: r, positive: r };
      });
    } else {
      const ids = d.queue.take(B, mode === 'cross' ? (g) => d.groups[g].lang.length >= 2 : () => true, (g) => d.groups[g].keys, rng);
      triplets = ids.map((g) => {
        const [q, p] = this.members(d, d.groups[g], mode === 'cross');
        return { query: q, positive: p };
      });
    }
    const batch: Batch = { mode, dataset: d.name, epoch: d.queue.epoch, triplets };
    if (language !== undefined) batch.language = language;
    const a = this.align;
    if (a) {
      batch.alignment = a.queue.take(this.o.alignmentPairs, () => true, (g) => a.groups[g].keys, this.rng).map((g) => {
        const [x, y] = this.members(a, a.groups[g], true);
        return { a: x, b: y };
      });
    }
    this.batches++;
    return batch;
  }

  /** Two members' indices: the first by the pool's language weights, the second likewise, different from the first when `distinct`. */
  private members(p: Pool, g: Group, distinct: boolean): [number, number] {
    const w = (k: number) => p.weight[g.lang[k]];
    const i = this.rng.pick(g.lang.length, w);
    const j = this.rng.pick(g.lang.length, distinct ? (k) => (k === i ? 0 : w(k)) : w);
    return [p.offset + g.item[i], p.offset + g.item[j]];
  }
}
