// LAReQA's retrieval versions of SQuAD-style QA sets (XQuAD-R, MLQA-R): one <lang>.json per language,
// SQuAD v1.1 JSON whose paragraphs also carry `sentences` and `sentence_breaks`.
//
// Candidates and correct answers are built exactly as the reference evaluation does
// (google-research/xtreme, third_party/utils_lareqa.py, load_data + generate_examples):
// - a candidate is a sentence `context[start:end]` for each [start, end] of `sentence_breaks`
//   (offsets in Unicode code points, as Python indexes strings); its identity is (paragraph
//   position in the file, sentence position). So "de-duplicated" means by position: the same text
//   at two positions is two candidates. This is what makes the published counts come out: by
//   text, ar would have 1220 candidates, hi 1243, ru 1218, tr 1166, zh 1192 (repeated sentences
//   such as "[citation needed]" and "德"), not 1222, 1244, 1219, 1167, 1196.
// - the sentence text is the context slice, not the `sentences` entry: they differ in one tr.json
//   paragraph whose breaks are off by one character after a mis-encoded character; the reference
//   encodes the slices, so do we (`issues.breaksDifferingFromSentences` counts such breaks).
// - a question's answer sentence is the first break with start <= answer_start < end; every
//   sentence of that paragraph with the same text is correct (the reference compares text). A
//   question whose answer start lies in no sentence is dropped (the reference skips it too).
// - a paragraph adds its sentences to the pool only if at least one of its questions was kept
//   (the reference adds candidates while walking the questions). In XQuAD-R every paragraph has one.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { isKnownLanguage } from './languages.ts';

export interface LareqaCandidate {
  /** `${paragraphIndex}:${sentenceIndex}`, both 0-based, the paragraph counted over the whole file. */
  key: string;
  sentence: string;
  /** The paragraph. */
  context: string;
  /** Article id, the same across languages (see readLareqaDir). */
  article: string;
  /** Paragraph position in the file (the first half of `key`). */
  paragraph: number;
}

export interface LareqaQuestion {
  /** The SQuAD question id, shared by the translations of a question. */
  id: string;
  text: string;
  article: string;
  /** Keys of the candidates containing an answer start (one in XQuAD-R). */
  answers: string[];
}

export interface LareqaLanguage {
  lang: string;
  file: string;
  candidates: LareqaCandidate[];
  questions: LareqaQuestion[];
  /** What the reference evaluation also leaves out or works around; counted, never silent. */
  issues: {
    /** Ids of questions dropped because an answer start lies in no sentence. */
    questionsWithoutAnswerSentence: string[];
    /** Paragraphs that add no candidates because none of their questions was kept. */
    paragraphsWithoutQuestions: number;
    /** Breaks whose context slice differs from the paragraph's `sentences` entry (the slice is used). */
    breaksDifferingFromSentences: number;
  };
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Reads one language file. `article` is the article's title here; readLareqaDir makes it cross-lingual. */
export function readLareqaFile(file: string, lang: string): LareqaLanguage {
  if (!isKnownLanguage(lang)) throw new Error(`readLareqaFile ${file}: unknown language code ${JSON.stringify(lang)}`);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`LAReQA file ${file} cannot be read: ${(e as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message})`);
  }
  const fail = (where: string, what: string): never => {
    throw new Error(`${file}: ${where}: ${what}`);
  };
  const list = (v: unknown, where: string): unknown[] => (Array.isArray(v) ? v : fail(where, 'expected an array'));
  const str = (v: unknown, where: string): string => (typeof v === 'string' ? v : fail(where, 'expected a string'));
  const int = (v: unknown, where: string): number => (Number.isSafeInteger(v) && (v as number) >= 0 ? (v as number) : fail(where, 'expected an integer >= 0'));
  const obj = (v: unknown, where: string): Record<string, unknown> => (isObject(v) ? v : fail(where, 'expected an object'));

  const out: LareqaLanguage = {
    lang,
    file,
    candidates: [],
    questions: [],
    issues: { questionsWithoutAnswerSentence: [], paragraphsWithoutQuestions: 0, breaksDifferingFromSentences: 0 },
  };
  const ids = new Set<string>();
  let paragraphIndex = 0;
  list(obj(json, 'top level').data, 'data').forEach((a, ai) => {
    const article = obj(a, `data[${ai}]`);
    const title = str(article.title, `data[${ai}].title`);
    list(article.paragraphs, `data[${ai}].paragraphs`).forEach((p, pi) => {
      const at = `data[${ai}].paragraphs[${pi}]`;
      const para = obj(p, at);
      const context = str(para.context, `${at}.context`);
      // Offsets count code points; a UTF-16 slice is the same unless the text has astral characters.
      const points = /[\uD800-\uDFFF]/.test(context) ? Array.from(context) : null;
      const length = points ? points.length : context.length;
      const breaks = list(para.sentence_breaks, `${at}.sentence_breaks`).map((b, bi) => {
        const w = `${at}.sentence_breaks[${bi}]`;
        const pair = list(b, w);
        if (pair.length !== 2) fail(w, 'expected [start, end]');
        const start = int(pair[0], w);
        const end = int(pair[1], w);
        if (start > end || end > length) fail(w, `[${start}, ${end}] outside the context (length ${length})`);
        return [start, end] as const;
      });
      const sentences = breaks.map(([s, e]) => (points ? points.slice(s, e).join('') : context.slice(s, e)));
      const given = para.sentences === undefined ? null : list(para.sentences, `${at}.sentences`);
      sentences.forEach((s, i) => {
        if (given && given[i] !== s) out.issues.breaksDifferingFromSentences++;
      });
      const key = (i: number) => `${paragraphIndex}:${i}`;
      let kept = 0;
      list(para.qas, `${at}.qas`).forEach((q, qi) => {
        const wq = `${at}.qas[${qi}]`;
        const qa = obj(q, wq);
        const id = str(qa.id, `${wq}.id`);
        if (ids.has(id)) fail(`${wq}.id`, `question id ${id} appears twice`);
        ids.add(id);
        const answers = new Set<string>();
        let missing = false;
        list(qa.answers, `${wq}.answers`).forEach((x, xi) => {
          const start = int(obj(x, `${wq}.answers[${xi}]`).answer_start, `${wq}.answers[${xi}].answer_start`);
          const hit = breaks.findIndex(([s, e]) => s <= start && start < e);
          if (hit < 0) return void (missing = true);
          sentences.forEach((s, i) => {
            if (s === sentences[hit]) answers.add(key(i));
          });
        });
        // The reference has one answer per question and drops the question when it is in no
        // sentence; with several answers, one outside every sentence drops the question too.
        if (missing || answers.size === 0) {
          out.issues.questionsWithoutAnswerSentence.push(id);
          return;
        }
        kept++;
        out.questions.push({ id, text: str(qa.question, `${wq}.question`), article: title, answers: [...answers] });
      });
      if (kept > 0) sentences.forEach((sentence, i) => out.candidates.push({ key: key(i), sentence, context, article: title, paragraph: paragraphIndex }));
      else out.issues.paragraphsWithoutQuestions++;
      paragraphIndex++;
    });
  });
  return out;
}

/**
 * Reads <lang>.json of `opts.languages` (default: every <code>.json in `dir` whose name is a known
 * language code; other files are not read), in the order given.
 *
 * Article ids: XQuAD-R keeps the English SQuAD titles in every language, MLQA-R translates them
 * (and a language holds only some of an article's questions). So articles are linked across
 * languages through the question ids they share, reading every language file of the directory
 * (not only the requested ones, so ids do not depend on the subset asked for). A linked set whose
 * titles all agree keeps that title; otherwise it takes its English title, or failing that
 * `${lang}:${title}` of its first language in alphabetical order.
 */
/** The .json files of `dir` that are not named <language code>.json, which readLareqaDir leaves out. */
export function otherJsonFiles(dir: string): string[] {
  return readdirSync(dir).filter((f) => f.endsWith('.json') && !isKnownLanguage(f.slice(0, -5))).sort();
}

export function readLareqaDir(dir: string, opts: { languages?: string[] } = {}): LareqaLanguage[] {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new Error(`LAReQA directory not found: ${dir}`);
  const present = readdirSync(dir)
    .filter((f) => f.endsWith('.json') && isKnownLanguage(f.slice(0, -5)))
    .map((f) => f.slice(0, -5))
    .sort();
  const wanted = opts.languages ?? present;
  if (wanted.length === 0) throw new Error(`${dir}: no <lang>.json files (expected e.g. en.json, de.json)`);
  for (const l of wanted) {
    if (!isKnownLanguage(l)) throw new Error(`readLareqaDir: unknown language code ${JSON.stringify(l)}`);
    if (!present.includes(l))
      throw new Error(`LAReQA file not found: ${join(dir, `${l}.json`)} (languages in ${dir}: ${present.join(', ') || 'none'})`);
  }
  if (new Set(wanted).size !== wanted.length) throw new Error(`readLareqaDir: a language is listed twice: ${wanted.join(', ')}`);
  const all = new Map(present.map((l) => [l, readLareqaFile(join(dir, `${l}.json`), l)]));
  linkArticles([...all.values()]);
  return wanted.map((l) => all.get(l)!);
}

/** Gives articles that share a question id one id across languages (see readLareqaDir). */
function linkArticles(langs: LareqaLanguage[]): void {
  // Plain union-find over nodes "lang\0title".
  const up = new Map<string, string>();
  const root = (x: string): string => {
    while (up.get(x) !== x) {
      const p = up.get(x)!;
      up.set(x, up.get(p)!);
      x = p;
    }
    return x;
  };
  const node = (l: LareqaLanguage, title: string) => {
    const n = `${l.lang}\0${title}`;
    if (!up.has(n)) up.set(n, n);
    return n;
  };
  const byQuestion = new Map<string, string>();
  for (const l of langs)
    for (const q of l.questions) {
      const n = node(l, q.article);
      const other = byQuestion.get(q.id);
      if (other === undefined) byQuestion.set(q.id, n);
      else up.set(root(n), root(other));
    }
  for (const l of langs) for (const c of l.candidates) node(l, c.article);
  const members = new Map<string, string[]>();
  for (const n of up.keys()) {
    const r = root(n);
    const m = members.get(r);
    if (m) m.push(n);
    else members.set(r, [n]);
  }
  const id = new Map<string, string>();
  for (const m of members.values()) {
    const parts = m.map((n) => n.split('\0') as [string, string]).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : 1));
    const titles = new Set(parts.map((p) => p[1]));
    const en = parts.find((p) => p[0] === 'en');
    const name = titles.size === 1 ? parts[0][1] : en ? en[1] : `${parts[0][0]}:${parts[0][1]}`;
    for (const n of m) id.set(n, name);
  }
  for (const l of langs) {
    for (const q of l.questions) q.article = id.get(`${l.lang}\0${q.article}`)!;
    for (const c of l.candidates) c.article = id.get(`${l.lang}\0${c.article}`)!;
  }
}

/**
 * Splits articles into train and test: the articles (de-duplicated) are ordered by
 * sha256(seed, article) and the first round(testFraction * n) are test. Deterministic for a seed,
 * independent of the input order.
 */
export function splitArticles(articles: string[], opts: { testFraction: number; seed: number }): { train: Set<string>; test: Set<string> } {
  const { testFraction, seed } = opts;
  if (!(testFraction >= 0 && testFraction <= 1)) throw new Error(`splitArticles: testFraction must be in [0, 1], got ${testFraction}`);
  if (!Number.isFinite(seed)) throw new Error(`splitArticles: seed must be a finite number, got ${seed}`);
  const hash = (a: string) => createHash('sha256').update(`${seed}\0${a}`).digest('hex');
  const order = [...new Set(articles)].map((a) => [hash(a), a] as const).sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));
  const nTest = Math.round(testFraction * order.length);
  return { test: new Set(order.slice(0, nTest).map((x) => x[1])), train: new Set(order.slice(nTest).map((x) => x[1])) };
}

/**
 * The text a single-input encoder sees for a candidate. LAReQA's response encoder takes two inputs,
 * (sentence, context); ours takes one text, so 'paragraph' gives the sentence, a space, then its
 * paragraph (sentence first, so that truncation to the model's length cuts the context, never the
 * sentence); 'none' gives the sentence alone.
 */
export function candidateText(c: LareqaCandidate, context: 'paragraph' | 'none'): string {
  if (context === 'none') return c.sentence;
  if (context === 'paragraph') return `${c.sentence} ${c.context}`;
  throw new Error(`candidateText: context must be 'paragraph' or 'none', got ${JSON.stringify(context)}`);
}
