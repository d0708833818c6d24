// TREC-style evaluation files (MIRACL, BEIR and the like; METHOD.md section 5): topics, qrels, the
// corpus, run files, and nDCG@10 / Recall@100 computed as trec_eval 9.0.8 computes them with
// `-c -M 1000 -m ndcg_cut.10 -m recall.100`. No search happens here.
//
// Definitions, with where they are in trec_eval's source (github.com/usnistgov/trec_eval):
//  - Ranking: a query's hits are sorted by score descending, ties broken by docid DEScending in
//    strcmp (byte) order (form_res_rels.c, comp_sim_docno: `strcmp(p2->docno, p1->docno)`); the
//    rank column of the run file is ignored. Then only the first `depth` hits are kept (-M;
//    form_res_rels.c truncates to max_num_docs_per_topic after the sort). A docid twice in one
//    query's hits is an error there ("duplicate docs") and here.
//  - ndcg_cut.k (m_ndcg_cut.c): DCG = sum over ranks i = 0..k-1 of gain_i / log2(i + 2) where
//    gain_i is the qrels relevance of the doc at rank i when > 0 (unjudged docs and levels <= 0
//    give nothing); ideal DCG takes the judged docs with relevance >= 1 sorted by level,
//    descending, with the same discount and cut-off; nDCG = DCG / ideal DCG, 0 when the ideal is 0.
//    The gain is the level itself (linear, not 2^rel - 1).
//  - recall.k (m_recall.c): (relevant docs, i.e. level >= 1, among the first k) / (relevant docs in
//    the qrels of the query); 0 when the query has none (`if (0 == res_rels.num_rel) return 0`).
//  - Averaging with -c (trec_eval.c main loop and meas_avg.c te_calc_avg_meas_a_cut): the mean is
//    over EVERY query of the qrels (all_rel_info->num_q_rels). A query of the qrels absent from the
//    run is scored with a bogus one-document ranking, so it counts 0. A query of the qrels with no
//    relevant document (only level-0 judgements) is evaluated like any other and also counts 0:
//    trec_eval 9 does not skip it (its CHANGELOG, 4/5/06: "queries with no relevant docs are
//    ignored ... was true with very old versions"). Queries of the run absent from the qrels are
//    ignored. The result lists both kinds so that a caller sees them.
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { readJsonl, textLines } from '../jsonl.ts';

/** qid -> query text. */
export type Topics = Map<string, string>;
/** qid -> docid -> relevance level (an integer; >= 1 is relevant, negative is "in the pool, unjudged"). */
export type Qrels = Map<string, Map<string, number>>;
export interface RunHit {
  docid: string;
  score: number;
}
/** qid -> hits in any order (writeRun and trecEval sort them). */
export type Run = Map<string, RunHit[]>;

const MAX_EXAMPLES = 5;

const INTEGER = /^[+-]?\d+$/;
const WHITESPACE = /\s/;

/**
 * Topics: one `qid<TAB>query` a line (MIRACL's topics files), or BEIR's queries.jsonl (`_id`, `text`)
 * when the file name ends in .jsonl. Blank lines are skipped; a line that
 * is not exactly two tab-separated fields, an empty qid or query, or a qid given twice is an error
 * naming file:line.
 */
export async function readTopics(path: string): Promise<Topics> {
  const topics: Topics = new Map();
  const lineOf = new Map<string, number>();
  if (/\.jsonl$/i.test(path)) {
    // BEIR's queries.jsonl: {"_id": ..., "text": ...} a line.
    for await (const { line, value } of readJsonl(path)) {
      const qid = value._id ?? value.id, query = value.text;
      if ((typeof qid !== 'string' && typeof qid !== 'number') || String(qid).trim() === '') throw new Error(`${path}:${line}: "_id" missing or empty`);
      if (typeof query !== 'string' || query.trim() === '') throw new Error(`${path}:${line}: "text" missing or empty for query ${qid}`);
      const first = lineOf.get(String(qid));
      if (first !== undefined) throw new Error(`${path}:${line}: query ${qid} already given at line ${first}`);
      lineOf.set(String(qid), line);
      topics.set(String(qid), query.trim());
    }
    return topics;
  }
  for await (const { line, text } of textLines(path)) {
    if (text.trim() === '') continue;
    const fields = text.split('\t');
    if (fields.length !== 2)
      throw new Error(`${path}:${line}: expected "qid<TAB>query", found ${fields.length} tab-separated field(s)`);
    const qid = fields[0].trim();
    const query = fields[1].trim();
    if (qid === '' || WHITESPACE.test(qid)) throw new Error(`${path}:${line}: empty qid or qid with whitespace: ${JSON.stringify(fields[0])}`);
    if (query === '') throw new Error(`${path}:${line}: empty query for qid ${qid}`);
    const first = lineOf.get(qid);
    if (first !== undefined) throw new Error(`${path}:${line}: qid ${qid} already given at line ${first}`);
    lineOf.set(qid, line);
    topics.set(qid, query);
  }
  return topics;
}

export interface QrelsReport {
  path: string;
  /** Judgement lines read (comments and blank lines not counted), duplicates included. */
  lines: number;
  /** Distinct (qid, docid) judgements kept. */
  judgments: number;
  queries: number;
  /** Judgements with level >= 1. */
  relevant: number;
  /** Queries whose judgements are all below level 1 (trec_eval scores them 0 and averages them in). */
  queriesWithoutRelevant: string[];
  /** Lines repeating an earlier (qid, docid) with the same level: dropped. */
  duplicates: number;
  duplicateExamples: string[];
}

/**
 * Qrels in TREC format: `qid iter docid rel`, whitespace-separated (the iter column, usually Q0, is
 * ignored, as trec_eval does), rel an integer; or BEIR's TSV, recognised by its `query-id corpus-id
 * score` header: `qid docid rel`. Blank lines and lines starting with `#` are skipped
 * (trec_eval skips `#` comments too). A line with another number of fields or a non-integer rel is
 * an error naming file:line. A (qid, docid) given twice with the same level is kept once and
 * reported; with different levels it is an error naming both lines (trec_eval refuses every
 * duplicate; an exact repeat is harmless, a conflicting one is not).
 */
export async function readQrels(path: string): Promise<{ qrels: Qrels; report: QrelsReport }> {
  const qrels: Qrels = new Map();
  const lineOf = new Map<string, Map<string, number>>();
  const report: QrelsReport = {
    path, lines: 0, judgments: 0, queries: 0, relevant: 0, queriesWithoutRelevant: [], duplicates: 0, duplicateExamples: [],
  };
  let format: 'trec' | 'beir' | undefined;
  for await (const { line, text } of textLines(path)) {
    const trimmed = text.trim();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    const fields = trimmed.split(/\s+/);
    // BEIR's qrels/*.tsv: a "query-id corpus-id score" header, then three fields a line.
    if (report.lines === 0 && format === undefined && /^query-id\s+corpus-id\s+score$/.test(trimmed)) {
      format = 'beir';
      continue;
    }
    format ??= 'trec';
    const want = format === 'beir' ? 3 : 4;
    if (fields.length !== want)
      throw new Error(`${path}:${line}: expected ${format === 'beir' ? '"query-id corpus-id score" (BEIR, as the header says)' : '"qid Q0 docid relevance" (TREC; BEIR\'s TSV starts with a "query-id corpus-id score" header)'}, ` +
        `found ${fields.length} field(s): ${JSON.stringify(text)}`);
    const [qid, docid, relText] = format === 'beir' ? fields : [fields[0], fields[2], fields[3]];
    if (!INTEGER.test(relText)) throw new Error(`${path}:${line}: relevance ${JSON.stringify(relText)} is not an integer`);
    const rel = Number(relText);
    report.lines++;
    let docs = qrels.get(qid);
    let docLines = lineOf.get(qid);
    if (!docs || !docLines) {
      qrels.set(qid, (docs = new Map()));
      lineOf.set(qid, (docLines = new Map()));
    }
    const prev = docs.get(docid);
    if (prev !== undefined) {
      const first = docLines.get(docid)!;
      if (prev !== rel)
        throw new Error(`${path}:${line}: (${qid}, ${docid}) judged ${rel} here but ${prev} at line ${first}`);
      report.duplicates++;
      if (report.duplicateExamples.length < MAX_EXAMPLES) report.duplicateExamples.push(`${path}:${line} repeats line ${first} (${qid} ${docid})`);
      continue;
    }
    docs.set(docid, rel);
    docLines.set(docid, line);
    report.judgments++;
    if (rel >= 1) report.relevant++;
  }
  report.queries = qrels.size;
  for (const [qid, docs] of qrels) if (![...docs.values()].some((r) => r >= 1)) report.queriesWithoutRelevant.push(qid);
  return { qrels, report };
}

/** One passage of a corpus. */
export interface CorpusDoc {
  docid: string;
  title: string;
  text: string;
  /** 1-based line in the JSONL file. */
  line: number;
}

export interface CorpusReport {
  path: string;
  /** Documents yielded (duplicates excluded). */
  documents: number;
  /** Records whose id an earlier record already had: skipped (the first one wins). */
  duplicateIds: number;
  duplicateExamples: string[];
  /** Only with `qrels`: judged (qid, docid) pairs whose docid is not in the corpus, all levels / level >= 1. */
  missingJudged: number;
  missingRelevant: number;
  /** Distinct docids behind missingJudged. */
  missingDocids: number;
  missingExamples: string[];
}

/**
 * Streams a corpus JSONL (`{"docid"|"_id": string, "title"?: string, "text": string}` a line) without
 * holding the documents: iterate it with `for await`. Only the ids seen are kept (to find duplicates
 * and, given `qrels`, judged docids the corpus lacks). `report()` is available once the iteration
 * has run to the end. Errors name file:line: invalid JSON, an id that is missing, not a string, empty
 * or containing whitespace (it could not be written in a run file), `docid` and `_id` that differ, a
 * `text` that is not a string, a `title` that is neither a string nor null.
 */
export class CorpusReader implements AsyncIterable<CorpusDoc> {
  readonly path: string;
  private readonly qrels: Qrels | undefined;
  private done: CorpusReport | undefined;
  private started = false;

  constructor(path: string, options: { qrels?: Qrels } = {}) {
    this.path = path;
    this.qrels = options.qrels;
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<CorpusDoc> {
    if (this.started) throw new Error(`${this.path}: a CorpusReader can be iterated once; open another`);
    this.started = true;
    const path = this.path;
    const lineOf = new Map<string, number>();
    const report: CorpusReport = {
      path, documents: 0, duplicateIds: 0, duplicateExamples: [], missingJudged: 0, missingRelevant: 0, missingDocids: 0, missingExamples: [],
    };
    for await (const { line, value } of readJsonl(path)) {
      const docid = value.docid ?? value._id;
      if (typeof docid !== 'string') throw new Error(`${path}:${line}: "docid" (or "_id") missing or not a string`);
      if (value.docid !== undefined && value._id !== undefined && value.docid !== value._id)
        throw new Error(`${path}:${line}: "docid" ${JSON.stringify(value.docid)} and "_id" ${JSON.stringify(value._id)} differ`);
      if (docid === '' || WHITESPACE.test(docid)) throw new Error(`${path}:${line}: docid ${JSON.stringify(docid)} is empty or contains whitespace`);
      const title = value.title ?? '';
      if (typeof title !== 'string') throw new Error(`${path}:${line}: "title" is not a string`);
      if (typeof value.text !== 'string') throw new Error(`${path}:${line}: "text" missing or not a string`);
      const first = lineOf.get(docid);
      if (first !== undefined) {
        report.duplicateIds++;
        if (report.duplicateExamples.length < MAX_EXAMPLES) report.duplicateExamples.push(`${path}:${line} repeats docid ${docid} of line ${first}`);
        continue;
      }
      lineOf.set(docid, line);
      report.documents++;
      yield { docid, title, text: value.text, line };
    }
    if (this.qrels) {
      const missing = new Set<string>();
      for (const [qid, docs] of this.qrels) {
        for (const [docid, rel] of docs) {
          if (lineOf.has(docid)) continue;
          report.missingJudged++;
          if (rel >= 1) report.missingRelevant++;
          if (!missing.has(docid) && report.missingExamples.length < MAX_EXAMPLES) report.missingExamples.push(`${qid} ${docid} (${rel})`);
          missing.add(docid);
        }
      }
      report.missingDocids = missing.size;
    }
    this.done = report;
  }

  /** What the finished iteration found. */
  report(): CorpusReport {
    if (!this.done) throw new Error(`${this.path}: report() before the corpus was read to the end`);
    return this.done;
  }
}

/** Convenience for `new CorpusReader(path, options)`. */
export function readCorpus(path: string, options: { qrels?: Qrels } = {}): CorpusReader {
  return new CorpusReader(path, options);
}

// ---------------------------------------------------------------------------------------------
// Runs

/** strcmp order of the UTF-8 encodings (= code point order), without encoding. */
export function compareBytewise(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    // UTF-16 order differs from code point order only between surrogates (D800-DFFF, code points
    // >= U+10000) and U+E000-U+FFFF: move the surrogates above.
    if (x >= 0xd800) x += x >= 0xe000 ? -0x800 : 0x2000;
    if (y >= 0xd800) y += y >= 0xe000 ? -0x800 : 0x2000;
    return x - y;
  }
  return a.length - b.length;
}

/** trec_eval's ranking order: score descending, then docid descending in byte order. */
export function compareTrecOrder(a: RunHit, b: RunHit): number {
  if (a.score > b.score) return -1;
  if (a.score < b.score) return 1;
  return compareBytewise(b.docid, a.docid);
}

function checkDepth(depth: number | undefined, where: string): number {
  if (depth === undefined) return Infinity;
  if (!Number.isSafeInteger(depth) || depth < 1) throw new Error(`${where}: depth must be a positive integer, got ${depth}`);
  return depth;
}

/** A query's hits in trec_eval order, checked (finite scores, no repeated docid) and cut to `depth`. */
export function rankHits(qid: string, hits: readonly RunHit[], depth = Infinity): RunHit[] {
  for (const h of hits) {
    if (!Number.isFinite(h.score)) throw new Error(`run: query ${qid}: docid ${h.docid} has score ${h.score}`);
  }
  const seen = new Set<string>();
  for (const h of hits) {
    if (seen.has(h.docid)) throw new Error(`run: query ${qid}: docid ${h.docid} retrieved twice`);
    seen.add(h.docid);
  }
  const sorted = [...hits].sort(compareTrecOrder);
  return sorted.length > depth ? sorted.slice(0, depth) : sorted;
}

const WRITE_CHUNK = 1 << 20;

/**
 * Writes a run file, `qid Q0 docid rank score tag` a line, each query's hits in trec_eval order
 * (so the rank column agrees with the order trec_eval evaluates), at most `depth` a query, queries
 * in the Map's order. Scores are written with JavaScript's shortest round-trip representation, so
 * reading the file back gives the same doubles and the same ties. Written to a temporary file that
 * is fsynced and renamed over `path`: a reader never sees half a run.
 */
export function writeRun(path: string, run: Run, options: { tag: string; depth?: number }): void {
  const { tag } = options;
  const depth = checkDepth(options.depth, 'writeRun');
  if (tag === '' || WHITESPACE.test(tag)) throw new Error(`writeRun: tag ${JSON.stringify(tag)} is empty or contains whitespace`);
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w');
  let buf: string[] = [];
  let size = 0;
  const flush = () => {
    const bytes = Buffer.from(buf.join(''), 'utf8');
    let done = 0;
    while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done);
    buf = [];
    size = 0;
  };
  try {
    for (const [qid, hits] of run) {
      if (qid === '' || WHITESPACE.test(qid)) throw new Error(`writeRun: qid ${JSON.stringify(qid)} is empty or contains whitespace`);
      for (const h of hits) {
        if (h.docid === '' || WHITESPACE.test(h.docid))
          throw new Error(`writeRun: query ${qid}: docid ${JSON.stringify(h.docid)} is empty or contains whitespace`);
      }
      const ranked = rankHits(qid, hits, depth);
      for (let i = 0; i < ranked.length; i++) {
        const l = `${qid} Q0 ${ranked[i].docid} ${i + 1} ${ranked[i].score} ${tag}\n`;
        buf.push(l);
        size += l.length;
        if (size >= WRITE_CHUNK) flush();
      }
    }
    flush();
    fsyncSync(fd);
    closeSync(fd);
  } catch (e) {
    try { closeSync(fd); } catch { /* already failing */ }
    rmSync(tmp, { force: true });
    throw e;
  }
  renameSync(tmp, path);
  try {
    const dfd = openSync(dirname(path), 'r');
    try { fsyncSync(dfd); } finally { closeSync(dfd); }
  } catch { /* best effort: not every platform can fsync a directory */ }
}

/**
 * Reads a run file (`qid Q0 docid rank score tag`, whitespace-separated). Errors name file:line: a
 * line without 6 fields, a score that is not a finite number, a docid twice for one query. The rank
 * and tag columns are not used (trec_eval ranks by score); hits keep file order.
 */
export async function readRun(path: string): Promise<Run> {
  const run: Run = new Map();
  const seen = new Map<string, Map<string, number>>();
  for await (const { line, text } of textLines(path)) {
    const trimmed = text.trim();
    if (trimmed === '') continue;
    const fields = trimmed.split(/\s+/);
    if (fields.length !== 6)
      throw new Error(`${path}:${line}: expected "qid Q0 docid rank score tag", found ${fields.length} field(s): ${JSON.stringify(text)}`);
    const [qid, , docid, , scoreText] = fields;
    const score = Number(scoreText);
    if (scoreText === '' || !Number.isFinite(score)) throw new Error(`${path}:${line}: score ${JSON.stringify(scoreText)} is not a finite number`);
    let hits = run.get(qid);
    let lineOf = seen.get(qid);
    if (!hits || !lineOf) {
      run.set(qid, (hits = []));
      seen.set(qid, (lineOf = new Map()));
    }
    const first = lineOf.get(docid);
    if (first !== undefined) throw new Error(`${path}:${line}: docid ${docid} already retrieved for query ${qid} at line ${first}`);
    lineOf.set(docid, line);
    hits.push({ docid, score });
  }
  return run;
}

// ---------------------------------------------------------------------------------------------
// trec_eval

export interface TrecEvalOptions {
  /** -M: hits per query evaluated (after ranking). Default 1000. */
  depth?: number;
  /** ndcg_cut.k. Default 10. */
  ndcgAt?: number;
  /** recall.k. Default 100. */
  recallAt?: number;
}

export interface TrecQueryResult {
  ndcg: number;
  recall: number;
  /** Hits evaluated (after the depth cut; 0 for a query missing from the run). */
  retrieved: number;
  /** Judged docs with level >= 1. */
  relevant: number;
}

export interface TrecEvalResult {
  /** Mean nDCG@ndcgAt over every query of the qrels (-c). */
  ndcg: number;
  /** Mean Recall@recallAt over every query of the qrels (-c). */
  recall: number;
  ndcgAt: number;
  recallAt: number;
  depth: number;
  /** Queries averaged over: all the qrels' queries. */
  queries: number;
  perQuery: Map<string, TrecQueryResult>;
  /** Queries of the qrels absent from the run: scored 0 and averaged in. */
  missingFromRun: string[];
  /** Queries of the qrels with no judgement >= 1: scored 0 and averaged in, as trec_eval does. */
  withoutRelevant: string[];
  /** Queries of the run absent from the qrels: not evaluated. */
  notInQrels: string[];
}

function checkCutoff(k: number, name: string): number {
  if (!Number.isSafeInteger(k) || k < 1) throw new Error(`trecEval: ${name} must be a positive integer, got ${k}`);
  return k;
}

/** nDCG@k and Recall@k of one query, trec_eval's m_ndcg_cut.c and m_recall.c (see the file header). */
function evalQuery(ranked: readonly RunHit[], judged: Map<string, number>, ndcgAt: number, recallAt: number): TrecQueryResult {
  let dcg = 0;
  let relRet = 0;
  for (let i = 0; i < ranked.length && (i < ndcgAt || i < recallAt); i++) {
    const rel = judged.get(ranked[i].docid);
    if (rel === undefined || rel <= 0) continue;
    if (i < ndcgAt) dcg += rel / Math.log2(i + 2);
    if (i < recallAt && rel >= 1) relRet++;
  }
  const levels = [...judged.values()].filter((r) => r >= 1).sort((a, b) => b - a);
  let ideal = 0;
  for (let i = 0; i < levels.length && i < ndcgAt; i++) ideal += levels[i] / Math.log2(i + 2);
  return {
    ndcg: ideal > 0 ? dcg / ideal : 0,
    recall: levels.length > 0 ? relRet / levels.length : 0,
    retrieved: ranked.length,
    relevant: levels.length,
  };
}

/**
 * nDCG@10 and Recall@100 as `trec_eval -c -M 1000 -m ndcg_cut.10 -m recall.100 qrels run` prints
 * them (before its rounding to 4 decimals); definitions and sources in the file header.
 */
export function trecEval(run: Run, qrels: Qrels, options: TrecEvalOptions = {}): TrecEvalResult {
  const depth = checkDepth(options.depth ?? 1000, 'trecEval');
  const ndcgAt = checkCutoff(options.ndcgAt ?? 10, 'ndcgAt');
  const recallAt = checkCutoff(options.recallAt ?? 100, 'recallAt');
  if (qrels.size === 0) throw new Error('trecEval: the qrels have no query');
  const perQuery = new Map<string, TrecQueryResult>();
  const missingFromRun: string[] = [];
  const withoutRelevant: string[] = [];
  let ndcgSum = 0;
  let recallSum = 0;
  for (const [qid, judged] of qrels) {
    const hits = run.get(qid);
    if (!hits) missingFromRun.push(qid);
    const r = evalQuery(hits ? rankHits(qid, hits, depth) : [], judged, ndcgAt, recallAt);
    if (r.relevant === 0) withoutRelevant.push(qid);
    perQuery.set(qid, r);
    ndcgSum += r.ndcg;
    recallSum += r.recall;
  }
  const notInQrels = [...run.keys()].filter((q) => !qrels.has(q));
  return {
    ndcg: ndcgSum / qrels.size,
    recall: recallSum / qrels.size,
    ndcgAt, recallAt, depth,
    queries: qrels.size,
    perQuery, missingFromRun, withoutRelevant, notInQrels,
  };
}
