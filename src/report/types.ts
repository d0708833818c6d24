// The result of one LAReQA evaluation (docs/METHOD.md section 5: XQuAD-R 11 languages, MLQA-R 7),
// as the evaluation writes it to result.json and as the report and the comparison of runs read it.
// The field names are a contract with the evaluation code: add optional fields, never rename.

/** mAP and R@1 of a setting averaged over its (query, pool) language pairs. */
export interface MapR1 {
  map: number;
  r1: number;
}

export interface LareqaSummary {
  /** Monolingual: query language = pool language, macro-averaged over the languages. */
  mono: MapR1;
  /** Cross-lingual: every ordered pair with query language != pool language, macro-averaged. */
  cross: MapR1;
  /** Multilingual: the pool is the union of all languages, macro-averaged over query languages. */
  multi: { map: number; r10: number };
  /** Multilingual rank distance (max rank - min rank of a query's parallel answers), macro-averaged over query languages. */
  rankDistance: number;
}

export interface LareqaMultilingualEntry {
  map: number;
  r10: number;
  rankDistance: number;
  queries: number;
}

export interface LareqaResult {
  kind: 'lareqa';
  /** xlir version. */
  xlir: string;
  /** 'xquad-r' | 'mlqa-r' | 'demo' | ... */
  bench: string;
  /** ISO date. */
  created: string;
  seed: number;
  /** sha256: of the weight files; run: the training run recorded in the model folder (xlir_training.json). */
  model: { path: string; name?: string; sha256?: string; run?: Record<string, unknown> };
  /** files: language -> sha256 of the language's data file; articles: e.g. 'test split 0.5 seed 0'. */
  data: { dir: string; files: Record<string, string>; articles?: string };
  options: Record<string, unknown>;
  /** Order of the rows and columns of `matrix`. */
  languages: string[];
  summary: LareqaSummary;
  /** [query language][pool language], in the order of `languages`; the diagonal is monolingual. */
  matrix: { map: number[][]; r1: number[][] };
  /** Per query language, multilingual pool. */
  multilingual: Record<string, LareqaMultilingualEntry>;
  counts: { questions: Record<string, number>; candidates: Record<string, number> };
  timing: { encodeMs: number; searchMs: number; metricsMs: number; totalMs: number };
  /** Optional named language groups, e.g. { 'zero-shot': ['el', 'vi'], seen: [...] }. */
  groups?: Record<string, string[]>;
}

// ---------------------------------------------------------------------------------------------
// Validation. `source` names where the object came from (a file path, 'result'); every message
// names it and the offending field with its dotted path, e.g. `run1.json: field "summary.mono.map"
// is missing`.

export class ResultError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ResultError';
  }
}

type Obj = Record<string, unknown>;

function isObj(x: unknown): x is Obj {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function describe(x: unknown): string {
  if (x === null) return 'null';
  if (Array.isArray(x)) return 'an array';
  if (typeof x === 'string') return `the string ${JSON.stringify(x.length > 40 ? x.slice(0, 40) + '...' : x)}`;
  return `${typeof x === 'object' ? 'an object' : typeof x} ${typeof x === 'object' ? '' : String(x)}`.trim();
}

class Checker {
  constructor(readonly source: string) {}

  fail(path: string, what: string): never {
    throw new ResultError(`${this.source}: field "${path}" ${what}`);
  }

  get(o: Obj, path: string, key: string): unknown {
    const full = path ? `${path}.${key}` : key;
    if (!(key in o) || o[key] === undefined) this.fail(full, 'is missing');
    return o[key];
  }

  obj(o: Obj, path: string, key: string): Obj {
    const v = this.get(o, path, key);
    if (!isObj(v)) this.fail(join(path, key), `must be an object, got ${describe(v)}`);
    return v;
  }

  str(o: Obj, path: string, key: string): string {
    const v = this.get(o, path, key);
    if (typeof v !== 'string') this.fail(join(path, key), `must be a string, got ${describe(v)}`);
    return v;
  }

  optStr(o: Obj, path: string, key: string): void {
    if (o[key] !== undefined && typeof o[key] !== 'string') this.fail(join(path, key), `must be a string when present, got ${describe(o[key])}`);
  }

  num(o: Obj, path: string, key: string): number {
    const v = this.get(o, path, key);
    // JSON.stringify writes NaN and Infinity as null: say so, it is the usual way a metric goes missing.
    if (v === null) this.fail(join(path, key), 'is null (a NaN or infinite number written as JSON?)');
    if (typeof v !== 'number' || !Number.isFinite(v)) this.fail(join(path, key), `must be a finite number, got ${describe(v)}`);
    return v;
  }

  /**
   * A metric value: a number, NaN included (a setting without queries), or null, which is how
   * JSON.stringify writes NaN; null is replaced by NaN in `o`, so readers get numbers.
   */
  metric(o: Obj, path: string, key: string): number {
    const v = this.get(o, path, key);
    if (v === null) {
      o[key] = NaN;
      return NaN;
    }
    if (typeof v !== 'number') this.fail(join(path, key), `must be a number (or null for a missing value), got ${describe(v)}`);
    return v;
  }

  strRecord(o: Obj, path: string, key: string): Record<string, string> {
    const v = this.obj(o, path, key);
    for (const [k, x] of Object.entries(v)) if (typeof x !== 'string') this.fail(join(join(path, key), k), `must be a string, got ${describe(x)}`);
    return v as Record<string, string>;
  }

  numRecord(o: Obj, path: string, key: string): Record<string, number> {
    const v = this.obj(o, path, key);
    for (const k of Object.keys(v)) this.num(v, join(path, key), k);
    return v as Record<string, number>;
  }
}

function join(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}

/**
 * Checks that `x` is a LareqaResult (all required fields, types, a square matrix matching
 * `languages`, a multilingual entry and counts for every language, groups naming strings) and
 * returns it typed: a deep copy in which the metric values written as null (JSON's NaN: a setting
 * without any query, e.g. cross-lingual with one language) are NaN again. Metric values (summary,
 * matrix, multilingual map/r10/rankDistance) may be NaN; seed, counts, timing and queries must be
 * finite numbers. Throws a ResultError naming `source` and the field otherwise. Languages a
 * group names that were not evaluated are allowed (a 'zero-shot' group {el, vi} on MLQA-R, which
 * has no el); the report says which were left out.
 */
export function validateResult(input: unknown, source = 'result'): LareqaResult {
  const c: Checker = new Checker(source);
  if (!isObj(input)) throw new ResultError(`${source}: not a result object (got ${describe(input)})`);
  let x: Obj;
  try {
    x = structuredClone(input);
  } catch (e) {
    throw new ResultError(`${source}: not plain data (${e instanceof Error ? e.message : String(e)})`);
  }
  if (!('kind' in x)) c.fail('kind', 'is missing (expected "lareqa"; is this an xlir LAReQA result?)');
  if (x.kind !== 'lareqa') c.fail('kind', `is ${JSON.stringify(x.kind)}, expected "lareqa" (only LAReQA results are reported here)`);
  c.str(x, '', 'xlir');
  c.str(x, '', 'bench');
  c.str(x, '', 'created');
  c.num(x, '', 'seed');
  const model = c.obj(x, '', 'model');
  c.str(model, 'model', 'path');
  c.optStr(model, 'model', 'name');
  c.optStr(model, 'model', 'sha256');
  const data = c.obj(x, '', 'data');
  c.str(data, 'data', 'dir');
  c.strRecord(data, 'data', 'files');
  c.optStr(data, 'data', 'articles');
  c.obj(x, '', 'options');

  const langsRaw = c.get(x, '', 'languages');
  if (!Array.isArray(langsRaw) || langsRaw.length === 0) c.fail('languages', `must be a non-empty array of language codes, got ${describe(langsRaw)}`);
  const langs: string[] = [];
  langsRaw.forEach((l, i) => {
    if (typeof l !== 'string' || l === '') c.fail(`languages.${i}`, `must be a non-empty string, got ${describe(l)}`);
    if (langs.includes(l)) c.fail(`languages.${i}`, `repeats the language ${JSON.stringify(l)}`);
    langs.push(l);
  });
  const n = langs.length;

  const summary = c.obj(x, '', 'summary');
  for (const [k, fields] of [['mono', ['map', 'r1']], ['cross', ['map', 'r1']], ['multi', ['map', 'r10']]] as const) {
    const s = c.obj(summary, 'summary', k);
    for (const f of fields) c.metric(s, `summary.${k}`, f);
  }
  c.metric(summary, 'summary', 'rankDistance');

  const matrix = c.obj(x, '', 'matrix');
  for (const m of ['map', 'r1'] as const) {
    const rows = c.get(matrix, 'matrix', m);
    if (!Array.isArray(rows)) c.fail(`matrix.${m}`, `must be an array of rows, got ${describe(rows)}`);
    if (rows.length !== n) c.fail(`matrix.${m}`, `has ${rows.length} rows, expected ${n} (one per language: ${langs.join(', ')})`);
    rows.forEach((row: unknown, i: number) => {
      if (!Array.isArray(row)) c.fail(`matrix.${m}.${i}`, `must be an array, got ${describe(row)}`);
      if (row.length !== n) c.fail(`matrix.${m}.${i}`, `(query language ${langs[i]}) has ${row.length} columns, expected ${n}`);
      row.forEach((_v: unknown, j: number) => c.metric(row as unknown as Obj, `matrix.${m}.${i}`, String(j)));
    });
  }

  const multi = c.obj(x, '', 'multilingual');
  for (const l of langs) {
    const e = c.obj(multi, 'multilingual', l);
    for (const f of ['map', 'r10', 'rankDistance']) c.metric(e, `multilingual.${l}`, f);
    c.num(e, `multilingual.${l}`, 'queries');
  }

  const counts = c.obj(x, '', 'counts');
  const q = c.numRecord(counts, 'counts', 'questions');
  const cand = c.numRecord(counts, 'counts', 'candidates');
  for (const l of langs) {
    if (!(l in q)) c.fail(`counts.questions.${l}`, 'is missing');
    if (!(l in cand)) c.fail(`counts.candidates.${l}`, 'is missing');
  }

  const timing = c.obj(x, '', 'timing');
  for (const f of ['encodeMs', 'searchMs', 'metricsMs', 'totalMs']) c.num(timing, 'timing', f);

  if (x.groups !== undefined) {
    const g = c.obj(x, '', 'groups');
    for (const [name, members] of Object.entries(g)) {
      if (!Array.isArray(members)) c.fail(`groups.${name}`, `must be an array of language codes, got ${describe(members)}`);
      members.forEach((l: unknown, i: number) => {
        if (typeof l !== 'string') c.fail(`groups.${name}.${i}`, `must be a string, got ${describe(l)}`);
      });
    }
  }
  return x as unknown as LareqaResult;
}
