// The training-data reader and checker (src/data/format.ts) and the language table: fatal input
// names file:line, every skipped record is counted under its reason with file:line examples,
// group checks, held-out languages, and the atomic JSONL writer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkRecord, formatReadReport, readTrainingData, writeJsonl } from '../src/data/format.ts';
import { canonicalLanguage, isKnownLanguage, languageHint } from '../src/data/languages.ts';

const tmp = () => mkdtempSync(join(tmpdir(), 'xlir-data-'));
const line = (o: unknown) => JSON.stringify(o);
const r = (group: string, lang: string, extra: Record<string, unknown> = {}) => ({ group, lang, dataset: 'd', query: `q ${group} ${lang}`, positive: `p ${group} ${lang}`, ...extra });

test('a line that is not JSON, or not an object, is an error naming file and line', async () => {
  const dir = tmp();
  const bad = join(dir, 'bad.jsonl');
  writeFileSync(bad, [line(r('g1', 'en')), '', '{"group": "g2", "lang": ', line(r('g3', 'en'))].join('\n'));
  await assert.rejects(readTrainingData([bad]), (e: Error) => e.message.startsWith(`${bad}:3: not valid JSON`));
  const arr = join(dir, 'arr.jsonl');
  writeFileSync(arr, `${line(r('g1', 'en'))}\n[1, 2]\n`);
  await assert.rejects(readTrainingData([arr]), new RegExp(`${arr.replace(/[.]/g, '\\.')}:2: expected a JSON object`));
  await assert.rejects(readTrainingData([join(dir, 'missing.jsonl')]), /training data file not found: .*missing\.jsonl/);
  // Encodings: a UTF-8 byte-order mark and CR LF line ends are read as if absent; bytes that are not
  // UTF-8 (Latin-1 "\u00fc") are an error naming the line, not text silently changed to U+FFFD.
  const bom = join(dir, 'bom.jsonl');
  writeFileSync(bom, Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from([line(r('g1', 'en')), line(r('g1', 'de'))].join('\r\n') + '\r\n')]));
  const read = await readTrainingData([bom]);
  assert.deepEqual(read.records.map((x) => [x.group, x.lang, x.positive]), [['g1', 'en', 'p g1 en'], ['g1', 'de', 'p g1 de']]);
  const latin1 = join(dir, 'latin1.jsonl');
  writeFileSync(latin1, Buffer.concat([Buffer.from(line(r('g1', 'en')) + '\n{"group": "g2", "lang": "de", "dataset": "d", "query": "Gr'), Buffer.from([0xfc]), Buffer.from('n", "positive": "p"}\n')]));
  await assert.rejects(readTrainingData([latin1]), new RegExp(`${latin1.replace(/[.]/g, '\\.')}:2: not valid UTF-8`));
  const allBad = join(dir, 'allbad.jsonl');
  writeFileSync(allBad, `${line({ group: 'g', lang: 'xx', dataset: 'd', query: 'q', positive: 'p' })}\n`);
  await assert.rejects(readTrainingData([allBad]), /allbad\.jsonl: none of its 1 lines is a valid record \(first: .*allbad\.jsonl:1: unknown language code "xx"/);
});

test('bad records are skipped and counted by reason, with file:line examples', async () => {
  const dir = tmp();
  const f = join(dir, 'a.jsonl');
  const lines = [
    r('ok1', 'en'), // 1 kept
    r('ok1', 'de'), // 2 kept (same group, other language)
    { group: 'b1', lang: 'sw', dataset: 'd', text: 'habari' }, // 3 kept (bitext)
    { group: 'b1', lang: 'en', dataset: 'd', text: 'hello', note: 'x' }, // 4 kept, unknown_field warning
    r('u1', 'xx'), // 5 unknown_language
    r('u2', 'EN'), // 6 unknown_language, hint 'en'
    r('e1', 'en', { query: '  ' }), // 7 empty_text
    { group: 'm1', lang: 'en', dataset: 'd', query: 'q' }, // 8 missing_field (positive)
    r('t1', 'en', { negatives: 'not a list' }), // 9 wrong_type
    r('t2', 'en', { negatives: ['n', ''] }), // 10 empty_text (a negative)
    { ...r('a1', 'en'), text: 'both' }, // 11 ambiguous_kind
    r('dup', 'en'), // 12 kept
    r('dup', 'en'), // 13 duplicate_exact
    r('con', 'fr', { query: 'one' }), // 14 duplicate_conflict
    r('con', 'fr', { query: 'two' }), // 15 duplicate_conflict
    r('mix', 'en'), // 16 mixed_datasets
    r('mix', 'de', { dataset: 'other' }), // 17 mixed_datasets
    { group: 'g', lang: 'en', dataset: 'd', query: 3, positive: 'p' }, // 18 wrong_type
  ];
  writeFileSync(f, lines.map(line).join('\n') + '\n');
  const { records, bitext, report } = await readTrainingData([f]);
  assert.equal(report.lines, lines.length);
  assert.deepEqual(
    records.map((x) => `${x.group}/${x.lang}`),
    ['ok1/en', 'ok1/de', 'dup/en'],
  );
  assert.deepEqual(
    bitext.map((x) => `${x.group}/${x.lang}`),
    ['b1/sw', 'b1/en'],
  );
  const counts = Object.fromEntries(Object.entries(report.skipped).map(([k, v]) => [k, v.count]));
  assert.deepEqual(counts, {
    missing_field: 1,
    wrong_type: 2,
    ambiguous_kind: 1,
    unknown_language: 2,
    empty_text: 2,
    duplicate_exact: 1,
    duplicate_conflict: 2,
    mixed_datasets: 2,
  });
  assert.equal(report.skippedTotal, 13);
  assert.equal(report.kept.records + report.kept.bitext + report.skippedTotal, lines.length);
  assert.deepEqual(report.skipped.unknown_language.examples, [`${f}:5: unknown language code "xx"`, `${f}:6: unknown language code "EN" (did you mean 'en'?)`]);
  assert.deepEqual(report.skipped.empty_text.examples, [`${f}:7: \`query\` is empty`, `${f}:10: \`negatives[1]\` is empty`]);
  assert.deepEqual(report.skipped.missing_field.examples, [`${f}:8: no \`positive\``]);
  assert.equal(report.skipped.duplicate_exact.examples[0], `${f}:13: repeats group "dup" lang en`);
  assert.match(report.skipped.duplicate_conflict.examples.join('|'), new RegExp(`a\\.jsonl:14: .*\\|.*a\\.jsonl:15: `));
  assert.match(report.skipped.mixed_datasets.examples[0], /a\.jsonl:16: group "mix" mixes datasets d, other/);
  assert.equal(report.warnings.unknown_field.count, 1);
  assert.match(report.warnings.unknown_field.examples[0], /a\.jsonl:4: unknown field\(s\) note/);
  assert.deepEqual(report.kept.byLanguage, { en: 3, de: 1, sw: 1 });
  const text = formatReadReport(report);
  assert.match(text, /skipped 13:/);
  assert.match(text, /skipped unknown_language: 2/);

  await assert.rejects(readTrainingData([f], { strict: true }), new RegExp(`a\\.jsonl:5: unknown language code "xx" \\(unknown_language\\)`));
  const few = await readTrainingData([f], { maxExamples: 1 });
  assert.equal(few.report.skipped.wrong_type.count, 2);
  assert.equal(few.report.skipped.wrong_type.examples.length, 1);
});

test('groups span files; held-out languages match by language; warnings for shared positives and two codes', async () => {
  const dir = tmp();
  const a = join(dir, 'a.jsonl');
  const b = join(dir, 'b.jsonl');
  const empty = join(dir, 'empty.jsonl');
  writeFileSync(a, [r('g1', 'en'), r('g2', 'el'), r('g3', 'de', { positive: 'same' }), { group: 'b', lang: 'deu', dataset: 'd', text: 'x' }].map(line).join('\n'));
  writeFileSync(b, [r('g1', 'en', { query: 'other' }), r('g2', 'vi'), r('g4', 'de', { positive: 'same' }), { group: 'b2', lang: 'ell', dataset: 'd', text: 'y' }].map(line).join('\n'));
  writeFileSync(empty, '\n\n');
  const { records, bitext, report } = await readTrainingData([a, b, empty], { heldOutLanguages: ['el'] });
  // g1/en appears in both files with different queries: a conflict across files.
  assert.equal(report.skipped.duplicate_conflict.count, 2);
  assert.match(report.skipped.duplicate_conflict.examples[1], /b\.jsonl:1: /);
  assert.deepEqual(records.map((x) => `${x.group}/${x.lang}`).sort(), ['g2/vi', 'g3/de', 'g4/de']);
  assert.deepEqual(bitext.map((x) => x.lang), ['deu']);
  assert.deepEqual(report.heldOut, { records: 1, bitext: 1, byLanguage: { el: 1, ell: 1 } });
  assert.equal(report.warnings.shared_positive.count, 2);
  assert.match(report.warnings.shared_positive.examples[0], /a\.jsonl:3: positive also used by group "g4"/);
  assert.equal(report.warnings.empty_file.count, 1);
  assert.equal(report.warnings.language_under_two_codes.count, 1);
  assert.match(report.warnings.language_under_two_codes.examples[0], /de, deu|deu, de/);
  await assert.rejects(readTrainingData([a], { heldOutLanguages: ['greek'] }), /heldOutLanguages: unknown language code "greek"/);
});

test('checkRecord: the checker the converters share', () => {
  assert.deepEqual(checkRecord({ group: 'g', lang: 'de', dataset: 'd', query: 'q', positive: 'p', negatives: ['n'] }), {
    kind: 'retrieval',
    record: { group: 'g', lang: 'de', dataset: 'd', query: 'q', positive: 'p', negatives: ['n'] },
    unknownFields: [],
  });
  assert.equal(checkRecord({ group: 'g', lang: 'de', dataset: 'd' }).kind, 'skip');
  const c = checkRecord({ group: 'g', lang: 'en-US', dataset: 'd', text: 't' });
  assert.ok(c.kind === 'skip' && c.reason === 'unknown_language' && c.detail.includes("did you mean 'en'"));
  const n = checkRecord({ group: null, lang: 'de', dataset: 'd', text: 't' });
  assert.ok(n.kind === 'skip' && n.reason === 'missing_field' && n.detail === 'no `group`');
});

test('language table: bare ISO 639-1 and the Tatoeba / TyDi three-letter codes', () => {
  for (const c of ['en', 'de', 'sw', 'te', 'he', 'deu', 'swh', 'cmn', 'arq', 'eng']) assert.ok(isKnownLanguage(c), c);
  for (const c of ['EN', 'en-US', 'zh_Hans', 'iw', 'xx', '', 'english', 'constructor']) assert.ok(!isKnownLanguage(c), c);
  assert.equal(canonicalLanguage('deu'), 'de');
  assert.equal(canonicalLanguage('swh'), 'sw');
  assert.equal(canonicalLanguage('cmn'), 'zh');
  assert.equal(canonicalLanguage('arq'), 'arq');
  assert.equal(canonicalLanguage('de'), 'de');
  assert.equal(languageHint('EN'), 'en');
  assert.equal(languageHint('pt-BR'), 'pt');
  assert.equal(languageHint('xx'), '');
});

test('writeJsonl writes one line per record atomically and leaves the old file on failure', async () => {
  const dir = tmp();
  const out = join(dir, 'sub', 'out.jsonl');
  const many = Array.from({ length: 12000 }, (_, i) => ({ group: `g${i}`, lang: 'de', dataset: 'd', text: `Zeile ${i}\nmit Umbruch ${'ä'.repeat(100)}` }));
  assert.equal(await writeJsonl(out, many), many.length); // > 1 MiB: several chunks
  const lines = readFileSync(out, 'utf8').split('\n');
  assert.equal(lines.length, many.length + 1);
  assert.equal(lines[many.length], '');
  assert.deepEqual(JSON.parse(lines[11999]), many[11999]);
  const back = await readTrainingData([out]);
  assert.equal(back.bitext.length, many.length);

  async function* failing() {
    yield { a: 1 };
    throw new Error('source failed');
  }
  await assert.rejects(writeJsonl(out, failing()), /source failed/);
  assert.equal(readFileSync(out, 'utf8').split('\n').length, many.length + 1, 'previous file intact');
  await assert.rejects(writeJsonl(out, [{ a: 1 }, undefined]), /item 1 is not JSON-serialisable/);
  assert.deepEqual(readdirSync(join(dir, 'sub')), ['out.jsonl'], 'no temporary file left');
  assert.ok(existsSync(out));
});
