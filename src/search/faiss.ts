// FAISS through the npm package faiss-node: index-factory indexes (Flat, HNSW, IVF-PQ, ...), add,
// train, top-k search, save / load with an ids sidecar.
//
// Installation (scripts/setup.sh): faiss-node is a dependency of the small private package in
// native/faiss, installed with `npm ci --ignore-scripts` (the package's own install script downloads
// a prebuilt binary or clones FAISS, which fails offline); CMakeLists.txt builds its binding
// (src/faiss.cc, unedited) against Debian's libfaiss-dev into the package's build/Release, adding
// typed-array methods (native/faiss/faiss_node_typed.cc): addF32, trainF32, searchF32, setParam.
// faiss-node's own API takes and returns number[]; this wrapper uses the typed methods unless asked
// for path 'array' (kept for comparison: bench/search.ts measures both).
import { createRequire } from 'node:module';
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** One faiss-node index object (faiss-node's Index class plus xlir's typed methods). */
export interface FaissNodeIndex {
  ntotal(): number;
  getDimension(): number;
  isTrained(): boolean;
  add(x: number[]): void;
  train(x: number[]): void;
  search(x: number[], k: number): { distances: number[]; labels: number[] };
  write(fname: string): void;
  addF32(x: Float32Array): void;
  trainF32(x: Float32Array): void;
  searchF32(x: Float32Array, k: number): { distances: Float32Array; labels: Int32Array };
  setParam(name: string, value: number): void;
}

export interface FaissNodeModule {
  Index: {
    fromFactory(dims: number, descriptor: string, metric?: number): FaissNodeIndex;
    read(fname: string): FaissNodeIndex;
  };
  MetricType: { METRIC_INNER_PRODUCT: number; METRIC_L2: number };
  /** Present only in xlir's build of the binding. */
  xlirBuild?: { typedArrays: boolean; faiss: string; compileOptions: string };
  setNumThreads(n: number): void;
  getNumThreads(): number;
}

/** Where faiss-node is installed: $XLIR_FAISS_NODE, else native/faiss/node_modules/faiss-node. */
export function faissNodeDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  return resolve(process.env.XLIR_FAISS_NODE ?? join(here, '..', '..', 'native', 'faiss', 'node_modules', 'faiss-node'));
}

let cached: FaissNodeModule | undefined;
let failure: string | undefined;

/** faiss-node with xlir's typed methods; throws saying what is missing and how to get it. */
export function loadFaissNode(): FaissNodeModule {
  if (cached) return cached;
  const dir = faissNodeDir();
  if (failure === undefined) {
    if (!existsSync(join(dir, 'package.json'))) {
      failure = `faiss-node is not installed (${dir}); run scripts/setup.sh`;
    } else if (!existsSync(join(dir, 'build', 'Release', 'faiss-node.node'))) {
      failure = `faiss-node's binding is not built (${join(dir, 'build', 'Release', 'faiss-node.node')}); ` +
        'run scripts/setup.sh or `npm run build` (needs libfaiss-dev)';
    } else {
      try {
        const m = createRequire(import.meta.url)(dir) as FaissNodeModule;
        if (!m.xlirBuild?.typedArrays) failure = `${dir} holds a faiss-node binding without xlir's typed methods; rebuild with \`npm run build\``;
        else cached = m;
      } catch (e) {
        failure = `faiss-node failed to load: ${(e as Error).message}`;
      }
    }
  }
  if (!cached) throw new Error(failure);
  return cached;
}

export type FaissStatus = { available: true; faiss: string; dir: string } | { available: false; reason: string };

/** Whether faiss-node can be used here (tests skip with `reason` when it cannot). */
export function faissStatus(): FaissStatus {
  try {
    const m = loadFaissNode();
    return { available: true, faiss: m.xlirBuild!.faiss, dir: faissNodeDir() };
  } catch (e) {
    return { available: false, reason: (e as Error).message };
  }
}

/**
 * FAISS's OpenMP threads for the calls this (JavaScript) thread makes; default: all cores. One
 * thread can be much faster for small indexes on a busy machine: FAISS's many short parallel
 * regions (k-means, PQ training) spin-wait on descheduled threads.
 */
export function setFaissThreads(n: number): void {
  loadFaissNode().setNumThreads(n);
}
export function getFaissThreads(): number {
  return loadFaissNode().getNumThreads();
}

/** 'ip': inner product, higher is better; 'l2': squared Euclidean distance, lower is better. */
export type Metric = 'ip' | 'l2';
/** 'typed': Float32Array in place (xlir's methods); 'array': faiss-node's number[] API. */
export type TransferPath = 'typed' | 'array';
export type ExternalId = string | number;

export interface FaissSearchResult {
  /** Row-major [nq, k]: inner products ('ip') or squared distances ('l2'), best first. */
  scores: Float32Array;
  /** Row-major [nq, k]: labels = positions in insertion order, -1 where the index found fewer than k. */
  labels: Int32Array;
}

interface Sidecar {
  format: 'xlir-faiss-ids';
  version: 1;
  dim: number;
  factory: string;
  metric: Metric;
  count: number;
  /** External id of each label, or null when the label itself is the id. */
  ids: ExternalId[] | null;
}

/** The ids sidecar written next to an index file by FaissIndex.save. */
export function sidecarPath(indexPath: string): string {
  return `${indexPath}.ids.json`;
}

function rows(x: Float32Array, dim: number, what: string): number {
  if (!(x instanceof Float32Array)) throw new TypeError(`${what}: a Float32Array is expected`);
  if (x.length === 0 || x.length % dim !== 0) {
    throw new Error(`${what}: ${x.length} floats is not a positive multiple of the index dimension ${dim}`);
  }
  return x.length / dim;
}

function writeAtomic(path: string, write: (tmp: string) => void): void {
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    write(tmp);
    renameSync(tmp, path);
  } finally {
    rmSync(tmp, { force: true });
  }
}

/**
 * A FAISS index built through the index factory ('Flat', 'HNSW32', 'IVF256,PQ16', ...), with
 * optional external ids (any strings or numbers, one per added vector) kept beside it.
 */
export class FaissIndex {
  private ids: ExternalId[] | null = null;

  private constructor(
    readonly raw: FaissNodeIndex,
    readonly dim: number,
    readonly factory: string,
    readonly metric: Metric,
  ) {}

  static create(dim: number, opts: { factory?: string; metric?: Metric } = {}): FaissIndex {
    const factory = opts.factory ?? 'Flat';
    const metric = opts.metric ?? 'ip';
    if (!Number.isInteger(dim) || dim < 1) throw new Error(`FaissIndex.create: dim must be a positive integer, got ${dim}`);
    if (metric !== 'ip' && metric !== 'l2') throw new Error(`FaissIndex.create: metric must be 'ip' or 'l2', got '${metric}'`);
    const m = loadFaissNode();
    const code = metric === 'ip' ? m.MetricType.METRIC_INNER_PRODUCT : m.MetricType.METRIC_L2;
    let raw: FaissNodeIndex;
    try {
      raw = m.Index.fromFactory(dim, factory, code);
    } catch (e) {
      throw new Error(`FaissIndex.create: index factory rejected '${factory}' (dim ${dim}): ${(e as Error).message}`);
    }
    return new FaissIndex(raw, dim, factory, metric);
  }

  /** Reads an index written by save() together with its ids sidecar. */
  static load(path: string): FaissIndex {
    const side = sidecarPath(path);
    if (!existsSync(path)) throw new Error(`FaissIndex.load: no index file ${path}`);
    if (!existsSync(side)) throw new Error(`FaissIndex.load: no ids sidecar ${side} beside ${path}`);
    const s = JSON.parse(readFileSync(side, 'utf8')) as Sidecar;
    if (s.format !== 'xlir-faiss-ids' || s.version !== 1) throw new Error(`FaissIndex.load: ${side} is not an xlir ids sidecar (version 1)`);
    const raw = loadFaissNode().Index.read(path);
    if (raw.getDimension() !== s.dim || raw.ntotal() !== s.count) {
      throw new Error(`FaissIndex.load: ${path} holds ${raw.ntotal()} vectors of dim ${raw.getDimension()}, ` +
        `its sidecar describes ${s.count} of dim ${s.dim}`);
    }
    if (s.ids !== null && s.ids.length !== s.count) throw new Error(`FaissIndex.load: ${side} lists ${s.ids.length} ids for ${s.count} vectors`);
    const idx = new FaissIndex(raw, s.dim, s.factory, s.metric);
    idx.ids = s.ids;
    return idx;
  }

  /** Number of vectors in the index. */
  get size(): number {
    return this.raw.ntotal();
  }
  get isTrained(): boolean {
    return this.raw.isTrained();
  }

  /** Trains the index (IVF, PQ, ...) on vectors [n, dim]; a no-op for Flat and HNSW. */
  train(x: Float32Array, path: TransferPath = 'typed'): void {
    rows(x, this.dim, 'FaissIndex.train');
    if (path === 'typed') this.raw.trainF32(x);
    else this.raw.train(Array.from(x));
  }

  /**
   * Adds vectors [n, dim]; their labels are size .. size + n - 1. With `ids`, one external id per
   * vector (all adds of an index then need them), returned by idOf(label) and saved in the sidecar.
   */
  add(x: Float32Array, opts: { ids?: readonly ExternalId[]; path?: TransferPath } = {}): void {
    const n = rows(x, this.dim, 'FaissIndex.add');
    if (opts.ids !== undefined && opts.ids.length !== n) {
      throw new Error(`FaissIndex.add: ${opts.ids.length} ids for ${n} vectors`);
    }
    if (opts.ids !== undefined && this.ids === null && this.size > 0) {
      throw new Error('FaissIndex.add: ids given, but vectors were added earlier without ids');
    }
    if (opts.ids === undefined && this.ids !== null) throw new Error('FaissIndex.add: this index has external ids; pass ids');
    if (!this.isTrained) throw new Error(`FaissIndex.add: the '${this.factory}' index must be trained first (train())`);
    if ((opts.path ?? 'typed') === 'typed') this.raw.addF32(x);
    else this.raw.add(Array.from(x));
    if (opts.ids !== undefined) {
      this.ids ??= [];
      for (const id of opts.ids) this.ids.push(id);
    }
  }

  /** Sets a search-time parameter through faiss::ParameterSpace: 'efSearch' (HNSW), 'nprobe' (IVF), ... */
  setParam(name: string, value: number): void {
    this.raw.setParam(name, value);
  }

  /** Top k per query [nq, dim], synchronously. k may not exceed the index size. */
  search(queries: Float32Array, k: number, path: TransferPath = 'typed'): FaissSearchResult {
    rows(queries, this.dim, 'FaissIndex.search');
    if (!Number.isInteger(k) || k < 1 || k > this.size) {
      throw new Error(`FaissIndex.search: k must be an integer in [1, ${this.size}] (the index size), got ${k}`);
    }
    if (path === 'typed') {
      const r = this.raw.searchF32(queries, k);
      return { scores: r.distances, labels: r.labels };
    }
    const r = this.raw.search(Array.from(queries), k);
    return { scores: Float32Array.from(r.distances), labels: Int32Array.from(r.labels) };
  }

  /** The external id of a label (the label itself when the index has none); undefined for -1. */
  idOf(label: number): ExternalId | undefined {
    if (label < 0 || label >= this.size) return undefined;
    return this.ids === null ? label : this.ids[label];
  }

  /** Writes the index to `path` and the ids sidecar to `path`.ids.json, each atomically. */
  save(path: string): void {
    writeAtomic(path, (tmp) => this.raw.write(tmp));
    const s: Sidecar = {
      format: 'xlir-faiss-ids', version: 1, dim: this.dim, factory: this.factory, metric: this.metric,
      count: this.size, ids: this.ids,
    };
    writeAtomic(sidecarPath(path), (tmp) => writeFileSync(tmp, JSON.stringify(s)));
  }
}
