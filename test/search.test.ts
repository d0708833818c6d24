// Exact search (native searchTopK / scoreMatrix) against a TypeScript brute force, against FAISS
// Flat through faiss-node, approximate FAISS back ends' recall, the faiss index files, bad input.
//
// Tolerances: the engine and FAISS compute each score as an fp32 dot product of d terms in some
// summation order; the brute force sums in double. The classic bound for a recursive (or blocked)
// fp32 sum gives |fl(q.c) - q.c| <= gamma_d * sum_i |q_i c_i| with gamma_d ~ d * 2^-24, and
// sum_i |q_i c_i| <= |q| |c|; one more 2^-24 relative covers rounding the result to fp32. So
// `bound` below is (d + 1) 2^-24 max|q| max|c| against the brute force and twice that between two
// fp32 computations. Ids are compared at every rank whose score is more than that apart from both
// neighbours' (elsewhere equal-within-rounding scores may legitimately swap). Data with integer
// entries in {-1, 0, 1} makes every sum exact in fp32, so there scores tie exactly and the ids
// must match exactly, ties broken by lower corpus index.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { native } from '../src/native.ts';
import { FaissIndex, faissStatus, setFaissThreads, sidecarPath } from '../src/search/faiss.ts';
import { EngineExactSearch, FaissSearch, compareTopK, measureRecall, recallAtK, type SearchResult } from '../src/search/index.ts';
import { mulberry32 as rng } from '../src/rng.ts';

function gaussian(n: number, r: () => number): Float32Array {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  return x;
}
function ternary(n: number, r: () => number): Float32Array {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = Math.floor(r() * 3) - 1;
  return x;
}
function maxNorm(x: Float32Array, d: number): number {
  let m = 0;
  for (let i = 0; i < x.length; i += d) {
    let s = 0;
    for (let j = 0; j < d; j++) s += x[i + j] * x[i + j];
    m = Math.max(m, Math.sqrt(s));
  }
  return m;
}
const bound = (q: Float32Array, c: Float32Array, d: number) => (d + 1) * 2 ** -24 * maxNorm(q, d) * maxNorm(c, d);

/** Double-accumulated scores, full sort by (score desc, index asc), scores rounded to fp32. */
function bruteForce(q: Float32Array, c: Float32Array, d: number, k: number): SearchResult {
  const nq = q.length / d;
  const nc = c.length / d;
  const scores = new Float32Array(nq * k);
  const ids = new Int32Array(nq * k);
  const s = new Float64Array(nc);
  const order = Array.from({ length: nc }, (_, i) => i);
  for (let i = 0; i < nq; i++) {
    for (let j = 0; j < nc; j++) {
      let acc = 0;
      for (let t = 0; t < d; t++) acc += q[i * d + t] * c[j * d + t];
      s[j] = acc;
    }
    order.sort((a, b) => s[b] - s[a] || a - b);
    for (let r = 0; r < k; r++) {
      scores[i * k + r] = s[order[r]];
      ids[i * k + r] = order[r];
    }
  }
  return { scores, ids, k };
}
/**
 * Checks `got` (k columns) against `want` (k + 1 columns, so that the neighbour below each of the
 * k ranks is known): every score within tol, and the ids equal at every rank whose wanted score is
 * more than tol away from both neighbours'.
 */
function assertClose(got: SearchResult, want: SearchResult, tol: number, what: string): { checked: number } {
  const k = got.k;
  assert.equal(want.k, k + 1);
  const nq = got.ids.length / k;
  let maxDiff = 0, checked = 0, wrong = 0;
  for (let i = 0; i < nq; i++) {
    for (let r = 0; r < k; r++) {
      const w = want.scores[i * (k + 1) + r];
      maxDiff = Math.max(maxDiff, Math.abs(got.scores[i * k + r] - w));
      const clear = (r === 0 || want.scores[i * (k + 1) + r - 1] - w > tol) && w - want.scores[i * (k + 1) + r + 1] > tol;
      if (!clear) continue;
      checked++;
      if (got.ids[i * k + r] !== want.ids[i * (k + 1) + r]) wrong++;
    }
  }
  assert.ok(maxDiff <= tol, `${what}: scores differ by up to ${maxDiff}, tolerance ${tol}`);
  assert.equal(wrong, 0, `${what}: ${wrong} of ${checked} ids differ at unambiguous ranks`);
  return { checked };
}

test('engine searchTopK equals a TypeScript brute force on gaussian data', async () => {
  const r = rng(1);
  const d = 32, nq = 40, nc = 3000, k = 10;
  const q = gaussian(nq * d, r), c = gaussian(nc * d, r);
  const got = await native().searchTopK(q, c, d, k);
  assert.equal(got.scores.length, nq * k);
  const { checked } = assertClose({ ...got, k }, bruteForce(q, c, d, k + 1), bound(q, c, d), 'engine vs brute force');
  assert.ok(checked >= 0.9 * nq * k, `only ${checked} of ${nq * k} ranks were unambiguous`);
});

test('engine searchTopK with deliberate ties: exact scores, ties broken by lower corpus index', async () => {
  const r = rng(2);
  const d = 4, nq = 30, nc = 9000, k = 20; // 9000 rows: two corpus blocks of 4096 and a tail
  const q = ternary(nq * d, r), c = ternary(nc * d, r);
  for (let j = 0; j + 1 < nc; j += 5) c.copyWithin((j + 1) * d, j * d, (j + 1) * d); // duplicate rows
  const got = await native().searchTopK(q, c, d, k);
  const want = bruteForce(q, c, d, k);
  assert.deepEqual(got.scores, want.scores);
  assert.deepEqual(got.ids, want.ids);
  // Every query has far more than k rows at its top score (81 distinct vectors, 9000 rows): the
  // result is the k lowest indices among them.
  const full = await native().searchTopK(q.subarray(0, d), c, d, nc);
  assert.deepEqual(full.ids, bruteForce(q.subarray(0, d), c, d, nc).ids, 'k = corpus size: the full ranking');
});

test('scoreMatrix equals the brute-force scores', async () => {
  const r = rng(3);
  const d = 24, nq = 33, nc = 1500;
  const q = gaussian(nq * d, r), c = gaussian(nc * d, r);
  const s = await native().scoreMatrix(q, c, d);
  assert.equal(s.length, nq * nc);
  const tol = bound(q, c, d);
  let maxDiff = 0;
  for (let i = 0; i < nq; i++) {
    for (let j = 0; j < nc; j++) {
      let acc = 0;
      for (let t = 0; t < d; t++) acc += q[i * d + t] * c[j * d + t];
      maxDiff = Math.max(maxDiff, Math.abs(s[i * nc + j] - acc));
    }
  }
  assert.ok(maxDiff <= tol, `scores differ by up to ${maxDiff}, tolerance ${tol}`);
  assert.equal((await native().scoreMatrix(new Float32Array(0), c, d)).length, 0, 'no queries: empty result');
});

test('bad input rejects with a clear message', async () => {
  const q = new Float32Array(8), c = new Float32Array(40);
  const cases: [string, () => Promise<unknown>, RegExp][] = [
    ['queries not whole rows', () => native().searchTopK(new Float32Array(7), c, 4, 1), /queries \(7 floats\).*whole rows of dim = 4/],
    ['corpus not whole rows', () => native().searchTopK(q, new Float32Array(41), 4, 1), /corpus \(41 floats\)/],
    ['k < 1', () => native().searchTopK(q, c, 4, 0), /k must be a positive integer, got 0/],
    ['k not an integer', () => native().searchTopK(q, c, 4, 2.5), /k must be a positive integer/],
    ['k > corpus size', () => native().searchTopK(q, c, 4, 11), /k = 11 exceeds the corpus size \(10 rows\)/],
    ['dim 0', () => native().searchTopK(q, c, 0, 1), /dim must be a positive integer, got 0/],
    ['not a Float32Array', () => native().searchTopK(Array.from(q) as unknown as Float32Array, c, 4, 1), /queries must be a Float32Array/],
    ['Float64Array corpus', () => native().scoreMatrix(q, new Float64Array(40) as unknown as Float32Array, 4), /corpus must be a Float32Array/],
    ['NaN in corpus', () => native().searchTopK(q, Float32Array.from(c, (_, i) => (i === 22 ? NaN : 0)), 4, 1), /corpus holds a non-finite value \(nan\) at row 5, column 2/],
    ['Infinity in queries', () => native().scoreMatrix(Float32Array.from(q, (_, i) => (i === 1 ? Infinity : 0)), c, 4), /queries holds a non-finite value \(inf\) at row 0, column 1/],
  ];
  for (const [name, f, re] of cases) {
    const p = f();
    assert.ok(p instanceof Promise, `${name}: returns a promise, not a synchronous throw`);
    await assert.rejects(p, re, name);
  }
  await assert.rejects(new EngineExactSearch(c, 4).search(q, 11), /exceeds the corpus size/);
  assert.throws(() => new EngineExactSearch(c, 3), /whole rows of dim 3/);
});

const faiss = faissStatus();
const skipFaiss = faiss.available ? false : `faiss-node binding not built: ${faiss.reason}`;
if (skipFaiss) console.log(`search.test.ts: skipping the FAISS tests (${skipFaiss})`);
// One FAISS thread: these indexes are small, and FAISS's short parallel regions (k-means, PQ
// training) spin-wait on threads that a busy 2-core machine has descheduled (10x slower here).
else setFaissThreads(1);

test('engine exact search equals FAISS Flat (inner product) through faiss-node', { skip: skipFaiss }, async () => {
  const r = rng(4);
  const d = 48, nq = 100, nc = 4000, k = 10;
  const q = gaussian(nq * d, r), c = gaussian(nc * d, r);
  const engine = new EngineExactSearch(c, d);
  const flat = FaissSearch.build(c, d, { factory: 'Flat' });
  assert.equal(flat.exact, true);
  assert.equal(flat.size, nc);
  const e = await engine.search(q, k + 1);
  const f = await flat.search(q, k);
  const { checked } = assertClose(f, e, 2 * bound(q, c, d), 'faiss Flat vs engine');
  assert.ok(checked >= 0.9 * nq * k, `only ${checked} of ${nq * k} ranks were unambiguous`);
  const cmp = compareTopK(await engine.search(q, k), f, 2 * bound(q, c, d)); // the library's comparison (bench/search.ts)
  assert.equal(cmp.idMismatches, 0);
  assert.ok(cmp.maxScoreDiff <= 2 * bound(q, c, d) && cmp.idsChecked > 0.8 * nq * k, JSON.stringify(cmp));
  // number[] path (faiss-node's own API) and the typed path give the same result.
  const viaArrays = FaissSearch.build(c, d, { factory: 'Flat', path: 'array' });
  const a = await viaArrays.search(q.subarray(0, 10 * d), k);
  const t = await flat.search(q.subarray(0, 10 * d), k);
  assert.deepEqual(a.ids, t.ids);
  assert.deepEqual(a.scores, t.scores);
});

test('approximate FAISS back ends report recall@k against exact search', { skip: skipFaiss }, async (t) => {
  const r = rng(5);
  const d = 32, nq = 100, nc = 3000, k = 10;
  const q = gaussian(nq * d, r), c = gaussian(nc * d, r);
  const exact = new EngineExactSearch(c, d);
  const cases: { factory: string; params: Record<string, number>; min: number }[] = [
    { factory: 'HNSW32', params: { efSearch: 64 }, min: 0.8 },
    { factory: 'IVF16,Flat', params: { nprobe: 16 }, min: 0.99 }, // every list probed: exhaustive
    { factory: 'IVF16,Flat', params: { nprobe: 1 }, min: 0.05 },
    { factory: 'IVF16,PQ8np', params: { nprobe: 4 }, min: 0.05 }, // np: no polysemous training (~1 min)
  ];
  for (const cs of cases) {
    const approx = FaissSearch.build(c, d, cs);
    assert.equal(approx.exact, false);
    const m = await measureRecall(approx, exact, q, k);
    t.diagnostic(`${approx.name} ${JSON.stringify(cs.params)}: recall@${k} = ${m.recall.toFixed(3)}`);
    assert.ok(m.recall >= cs.min && m.recall <= 1, `${approx.name} ${JSON.stringify(cs.params)}: recall ${m.recall} below ${cs.min}`);
  }
  const e = await exact.search(q, k);
  assert.equal(recallAtK(e, e), 1);
});

test('FAISS index save / load with an ids sidecar', { skip: skipFaiss }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'xlir-faiss-'));
  try {
    const r = rng(6);
    const d = 16, nc = 500;
    const c = gaussian(nc * d, r), q = gaussian(5 * d, r);
    const idx = FaissIndex.create(d, { factory: 'HNSW16', metric: 'ip' });
    const ids = Array.from({ length: nc }, (_, i) => `doc-${i}`);
    idx.add(c.subarray(0, 300 * d), { ids: ids.slice(0, 300) });
    idx.add(c.subarray(300 * d), { ids: ids.slice(300) });
    const path = join(dir, 'corpus.faiss');
    idx.save(path);
    const back = FaissIndex.load(path);
    assert.equal(back.size, nc);
    assert.equal(back.factory, 'HNSW16');
    const a = idx.search(q, 5), b = back.search(q, 5);
    assert.deepEqual(b.labels, a.labels);
    assert.deepEqual(b.scores, a.scores);
    assert.equal(back.idOf(b.labels[0]), `doc-${b.labels[0]}`);
    assert.equal(back.idOf(-1), undefined);
    // A sidecar that does not describe the index is refused.
    writeFileSync(sidecarPath(path), JSON.stringify({ format: 'xlir-faiss-ids', version: 1, dim: d, factory: 'HNSW16', metric: 'ip', count: 3, ids: null }));
    assert.throws(() => FaissIndex.load(path), /holds 500 vectors of dim 16, its sidecar describes 3/);
    rmSync(sidecarPath(path));
    assert.throws(() => FaissIndex.load(path), /no ids sidecar/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('FAISS wrapper errors are clear and do not crash the process', { skip: skipFaiss }, () => {
  assert.throws(() => FaissIndex.create(8, { factory: 'NoSuchIndex' }), /index factory rejected 'NoSuchIndex'/);
  const ivf = FaissIndex.create(8, { factory: 'IVF4,Flat' });
  assert.throws(() => ivf.add(new Float32Array(8)), /must be trained first/);
  assert.throws(() => ivf.raw.addF32(new Float32Array(8)), /is_trained/); // FAISS's own error, as a JS exception
  const flat = FaissIndex.create(8);
  assert.throws(() => flat.add(new Float32Array(12)), /12 floats is not a positive multiple of the index dimension 8/);
  flat.add(new Float32Array(16).fill(1));
  assert.throws(() => flat.search(new Float32Array(8), 3), /k must be an integer in \[1, 2\]/);
  assert.throws(() => flat.raw.searchF32(new Float32Array(8), 3), /k must be an integer in \[1, ntotal = 2\]/);
  assert.throws(() => flat.setParam('nprobe', 3), /nprobe|parameter/);
  assert.throws(() => flat.add(new Float32Array(8), { ids: ['a'] }), /vectors were added earlier without ids/);
});
