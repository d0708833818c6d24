// XQuAD-R / MLQA-R (src/data/lareqa.ts) -> training records (src/data/FORMAT.md): for each question
// and language, query = the question, positive = its answer sentence as the evaluation encodes it
// (candidateText), group = the question id, so the translations of a question form one parallel
// group. A `split` keeps only the train or the test articles of splitArticles, computed over every
// article of the directory, so a train file and a test file made with the same split share no
// article whatever their languages.
import { basename, dirname, join, resolve } from 'node:path';
import { writeJsonl, type TrainingRecord } from './format.ts';
import { isKnownLanguage } from './languages.ts';
import { candidateText, readLareqaDir, splitArticles, type LareqaCandidate, type LareqaLanguage } from './lareqa.ts';
import { ReportBuilder, type ConvertReport } from './report.ts';

export interface ConvertLareqaOptions {
  /** Languages to write (default: every <lang>.json of the directory). */
  languages?: string[];
  /** The candidate text of the positive (default 'paragraph', as the evaluation encodes candidates). */
  context?: 'paragraph' | 'none';
  /** Keep only one side of an article split. */
  split?: { keep: 'train' | 'test'; testFraction: number; seed: number };
  /** `dataset` of every record (default: the directory's name, e.g. 'xquad-r'). */
  dataset?: string;
  /**
   * Hard negatives per record: the first k sentences of the answer's paragraph that are not
   * correct answers, as candidate texts (default 0). They are the pool's hardest distractors.
   */
  hardNegatives?: number;
  /** Example locations per skip reason (default 5). */
  maxExamples?: number;
}

export function convertLareqa(dir: string, opts: ConvertLareqaOptions = {}): { records: TrainingRecord[]; report: ConvertReport } {
  // Every language is read: the split and the article ids must not depend on the subset written.
  return lareqaRecords(readLareqaDir(dir), { ...opts, dataset: opts.dataset ?? basename(resolve(dir)) });
}

/**
 * convertLareqa on data already read: `all` is readLareqaDir(dir) of the whole directory (the split
 * is computed over all its articles), `opts.languages` picks the languages written.
 */
export function lareqaRecords(all: LareqaLanguage[], opts: ConvertLareqaOptions & { dataset: string }): { records: TrainingRecord[]; report: ConvertReport } {
  const context = opts.context ?? 'paragraph';
  if (context !== 'paragraph' && context !== 'none') throw new Error(`convertLareqa: context must be 'paragraph' or 'none', got ${JSON.stringify(context)}`);
  const k = opts.hardNegatives ?? 0;
  if (!Number.isSafeInteger(k) || k < 0) throw new Error(`convertLareqa: hardNegatives must be an integer >= 0, got ${k}`);
  for (const l of opts.languages ?? []) if (!isKnownLanguage(l)) throw new Error(`convertLareqa: unknown language code ${JSON.stringify(l)}`);
  if (opts.split && opts.split.keep !== 'train' && opts.split.keep !== 'test')
    throw new Error(`convertLareqa: split.keep must be 'train' or 'test', got ${JSON.stringify(opts.split.keep)}`);
  const dataset = opts.dataset;
  const langs = (opts.languages ?? all.map((l) => l.lang)).map((code) => {
    const l = all.find((x) => x.lang === code);
    if (!l) throw new Error(`LAReQA file not found: ${join(all.length ? dirname(all[0].file) : '.', `${code}.json`)} (languages read: ${all.map((x) => x.lang).join(', ')})`);
    return l;
  });
  const b = new ReportBuilder(langs.map((l) => l.file), opts.maxExamples);
  let keepArticle = (_: string) => true;
  if (opts.split) {
    const s = splitArticles(all.flatMap((l) => l.questions.map((q) => q.article)), opts.split);
    const side = s[opts.split.keep];
    keepArticle = (a) => side.has(a);
    b.report.notes.push(`split (testFraction ${opts.split.testFraction}, seed ${opts.split.seed}): kept the ${side.size} ${opts.split.keep} article(s) of ${s.train.size + s.test.size}`);
  }
  b.report.notes.push(`positive = answer sentence${context === 'paragraph' ? ' + " " + its paragraph' : ''}${k ? `; up to ${k} hard negative(s) from the same paragraph` : ''}`);

  const records: TrainingRecord[] = [];
  for (const l of langs) {
    for (const q of l.issues.questionsWithoutAnswerSentence) b.skip('no_answer_sentence', `${l.file}: question ${q}`, 'no sentence contains its answer start');
    const byKey = new Map(l.candidates.map((c) => [c.key, c]));
    const byParagraph = new Map<number, LareqaCandidate[]>();
    for (const c of l.candidates) {
      const p = byParagraph.get(c.paragraph);
      if (p) p.push(c);
      else byParagraph.set(c.paragraph, [c]);
    }
    for (const q of l.questions) {
      if (!keepArticle(q.article)) continue;
      const where = `${l.file}: question ${q.id}`;
      // Several correct sentences (MLQA-R-style multiple answers, or a repeated sentence) would make
      // several records of one group and language, which the reader drops as conflicting; the
      // first is the positive, the others are never used as negatives.
      if (q.answers.length > 1) b.skip('extra_answer_sentences', where, `${q.answers.length} correct sentences; the first is the positive`, q.answers.length - 1);
      const answer = byKey.get(q.answers[0])!;
      const record: TrainingRecord = { group: q.id, lang: l.lang, dataset, query: q.text, positive: candidateText(answer, context) };
      if (k > 0) {
        const correct = new Set(q.answers);
        const negs = byParagraph.get(answer.paragraph)!.filter((c) => !correct.has(c.key)).slice(0, k);
        if (negs.length) record.negatives = negs.map((c) => candidateText(c, context));
      }
      const kept = b.keep(record, where);
      if (kept) records.push(kept);
    }
  }
  return { records, report: b.report };
}

/** Entry point for a CLI: converts and writes `out` (JSONL, atomically); returns the report. */
export async function convertLareqaToFile(dir: string, out: string, opts: ConvertLareqaOptions = {}): Promise<ConvertReport> {
  const { records, report } = convertLareqa(dir, opts);
  await writeJsonl(out, records);
  return report;
}
