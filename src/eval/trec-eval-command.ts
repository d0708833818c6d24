// TREC/BEIR-style evaluation (MIRACL; METHOD.md section 5): stream the corpus through the encoder in
// chunks (documents are never all held as JavaScript objects: only their ids and embeddings), search
// the topics with the chosen back end (the engine's exact search, or a FAISS index), write the run
// in TREC format so that others can score it, and score it as `trec_eval -c -M depth -m ndcg_cut.10
// -m recall.100` does (src/eval/trec.ts).
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Encoder } from '../encoder.ts';
import { native } from '../native.ts';
import { Progress } from '../progress.ts';
import { EngineExactSearch, FaissSearch, type SearchBackend } from '../search/index.ts';
import { readCorpus, readQrels, readTopics, trecEval, writeRun, type Run } from './trec.ts';
import { writeFileAtomic } from '../report/write.ts';
import type { EncodeRunOptions } from './lareqa-eval.ts';

export interface TrecEvalCommandOptions extends EncodeRunOptions {
  topics: string;
  qrels: string;
  corpus: string;
  backend: string;
  depth: number;
  out: string;
}

const CHUNK = 4096;  // documents tokenized and encoded per step of the corpus stream

export async function evaluateTrec(enc: Encoder, o: TrecEvalCommandOptions) {
  const log = o.log ?? ((s: string) => process.stderr.write(s + '\n'));
  const t0 = performance.now();
  const topics = await readTopics(o.topics);
  const { qrels, report: qrelsReport } = await readQrels(o.qrels);
  const D = enc.embeddingDim;

  const reader = readCorpus(o.corpus, { qrels });
  const ids: string[] = [];
  const parts: Float32Array[] = [];
  let texts: string[] = [];
  const progress = new Progress(NaN, 'encode corpus');
  const flush = async () => {
    if (!texts.length) return;
    parts.push(await enc.encodeTexts(texts, { maxLength: o.maxPassageLength, prefix: o.passagePrefix, batchSize: o.batchSize }));
    texts = [];
    progress.update(ids.length, { docs: ids.length });
  };
  for await (const d of reader) {
    ids.push(d.docid);
    // BEIR/MIRACL convention: the title, when present, precedes the text.
    texts.push(d.title ? `${d.title} ${d.text}` : d.text);
    if (texts.length >= CHUNK) await flush();
  }
  await flush();
  const corpusReport = reader.report();
  if (!ids.length) throw new Error(`${o.corpus}: the corpus has no documents (empty pool)`);
  if (corpusReport.duplicateIds) log(`warning: ${corpusReport.duplicateIds} duplicate docids skipped (first kept), e.g. ${corpusReport.duplicateExamples[0]}`);
  if (corpusReport.missingJudged)
    log(`warning: ${corpusReport.missingJudged} judged (query, doc) pairs name ${corpusReport.missingDocids} docids absent from the corpus ` +
      `(${corpusReport.missingRelevant} of them relevant), e.g. ${corpusReport.missingExamples[0]}`);
  const corpus = new Float32Array(ids.length * D);
  let at = 0;
  for (const p of parts) (corpus.set(p, at), (at += p.length));
  parts.length = 0;

  const qids = [...topics.keys()];
  const queries = await enc.encodeTexts(qids.map((q) => topics.get(q)!), { maxLength: o.maxQueryLength, prefix: o.queryPrefix, batchSize: o.batchSize });
  const t1 = performance.now();

  const backend: SearchBackend = o.backend === 'exact'
    ? new EngineExactSearch(corpus, D, { device: enc.model.device, onFallback: (why) => log(`warning: ${why}`) })
    : FaissSearch.build(corpus, D, { factory: o.backend });
  const k = Math.min(o.depth, ids.length);
  const hits = await backend.search(queries, k);
  const t2 = performance.now();
  const run: Run = new Map();
  qids.forEach((qid, qi) => {
    const list = [];
    for (let r = 0; r < k; r++) {
      const id = hits.ids[qi * k + r];
      if (id >= 0) list.push({ docid: ids[id], score: hits.scores[qi * k + r] });
    }
    run.set(qid, list);
  });
  const runFile = join(o.out, 'run.trec');
  writeRun(runFile, run, { tag: `xlir-${backend.name}`, depth: o.depth });
  const m = trecEval(run, qrels, { depth: o.depth });
  const t3 = performance.now();
  const sha = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');
  const result = {
    kind: 'trec', xlir: native().info().version, created: new Date().toISOString(), seed: o.seed,
    model: { path: o.modelPath }, backend: backend.name, exact: backend.exact,
    data: { topics: resolve(o.topics), qrels: resolve(o.qrels), corpus: resolve(o.corpus), sha256: { topics: sha(o.topics), qrels: sha(o.qrels) } },
    options: { depth: o.depth, maxQueryLength: o.maxQueryLength, maxPassageLength: o.maxPassageLength, queryPrefix: o.queryPrefix, passagePrefix: o.passagePrefix },
    metrics: { 'ndcg_cut.10': m.ndcg, 'recall.100': m.recall, queries: m.queries },
    perQuery: Object.fromEntries([...m.perQuery].map(([q, r]) => [q, { ndcg10: r.ndcg, recall100: r.recall }])),
    warnings: {
      queriesMissingFromRun: m.missingFromRun, queriesWithoutRelevant: m.withoutRelevant, runQueriesNotInQrels: m.notInQrels.length,
      corpus: corpusReport, qrels: qrelsReport,
    },
    timing: { encodeMs: t1 - t0, searchMs: t2 - t1, metricsMs: t3 - t2, totalMs: t3 - t0 },
  };
  await writeFileAtomic(join(o.out, 'result.json'), JSON.stringify(result, null, 1) + '\n');
  return { ndcg10: m.ndcg, recall100: m.recall, queries: m.queries, runFile, result };
}
