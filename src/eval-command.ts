// `xlir eval` and `xlir compare`: evaluate a model on a LAReQA set (XQuAD-R, MLQA-R), TyDi QA GoldP,
// Tatoeba or a TREC/BEIR-style collection (MIRACL), and put several result files side by side. The
// protocol is in src/eval/, the report in src/report/; this module maps flags onto them.
import { createHash } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readFileSync, readSync } from 'node:fs';
import { basename, join, resolve, sep } from 'node:path';
import type { Argv } from 'yargs';
import { Encoder } from './encoder.ts';
import { resolveInputs } from './input-defaults.ts';
import { otherJsonFiles } from './data/lareqa.ts';
import { native } from './native.ts';
import { evaluateLareqa } from './eval/lareqa-eval.ts';
import { evaluateTrec } from './eval/trec-eval-command.ts';
import { writeReport } from './report/write.ts';
import { compareSetResults, evaluateSet, writeSetResult, type SetResult } from './eval/set-eval.ts';
import { tatoebaCodes, tatoebaEvalSet, tydiqaEvalSet, tydiqaLanguages } from './experiment/data.ts';
import { compareResults, readResult } from './report/compare.ts';
import { writeFileAtomic } from './report/write.ts';

const DATA_EXAMPLE: Record<string, string> = { tydiqa: '../shared/data/tydiqa-goldp', tatoeba: '../shared/data/tatoeba-laser' };

export function evalOptions<T>(y: Argv<T>) {
  return y
    .option('bench', {
      choices: ['xquad-r', 'mlqa-r', 'lareqa', 'tydiqa', 'tatoeba', 'trec'] as const, demandOption: true,
      describe: 'xquad-r / mlqa-r / lareqa: LAReQA protocol on a folder of <lang>.json; tydiqa: TyDi QA GoldP dev, monolingual (folder of <language>_tydiqa_dev.json); tatoeba: bitext retrieval xxx -> eng and eng -> xxx (folder of tatoeba.xxx-eng.*); trec: topics + qrels + corpus (MIRACL, BEIR)',
    })
    .option('model', { type: 'string', demandOption: true, describe: 'Hugging Face or sentence-transformers folder (e.g. the model/ of an xlir train run)' })
    .option('data', { type: 'string', describe: 'the data folder (LAReQA, TyDi QA or Tatoeba)' })
    .option('out', { type: 'string', describe: 'result folder (default: eval/<bench>-<model folder name>, with the run folder\'s name for <run>/model or <run>/best; another model\'s result there is not overwritten)' })
    .option('languages', { type: 'string', array: true, describe: 'evaluate only these languages (default: all in --data; Tatoeba: 3-letter codes, e.g. swh tel)' })
    .option('articles', { choices: ['all', 'test', 'train'] as const, default: 'all' as const, describe: 'LAReQA: evaluate all articles, or one side of the article split used by `xlir convert lareqa --split`' })
    .option('test-fraction', { type: 'number', default: 0.5, describe: 'article split: fraction on the test side' })
    .option('split-seed', { type: 'number', default: 0, describe: 'article split: seed' })
    .option('context', { choices: ['paragraph', 'none'] as const, default: 'paragraph' as const, describe: 'LAReQA candidate text: sentence + paragraph, or the sentence alone' })
    .option('zero-shot', { type: 'string', array: true, default: [], describe: 'languages held out of training: reported as a group beside the seen ones' })
    .option('low-resource', { type: 'string', array: true, default: [], describe: 'languages reported as a low-resource group' })
    .option('topics', { type: 'string', describe: 'trec: topics TSV (qid TAB query)' })
    .option('qrels', { type: 'string', describe: 'trec: qrels (qid Q0 docid rel)' })
    .option('corpus', { type: 'string', describe: 'trec: corpus JSONL (docid or _id, title, text)' })
    .option('backend', { type: 'string', default: 'exact', describe: "trec: 'exact' (the engine), or a FAISS factory string, e.g. Flat, HNSW32, IVF256,PQ16" })
    .option('depth', { type: 'number', default: 1000, describe: 'trec: hits per query in the run (trec_eval -M)' })
    // No yargs defaults: unset, they come from the model (src/input-defaults.ts).
    .option('max-query-length', { type: 'number', describe: 'tokens per query (default: what the model was trained with, else 64)' })
    .option('max-passage-length', { type: 'number', describe: 'tokens per candidate or document (default: what the model was trained with, else 256)' })
    .option('query-prefix', { type: 'string', describe: 'default: the model\'s training prefix or sentence-transformers "query" prompt, else "Query: "' })
    .option('passage-prefix', { type: 'string', describe: 'default: the model\'s training prefix or sentence-transformers "passage" prompt, else "Passage: "' })
    .option('batch-size', { type: 'number', default: 64, describe: 'texts per engine call' })
    .option('precision', { choices: ['fp32', 'bf16'] as const, default: 'fp32' as const })
    .option('threads', { type: 'number', describe: 'CPU threads (default: all cores)' })
    .option('device', { type: 'string', default: 'cpu', describe: "'cpu' or 'cuda:N': encoding, and trec's exact search when the corpus fits in GPU memory" })
    .option('seed', { type: 'number', default: 0, describe: 'recorded with the result (evaluation itself draws nothing)' })
    .option('png', { type: 'boolean', describe: 'require PNG pictures (default: when fonts are found)' });
}

type EvalArgs = Awaited<ReturnType<ReturnType<typeof evalOptions>['parseAsync']>>;

/**
 * eval/<bench>-<model folder>, where a folder that every run has (`model`, `best`, `checkpoint`)
 * is named with the folders above it: run1/model -> eval/xquad-r-run1-model, so that the models of
 * two runs do not share a result folder.
 */
export function defaultEvalOut(bench: string, model: string): string {
  const parts = resolve(model).split(sep).filter((p) => p.length);
  let i = parts.length - 1;
  while (i > 0 && ['model', 'best', 'checkpoint'].includes(parts[i])) i--;
  return join('eval', `${bench}-${parts.slice(i).join('-')}`);
}

/**
 * What a result says of its model beyond the path: the sha256 of its weight files (the path may be
 * overwritten by a later run), and the training run recorded in the folder (xlir_training.json).
 */
export function modelIdentity(enc: Encoder): { sha256?: string; run?: Record<string, unknown> } {
  const files = enc.folderInputs.weightFiles ?? [];
  const h = createHash('sha256'), buf = Buffer.alloc(1 << 24);
  for (const f of files) {
    // In 16 MiB pieces: an XLM-R checkpoint is over a GB.
    const fd = openSync(f, 'r');
    try {
      for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0;) h.update(buf.subarray(0, n));
    } finally {
      closeSync(fd);
    }
  }
  return { ...(files.length ? { sha256: h.digest('hex') } : {}), ...(enc.folderInputs.training?.run ? { run: enc.folderInputs.training.run } : {}) };
}

/** A default result folder that holds another model's result is not overwritten. */
export function refuseOtherModelsResult(out: string, model: string): void {
  let had: unknown;
  try {
    had = (JSON.parse(readFileSync(join(out, 'result.json'), 'utf8')) as { model?: { path?: unknown } }).model?.path;
  } catch {
    return;
  }
  if (typeof had === 'string' && had !== model)
    throw new Error(`${out} holds the result of another model (${had}); pass --out to choose where this one goes`);
}

export async function runEval(a: EvalArgs, log: (s: string) => void = (s) => process.stderr.write(s + '\n')): Promise<string> {
  if (a.threads) native().setNumThreads(a.threads);
  const out = a.out ?? defaultEvalOut(a.bench, a.model);
  if (a.out === undefined) refuseOtherModelsResult(out, resolve(a.model));
  mkdirSync(out, { recursive: true });
  const enc = Encoder.load(a.model, { precision: a.precision, device: a.device });
  try {
    const { inputs, note } = resolveInputs(enc.folderInputs, {
      maxQueryLength: a['max-query-length'], maxPassageLength: a['max-passage-length'], queryPrefix: a['query-prefix'], passagePrefix: a['passage-prefix'],
    });
    if (note) log(`inputs: ${note}`);
    const common = { ...inputs, batchSize: a['batch-size'], seed: a.seed, modelPath: resolve(a.model), log };
    if (a.bench === 'trec') {
      if (!a.topics || !a.qrels || !a.corpus) throw new Error('--bench trec needs --topics, --qrels and --corpus');
      const r = await evaluateTrec(enc, { ...common, topics: a.topics, qrels: a.qrels, corpus: a.corpus, backend: a.backend, depth: a.depth, out });
      log(`nDCG@10 ${r.ndcg10.toFixed(4)}  Recall@100 ${r.recall100.toFixed(4)} over ${r.queries} queries; run file ${r.runFile}; ${join(out, 'result.json')}`);
      return out;
    }
    if (!a.data) throw new Error(`--bench ${a.bench} needs --data DIR (e.g. ${DATA_EXAMPLE[a.bench] ?? '../shared/data/xquad-r'})`);
    const groups: Record<string, string[]> = {};
    if (a['zero-shot'].length) groups['zero-shot'] = a['zero-shot'] as string[];
    if (a['low-resource'].length) groups['low-resource'] = a['low-resource'] as string[];
    if (a.bench === 'tydiqa' || a.bench === 'tatoeba') {
      const langs = a.languages ?? (a.bench === 'tydiqa' ? tydiqaLanguages(a.data) : tatoebaCodes(a.data));
      if (!langs.length) throw new Error(`${a.data}: no ${a.bench === 'tydiqa' ? '<language>_tydiqa_dev.json' : 'tatoeba.xxx-eng.xxx / .eng'} files`);
      const set = a.bench === 'tydiqa' ? tydiqaEvalSet(a.data, langs) : tatoebaEvalSet(a.data, langs);
      const r = await evaluateSet(enc, set, { ...common, groups });
      r.model = { ...r.model, ...modelIdentity(enc) };
      const paths = await writeSetResult(r, out);
      log(`${Object.entries(r.summary).map(([k, v]) => `${k} ${v.toFixed(3)}`).join('  ')} (mean over ${r.languages.length} languages)` +
        Object.entries(r.groups).map(([g, x]) => `; ${g}: ${Object.entries(x.metrics).map(([k, v]) => `${k} ${v.toFixed(3)}`).join(' ')}`).join(''));
      log(`wrote ${paths.json} and ${paths.markdown}`);
      return out;
    }
    const others = otherJsonFiles(a.data);
    if (others.length) log(`note: ${a.data}: ${others.join(', ')} not read (a language's file is named <code>.json, e.g. en.json)`);
    const result = await evaluateLareqa(enc, {
      ...common, dir: a.data, bench: a.bench, languages: a.languages, context: a.context,
      articles: a.articles === 'all' ? undefined : { side: a.articles, testFraction: a['test-fraction'], seed: a['split-seed'] },
    });
    if (result.languages.length < 2) log(`note: one language (${result.languages.join('')}): the cross-lingual metrics and rank distance need two or more, and are NaN`);
    const zeroShot: string[] = a['zero-shot'];
    if (zeroShot.length) groups.seen = result.languages.filter((l) => !zeroShot.includes(l));
    if (Object.keys(groups).length) result.groups = groups;
    result.model = { ...result.model, ...modelIdentity(enc) };
    const paths = await writeReport(result, out, { png: a.png ? true : 'auto' });
    for (const w of paths.warnings) log(`warning: ${w}`);
    const s = result.summary;
    log(`mAP mono ${s.mono.map.toFixed(3)} / cross ${s.cross.map.toFixed(3)} / multi ${s.multi.map.toFixed(3)}; ` +
      `R@1 mono ${s.mono.r1.toFixed(3)} cross ${s.cross.r1.toFixed(3)}; R@10 multi ${s.multi.r10.toFixed(3)}; rank distance ${s.rankDistance.toFixed(1)}`);
    log(`wrote ${paths.json}, ${paths.markdown}, ${paths.heatmapSvg}, ${paths.rankDistanceSvg}${paths.heatmapPng ? ' and PNGs' : ''}`);
    return out;
  } finally {
    enc.dispose();
  }
}

export async function runCompare(files: string[], out: string | undefined): Promise<string> {
  if (files.length < 2) throw new Error('xlir compare needs at least two result.json files (or folders holding one)');
  const paths = files.map((f) => (/\.json$/.test(f) ? f : join(f, 'result.json')));
  const label = (path: string) => basename(resolve(path, '..'));
  // TyDi QA / Tatoeba results (src/eval/set-eval.ts) have their own comparison; LAReQA's reader
  // checks the rest and names what is wrong.
  const sets = paths.map((p) => {
    try {
      const r = JSON.parse(readFileSync(p, 'utf8')) as SetResult;
      return r?.kind === 'xlir-set-eval' ? r : null;
    } catch {
      return null;
    }
  });
  let md: string;
  if (sets.every((r) => r !== null)) {
    md = compareSetResults(paths.map((p, i) => ({ label: label(p), r: sets[i]! })));
  } else {
    const i = sets.findIndex((r) => r !== null);
    if (i >= 0) throw new Error(`${paths[i]} is a ${sets[i]!.bench} result: compare it with results of the same bench`);
    const results = [];
    for (const p of paths) results.push({ label: label(p), result: await readResult(p) });
    md = compareResults(results);
  }
  if (out) await writeFileAtomic(out, md + '\n');
  return md;
}
