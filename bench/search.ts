// Exact and approximate top-k inner-product search at evaluation scale: the engine's blocked
// oneDNN search and score matrix, FAISS through faiss-node (its number[] API and xlir's typed-array
// methods), FAISS HNSW and IVF-PQ, and FAISS in Python (faiss-cpu from pip's index, when .venv has
// it) on the same data. A benchmark that prints a table, not a test.
//
//   npx tsx bench/search.ts [--nq 13000] [--nc 13000] [--dim 768] [--k 10] [--ef 64] [--nprobe 16]
//                           [--no-python] [--no-array] [--json FILE]
//
// Data: random unit vectors (seeded normal, L2-normalised), queries [nq, dim] and corpus [nc, dim].
// Times are the best of --reps runs (default 2) for the exact searches and one run for index builds;
// recall@k is against the engine's exact result; "agree" compares exact results with compareTopK
// (ids at ranks whose scores are more than 2 (d + 1) 2^-24 apart, the fp32 rounding bound for unit
// vectors, and the largest score difference).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';

import { native } from '../src/native.ts';
import { FaissIndex, faissStatus, getFaissThreads, loadFaissNode } from '../src/search/faiss.ts';
import { EngineExactSearch, FaissSearch, compareTopK, recallAtK, type SearchResult } from '../src/search/index.ts';

const { values: args } = parseArgs({
  options: {
    nq: { type: 'string', default: '13000' },
    nc: { type: 'string', default: '13000' },
    dim: { type: 'string', default: '768' },
    k: { type: 'string', default: '10' },
    ef: { type: 'string', default: '64' },
    nprobe: { type: 'string', default: '16' },
    reps: { type: 'string', default: '2' },
    'no-python': { type: 'boolean', default: false },
    'no-array': { type: 'boolean', default: false },
    json: { type: 'string' },
  },
});
const nq = Number(args.nq), nc = Number(args.nc), d = Number(args.dim), k = Number(args.k);
const ef = Number(args.ef), nprobe = Number(args.nprobe), reps = Number(args.reps);

function unitVectors(n: number, seed: number): Float32Array {
  const r = mulberry32(seed);
  const x = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    let ss = 0;
    for (let j = 0; j < d; j++) {
      const v = Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
      x[i * d + j] = v;
      ss += v * v;
    }
    const inv = 1 / Math.sqrt(ss);
    for (let j = 0; j < d; j++) x[i * d + j] *= inv;
  }
  return x;
}

const rows: { what: string; seconds: number | null; note: string }[] = [];
function row(what: string, seconds: number | null, note = ''): void {
  rows.push({ what, seconds, note });
  console.error(`  ${what}: ${seconds === null ? '-' : `${seconds.toFixed(3)} s`} ${note}`);
}
async function best<T>(n: number, f: () => Promise<T> | T): Promise<{ s: number; v: T }> {
  let s = Infinity;
  let v: T | undefined;
  for (let i = 0; i < n; i++) {
    v = undefined; // let the previous result go before the next run (score matrices are large)
    const t = performance.now();
    v = await f();
    s = Math.min(s, (performance.now() - t) / 1000);
  }
  return { s, v: v as T };
}
const qps = (s: number) => `${Math.round(nq / s).toLocaleString('en-US')} queries/s`;
const flops = 2 * nq * nc * d;
const gflops = (s: number) => `${(flops / s / 1e9).toFixed(0)} GFLOP/s`;
const tol = 2 * (d + 1) * 2 ** -24;
const agree = (a: SearchResult, b: SearchResult) => {
  const c = compareTopK(a, b, tol);
  return `agree with engine: ${c.idsChecked - c.idMismatches}/${c.idsChecked} ids, max |score diff| ${c.maxScoreDiff.toExponential(1)}`;
};

const cpu = cpus();
const started = new Date();
const load0 = loadavg()[0];
console.log(`# bench/search.ts: ${nq} queries x ${nc} corpus x ${d} d (random unit vectors), k = ${k}`);
console.log(`machine: ${cpu[0]?.model ?? '?'}, ${cpu.length} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB; node ${process.version}; ` +
  `engine ${JSON.stringify(native().info())}`);
console.log(`date: ${started.toISOString()}; 1-minute load average at start ${load0.toFixed(2)}`);

console.error('generating data ...');
const Q = unitVectors(nq, 1);
const C = unitVectors(nc, 2);
const engine = new EngineExactSearch(C, d);

// Engine: warm-up (oneDNN primitive creation), exact top k, score matrix, gemm peak.
console.error('engine ...');
await engine.search(Q.subarray(0, 64 * d), k);
const ex = await best(reps, () => engine.search(Q, k));
const exact = ex.v;
row('engine searchTopK (exact, blocked oneDNN)', ex.s, `${qps(ex.s)}, ${gflops(ex.s)}`);
{
  const sm = await best(reps, () => engine.scoreMatrix(Q));
  row(`engine scoreMatrix [${nq} x ${nc}] (${((nq * nc * 4) / 2 ** 20).toFixed(0)} MiB)`, sm.s, gflops(sm.s));
}
{
  const iters = 5;
  const s = native().benchGemm(1024, 4096, d, 'fp32', iters);
  row(`oneDNN gemm 1024 x 4096 x ${d} (one search block) x ${iters}`, s, `${((2 * 1024 * 4096 * d * iters) / s / 1e9).toFixed(0)} GFLOP/s (peak reference)`);
}

// faiss-node.
const fs = faissStatus();
let faissInfo = 'faiss-node: not available';
if (!fs.available) {
  row('faiss-node', null, `not available: ${fs.reason}`);
} else {
  const build = loadFaissNode().xlirBuild!;
  faissInfo = `faiss-node 0.5.1 binding on Debian FAISS ${build.faiss} (${build.compileOptions}), ${getFaissThreads()} OpenMP threads`;
  console.error(`${faissInfo} ...`);
  {
    let t = performance.now();
    const idx = FaissIndex.create(d, { factory: 'Flat', metric: 'ip' });
    idx.add(C);
    row('faiss-node Flat IP: add, typed (addF32)', (performance.now() - t) / 1000);
    const flat = new FaissSearch(idx, 'typed');
    await flat.search(Q.subarray(0, 64 * d), k);
    const r = await best(reps, () => flat.search(Q, k));
    row('faiss-node Flat IP: search, typed (searchF32)', r.s, `${qps(r.s)}, ${gflops(r.s)}; ${agree(exact, r.v)}`);
    if (!args['no-array']) {
      // faiss-node's own API: number[] in, number[] out. Conversion and the binding's per-element
      // reads are timed apart.
      t = performance.now();
      const cArr = Array.from(C);
      const convC = (performance.now() - t) / 1000;
      const idx2 = FaissIndex.create(d, { factory: 'Flat', metric: 'ip' });
      t = performance.now();
      idx2.raw.add(cArr);
      const addArr = (performance.now() - t) / 1000;
      row(`faiss-node Flat IP: add, number[] (${(nc * d / 1e6).toFixed(1)}M numbers)`, convC + addArr,
        `Array.from ${convC.toFixed(3)} s + add(number[]) ${addArr.toFixed(3)} s`);
      t = performance.now();
      const qArr = Array.from(Q);
      const convQ = (performance.now() - t) / 1000;
      t = performance.now();
      const res = idx2.raw.search(qArr, k);
      const searchArr = (performance.now() - t) / 1000;
      t = performance.now();
      const back: SearchResult = { scores: Float32Array.from(res.distances), ids: Int32Array.from(res.labels), k };
      const convBack = (performance.now() - t) / 1000;
      row('faiss-node Flat IP: search, number[]', convQ + searchArr + convBack,
        `Array.from ${convQ.toFixed(3)} s + search(number[]) ${searchArr.toFixed(3)} s + results to typed ${convBack.toFixed(3)} s; ${agree(exact, back)}`);
    }
  }
  {
    let t = performance.now();
    const hnsw = FaissSearch.build(C, d, { factory: 'HNSW32', params: { efSearch: ef } });
    const b = (performance.now() - t) / 1000;
    row('faiss-node HNSW32: build (add, efConstruction 40)', b);
    t = performance.now();
    const r = await hnsw.search(Q, k);
    const s = (performance.now() - t) / 1000;
    row(`faiss-node HNSW32: search (efSearch ${ef})`, s, `${qps(s)}; recall@${k} ${recallAtK(r, exact).toFixed(3)}`);
  }
  {
    let t = performance.now();
    // 'np': no polysemous training, which index_factory switches on for IVF-PQ by default and
    // which costs minutes here for no gain in this search.
    const ivf = FaissSearch.build(C, d, { factory: 'IVF256,PQ16np', params: { nprobe } });
    const b = (performance.now() - t) / 1000;
    row('faiss-node IVF256,PQ16np: train + add (corpus as training set)', b);
    t = performance.now();
    const r = await ivf.search(Q, k);
    const s = (performance.now() - t) / 1000;
    row(`faiss-node IVF256,PQ16np: search (nprobe ${nprobe})`, s, `${qps(s)}; recall@${k} ${recallAtK(r, exact).toFixed(3)}`);
  }
}

// FAISS in Python, same data through raw float32 files.
const PY = `
import json, sys, time
import numpy as np
import faiss
qp, cp, ip, d, k, ef = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
Q = np.fromfile(qp, dtype='<f4').reshape(-1, d)
C = np.fromfile(cp, dtype='<f4').reshape(-1, d)
out = {'version': faiss.__version__, 'options': faiss.get_compile_options(), 'threads': faiss.omp_get_max_threads()}
t = time.perf_counter(); flat = faiss.IndexFlatIP(d); flat.add(C); out['flat_add'] = time.perf_counter() - t
flat.search(Q[:64], k)
best = 1e9
for _ in range(${reps}):
    t = time.perf_counter(); D, I = flat.search(Q, k); best = min(best, time.perf_counter() - t)
out['flat_search'] = best
D.astype('<f4').tofile(ip + '.scores'); I.astype('<i4').tofile(ip + '.ids')
h = faiss.index_factory(d, 'HNSW32', faiss.METRIC_INNER_PRODUCT)
t = time.perf_counter(); h.add(C); out['hnsw_build'] = time.perf_counter() - t
faiss.ParameterSpace().set_index_parameter(h, 'efSearch', ef)
t = time.perf_counter(); Dh, Ih = h.search(Q, k); out['hnsw_search'] = time.perf_counter() - t
Ih.astype('<i4').tofile(ip + '.hnsw_ids')
print(json.dumps(out))
`;
import { mulberry32 } from '../src/rng.ts';
let pyInfo = 'FAISS (Python): skipped (--no-python)';
if (!args['no-python']) {
  const python = process.env.XLIR_PYTHON ?? '.venv/bin/python';
  const probe = existsSync(python) ? spawnSync(python, ['-c', 'import faiss'], { encoding: 'utf8' }) : undefined;
  if (!probe || probe.status !== 0) {
    pyInfo = `FAISS (Python): not available (${!probe ? `no ${python}` : 'faiss-cpu is not installed in it'}; scripts/setup.sh installs it from pip's index when the index has it)`;
    row('FAISS (Python)', null, pyInfo);
  } else {
    console.error('FAISS (Python) ...');
    const dir = mkdtempSync(join(tmpdir(), 'xlir-bench-search-'));
    try {
      writeFileSync(join(dir, 'q.f32'), Q);
      writeFileSync(join(dir, 'c.f32'), C);
      const p = spawnSync(python, ['-c', PY, join(dir, 'q.f32'), join(dir, 'c.f32'), join(dir, 'out'), String(d), String(k), String(ef)],
        { encoding: 'utf8', maxBuffer: 1 << 24 });
      if (p.status !== 0) throw new Error(`python peer failed:\n${p.stderr}`);
      const o = JSON.parse(p.stdout.trim().split('\n').pop()!) as Record<string, number | string>;
      pyInfo = `FAISS (Python) faiss-cpu ${o.version} (${o.options}), ${o.threads} OpenMP threads`;
      const read = <T>(f: string, ctor: (b: Buffer) => T) => ctor(readFileSync(join(dir, f)));
      const pyFlat: SearchResult = {
        scores: read('out.scores', (b) => new Float32Array(b.buffer, b.byteOffset, b.length / 4)),
        ids: read('out.ids', (b) => new Int32Array(b.buffer, b.byteOffset, b.length / 4)),
        k,
      };
      const pyHnsw = read('out.hnsw_ids', (b) => new Int32Array(b.buffer, b.byteOffset, b.length / 4));
      row('FAISS (Python) Flat IP: add', Number(o.flat_add));
      row('FAISS (Python) Flat IP: search', Number(o.flat_search), `${qps(Number(o.flat_search))}, ${gflops(Number(o.flat_search))}; ${agree(exact, pyFlat)}`);
      row('FAISS (Python) HNSW32: build (add, efConstruction 40)', Number(o.hnsw_build));
      row(`FAISS (Python) HNSW32: search (efSearch ${ef})`, Number(o.hnsw_search),
        `${qps(Number(o.hnsw_search))}; recall@${k} ${recallAtK({ scores: new Float32Array(pyHnsw.length), ids: pyHnsw, k }, exact).toFixed(3)}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
}

const load1 = loadavg()[0];
console.log(`${faissInfo}; ${pyInfo}`);
console.log(`1-minute load average: ${load0.toFixed(2)} at start, ${load1.toFixed(2)} at end (${cpu.length} cores; above ~0 means other processes were running)`);
console.log(`Random unit vectors in ${d} d are a worst case for approximate indexes (every similarity is ~0 +- ${(1 / Math.sqrt(d)).toFixed(3)}, ` +
  'no neighbourhood structure): their recall here is a floor, not what real embeddings get.\n');
const w = Math.max(...rows.map((r) => r.what.length));
console.log(`| ${'what'.padEnd(w)} | time (s) | notes |`);
console.log(`|${'-'.repeat(w + 2)}|---------:|-------|`);
for (const r of rows) console.log(`| ${r.what.padEnd(w)} | ${(r.seconds === null ? '-' : r.seconds.toFixed(3)).padStart(8)} | ${r.note} |`);
if (args.json) writeFileSync(args.json, JSON.stringify({ date: started.toISOString(), nq, nc, d, k, load: [load0, load1], faissInfo, pyInfo, rows }, null, 2));
