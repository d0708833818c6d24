// LAReQA metrics (src/eval/metrics.ts) on cases worked out by hand and against scikit-learn, and
// trec_eval's nDCG@10 / Recall@100 (src/eval/trec.ts) on hand cases and against sklearn's
// ndcg_score where the two definitions coincide. The sklearn checks run the Python named by
// XLIR_PYTHON (numpy + scikit-learn) and skip, saying so, without it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  MULTILINGUAL_POOL, SettingAverager, averagePrecision, averagePrecisionSparse, macroAverage, mean, rankDistance,
  rankDistanceFromRanks, recallAtK, recallFromRanks, relevantIndices, relevantRanks, rowMetrics, successAtK,
  summarizeSettings,
} from '../src/eval/metrics.ts';
import { trecEval, type Qrels, type Run } from '../src/eval/trec.ts';
import { mulberry32 } from '../src/rng.ts';

const PYTHON = process.env.XLIR_PYTHON;
const NO_PYTHON = 'XLIR_PYTHON is not set: metrics not compared with scikit-learn (set it to a python with numpy and scikit-learn)';
const SCRIPT = join(dirname(fileURLToPath(import.meta.url)), 'reference', 'eval_reference.py');

interface SklearnRequest {
  ap?: { y_true: number[]; y_score: number[] }[];
  ndcg?: { y_true: number[]; y_score: number[]; k: number }[];
}
function sklearn(req: SklearnRequest): { ap: number[]; ndcg: number[] } {
  const r = spawnSync(PYTHON!, [SCRIPT], { input: JSON.stringify(req), encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${PYTHON} ${SCRIPT} failed (${r.status ?? r.signal}):\n${(r.stderr ?? '').slice(-4000)}`);
  return JSON.parse(r.stdout);
}

/** A random query: float32 scores (half the cases drawn from a few levels, so with many ties) and >= 1 relevant. */
function randomCase(r: () => number): { scores: Float32Array; relevant: Uint8Array } {
  const n = 1 + Math.floor(r() * 300);
  const levels = r() < 0.5 ? 2 + Math.floor(r() * 10) : 0;
  const scores = new Float32Array(n);
  for (let i = 0; i < n; i++) scores[i] = levels ? Math.floor(r() * levels) / levels - 0.5 : r() * 2 - 1;
  const p = r() < 0.5 ? 0.05 : 0.4;
  const relevant = new Uint8Array(n);
  for (let i = 0; i < n; i++) relevant[i] = r() < p ? 1 : 0;
  relevant[Math.floor(r() * n)] = 1;
  return { scores, relevant };
}

const close = (a: number, b: number, tol: number, msg?: string) =>
  assert.ok(Math.abs(a - b) <= tol, `${msg ?? ''} ${a} vs ${b} (|diff| ${Math.abs(a - b)} > ${tol})`);

test('average precision, cases worked out by hand', () => {
  // Relevant at ranks 1 and 3: (1/1 + 2/3) / 2.
  assert.equal(averagePrecision([0.9, 0.8, 0.7, 0.6], [true, false, true, false]), (1 + 2 / 3) / 2);
  // Order of the input does not matter, only the scores.
  assert.equal(averagePrecision([0.7, 0.6, 0.9, 0.8], [1, 0, 1, 0]), (1 + 2 / 3) / 2);
  // A relevant candidate tied with two others is one threshold: precision 1/3 there (not 1, as a
  // relevant-first tie-break would give, nor 1/3 by luck of the order), then 2/4 at 0.1.
  assert.equal(averagePrecision([0.5, 0.5, 0.5, 0.1], [1, 0, 0, 1]), (1 / 3 + 2 / 4) / 2);
  assert.equal(averagePrecision([0.5, 0.1, 0.5, 0.5], [0, 1, 0, 1]), (1 / 3 + 2 / 4) / 2);
  // Two relevant tied with one non-relevant at the top: both get precision 2/3.
  assert.equal(averagePrecision([0.3, 0.9, 0.9, 0.2, 0.9], [0, 1, 0, 0, 1]), 2 / 3);
  // Everything tied: precision = prevalence.
  assert.equal(averagePrecision([1, 1, 1, 1, 1], [0, 1, 0, 0, 0]), 1 / 5);
  assert.equal(averagePrecision([0.1, 0.2, 0.3], [1, 1, 1]), 1);
  assert.equal(averagePrecision([0.4], [true]), 1);
  // One relevant, pessimistic rank 4 (tied with the third): 1/4.
  assert.equal(averagePrecision([0.9, 0.8, 0.7, 0.7, 0.1], [0, 0, 0, 1, 0]), 1 / 4);
  assert.equal(averagePrecision([Infinity, -Infinity, 0], [0, 1, 0]), 1 / 3);

  assert.throws(() => averagePrecision([0.1, 0.2], [0, 0]), /no relevant candidate/);
  assert.throws(() => averagePrecision([0.1, NaN], [1, 0]), /score 1 is NaN/);
  assert.throws(() => averagePrecision([0.1, 0.2], [1]), /2 scores but 1 relevance labels/);
});

test('sparse average precision: the same cases, and the same double as the sorted version on random rows', () => {
  assert.equal(averagePrecisionSparse([0.9, 0.8, 0.7, 0.6], [0, 2]), (1 + 2 / 3) / 2);
  assert.equal(averagePrecisionSparse([0.5, 0.5, 0.5, 0.1], [3, 0]), (1 / 3 + 2 / 4) / 2);
  assert.equal(averagePrecisionSparse([0.3, 0.9, 0.9, 0.2, 0.9], [4, 1]), 2 / 3);
  assert.equal(averagePrecisionSparse([0.9, 0.8, 0.7, 0.7, 0.1], [3]), 1 / 4);
  assert.equal(averagePrecisionSparse([0, -0, 0], [1]), 1 / 3, '-0 and 0 tie');
  assert.throws(() => averagePrecisionSparse([0.1, 0.2], []), /no relevant candidate/);
  assert.throws(() => averagePrecisionSparse([0.1, 0.2], [2]), /relevant index 2 outside the pool of 2/);
  assert.throws(() => averagePrecisionSparse([0.1, 0.2], [1, 1]), /relevant index 1 given twice/);
  assert.throws(() => averagePrecisionSparse([0.1, 0.2, NaN], [0]), /score 2 is NaN/);
  assert.throws(() => averagePrecisionSparse([NaN, 0.2], [0]), /score 0 is NaN/);

  const r = mulberry32(7);
  for (let c = 0; c < 2000; c++) {
    const { scores, relevant } = randomCase(r);
    const dense = averagePrecision(scores, relevant);
    const sparse = averagePrecisionSparse(scores, relevantIndices(relevant));
    assert.ok(Object.is(dense, sparse), `case ${c}: dense ${dense} != sparse ${sparse}`);
    // A plain number[] row gives the same value; rowMetrics gives AP and ranks in one pass.
    assert.ok(Object.is(averagePrecisionSparse(Array.from(scores), relevantIndices(relevant)), dense));
    const row = rowMetrics(scores, relevantIndices(relevant));
    assert.ok(Object.is(row.averagePrecision, dense));
    assert.deepEqual(row.ranks, relevantRanks(scores, relevantIndices(relevant)));
  }
});

test('average precision equals sklearn.metrics.average_precision_score, ties included', (t) => {
  if (!PYTHON) { t.skip(NO_PYTHON); return; }
  const r = mulberry32(12345);
  const cases = Array.from({ length: 400 }, () => randomCase(r));
  const hand = [
    { scores: new Float32Array([0.5, 0.5, 0.5, 0.1]), relevant: new Uint8Array([1, 0, 0, 1]) },
    { scores: new Float32Array([0.3, 0.9, 0.9, 0.2, 0.9]), relevant: new Uint8Array([0, 1, 0, 0, 1]) },
  ];
  cases.push(...hand);
  const ref = sklearn({ ap: cases.map((c) => ({ y_true: Array.from(c.relevant), y_score: Array.from(c.scores) })) });
  assert.equal(ref.ap.length, cases.length);
  let ties = 0;
  cases.forEach((c, i) => {
    if (new Set(c.scores).size < c.scores.length) ties++;
    // sklearn sums the same terms in another order (numpy's pairwise sum): agreement to rounding.
    close(averagePrecision(c.scores, c.relevant), ref.ap[i], 1e-12, `case ${i}`);
    close(averagePrecisionSparse(c.scores, relevantIndices(c.relevant)), ref.ap[i], 1e-12, `case ${i} sparse`);
  });
  assert.ok(ties > 150, `only ${ties} cases with ties`);
  assert.equal(ref.ap[cases.length - 2], (1 / 3 + 2 / 4) / 2, 'sklearn agrees with the hand value');
});

test('pessimistic ranks, recall@k, success@k', () => {
  // Relevant candidate 2 ties with candidate 1: it takes rank 3, not 2.
  const s = [0.9, 0.8, 0.8, 0.1];
  assert.deepEqual(relevantRanks(s, [2]), [3]);
  assert.deepEqual(relevantRanks(s, [1, 2, 0, 3]), [3, 3, 1, 4]);
  assert.equal(recallAtK(s, [2], 2), 0);
  assert.equal(recallAtK(s, [2], 3), 1);
  assert.equal(successAtK(s, [2], 2), 0);
  assert.equal(successAtK(s, [2], 3), 1);
  // Two relevant at ranks 1 and 4: recall is the fraction retrieved, success whether any is.
  const m = [0.9, 0.5, 0.4, 0.3];
  assert.equal(recallAtK(m, [0, 3], 1), 0.5);
  assert.equal(recallAtK(m, [0, 3], 3), 0.5);
  assert.equal(recallAtK(m, [3, 0], 4), 1);
  assert.equal(recallAtK(m, [0, 3], 100), 1, 'k beyond the pool');
  assert.equal(successAtK(m, [3, 0], 1), 1);
  assert.equal(successAtK(m, [3], 3), 0);
  // 11 parallel answers, 10 of them in the top 10: Recall@10 = 10/11 at best.
  const row = Array.from({ length: 50 }, (_, i) => 1 - i / 50);
  assert.equal(recallAtK(row, Array.from({ length: 11 }, (_, i) => i), 10), 10 / 11);
  assert.throws(() => recallAtK(m, [0], 0), /k must be a positive integer/);
  assert.throws(() => successAtK(m, [0], 1.5), /k must be a positive integer/);
  assert.throws(() => recallAtK(m, [], 1), /no relevant candidate/);

  // Ranks do not depend on where the candidates sit in the row.
  const r = mulberry32(3);
  for (let c = 0; c < 200; c++) {
    const { scores, relevant } = randomCase(r);
    const idx = relevantIndices(relevant);
    const perm = Array.from(scores.keys()).sort(() => r() - 0.5);
    const inv = new Array<number>(perm.length);
    perm.forEach((p, i) => (inv[p] = i));
    const permuted = Float32Array.from(perm, (p) => scores[p]);
    assert.deepEqual(relevantRanks(permuted, idx.map((i) => inv[i])), relevantRanks(scores, idx));
    // The pessimistic rank is the count of candidates scoring >= the candidate.
    for (const i of idx) assert.equal(relevantRanks(scores, [i])[0], scores.filter((x) => x >= scores[i]).length);
    const ranks = rowMetrics(scores, idx).ranks;
    for (const k of [1, 5, 10, 100]) {
      const hits = ranks.filter((rank) => rank <= k).length;
      assert.equal(recallFromRanks(ranks, k), hits / ranks.length);
      assert.equal(recallAtK(scores, idx, k), hits / ranks.length);
      assert.equal(successAtK(scores, idx, k), hits > 0 ? 1 : 0);
    }
  }
  assert.throws(() => recallFromRanks([], 1), /no relevant candidate/);
});

test('rank distance: max - min of the pessimistic ranks of the parallel answers', () => {
  assert.equal(rankDistance([0.9, 0.5, 0.4, 0.3], [0, 3]), 3);
  assert.equal(rankDistance([0.9, 0.5, 0.4, 0.3], [3, 0, 1]), 3);
  assert.equal(rankDistance([0.1, 0.7, 0.7, 0.2], [1, 2]), 0, 'tied answers share a rank');
  // Answer 0 ties with non-relevant 1 -> rank 3; answer 2 has rank 1.
  assert.equal(rankDistance([0.5, 0.5, 0.9], [0, 2]), 2);
  assert.throws(() => rankDistance([0.5, 0.4], [0]), /at least 2 relevant candidates/);
  assert.equal(rankDistanceFromRanks([7, 2, 40, 2]), 38);
  assert.equal(rankDistanceFromRanks(rowMetrics([0.5, 0.5, 0.9], [0, 2]).ranks), 2);
  assert.throws(() => rankDistanceFromRanks([3]), /at least 2 relevant candidates/);
});

test('averaging: per-setting means, then macro-averages over mono, cross and multilingual settings', () => {
  assert.equal(mean([1, 2, 6]), 3);
  assert.equal(macroAverage(new Set([0.5, 1])), 0.75);
  assert.throws(() => mean([]), /no values/);
  assert.throws(() => mean([1, NaN]), /NaN/);

  const a = new SettingAverager();
  // en has 3 queries in its mono setting, de one: the macro-average weighs settings equally.
  for (const v of [1, 0.5, 0]) a.add('en', 'en', v);
  a.add('de', 'de', 1);
  a.add('en', 'de', 0.25);
  a.add('de', 'en', 0.75);
  a.add('de', 'en', 0.25);
  a.add('en', MULTILINGUAL_POOL, 0.2);
  a.add('de', MULTILINGUAL_POOL, 0.4);
  a.add('de', MULTILINGUAL_POOL, 0.6);
  assert.equal(a.count('en', 'en'), 3);
  assert.equal(a.count('xx', 'en'), 0);
  const matrix = a.matrix();
  assert.deepEqual([...matrix.keys()], ['en', 'de']);
  assert.equal(matrix.get('en')!.get('en'), 0.5);
  assert.equal(matrix.get('de')!.get('en'), 0.5);
  const s = summarizeSettings(matrix);
  assert.equal(s.mono, (0.5 + 1) / 2);
  assert.equal(s.cross, (0.25 + 0.5) / 2);
  assert.equal(s.multilingual, (0.2 + 0.5) / 2);
  assert.deepEqual(s.counts, { mono: 2, cross: 2, multilingual: 2 });
  assert.deepEqual(summarizeSettings(new Map([['en', new Map([['en', 1]])]])), {
    mono: 1, cross: null, multilingual: null, counts: { mono: 1, cross: 0, multilingual: 0 },
  });
  assert.throws(() => a.add('en', 'en', NaN), /NaN/);
});

test('nDCG@10 and Recall@100 (trec_eval definitions) on a case worked out by hand', () => {
  // Judged: d1 level 2, d2 and d4 level 1, d3 level 0. Ranked: d3 (0), d2 (1), d1 (2), d5 (unjudged).
  const qrels: Qrels = new Map([['q', new Map([['d1', 2], ['d2', 1], ['d3', 0], ['d4', 1]])]]);
  const run: Run = new Map([['q', [
    { docid: 'd1', score: 0.7 }, { docid: 'd3', score: 0.9 }, { docid: 'd5', score: 0.6 }, { docid: 'd2', score: 0.8 },
  ]]]);
  const r = trecEval(run, qrels);
  // DCG = 0/log2(2) + 1/log2(3) + 2/log2(4); ideal = 2/log2(2) + 1/log2(3) + 1/log2(4).
  const dcg = 1 / Math.log2(3) + 2 / 2;
  const ideal = 2 + 1 / Math.log2(3) + 1 / 2;
  close(r.ndcg, dcg / ideal, 1e-15);
  close(r.ndcg, 0.5209, 1e-4, '1.6309 / 3.1309');
  assert.equal(r.recall, 2 / 3, 'd1 and d2 retrieved, d4 not');
  assert.equal(r.perQuery.get('q')!.relevant, 3);
  assert.equal(r.perQuery.get('q')!.retrieved, 4);

  // Cut-offs: with nDCG@2 only d3 and d2 count; the ideal is cut at 2 as well.
  close(trecEval(run, qrels, { ndcgAt: 2 }).ndcg, (1 / Math.log2(3)) / (2 + 1 / Math.log2(3)), 1e-15);
  assert.equal(trecEval(run, qrels, { recallAt: 2 }).recall, 1 / 3);
  // -M: with 2 hits evaluated, d1 (third) is gone.
  assert.equal(trecEval(run, qrels, { depth: 2 }).recall, 1 / 3);
  // Perfect ranking -> 1.
  const perfect: Run = new Map([['q', [{ docid: 'd1', score: 3 }, { docid: 'd2', score: 2 }, { docid: 'd4', score: 1 }]]]);
  assert.equal(trecEval(perfect, qrels).ndcg, 1);
  assert.equal(trecEval(perfect, qrels).recall, 1);
  // More relevant docs than the cut-off: the ideal has 10 terms, 12 relevant retrieved first give 1.
  const many: Qrels = new Map([['q', new Map(Array.from({ length: 12 }, (_, i) => [`r${i}`, 1] as [string, number]))]]);
  const manyRun: Run = new Map([['q', Array.from({ length: 12 }, (_, i) => ({ docid: `r${i}`, score: -i }))]]);
  close(trecEval(manyRun, many).ndcg, 1, 1e-15);
  assert.equal(trecEval(manyRun, many).recall, 1);
  // Gains are linear in the level: a level-3 doc alone at rank 2 -> (3/log2(3)) / 3.
  const lin: Qrels = new Map([['q', new Map([['x', 3]])]]);
  const linRun: Run = new Map([['q', [{ docid: 'y', score: 1 }, { docid: 'x', score: 0.5 }]]]);
  close(trecEval(linRun, lin).ndcg, 1 / Math.log2(3), 1e-15);
});

test('ties in a run are broken by docid descending, in byte order, as trec_eval does', () => {
  const qrels: Qrels = new Map([['q', new Map([['a', 1]])]]);
  const run: Run = new Map([['q', [{ docid: 'a', score: 0.5 }, { docid: 'b', score: 0.5 }]]]);
  // 'b' > 'a', so 'b' is ranked first: nothing relevant at rank 1.
  assert.equal(trecEval(run, qrels, { ndcgAt: 1, recallAt: 1 }).ndcg, 0);
  assert.equal(trecEval(run, qrels, { ndcgAt: 1, recallAt: 1 }).recall, 0);
  const run2: Run = new Map([['q', [{ docid: 'a', score: 0.5 }, { docid: 'A', score: 0.5 }]]]);
  assert.equal(trecEval(run2, qrels, { ndcgAt: 1, recallAt: 1 }).ndcg, 1, "'a' (0x61) > 'A' (0x41)");
  // U+10000 encodes as F0 90 80 80 in UTF-8 and sorts after U+FFFF (EF BF BF), although its first
  // UTF-16 unit (D800) sorts before FFFF.
  const hi = 'x\u{10000}';
  const lo = 'x\uffff';
  const q3: Qrels = new Map([['q', new Map([[hi, 1]])]]);
  const run3: Run = new Map([['q', [{ docid: lo, score: 0 }, { docid: hi, score: 0 }]]]);
  assert.equal(trecEval(run3, q3, { ndcgAt: 1, recallAt: 1 }).ndcg, 1);
});

test('nDCG@10 equals sklearn ndcg_score(k=10) where the definitions coincide (no ties)', (t) => {
  if (!PYTHON) { t.skip(NO_PYTHON); return; }
  // sklearn ranks the items it is given; trec_eval ranks the run and takes the ideal from the qrels.
  // They agree when every judged doc is among sklearn's items, retrieved docs keep their scores,
  // judged docs the run missed score below every retrieved doc, and the run has >= 10 hits.
  const r = mulberry32(99);
  const cases: { run: Run; qrels: Qrels; y_true: number[]; y_score: number[] }[] = [];
  for (let c = 0; c < 150; c++) {
    const n = 20 + Math.floor(r() * 200);
    const m = 10 + Math.floor(r() * (n - 10));
    const ids = Array.from({ length: n }, (_, i) => `d${i}`);
    const scores = Array.from({ length: n }, (_, i) => i).sort(() => r() - 0.5);
    const judged = new Map<string, number>();
    for (const id of ids) if (r() < 0.3) judged.set(id, Math.floor(r() * 4));
    judged.set(ids[Math.floor(r() * n)], 1 + Math.floor(r() * 3));
    const hits = ids.slice(0, m).map((docid, i) => ({ docid, score: scores[i] / n }));
    cases.push({
      run: new Map([['q', hits]]),
      qrels: new Map([['q', judged]]),
      y_true: ids.map((id) => Math.max(0, judged.get(id) ?? 0)),
      y_score: ids.map((_, i) => (i < m ? scores[i] / n : -1 - i)),
    });
  }
  const ref = sklearn({ ndcg: cases.map((c) => ({ y_true: c.y_true, y_score: c.y_score, k: 10 })) });
  cases.forEach((c, i) => close(trecEval(c.run, c.qrels).ndcg, ref.ndcg[i], 1e-12, `case ${i}`));
});

test('Recall@100 of trec_eval equals recallAtK(100) of the metrics module when scores have no ties', () => {
  const r = mulberry32(5);
  for (let c = 0; c < 100; c++) {
    const n = 50 + Math.floor(r() * 400);
    const scores = Array.from({ length: n }, (_, i) => i / n).sort(() => r() - 0.5);
    const relevant = Array.from({ length: n }, (_, i) => i).filter(() => r() < 0.1);
    if (relevant.length === 0) relevant.push(0);
    const run: Run = new Map([['q', scores.map((score, i) => ({ docid: `d${i}`, score }))]]);
    const qrels: Qrels = new Map([['q', new Map(relevant.map((i) => [`d${i}`, 1] as [string, number]))]]);
    assert.equal(trecEval(run, qrels).recall, recallAtK(scores, relevant, 100), `case ${c}`);
  }
});
