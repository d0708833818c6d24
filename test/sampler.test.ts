// Property tests of the batch sampler (src/sampler.ts) on synthetic parallel data: batch invariants,
// the sampled distributions against their targets, epoch coverage, exact reproducibility and resume,
// and errors for bad options and data.
//
// Statistical bounds: every count is compared with its expectation, and passes when it is within
// 5 standard deviations (SD_BOUND) of a binomial count, or of a sum of independent Bernoulli draws
// where the probability varies per draw. For a correct sampler a 5-sd miss has probability below
// 1e-6 per count (normal approximation), and the tests check a few hundred counts, so a pass does not
// depend on the seed; the mistakes they guard against (alpha ignored, proportional instead of
// uniform languages, temperature ignored in per-triplet draws) miss by 10 sd or more at these sizes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BatchSampler, type Batch, type Item, type SamplerData, type SamplerOptions } from '../src/sampler.ts';
import type { LoopSampler } from '../src/train-loop.ts';
import { mulberry32 } from '../src/rng.ts';

const SD_BOUND = 5;

function within(observed: number, mean: number, variance: number, what: string): void {
  const sd = Math.sqrt(variance);
  assert.ok(Math.abs(observed - mean) <= SD_BOUND * sd,
    `${what}: observed ${observed}, expected ${mean.toFixed(1)} ± ${SD_BOUND} x ${sd.toFixed(2)}`);
}

interface Spec {
  dataset: string;
  groups: number;
  /** Probability that a group has a member in each language. */
  cover: Record<string, number>;
  /** Every k-th group has a single member (besides, maybe, one in 'el', which is held out). */
  singleEvery?: number;
}

function makeItems(specs: Spec[], seed: number): Item[] {
  const r = mulberry32(seed);
  const out: Item[] = [];
  for (const s of specs) {
    const langs = Object.keys(s.cover).filter((l) => l !== 'el');
    for (let g = 0; g < s.groups; g++) {
      const group = `${s.dataset}-${g}`;
      let have = s.singleEvery && g % s.singleEvery === 0
        ? [langs[Math.floor(r() * langs.length)]]
        : langs.filter((l) => r() < s.cover[l]);
      if (have.length === 0) have = [langs[Math.floor(r() * langs.length)]];
      if ('el' in s.cover && r() < s.cover.el) have.push('el');
      for (const lang of have) out.push({ group, lang, dataset: s.dataset });
    }
  }
  // Input order mixed across groups and datasets, as concatenated per-language files would be.
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

const BIG: Spec = {
  dataset: 'big', groups: 600, singleEvery: 10,
  cover: { en: 0.9, de: 0.8, es: 0.7, fr: 0.6, ru: 0.5, zh: 0.4, ar: 0.3, hi: 0.25, th: 0.2, el: 0.5 },
};
const SMALL: Spec = { dataset: 'small', groups: 240, singleEvery: 8, cover: { en: 0.8, de: 0.5, tr: 0.4, vi: 0.3, sw: 0.2, el: 0.5 } };
const RECORDS = makeItems([BIG, SMALL], 1);
const BITEXT = makeItems([{ dataset: 'tatoeba', groups: 90, singleEvery: 9, cover: { en: 0.9, fr: 0.6, sw: 0.5, th: 0.4, el: 0.5 } }], 2);
const HELD_OUT = ['el'];

/** Groups as the test sees them: their usable (not held-out) languages, by dataset. */
function groupsOf(items: Item[], heldOut = HELD_OUT): Map<string, Map<string, string[]>> {
  const out = new Map<string, Map<string, string[]>>();
  for (const it of items) {
    if (heldOut.includes(it.lang)) continue;
    if (!out.has(it.dataset)) out.set(it.dataset, new Map());
    const d = out.get(it.dataset)!;
    d.set(it.group, [...(d.get(it.group) ?? []), it.lang]);
  }
  return out;
}

function draw(s: BatchSampler, n: number): Batch[] {
  return Array.from({ length: n }, () => s.next());
}

/** Record counts per language over the given groups: n_lang of p(lang) ∝ n_lang^(1/T). */
function langCounts(groups: Iterable<string[]>): Map<string, number> {
  const n = new Map<string, number>();
  for (const langs of groups) for (const l of langs) n.set(l, (n.get(l) ?? 0) + 1);
  return n;
}

function targetWeights(n: Map<string, number>, t: number | 'uniform'): Map<string, number> {
  return new Map([...n].map(([l, c]) => [l, t === 'uniform' ? 1 : c ** (1 / t)]));
}

// ---------------------------------------------------------------------------------------------

test('the sampler is what the training loop consumes', () => {
  const s: LoopSampler = new BatchSampler({ records: RECORDS }, { seed: 1, batchSize: 8, heldOutLanguages: HELD_OUT });
  assert.equal(s.next().triplets.length, 8);
});

test('batch invariants: one language per mono batch, X-Y never same-language, one member per group, held-out languages absent', () => {
  const B = 12, K = 6;
  const s = new BatchSampler({ records: RECORDS }, {
    seed: 7, batchSize: B, mode: 'hybrid', alpha: 0.5, multilingualFraction: 0.25, heldOutLanguages: HELD_OUT, alignmentPairs: K,
  });
  const seen = { mono: 0, cross: 0, multi: 0 };
  const mixedPools = { multi: 0 };
  for (const b of draw(s, 1500)) {
    seen[b.mode]++;
    assert.equal(b.triplets.length, B, 'a batch never shrinks');
    const groups = new Set<string>();
    const passageLangs = new Set<string>();
    for (const { query, positive } of b.triplets) {
      const q = RECORDS[query], p = RECORDS[positive];
      assert.equal(q.group, p.group, 'query and positive are one pair');
      assert.ok(!groups.has(q.group), `group ${q.group} twice in one batch`);
      groups.add(q.group);
      assert.equal(q.dataset, b.dataset, 'batches are single-dataset');
      assert.equal(p.dataset, b.dataset);
      assert.ok(!HELD_OUT.includes(q.lang) && !HELD_OUT.includes(p.lang), 'held-out language in a triplet');
      passageLangs.add(p.lang);
      if (b.mode === 'mono') {
        assert.equal(query, positive);
        assert.equal(q.lang, b.language, 'mono batch in one language');
      } else {
        assert.equal(b.language, undefined);
        if (b.mode === 'cross') assert.notEqual(q.lang, p.lang, 'X-Y triplet within one language');
      }
    }
    if (b.mode === 'multi' && passageLangs.size > 1) mixedPools.multi++;
    assert.equal(b.alignment?.length, K);
    const alignGroups = new Set<string>();
    for (const { a, b: c } of b.alignment!) {
      assert.ok(a < RECORDS.length && c < RECORDS.length, 'without bitext, alignment pairs are record queries');
      const x = RECORDS[a], y = RECORDS[c];
      assert.equal(x.group, y.group, 'alignment pair of translations');
      assert.notEqual(x.lang, y.lang, 'alignment pair in one language');
      assert.ok(!HELD_OUT.includes(x.lang) && !HELD_OUT.includes(y.lang), 'held-out language in an alignment pair');
      assert.ok(!alignGroups.has(x.group), 'two alignment pairs from one group');
      alignGroups.add(x.group);
    }
  }
  assert.ok(seen.mono > 0 && seen.cross > 0 && seen.multi > 0, JSON.stringify(seen));
  assert.ok(mixedPools.multi > seen.multi * 0.9, 'multilingual batches have passages in several languages');
});

test('alignment pairs prefer bitext: translations from distinct groups, each group once per alignment epoch', () => {
  const n = RECORDS.length, K = 5;
  const s = new BatchSampler({ records: RECORDS, bitext: BITEXT }, { seed: 3, batchSize: 8, heldOutLanguages: HELD_OUT, alignmentPairs: K });
  const eligible = [...groupsOf(BITEXT).get('tatoeba')!].filter(([, langs]) => langs.length >= 2).map(([g]) => g).sort();
  assert.ok(eligible.length >= 40 && eligible.length < 90, 'the test data has bitext groups that cannot serve');
  const epochs = 4, batches = Math.floor((epochs * eligible.length) / K);
  const used: string[] = [];
  for (const b of draw(s, batches)) {
    const groups = new Set<string>();
    for (const { a, b: c } of b.alignment!) {
      assert.ok(a >= n && c >= n, 'bitext present: alignment pairs are bitext items');
      const x = BITEXT[a - n], y = BITEXT[c - n];
      assert.equal(x.group, y.group);
      assert.notEqual(x.lang, y.lang);
      assert.ok(x.lang !== 'el' && y.lang !== 'el');
      assert.ok(!groups.has(x.group));
      groups.add(x.group);
      used.push(x.group);
    }
  }
  // Every group can serve every alignment batch, so the first epochs are whole passes over the pool.
  const passes = Math.floor(used.length / eligible.length);
  for (let e = 0; e < passes; e++)
    assert.deepEqual(used.slice(e * eligible.length, (e + 1) * eligible.length).sort(), eligible, `alignment epoch ${e + 1}`);
});

test('batch modes and datasets follow their probabilities (alpha, multilingualFraction, dataset sizes)', () => {
  const N = 3000, alpha = 0.3, p = 0.2;
  const s = new BatchSampler({ records: RECORDS }, { seed: 11, batchSize: 4, alpha, multilingualFraction: p, heldOutLanguages: HELD_OUT });
  const batches = draw(s, N);
  const expected = { mono: (1 - p) * alpha, cross: (1 - p) * (1 - alpha), multi: p };
  for (const [mode, q] of Object.entries(expected)) {
    const c = batches.filter((b) => b.mode === mode).length;
    within(c, N * q, N * q * (1 - q), `${mode} batches`);
  }
  // Dataset weight: its number of groups (with a language not held out).
  const sizes = new Map([...groupsOf(RECORDS)].map(([d, g]) => [d, g.size]));
  const total = [...sizes.values()].reduce((a, b) => a + b, 0);
  for (const [d, size] of sizes) {
    const q = size / total, c = batches.filter((b) => b.dataset === d).length;
    within(c, N * q, N * q * (1 - q), `batches from ${d}`);
  }
  for (const [mode, only] of [['mono', 'mono'], ['cross', 'cross'], ['multilingual', 'multi']] as const) {
    const t = new BatchSampler({ records: RECORDS }, { seed: 2, batchSize: 4, mode, heldOutLanguages: HELD_OUT });
    assert.ok(draw(t, 200).every((b) => b.mode === only), `mode ${mode}`);
  }
});

test('mono batch languages follow p(lang) ∝ n_lang^(1/T) per dataset: uniform, T = 1 and T = 2', () => {
  const N = 3000;
  const data = groupsOf(RECORDS);
  for (const T of ['uniform', 1, 2] as const) {
    const s = new BatchSampler({ records: RECORDS }, { seed: 5, batchSize: 4, mode: 'mono', languageTemperature: T, heldOutLanguages: HELD_OUT });
    const batches = draw(s, N);
    for (const [d, groups] of data) {
      const w = targetWeights(langCounts(groups.values()), T);
      const sum = [...w.values()].reduce((a, b) => a + b, 0);
      const ofD = batches.filter((b) => b.dataset === d);
      for (const [l, wl] of w) {
        const q = wl / sum, c = ofD.filter((b) => b.language === l).length;
        within(c, ofD.length * q, ofD.length * q * (1 - q), `T=${T}, ${d}: mono batches in ${l}`);
      }
      assert.ok(ofD.every((b) => w.has(b.language!)), 'only the dataset\'s training languages');
    }
  }
});

test('per-triplet languages (multilingual, X-Y) follow the target weights restricted to the group\'s languages', () => {
  const N = 1500, B = 10;
  for (const [mode, T] of [['multilingual', 'uniform'], ['multilingual', 1], ['cross', 0.5], ['cross', 'uniform']] as const) {
    const s = new BatchSampler({ records: RECORDS }, { seed: 9, batchSize: B, mode, languageTemperature: T, heldOutLanguages: HELD_OUT });
    // Weights from the dataset's usable groups: in an X-Y-only run a one-language group is unusable.
    const weights = new Map([...groupsOf(RECORDS)].map(([d, g]) =>
      [d, targetWeights(langCounts([...g.values()].filter((langs) => mode !== 'cross' || langs.length >= 2)), T)]));
    const groupLangs = groupsOf(RECORDS);
    // Conditional on the groups drawn, the query (and passage) language of a triplet is a draw from
    // known probabilities: count expectations and variances are sums over the triplets.
    const stats = new Map<string, { obs: number; mean: number; variance: number }>();
    const add = (key: string, hit: boolean, prob: number) => {
      const e = stats.get(key) ?? { obs: 0, mean: 0, variance: 0 };
      e.obs += hit ? 1 : 0;
      e.mean += prob;
      e.variance += prob * (1 - prob);
      stats.set(key, e);
    };
    for (const b of draw(s, N)) {
      const w = weights.get(b.dataset)!;
      for (const { query, positive } of b.triplets) {
        const langs = groupLangs.get(b.dataset)!.get(RECORDS[query].group)!;
        const S = langs.reduce((a, l) => a + w.get(l)!, 0);
        for (const l of langs) {
          const pq = w.get(l)! / S;
          // X-Y passage: any query language m != l, then l among the others.
          const pp = mode === 'cross'
            ? langs.reduce((a, m) => (m === l ? a : a + (w.get(m)! / S) * (w.get(l)! / (S - w.get(m)!))), 0)
            : pq;
          add(`${b.dataset} query ${l}`, RECORDS[query].lang === l, pq);
          add(`${b.dataset} passage ${l}`, RECORDS[positive].lang === l, pp);
        }
      }
    }
    for (const [key, e] of stats) within(e.obs, e.mean, e.variance, `${mode}, T=${T}: ${key}`);
  }
});

test('an epoch covers every group exactly once', () => {
  // Fully parallel data: every group can serve every batch type, and batchSize divides both sizes.
  const full = makeItems([
    { dataset: 'a', groups: 240, cover: { en: 1, de: 1, fr: 1, sw: 1 } },
    { dataset: 'b', groups: 120, cover: { en: 1, hi: 1, th: 1 } },
  ], 4);
  const B = 8, s = new BatchSampler({ records: full }, { seed: 13, batchSize: B, multilingualFraction: 0.3 });
  const used = new Map<string, string[][]>();  // dataset -> groups used, by epoch (1-based)
  for (const b of draw(s, 400)) {
    const epochs = used.get(b.dataset) ?? [[]];
    while (epochs.length <= b.epoch) epochs.push([]);
    epochs[b.epoch].push(...b.triplets.map((t) => full[t.query].group));
    used.set(b.dataset, epochs);
  }
  const all = groupsOf(full, []);
  for (const [d, epochs] of used) {
    const whole = epochs.slice(1, -1);  // the last one may be under way
    assert.ok(whole.length >= 3, `several whole epochs of ${d}`);
    whole.forEach((groups, e) => assert.deepEqual(groups.sort(), [...all.get(d)!.keys()].sort(), `${d}, epoch ${e + 1}`));
  }
  const state = s.getState();
  for (const [d, q] of Object.entries(state.datasets)) {
    assert.equal(q.groups, all.get(d)!.size);
    assert.equal(q.used, q.groups - q.order.length, 'progress through the epoch');
    assert.equal(q.used % B, 0);
  }
});

test('with incomplete groups, an epoch holds every group once, uses each at most once, and none starves', () => {
  const s = new BatchSampler({ records: RECORDS }, { seed: 17, batchSize: 10, heldOutLanguages: HELD_OUT, multilingualFraction: 0.2 });
  const perEpoch = new Map<string, Set<string>>();
  const usedAt = new Map<string, number>();  // group -> count
  let lastEpoch = new Map<string, number>();
  for (let i = 0; i < 1500; i++) {
    const b = s.next();
    assert.ok(b.epoch >= (lastEpoch.get(b.dataset) ?? 1), 'epochs only advance');
    lastEpoch.set(b.dataset, b.epoch);
    const key = `${b.dataset}/${b.epoch}`;
    const set = perEpoch.get(key) ?? new Set<string>();
    for (const t of b.triplets) {
      const g = RECORDS[t.query].group;
      assert.ok(!set.has(g), `group ${g} twice in epoch ${key}`);
      set.add(g);
      usedAt.set(g, (usedAt.get(g) ?? 0) + 1);
    }
    perEpoch.set(key, set);
    // The epoch's order holds every group once: what the epoch used plus what it has left is all of them
    // (groups a past epoch left unused are carried over, not dropped).
    const q = s.getState().datasets[b.dataset];
    assert.equal(q.used, set.size, `progress of epoch ${key}`);
    assert.equal(q.used + q.order.length, q.groups, `epoch ${key} holds every group`);
  }
  assert.ok(lastEpoch.get('big')! >= 5 && lastEpoch.get('small')! >= 5);
  for (const [, groups] of groupsOf(RECORDS)) for (const g of groups.keys()) assert.ok(usedAt.has(g), `group ${g} never used`);
});

test('reproducible: same seed same batches, other seed other batches, and exact resume from getState', () => {
  const data: SamplerData = { records: RECORDS, bitext: BITEXT };
  const o: SamplerOptions = { seed: 21, batchSize: 16, multilingualFraction: 0.2, languageTemperature: 2, heldOutLanguages: HELD_OUT, alignmentPairs: 4 };
  const ref = draw(new BatchSampler(data, o), 300);
  assert.deepEqual(draw(new BatchSampler(data, o), 300), ref);
  assert.notDeepEqual(draw(new BatchSampler(data, { ...o, seed: 22 }), 300), ref);
  // Resume points: the start, mid-epoch, and past epoch boundaries (big: 37 batches of 16, small: 15).
  for (const k of [0, 1, 23, 97, 250]) {
    const s = new BatchSampler(data, o);
    draw(s, k);
    const state = s.getState();
    assert.deepEqual(s.getState(), state, 'getState does not draw');
    const restored = BatchSampler.restore(data, o, JSON.parse(JSON.stringify(state)));
    assert.deepEqual(restored.getState(), state);
    assert.deepEqual(draw(restored, 300 - k), ref.slice(k), `resumed after ${k} batches`);
  }
  const st = new BatchSampler(data, o).getState();
  assert.throws(() => BatchSampler.restore(data, { ...o, seed: 5 }, st), /other data or options/);
  assert.throws(() => BatchSampler.restore({ records: RECORDS.slice(1) }, o, st), /other data or options/);
  assert.throws(() => BatchSampler.restore(data, o, { ...st, version: 2 }), /version 1/);
  assert.throws(() => BatchSampler.restore(data, o, { ...st, datasets: { ...st.datasets, big: { ...st.datasets.big, order: [0, 0] } } }),
    /dataset "big": order holds 0: not a distinct group index/);
});

test('bad options and data give clear errors', () => {
  const ok: SamplerOptions = { seed: 1, batchSize: 8, heldOutLanguages: HELD_OUT };
  const make = (o: Partial<SamplerOptions> | Record<string, unknown>, records: Item[] = RECORDS, bitext?: Item[]) =>
    () => new BatchSampler({ records, bitext }, { ...ok, ...o } as SamplerOptions);
  assert.throws(make({}, []), /no training records/);
  assert.throws(make({ alpha: 1.5 }), /alpha must be in \[0, 1\], got 1\.5/);
  assert.throws(make({ alpha: -0.1 }), /alpha must be in \[0, 1\]/);
  assert.throws(make({ alpha: Number.NaN }), /alpha must be in \[0, 1\]/);
  assert.throws(make({ multilingualFraction: 2 }), /multilingualFraction must be in \[0, 1\]/);
  assert.throws(make({ mode: 'bilingual' }), /unknown mode "bilingual" \(one of mono, cross, hybrid, multilingual\)/);
  assert.throws(make({ alfa: 0.5 }), /unknown option "alfa"/);
  assert.throws(make({ batchSize: 0 }), /batchSize must be a positive integer, got 0/);
  assert.throws(make({ batchSize: 2.5 }), /batchSize must be a positive integer/);
  assert.throws(make({ seed: -1 }), /seed must be a non-negative integer/);
  assert.throws(make({ seed: undefined }), /seed must be a non-negative integer/);
  assert.throws(make({ languageTemperature: 0 }), /languageTemperature must be a positive number or 'uniform', got 0/);
  assert.throws(make({ languageTemperature: 'hot' }), /languageTemperature must be a positive number or 'uniform'/);
  assert.throws(make({ heldOutLanguages: 'el' }), /heldOutLanguages must be an array of language codes/);
  assert.throws(make({ alignmentPairs: -1 }), /alignmentPairs must be a non-negative integer/);
  assert.throws(make({ batchSize: 300, mode: 'multilingual' }), /dataset "small" has 240 usable groups, fewer than batchSize 300/);
  // Mono batches need batchSize groups in every language of the dataset.
  const swGroups = [...groupsOf(RECORDS).get('small')!.values()].filter((l) => l.includes('sw')).length;
  assert.throws(make({ batchSize: swGroups + 1 }), new RegExp(`dataset "small" has ${swGroups} groups in language "sw", fewer than batchSize ${swGroups + 1}`));
  assert.doesNotThrow(make({ batchSize: swGroups + 1, mode: 'multilingual' }), 'no mono batches: no per-language minimum');
  // X-Y batches need groups with two languages.
  const mono = RECORDS.filter((r) => r.lang === 'en');
  assert.throws(make({ mode: 'cross' }, mono), /dataset "big" has 0 usable groups \(with two or more languages, as X-Y needs\)/);
  assert.doesNotThrow(make({ mode: 'mono' }, mono));
  // A mixture with mono batches takes a monolingual dataset: its X-Y draws are mono (the next test).
  assert.doesNotThrow(make({ mode: 'hybrid' }, mono));
  // Groups sharing a passage count once: every small/sw group sharing one key leaves one.
  const oneKey = RECORDS.map((r) => (r.dataset === 'small' && r.lang === 'sw' ? { ...r, conflict: 'the same passage' } : r));
  assert.throws(make({}, oneKey), /dataset "small" has 1 groups in language "sw" \(groups sharing a passage count once\), fewer than batchSize 8/);
  assert.throws(make({}, [...RECORDS.slice(1), { ...RECORDS[0], conflict: 7 } as unknown as Item]), /records\[\d+\]\.conflict must be a string when given, got 7/);
  // Data.
  const twin = [...RECORDS, { ...RECORDS[0] }];
  assert.throws(make({}, twin), new RegExp(`records 0 and ${RECORDS.length}: group "${RECORDS[0].group}" has two items in language "${RECORDS[0].lang}"`));
  const moved = [...RECORDS, { group: RECORDS[0].group, lang: 'xx', dataset: 'other' }];
  assert.throws(make({}, moved), /group "[^"]+" spans datasets/);
  assert.throws(make({}, [...RECORDS, { group: 'g', lang: '', dataset: 'big' }]), /records\[\d+\]\.lang must be a non-empty string/);
  assert.throws(make({ heldOutLanguages: ['en', 'de', 'es', 'fr', 'ru', 'zh', 'ar', 'hi', 'th', 'tr', 'vi', 'sw', 'el'] }), /no records left after holding out/);
  assert.throws(make({ alignmentPairs: 1000 }), /alignmentPairs 1000 needs as many record groups with two or more languages; there are \d+/);
  assert.throws(make({ alignmentPairs: 1000 }, RECORDS, BITEXT), /alignmentPairs 1000 needs as many bitext groups/);
});

// Groups that share a passage (SQuAD-style sets ask several questions about one sentence) are false
// negatives of each other: no batch holds two of them, in any mode or language, nor do one batch's
// alignment pairs; the epoch guarantees hold; and keys no other group shares change nothing.
test('groups sharing a conflict key never meet in a batch; epochs still cover every group', () => {
  // big: groups 3k, 3k+1, 3k+2 (k < 100) share their passage in every language; bitext: pairs of groups share a text.
  const shareOf = (g: string) => {
    const [ds, n] = [g.slice(0, g.lastIndexOf('-')), Number(g.slice(g.lastIndexOf('-') + 1))];
    return ds === 'big' && n < 300 ? `big-p${Math.floor(n / 3)}` : ds === 'tatoeba' ? `t${Math.floor(n / 2)}` : null;
  };
  const keyed = (items: Item[]) => items.map((it) => {
    const k = shareOf(it.group);
    return k === null ? it : { ...it, conflict: `${it.lang}\u0000${k}` };
  });
  const records = keyed(RECORDS), bitext = keyed(BITEXT);
  // Two groups conflict when their (training-language) members share a key: a passage in one language.
  const keysOf = new Map<string, string[]>();
  for (const it of [...records, ...bitext]) if (it.conflict && !HELD_OUT.includes(it.lang)) keysOf.set(it.group, [...(keysOf.get(it.group) ?? []), it.conflict]);
  const clash = (groups: string[]) => {
    const ks = groups.flatMap((g) => keysOf.get(g) ?? []);
    return new Set(ks).size < ks.length;
  };
  const o: SamplerOptions = { seed: 5, batchSize: 12, multilingualFraction: 0.3, heldOutLanguages: HELD_OUT, alignmentPairs: 6 };
  const s = new BatchSampler({ records, bitext }, o);
  assert.ok(s.separatedGroups > 250, `${s.separatedGroups} groups kept apart`);
  const perEpoch = new Map<string, Set<string>>(), used = new Set<string>();
  let together = 0;
  for (let i = 0; i < 1500; i++) {
    const b = s.next();
    assert.ok(!clash(b.triplets.map((t) => records[t.query].group)), `batch ${i} (${b.mode}) holds two groups of one passage`);
    assert.ok(!clash(b.alignment!.map((p) => bitext[p.a - records.length].group)), `batch ${i}: two alignment pairs of one text`);
    const key = `${b.dataset}/${b.epoch}`, set = perEpoch.get(key) ?? new Set<string>();
    for (const t of b.triplets) {
      const g = records[t.query].group;
      assert.ok(!set.has(g), `group ${g} twice in epoch ${key}`);
      set.add(g);
      used.add(g);
    }
    perEpoch.set(key, set);
    const q = s.getState().datasets[b.dataset];
    assert.equal(q.used + q.order.length, q.groups, `epoch ${key} holds every group`);
  }
  for (const [, groups] of groupsOf(RECORDS)) for (const g of groups.keys()) assert.ok(used.has(g), `group ${g} never used`);
  // Without the keys the same sampler puts groups of one passage together (the check above can fail).
  const plain = new BatchSampler({ records: RECORDS, bitext: BITEXT }, o);
  for (let i = 0; i < 300; i++) {
    if (clash(plain.next().triplets.map((t) => RECORDS[t.query].group))) together++;
  }
  assert.ok(together > 0, 'no batch of the unkeyed sampler held two groups of one passage: the test shows nothing');
  // Keys that no two groups share: the same batches and state as no keys.
  const unique = RECORDS.map((it) => ({ ...it, conflict: `${it.lang}\u0000${it.group}` }));
  const a = new BatchSampler({ records: unique }, { ...o, alignmentPairs: 0 }), b = new BatchSampler({ records: RECORDS }, { ...o, alignmentPairs: 0 });
  assert.deepEqual(draw(a, 200), draw(b, 200));
  assert.deepEqual(a.getState(), b.getState());
  assert.equal(a.separatedGroups, 0);
  // A resumed sampler with keys continues exactly.
  const ref = draw(new BatchSampler({ records, bitext }, o), 120);
  const first = new BatchSampler({ records, bitext }, o);
  draw(first, 50);
  assert.deepEqual(draw(BatchSampler.restore({ records, bitext }, o, first.getState()), 70), ref.slice(50));
  assert.throws(() => BatchSampler.restore({ records: RECORDS, bitext: BITEXT }, o, first.getState()), /other data or options/);
});

test('a monolingual dataset beside a parallel one: its X-Y draws become mono batches; X-Y alone refuses it', () => {
  const mono = makeItems([{ dataset: 'monolingual', groups: 200, singleEvery: 1, cover: { en: 1, sw: 1 } }], 9);
  const s = new BatchSampler({ records: [...RECORDS, ...mono] }, { seed: 3, batchSize: 8, heldOutLanguages: HELD_OUT });
  assert.deepEqual(s.monoOnlyDatasets, ['monolingual']);
  const batches = draw(s, 600);
  const of = (d: string) => batches.filter((b) => b.dataset === d);
  assert.ok(of('monolingual').length > 50 && of('monolingual').every((b) => b.mode === 'mono'));
  const big = of('big');
  within(big.filter((b) => b.mode === 'mono').length, big.length * 0.5, big.length * 0.25, 'mono batches of the parallel dataset (alpha 0.5)');
  assert.throws(() => new BatchSampler({ records: [...RECORDS, ...mono] }, { seed: 3, batchSize: 8, heldOutLanguages: HELD_OUT, mode: 'cross' }),
    /dataset "monolingual" has 0 usable groups \(with two or more languages, as X-Y needs\)/);
});
