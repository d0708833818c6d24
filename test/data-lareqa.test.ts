// The LAReQA reader (src/data/lareqa.ts): the published XQuAD-R candidate and question counts from
// ../shared, answers located by sentence_breaks, article ids shared across languages (also when
// titles are translated), position-based de-duplication, code-point offsets, a seeded article split.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { candidateText, readLareqaDir, readLareqaFile, splitArticles, type LareqaLanguage } from '../src/data/lareqa.ts';

const shared = fileURLToPath(new URL('../../shared', import.meta.url));
const xquad = join(shared, 'data/xquad-r');
const skipShared = existsSync(join(xquad, 'en.json')) ? false : `${xquad} missing: skipped (run with ../shared present, as CI does)`;
const PUBLISHED: Record<string, number> = { ar: 1222, de: 1276, el: 1234, en: 1180, es: 1215, hi: 1244, ru: 1219, th: 852, tr: 1167, vi: 1209, zh: 1196 };

let cache: LareqaLanguage[] | undefined;
const xquadR = () => (cache ??= readLareqaDir(xquad));

test('XQuAD-R: the published candidate counts and 1,190 questions per language', { skip: skipShared }, () => {
  const langs = xquadR();
  assert.deepEqual(
    langs.map((l) => l.lang),
    Object.keys(PUBLISHED),
  );
  assert.deepEqual(Object.fromEntries(langs.map((l) => [l.lang, l.candidates.length])), PUBLISHED);
  for (const l of langs) {
    assert.equal(l.questions.length, 1190, l.lang);
    assert.equal(new Set(l.candidates.map((c) => c.key)).size, l.candidates.length, `${l.lang}: keys unique`);
    assert.deepEqual(l.issues.questionsWithoutAnswerSentence, [], l.lang);
    assert.equal(l.issues.paragraphsWithoutQuestions, 0, l.lang);
    // The tr.json quirk: two breaks whose slices differ from `sentences` (the slices are used).
    assert.equal(l.issues.breaksDifferingFromSentences, l.lang === 'tr' ? 2 : 0, l.lang);
  }
  assert.equal(
    langs.reduce((n, l) => n + l.candidates.length, 0),
    13014,
  );
});

test('XQuAD-R: each answer key is the sentence whose break contains the answer start (checked on the raw JSON)', { skip: skipShared }, () => {
  for (const l of xquadR()) {
    type P = { context: string; sentence_breaks: [number, number][]; qas: { id: string; answers: { answer_start: number; text: string }[] }[] };
    const raw = JSON.parse(readFileSync(l.file, 'utf8')) as { data: { paragraphs: P[] }[] };
    const paragraphs = raw.data.flatMap((a) => a.paragraphs);
    const byId = new Map(l.questions.map((q) => [q.id, q]));
    const keys = new Set(l.candidates.map((c) => c.key));
    paragraphs.forEach((p, pi) => {
      for (const qa of p.qas) {
        const q = byId.get(qa.id)!;
        assert.equal(q.answers.length, 1, `${l.lang} ${qa.id}`);
        const [pk, sk] = q.answers[0].split(':').map(Number);
        assert.equal(pk, pi, `${l.lang} ${qa.id}: paragraph`);
        const [s, e] = p.sentence_breaks[sk];
        assert.ok(s <= qa.answers[0].answer_start && qa.answers[0].answer_start < e, `${l.lang} ${qa.id}: break`);
        assert.ok(keys.has(q.answers[0]));
      }
    });
    const c = l.candidates.find((x) => x.key === l.questions[0].answers[0])!;
    assert.ok(c.context.includes(c.sentence));
  }
  const en = xquadR().find((l) => l.lang === 'en')!;
  const q = en.questions.find((x) => x.id === '56beb4343aeaaa14008c925b')!;
  const c = en.candidates.find((x) => x.key === q.answers[0])!;
  assert.equal(q.text, 'How many points did the Panthers defense surrender?');
  assert.equal(c.sentence, 'The Panthers defense gave up just 308 points, ranking sixth in the league, while also leading the NFL in interceptions with 24 and boasting four Pro Bowl selections.');
  const tr = xquadR().find((l) => l.lang === 'tr')!;
  assert.ok(tr.candidates.some((x) => x.sentence.startsWith('. İki turistik demir yolu')), 'tr: the reference slice, not the sentences entry');
});

test('XQuAD-R: a question has the same article in every language; 48 articles', { skip: skipShared }, () => {
  const langs = xquadR();
  const article = new Map(langs[0].questions.map((q) => [q.id, q.article]));
  assert.equal(new Set(article.values()).size, 48);
  for (const l of langs) {
    for (const q of l.questions) assert.equal(q.article, article.get(q.id), `${l.lang} ${q.id}`);
    const byKey = new Map(l.candidates.map((c) => [c.key, c]));
    for (const q of l.questions) assert.equal(byKey.get(q.answers[0])!.article, q.article);
  }
  assert.equal(langs[3].questions[0].article, 'Super_Bowl_50');
  // A subset gives the same ids.
  const [de] = readLareqaDir(xquad, { languages: ['de'] });
  assert.deepEqual(
    de.questions.map((q) => q.article),
    langs[1].questions.map((q) => q.article),
  );
});

test('readLareqaDir: a missing file or directory and unknown codes are clear errors', () => {
  const dir = mkdtempSync(join(tmpdir(), 'xlir-lareqa-'));
  for (const l of ['en', 'de']) writeSquad(dir, l, [{ title: 'A', paragraphs: [para(['One.'], [qa('q1', 0)])] }]);
  writeFileSync(join(dir, 'notes.json'), '{}'); // not a language code: not read
  assert.deepEqual(
    readLareqaDir(dir).map((l) => l.lang),
    ['de', 'en'],
  );
  assert.throws(() => readLareqaDir(dir, { languages: ['en', 'fr'] }), (e: Error) => e.message === `LAReQA file not found: ${join(dir, 'fr.json')} (languages in ${dir}: de, en)`);
  assert.throws(() => readLareqaDir(dir, { languages: ['english'] }), /unknown language code "english"/);
  assert.throws(() => readLareqaDir(join(dir, 'nope')), /LAReQA directory not found: .*nope/);
  assert.throws(() => readLareqaDir(mkdtempSync(join(tmpdir(), 'xlir-lareqa-'))), /no <lang>\.json files/);
});

// A hand-made SQuAD-style file: sentences given by breaks into the context.
type Q = { id: string; question: string; answers: { answer_start: number; text: string }[] };
function para(sentences: string[], qas: Q[]) {
  const context = sentences.join(' ');
  const breaks: [number, number][] = [];
  let at = 0;
  for (const s of sentences) {
    const n = Array.from(s).length; // code points, as Python counts
    breaks.push([at, at + n]);
    at += n + 1;
  }
  return { context, sentences, sentence_breaks: breaks, qas };
}
const qa = (id: string, start: number): Q => ({ id, question: `question ${id}?`, answers: [{ answer_start: start, text: 'x' }] });
const writeSquad = (dir: string, lang: string, articles: { title: string; paragraphs: unknown[] }[]) => {
  const f = join(dir, `${lang}.json`);
  writeFileSync(f, JSON.stringify({ version: '1.1', data: articles }));
  return f;
};

test('candidates are de-duplicated by position, not text; correct = answer-start sentence (and its repeats in the paragraph)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'xlir-lareqa-'));
  const same = ['Alpha one.', 'Beta two.', 'Gamma three.'];
  const f = writeSquad(dir, 'en', [
    {
      title: 'A',
      paragraphs: [
        para(same, [qa('q1', 12)]), // answer in sentence 1 ('Beta two.' starts at 11)
        para(same, [qa('q2', 0)]), // the same paragraph text again: its own 3 candidates
        para(['Say yes.', 'Other.', 'Say yes.'], [qa('q3', 2)]), // answer sentence text appears twice
        para(['Lonely.', 'Gap follows.'], [qa('q4', 7)]), // start 7 is the space between sentences
      ],
    },
    { title: 'B', paragraphs: [para(['🙂 Emoji first.', 'Then 😀 this.'], [qa('q5', 18)])] },
  ]);
  const l = readLareqaFile(f, 'en');
  assert.deepEqual(
    l.candidates.map((c) => c.key),
    ['0:0', '0:1', '0:2', '1:0', '1:1', '1:2', '2:0', '2:1', '2:2', '4:0', '4:1'],
  );
  assert.deepEqual(
    l.questions.map((q) => [q.id, q.answers]),
    [
      ['q1', ['0:1']],
      ['q2', ['1:0']],
      ['q3', ['2:0', '2:2']],
      ['q5', ['4:1']],
    ],
  );
  assert.deepEqual(l.issues.questionsWithoutAnswerSentence, ['q4']);
  assert.equal(l.issues.paragraphsWithoutQuestions, 1, 'the paragraph whose only question was dropped adds no candidates');
  // Offsets are code points: the emoji (two UTF-16 units) does not shift the slices.
  assert.deepEqual(
    l.candidates.filter((c) => c.paragraph === 4).map((c) => c.sentence),
    ['🙂 Emoji first.', 'Then 😀 this.'],
  );
  assert.equal(l.candidates[0].context, same.join(' '));
  assert.deepEqual(
    [...new Set(l.candidates.map((c) => c.article))],
    ['A', 'B'],
  );
});

test('bad LAReQA input names the file and the place', () => {
  const dir = mkdtempSync(join(tmpdir(), 'xlir-lareqa-'));
  const p = para(['One.', 'Two.'], [qa('q1', 0)]);
  p.sentence_breaks[1] = [5, 99];
  const f = writeSquad(dir, 'de', [{ title: 'A', paragraphs: [p] }]);
  assert.throws(() => readLareqaFile(f, 'de'), new RegExp(`de\\.json: data\\[0\\]\\.paragraphs\\[0\\]\\.sentence_breaks\\[1\\]: \\[5, 99\\] outside the context \\(length 9\\)`));
  const g = writeSquad(dir, 'fr', [{ title: 'A', paragraphs: [para(['One.'], [qa('q1', 0), qa('q1', 1)])] }]);
  assert.throws(() => readLareqaFile(g, 'fr'), /fr\.json: data\[0\]\.paragraphs\[0\]\.qas\[1\]\.id: question id q1 appears twice/);
  const h = join(dir, 'es.json');
  writeFileSync(h, '{"data": [');
  assert.throws(() => readLareqaFile(h, 'es'), /es\.json: not valid JSON/);
  writeFileSync(h, JSON.stringify({ data: [{ title: 'A', paragraphs: [{ context: 'x', qas: [] }] }] }));
  assert.throws(() => readLareqaFile(h, 'es'), /es\.json: data\[0\]\.paragraphs\[0\]\.sentence_breaks: expected an array/);
  assert.throws(() => readLareqaFile(join(dir, 'none.json'), 'es'), /LAReQA file .*none\.json cannot be read/);
});

test('translated titles: articles are linked across languages by question ids', () => {
  const dir = mkdtempSync(join(tmpdir(), 'xlir-lareqa-'));
  writeSquad(dir, 'en', [
    { title: 'Berlin', paragraphs: [para(['Berlin is big.'], [qa('b1', 0), qa('b2', 1)])] },
    { title: 'Rome', paragraphs: [para(['Rome is old.'], [qa('r1', 0)])] },
  ]);
  // de lacks b1 and lists its articles in another order, under translated titles.
  writeSquad(dir, 'de', [
    { title: 'Rom', paragraphs: [para(['Rom ist alt.'], [qa('r1', 0)])] },
    { title: 'Berlin (Stadt)', paragraphs: [para(['Berlin ist groß.'], [qa('b2', 0)])] },
  ]);
  writeSquad(dir, 'es', [{ title: 'Roma', paragraphs: [para(['Roma es antigua.'], [qa('r1', 0)])] }]);
  const all = readLareqaDir(dir);
  assert.deepEqual(
    all.map((l) => l.lang),
    ['de', 'en', 'es'],
  );
  const art = (l: LareqaLanguage) => Object.fromEntries(l.questions.map((q) => [q.id, q.article]));
  assert.deepEqual(art(all[0]), { r1: 'Rome', b2: 'Berlin' });
  assert.deepEqual(art(all[2]), { r1: 'Rome' });
  assert.deepEqual(
    all[0].candidates.map((c) => c.article),
    ['Rome', 'Berlin'],
  );
  // Asking for one language still links through the others.
  assert.deepEqual(art(readLareqaDir(dir, { languages: ['es'] })[0]), { r1: 'Rome' });
});

test('splitArticles: disjoint, complete, sized by the fraction, deterministic for a seed', () => {
  const articles = Array.from({ length: 48 }, (_, i) => `article_${i}`);
  const a = splitArticles(articles, { testFraction: 0.25, seed: 7 });
  assert.equal(a.test.size, 12);
  assert.equal(a.train.size, 36);
  assert.ok([...a.test].every((x) => !a.train.has(x)));
  assert.deepEqual(new Set([...a.train, ...a.test]), new Set(articles));
  // Same seed: same split, whatever the order or repetition of the input.
  const b = splitArticles([...articles].reverse().concat(articles), { testFraction: 0.25, seed: 7 });
  assert.deepEqual([...b.test].sort(), [...a.test].sort());
  const c = splitArticles(articles, { testFraction: 0.25, seed: 8 });
  assert.notDeepEqual([...c.test].sort(), [...a.test].sort());
  // Not simply the first or last articles.
  assert.notDeepEqual([...a.test].sort(), articles.slice(0, 12).sort());
  assert.equal(splitArticles(articles, { testFraction: 0, seed: 1 }).test.size, 0);
  assert.equal(splitArticles(articles, { testFraction: 1, seed: 1 }).train.size, 0);
  assert.throws(() => splitArticles(articles, { testFraction: 1.5, seed: 1 }), /testFraction must be in \[0, 1\]/);
  assert.throws(() => splitArticles(articles, { testFraction: Number.NaN, seed: 1 }), /testFraction/);
});

test('candidateText: sentence first, then its paragraph; or the sentence alone', () => {
  const c = { key: '0:1', sentence: 'Beta two.', context: 'Alpha one. Beta two.', article: 'A', paragraph: 0 };
  assert.equal(candidateText(c, 'paragraph'), 'Beta two. Alpha one. Beta two.');
  assert.equal(candidateText(c, 'none'), 'Beta two.');
  assert.throws(() => candidateText(c, 'both' as never), /context must be 'paragraph' or 'none'/);
});
