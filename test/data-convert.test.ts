// The converters into the training format: XQuAD-R (parallel groups, article split), TyDi QA GoldP
// (monolingual, gold passage) and line-aligned bitext (Tatoeba), on the real files of ../shared and
// on tiny hand-made files; their output read back by readTrainingData without a skip.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { convertBitext, convertBitextToFile, resolveTatoebaCode, tatoebaPairFiles } from '../src/data/convert-bitext.ts';
import { convertLareqa, convertLareqaToFile, lareqaRecords } from '../src/data/convert-lareqa.ts';
import { convertTydiqa, convertTydiqaToFile, tydiqaLanguageOfFile } from '../src/data/convert-tydiqa.ts';
import { readTrainingData, writeJsonl, type TrainingRecord } from '../src/data/format.ts';
import { readLareqaDir, type LareqaLanguage } from '../src/data/lareqa.ts';
import { formatConvertReport } from '../src/data/report.ts';

const shared = fileURLToPath(new URL('../../shared', import.meta.url));
const xquad = join(shared, 'data/xquad-r');
const tydi = join(shared, 'data/tydiqa-goldp');
const tatoeba = join(shared, 'data/tatoeba-laser');
const skipShared = existsSync(join(xquad, 'en.json')) ? false : `${shared} missing: skipped (run with ../shared present, as CI does)`;
const tmp = () => mkdtempSync(join(tmpdir(), 'xlir-conv-'));
let cache: LareqaLanguage[] | undefined;
const xquadR = () => (cache ??= readLareqaDir(xquad)); // read once: the checks below convert it several times

const groupsOf = (records: TrainingRecord[]) => {
  const m = new Map<string, TrainingRecord[]>();
  for (const r of records) m.set(r.group, [...(m.get(r.group) ?? []), r]);
  return m;
};

test('XQuAD-R -> 11-way parallel groups; written out, it reads back without a skip', { skip: skipShared }, async () => {
  const { records, report } = lareqaRecords(xquadR(), { dataset: 'xquad-r' });
  assert.equal(report.kept, 11 * 1190);
  assert.equal(records.length, 11 * 1190);
  assert.equal(report.skippedTotal, 0);
  assert.equal(report.byLanguage.th, 1190);
  // Three languages (about 6 MB) are enough to check that the reader accepts what the converter writes.
  const out = join(tmp(), 'xquad.jsonl');
  const some = records.filter((r) => r.lang === 'ar' || r.lang === 'de' || r.lang === 'th');
  await writeJsonl(out, some);
  const back = await readTrainingData([out]);
  assert.equal(back.report.skippedTotal, 0, JSON.stringify(back.report.skipped));
  assert.deepEqual(back.records, some);
  const groups = groupsOf(records);
  assert.equal(groups.size, 1190);
  for (const g of groups.values()) assert.equal(new Set(g.map((r) => r.lang)).size, 11);
  const de = groups.get('56beb4343aeaaa14008c925b')!.find((r) => r.lang === 'de')!;
  assert.equal(de.dataset, 'xquad-r');
  assert.equal(de.query, 'Wie viele Punkte gab die Verteidigung der Panthers ab?');
  // positive = answer sentence, a space, the paragraph (here the sentence also starts the paragraph).
  const deLang = xquadR().find((l) => l.lang === 'de')!;
  const c = deLang.candidates.find((x) => x.key === deLang.questions.find((q) => q.id === de.group)!.answers[0])!;
  assert.equal(de.positive, `${c.sentence} ${c.context}`);
  assert.match(de.positive, /^Die Verteidigung der Panthers gab nur 308 Punkte ab[^]*\. Die Verteidigung der Panthers gab nur 308 Punkte ab/);
  assert.equal(de.negatives, undefined);
});

test('XQuAD-R: train and test article splits share no article and no question, and do not depend on the languages', { skip: skipShared }, () => {
  const split = { testFraction: 0.2, seed: 13 };
  const convert = (o: Parameters<typeof convertLareqa>[1]) => lareqaRecords(xquadR(), { dataset: 'xquad-r', ...o });
  const train = convert({ split: { ...split, keep: 'train' }, context: 'none' });
  const test_ = convert({ split: { ...split, keep: 'test' }, context: 'none' });
  assert.equal(train.records.length + test_.records.length, 11 * 1190);
  assert.ok(test_.records.length > 0 && train.records.length > test_.records.length);
  const en = xquadR().find((l) => l.lang === 'en')!;
  const articleOf = new Map(en.questions.map((q) => [q.id, q.article]));
  const trainArticles = new Set(train.records.map((r) => articleOf.get(r.group)));
  const testArticles = new Set(test_.records.map((r) => articleOf.get(r.group)));
  assert.equal(testArticles.size, Math.round(0.2 * 48));
  assert.equal(trainArticles.size + testArticles.size, 48);
  assert.ok([...testArticles].every((a) => !trainArticles.has(a)));
  const trainGroups = new Set(train.records.map((r) => r.group));
  assert.ok(test_.records.every((r) => !trainGroups.has(r.group)));
  assert.match(train.report.notes.join('\n'), /kept the 38 train article\(s\) of 48/);
  // 'none': the positive is the answer sentence alone.
  const q = en.questions[0];
  const rec = [...train.records, ...test_.records].find((r) => r.group === q.id && r.lang === 'en')!;
  assert.equal(rec.positive, en.candidates.find((c) => c.key === q.answers[0])!.sentence);
  // A language subset (zero-shot languages left out) keeps exactly the same test questions.
  const sub = convert({ split: { ...split, keep: 'test' }, languages: ['de', 'ar'] });
  assert.deepEqual(Object.keys(sub.report.byLanguage), ['de', 'ar']);
  assert.deepEqual(new Set(sub.records.map((r) => r.group)), new Set(test_.records.map((r) => r.group)));
  // Same options, same output.
  assert.deepEqual(convert({ split: { ...split, keep: 'test' }, context: 'none' }).records, test_.records);
  assert.throws(() => convert({ languages: ['fr'] }), (e: Error) => e.message.startsWith(`LAReQA file not found: ${join(xquad, 'fr.json')}`));
  assert.throws(() => convert({ languages: ['french'] }), /unknown language code "french"/);
});

test('LAReQA converter on a hand-made directory: hard negatives, skipped questions and empty text are counted', async () => {
  const dir = tmp();
  const p = (sentences: string[], qas: unknown[]) => {
    const breaks: number[][] = [];
    let at = 0;
    for (const s of sentences) {
      breaks.push([at, at + s.length]);
      at += s.length + 1;
    }
    return { context: sentences.join(' '), sentence_breaks: breaks, qas };
  };
  const q = (id: string, question: string, start: number) => ({ id, question, answers: [{ answer_start: start, text: 'x' }] });
  const en = [{ title: 'T', paragraphs: [p(['Aa.', 'Bb.', 'Cc.', 'Dd.'], [q('q1', 'Which?', 4), q('q2', '  ', 0), q('q3', 'Where?', 3)])] }];
  const de = [{ title: 'T', paragraphs: [p(['Xx.', 'Yy.'], [q('q1', 'Welche?', 0), q('q2', 'Wo?', 4)])] }];
  writeFileSync(join(dir, 'en.json'), JSON.stringify({ data: en }));
  writeFileSync(join(dir, 'de.json'), JSON.stringify({ data: de }));
  const out = join(tmp(), 'tiny.jsonl');
  const report = await convertLareqaToFile(dir, out, { hardNegatives: 2, context: 'none', dataset: 'tiny' });
  const { records } = await readTrainingData([out]);
  assert.deepEqual(
    records.map((r) => [r.lang, r.group, r.query, r.positive, r.negatives]),
    [
      ['de', 'q1', 'Welche?', 'Xx.', ['Yy.']],
      ['de', 'q2', 'Wo?', 'Yy.', ['Xx.']],
      ['en', 'q1', 'Which?', 'Bb.', ['Aa.', 'Cc.']],
    ],
  );
  assert.ok(records.every((r) => r.dataset === 'tiny'));
  assert.equal(report.skippedTotal, 2);
  assert.deepEqual(report.skipped.no_answer_sentence, { count: 1, examples: [`${join(dir, 'en.json')}: question q3: no sentence contains its answer start`] });
  assert.deepEqual(report.skipped.empty_text, { count: 1, examples: [`${join(dir, 'en.json')}: question q2: \`query\` is empty`] });
  assert.match(formatConvertReport(report), /kept 3 record\(s\) \(de 2, en 1\)[^]*skipped 2:[^]*empty_text: 1/);
  assert.throws(() => convertLareqa(dir, { hardNegatives: -1 }), /hardNegatives must be an integer >= 0/);
});

test('TyDi QA GoldP -> one monolingual group per question, positive = the gold passage', { skip: skipShared }, async () => {
  const file = join(tydi, 'swahili_tydiqa_dev.json');
  const out = join(tmp(), 'tydi.jsonl');
  const report = await convertTydiqaToFile(file, out);
  assert.equal(report.kept, 499);
  assert.equal(report.skippedTotal, 0);
  assert.deepEqual(report.byLanguage, { sw: 499 });
  const back = await readTrainingData([out]);
  assert.equal(back.records.length, 499);
  assert.equal(back.report.skippedTotal, 0);
  // 499 questions over 357 distinct passages: shared positives are warned about, not dropped.
  assert.ok(back.report.warnings.shared_positive.count > 0);
  const first = back.records.find((r) => r.group === 'swahili--8211684794284159625-4')!;
  assert.equal(first.query, 'Je,Thiago Silva alianza kucheza soka mwaka upi?');
  assert.ok(first.positive.startsWith('Kama kijana, Silva aliingizwa'));
  assert.equal(first.positive.slice(365, 369), '1999');
  assert.equal(first.dataset, 'tydiqa-goldp');
  assert.equal(tydiqaLanguageOfFile('/x/telugu_tydiqa_dev.json'), 'te');
  assert.equal(tydiqaLanguageOfFile('/x/english_tydiqa_train.json'), 'en');
  assert.equal(tydiqaLanguageOfFile('/x/klingon_tydiqa_dev.json'), null);
});

test('TyDi QA converter on hand-made files: language from name or option, mismatches and bad questions counted', () => {
  const dir = tmp();
  const entry = (id: unknown, question: unknown, context: unknown, answers: unknown[] = [{ text: 'a', answer_start: 0 }]) => ({
    title: 't',
    paragraphs: [{ context, qas: [{ id, question, answers }] }],
  });
  const f = join(dir, 'bengali_tydiqa_dev.json');
  writeFileSync(
    f,
    JSON.stringify({
      data: [
        entry('bengali--1-1', 'প্রশ্ন?', 'a passage'),
        entry('bengali--1-1', 'প্রশ্ন?', 'a passage'), // duplicate id
        entry('english--2-1', 'q?', 'p'), // another language's id
        entry('bengali--3-1', 'প্রশ্ন?', 'p', []), // no answer
        entry('bengali--4-1', '', 'p'), // empty question
        entry('bengali--5-1', 'প্রশ্ন?', null), // no passage
      ],
    }),
  );
  const { records, report } = convertTydiqa(f);
  assert.deepEqual(records, [{ group: 'bengali--1-1', lang: 'bn', dataset: 'tydiqa-goldp', query: 'প্রশ্ন?', positive: 'a passage' }]);
  const counts = Object.fromEntries(Object.entries(report.skipped).map(([k, v]) => [k, v.count]));
  assert.deepEqual(counts, { duplicate_question: 1, language_mismatch: 1, no_answer: 1, empty_text: 1, missing_field: 1 });
  assert.equal(report.skipped.language_mismatch.examples[0], `${f}: question english--2-1: id names en, file is bn`);
  assert.equal(report.skipped.missing_field.examples[0], `${f}: question bengali--5-1: no \`positive\``);
  const g = join(dir, 'questions.json');
  writeFileSync(g, JSON.stringify({ data: [entry('x-1', 'q?', 'p')] }));
  assert.throws(() => convertTydiqa(g), /questions\.json: cannot tell the language from the file name .*give it with --lang/);
  assert.equal(convertTydiqa(g, { lang: 'yo', dataset: 'mine' }).records[0].lang, 'yo');
  assert.throws(() => convertTydiqa(g, { lang: 'yoruba' }), /unknown language code "yoruba"/);
  writeFileSync(g, JSON.stringify({ data: [{ title: 't', paragraphs: {} }] }));
  assert.throws(() => convertTydiqa(g, { lang: 'yo' }), /questions\.json: data\[0\]\.paragraphs: expected an array/);
});

test('Tatoeba bitext -> two-member groups per line, ISO 639-1 codes, per-pair dataset', { skip: skipShared }, async () => {
  const [sw, en] = tatoebaPairFiles(tatoeba, 'swh');
  const out = join(tmp(), 'bitext.jsonl');
  const report = await convertBitextToFile(sw, en, out);
  assert.equal(report.kept, 2 * 390);
  assert.deepEqual(report.byLanguage, { sw: 390, en: 390 });
  const back = await readTrainingData([out]);
  assert.equal(back.bitext.length, 780);
  assert.equal(back.report.skippedTotal, 0);
  assert.deepEqual(back.bitext.slice(0, 2), [
    { group: 'tatoeba.swh-eng:1', lang: 'sw', dataset: 'tatoeba.swh-eng', text: 'Alinileta kahawa.' },
    { group: 'tatoeba.swh-eng:1', lang: 'en', dataset: 'tatoeba.swh-eng', text: 'He brought me coffee.' },
  ]);
  // Two pairs under one dataset name still keep their groups apart (the English sides differ).
  const [de, en2] = tatoebaPairFiles(tatoeba, 'deu');
  const a = convertBitext(sw, en, { dataset: 'tatoeba' }).records;
  const b = convertBitext(de, en2, { dataset: 'tatoeba' }).records;
  assert.equal(b[0].group, 'tatoeba.deu-eng:1');
  assert.equal(b[0].lang, 'de');
  const out2 = join(tmp(), 'two.jsonl');
  await writeJsonl(out2, [...a, ...b]);
  const both = await readTrainingData([out2]);
  assert.equal(both.report.skippedTotal, 0);
  assert.equal(both.bitext.length, 780 + 2000);
  assert.equal(convertBitext(sw, en, { canonicalLanguages: false }).records[0].lang, 'swh');
  // A pair is found by its own code or by the language's (convert bitext --code, eval --languages).
  assert.equal(resolveTatoebaCode(tatoeba, 'swh'), 'swh');
  assert.equal(resolveTatoebaCode(tatoeba, 'sw'), 'swh');
  assert.equal(resolveTatoebaCode(tatoeba, 'el'), 'ell');
  assert.throws(() => resolveTatoebaCode(tatoeba, 'qq'), /no pair for qq in .*\(it has 112: afr amh/);
});

test('bitext on hand-made files: a line-count mismatch names both files; empty lines drop the pair, counted', () => {
  const dir = tmp();
  const a = join(dir, 'corpus.de');
  const b = join(dir, 'corpus.en');
  writeFileSync(a, 'Hallo.\r\n\nDanke.\nBitte.\n');
  writeFileSync(b, 'Hello.\r\nThere.\nThanks.\n   \n');
  const { records, report } = convertBitext(a, b);
  assert.deepEqual(records, [
    { group: 'corpus:1', lang: 'de', dataset: 'corpus', text: 'Hallo.' },
    { group: 'corpus:1', lang: 'en', dataset: 'corpus', text: 'Hello.' },
    { group: 'corpus:3', lang: 'de', dataset: 'corpus', text: 'Danke.' },
    { group: 'corpus:3', lang: 'en', dataset: 'corpus', text: 'Thanks.' },
  ]);
  assert.deepEqual(report.skipped.empty_text, { count: 4, examples: [`${a}:2: empty line; the pair is dropped`, `${b}:4: empty line; the pair is dropped`] });
  const c = join(dir, 'short.en');
  writeFileSync(c, 'One.\nTwo.\n');
  assert.throws(
    () => convertBitext(a, c),
    (e: Error) => e.message === `bitext line counts differ: ${a} has 4 lines, ${c} has 2`,
  );
  const d = join(dir, 'corpus.txt');
  writeFileSync(d, 'x\ny\nz\nw\n');
  assert.throws(() => convertBitext(a, d), /cannot tell the language of .*corpus\.txt from its extension; give it with --lang-b/);
  assert.equal(convertBitext(a, d, { langB: 'fr', groupPrefix: 'p' }).records[1].group, 'p:1');
  assert.throws(() => convertBitext(a, join(dir, 'missing.en')), /bitext file .*missing\.en cannot be read/);
  assert.throws(() => convertBitext(a, a), /both sides are de/);
});

// The command line: an evaluation set converted into training data is said to be one, where it
// happens (nothing later can tell a model that has seen Tatoeba's pairs from one that has not).
test('xlir convert: Tatoeba, TyDi QA dev and unsplit XQuAD-R are converted with a note; a TyDi QA train file without', { skip: skipShared }, () => {
  const cli = fileURLToPath(new URL('../bin/xlir.mjs', import.meta.url));
  const run = (args: string[]) => spawnSync(process.execPath, [cli, 'convert', ...args], { encoding: 'utf8' });
  const dir = tmp();
  let r = run(['bitext', '--tatoeba', tatoeba, '--code', 'sw', '--out', join(dir, 'b.jsonl')]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /note: Tatoeba is an evaluation set/);
  assert.equal(readFileSync(join(dir, 'b.jsonl'), 'utf8').trim().split('\n').length, 780);
  r = run(['tydiqa', join(tydi, 'swahili_tydiqa_dev.json'), '--out', join(dir, 't.jsonl')]);
  assert.match(r.stderr, /note: a TyDi QA dev file is what xlir eval --bench tydiqa evaluates on/);
  r = run(['tydiqa', join(tydi, 'english_tydiqa_train.json'), '--out', join(dir, 't2.jsonl')]);
  assert.equal(r.status, 0, r.stderr);
  assert.doesNotMatch(r.stderr, /note:/);
  r = run(['lareqa', '--data', xquad, '--languages', 'en', '--out', join(dir, 'l.jsonl')]);
  assert.match(r.stderr, /note: all articles: train on --split train/);
  r = run(['lareqa', '--data', xquad, '--languages', 'en', '--split', 'train', '--out', join(dir, 'l2.jsonl')]);
  assert.doesNotMatch(r.stderr, /note:/);
  // A file whose extension is no language: --lang-b says it (the error names the flag).
  writeFileSync(join(dir, 'c.de'), 'Hallo.\n');
  writeFileSync(join(dir, 'c.txt'), 'Bonjour.\n');
  r = run(['bitext', '--a', join(dir, 'c.de'), '--b', join(dir, 'c.txt'), '--out', join(dir, 'c.jsonl')]);
  assert.match(r.stderr, /cannot tell the language of .*c\.txt from its extension; give it with --lang-b/);
  r = run(['bitext', '--a', join(dir, 'c.de'), '--b', join(dir, 'c.txt'), '--lang-b', 'fr', '--out', join(dir, 'c.jsonl')]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(readFileSync(join(dir, 'c.jsonl'), 'utf8'), /"lang":"fr"/);
});
