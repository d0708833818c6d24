// TREC-style files (src/eval/trec.ts): topics, qrels and corpus readers with their errors and
// reports, the run writer/reader round trip, and trec_eval's -c averaging.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  compareBytewise, readCorpus, readQrels, readRun, readTopics, trecEval, writeRun, type CorpusDoc, type Qrels, type Run,
} from '../src/eval/trec.ts';

const made: string[] = [];
const tmp = () => { const d = mkdtempSync(join(tmpdir(), 'xlir-trec-')); made.push(d); return d; };
after(() => { for (const d of made) rmSync(d, { recursive: true, force: true }); });
const file = (dir: string, name: string, text: string) => { const p = join(dir, name); writeFileSync(p, text); return p; };

test('topics: qid<TAB>query lines; BOM, CRLF and blank lines tolerated; errors name file:line', async () => {
  const d = tmp();
  const ok = file(d, 'topics.tsv', '\ufeffq1\tWhat is X?\r\n\r\n2\tWer ist Y? \r\n');
  assert.deepEqual([...(await readTopics(ok))], [['q1', 'What is X?'], ['2', 'Wer ist Y?']]);
  const noTab = file(d, 'a.tsv', 'q1\tfine\n\nq2 no tab here\n');
  await assert.rejects(readTopics(noTab), new RegExp(`^Error: ${noTab}:3: expected "qid<TAB>query", found 1 tab-separated`));
  const three = file(d, 'b.tsv', 'q1\tquery\textra\n');
  await assert.rejects(readTopics(three), new RegExp(`${three}:1: .*found 3 tab-separated`));
  const dup = file(d, 'c.tsv', 'q1\tone\nq2\ttwo\nq1\tagain\n');
  await assert.rejects(readTopics(dup), new RegExp(`${dup}:3: qid q1 already given at line 1`));
  const empty = file(d, 'e.tsv', 'q1\t  \n');
  await assert.rejects(readTopics(empty), new RegExp(`${empty}:1: empty query for qid q1`));
});

test('qrels: TREC lines, comments, repeated judgements reported, malformed lines name file:line', async () => {
  const d = tmp();
  const ok = file(d, 'qrels.txt', [
    '# a comment', 'q1 Q0 d1 1', 'q1 0 d2 0', '', 'q1\tQ0\td3\t2', 'q2 Q0 d1 0', 'q1 Q0 d1 1', 'q3 Q0 d9 -1', 'q2 Q0 d4 0   ',
  ].join('\n'));
  const { qrels, report } = await readQrels(ok);
  assert.deepEqual([...qrels.keys()], ['q1', 'q2', 'q3']);
  assert.deepEqual([...qrels.get('q1')!], [['d1', 1], ['d2', 0], ['d3', 2]]);
  assert.deepEqual([...qrels.get('q3')!], [['d9', -1]]);
  assert.equal(report.lines, 7);
  assert.equal(report.judgments, 6);
  assert.equal(report.relevant, 2);
  assert.equal(report.queries, 3);
  assert.deepEqual(report.queriesWithoutRelevant, ['q2', 'q3']);
  assert.equal(report.duplicates, 1);
  assert.deepEqual(report.duplicateExamples, [`${ok}:7 repeats line 2 (q1 d1)`]);

  const conflict = file(d, 'c.txt', 'q1 Q0 d1 1\nq1 Q0 d2 1\nq1 Q0 d1 0\n');
  await assert.rejects(readQrels(conflict), new RegExp(`${conflict}:3: \\(q1, d1\\) judged 0 here but 1 at line 1`));
  const three = file(d, 'f.txt', 'q1 Q0 d1 1\nq1 d2 1\n');
  await assert.rejects(readQrels(three), new RegExp(`${three}:2: expected "qid Q0 docid relevance" \\(TREC; BEIR's TSV starts with a "query-id corpus-id score" header\\), found 3 field`));
  const five = file(d, 'g.txt', 'q1 Q0 d1 1 run\n');
  await assert.rejects(readQrels(five), new RegExp(`${five}:1: .*found 5 field`));
  const real = file(d, 'h.txt', 'q1 Q0 d1 1\n\nq1 Q0 d2 0.5\n');
  await assert.rejects(readQrels(real), new RegExp(`${real}:3: relevance "0.5" is not an integer`));
});

test('BEIR layout: qrels TSV with its header, and queries.jsonl, read as their TREC equivalents', async () => {
  const d = tmp();
  const beir = await readQrels(file(d, 'test.tsv', 'query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td3\t2\nq2\td1\t0\n'));
  const trec = await readQrels(file(d, 'test.txt', 'q1 Q0 d1 1\nq1 Q0 d3 2\nq2 Q0 d1 0\n'));
  assert.deepEqual(beir.qrels, trec.qrels);
  assert.equal(beir.report.lines, 3);
  const mixed = file(d, 'mixed.tsv', 'query-id\tcorpus-id\tscore\nq1\tQ0\td1\t1\n');
  await assert.rejects(readQrels(mixed), new RegExp(`${mixed}:2: expected "query-id corpus-id score" \\(BEIR, as the header says\\), found 4 field`));
  assert.deepEqual([...(await readTopics(file(d, 'queries.jsonl', '{"_id": "q1", "text": "What is X?", "metadata": {}}\n{"_id": 2, "text": " Wer ist Y? "}\n')))],
    [['q1', 'What is X?'], ['2', 'Wer ist Y?']]);
  const noText = file(d, 'bad.jsonl', '{"_id": "q1"}\n');
  await assert.rejects(readTopics(noText), new RegExp(`${noText}:1: "text" missing or empty for query q1`));
});

test('corpus: streamed docs, docid/_id, duplicates skipped and counted, qrels docids missing from the corpus counted', async () => {
  const d = tmp();
  const path = file(d, 'corpus.jsonl', [
    JSON.stringify({ docid: 'd1', title: 'T1', text: 'one' }),
    JSON.stringify({ _id: 'd2', text: 'two', extra: 1 }),
    '',
    JSON.stringify({ docid: 'd3', _id: 'd3', title: null, text: 'three' }),
    JSON.stringify({ docid: 'd1', title: 'again', text: 'dup' }),
    JSON.stringify({ docid: 'd4', title: '', text: '' }),
  ].join('\n') + '\n');
  const qrels: Qrels = new Map([
    ['q1', new Map([['d1', 1], ['d7', 1], ['d8', 0]])],
    ['q2', new Map([['d7', 2], ['d4', 0]])],
  ]);
  const corpus = readCorpus(path, { qrels });
  assert.throws(() => corpus.report(), /before the corpus was read to the end/);
  const docs: CorpusDoc[] = [];
  for await (const doc of corpus) docs.push(doc);
  assert.deepEqual(docs, [
    { docid: 'd1', title: 'T1', text: 'one', line: 1 },
    { docid: 'd2', title: '', text: 'two', line: 2 },
    { docid: 'd3', title: '', text: 'three', line: 4 },
    { docid: 'd4', title: '', text: '', line: 6 },
  ]);
  const report = corpus.report();
  assert.equal(report.documents, 4);
  assert.equal(report.duplicateIds, 1);
  assert.deepEqual(report.duplicateExamples, [`${path}:5 repeats docid d1 of line 1`]);
  assert.equal(report.missingJudged, 3, '(q1,d7), (q1,d8), (q2,d7)');
  assert.equal(report.missingRelevant, 2, '(q1,d7) and (q2,d7)');
  assert.equal(report.missingDocids, 2, 'd7 and d8');
  assert.deepEqual(report.missingExamples, ['q1 d7 (1)', 'q1 d8 (0)']);
  await assert.rejects(async () => { for await (const _ of corpus) { /* second pass */ } }, /can be iterated once/);

  // Without qrels nothing is counted as missing; a caller may stop early, and then has no report.
  const early = readCorpus(path);
  for await (const doc of early) { assert.equal(doc.docid, 'd1'); break; }
  assert.throws(() => early.report(), /before the corpus was read to the end/);

  const bad = async (name: string, lines: string[], re: RegExp) => {
    const p = file(d, name, lines.join('\n') + '\n');
    await assert.rejects(async () => { for await (const _ of readCorpus(p)) { /* drain */ } }, re);
  };
  const ok = JSON.stringify({ docid: 'x', text: 't' });
  await bad('b1.jsonl', [ok, '{"docid": "y", "text": '], /b1\.jsonl:2: not valid JSON/);
  await bad('b2.jsonl', [ok, ok.replace('"x"', '"y"'), JSON.stringify({ title: 'no id', text: 't' })], /b2\.jsonl:3: "docid" \(or "_id"\) missing/);
  await bad('b3.jsonl', [JSON.stringify({ docid: 7, text: 't' })], /b3\.jsonl:1: "docid" \(or "_id"\) missing or not a string/);
  await bad('b4.jsonl', [JSON.stringify({ docid: 'a b', text: 't' })], /b4\.jsonl:1: docid "a b" is empty or contains whitespace/);
  await bad('b5.jsonl', [JSON.stringify({ docid: 'a', _id: 'b', text: 't' })], /b5\.jsonl:1: "docid" "a" and "_id" "b" differ/);
  await bad('b6.jsonl', [JSON.stringify({ docid: 'a', title: 't' })], /b6\.jsonl:1: "text" missing or not a string/);
  await bad('b7.jsonl', [JSON.stringify({ docid: 'a', title: 3, text: 't' })], /b7\.jsonl:1: "title" is not a string/);
});

test('run file round trip: trec_eval order, ranks 1..n, exact scores, depth, atomic replacement', async () => {
  const d = tmp();
  const path = join(d, 'run.trec');
  const f32 = new Float32Array([0.1, 0.7071067690849304, -0.25]);
  const run: Run = new Map([
    ['q2', [
      { docid: 'a', score: f32[0] }, { docid: 'c', score: f32[1] }, { docid: 'b', score: f32[1] },
      { docid: 'z', score: 1e-300 }, { docid: 'y', score: -1.5e200 }, { docid: 'x', score: f32[2] },
    ]],
    ['q10', [{ docid: 'd\u00e9', score: 3 }]],
    ['q1', []],
  ]);
  writeRun(path, run, { tag: 'xlir-test' });
  assert.deepEqual(readdirSync(d), ['run.trec'], 'no temporary file left');
  const lines = readFileSync(path, 'utf8').trimEnd().split('\n');
  // q2 ranked by score, the tie at 0.707... broken by docid descending: c before b.
  assert.deepEqual(lines.map((l) => l.split(' ').slice(0, 4).join(' ')), [
    'q2 Q0 c 1', 'q2 Q0 b 2', 'q2 Q0 a 3', 'q2 Q0 z 4', 'q2 Q0 x 5', 'q2 Q0 y 6', 'q10 Q0 d\u00e9 1',
  ]);
  assert.ok(lines.every((l) => l.endsWith(' xlir-test') && l.split(' ').length === 6));

  const back = await readRun(path);
  assert.deepEqual([...back.keys()], ['q2', 'q10'], 'a query without hits writes no line');
  const byDoc = (hits: { docid: string; score: number }[]) => new Map(hits.map((h) => [h.docid, h.score]));
  const want = byDoc(run.get('q2')!);
  const got = byDoc(back.get('q2')!);
  assert.equal(got.size, want.size);
  for (const [docid, score] of want) assert.ok(Object.is(got.get(docid), score), `${docid}: ${got.get(docid)} != ${score}`);
  // The same evaluation from the file as from memory.
  const qrels: Qrels = new Map([['q2', new Map([['b', 1], ['y', 2]])], ['q10', new Map([['d\u00e9', 1]])]]);
  const written = new Map([...run].filter(([, hits]) => hits.length > 0));
  assert.deepEqual(trecEval(back, qrels), trecEval(written, qrels));

  // depth keeps the first hits of the trec_eval order.
  writeRun(path, run, { tag: 't', depth: 2 });
  assert.deepEqual(readFileSync(path, 'utf8').trimEnd().split('\n').map((l) => l.split(' ').slice(0, 3).join(' ')),
    ['q2 Q0 c', 'q2 Q0 b', 'q10 Q0 d\u00e9']);

  // A refused run leaves the previous file as it was, and no temporary file.
  const before = readFileSync(path);
  const refuse = (r: Run, opts: { tag: string; depth?: number }, re: RegExp) => {
    assert.throws(() => writeRun(path, r, opts), re);
    assert.deepEqual(readFileSync(path), before);
    assert.deepEqual(readdirSync(d), ['run.trec']);
  };
  refuse(new Map([['q', [{ docid: 'a b', score: 1 }]]]), { tag: 't' }, /docid "a b" is empty or contains whitespace/);
  refuse(new Map([['q', [{ docid: 'a', score: 1 }, { docid: 'a', score: 0 }]]]), { tag: 't' }, /query q: docid a retrieved twice/);
  refuse(new Map([['q', [{ docid: 'a', score: NaN }]]]), { tag: 't' }, /query q: docid a has score NaN/);
  refuse(new Map([['q 1', [{ docid: 'a', score: 1 }]]]), { tag: 't' }, /qid "q 1"/);
  refuse(run, { tag: 'two words' }, /tag "two words"/);
  refuse(run, { tag: 't', depth: 0 }, /depth must be a positive integer/);
});

test('run reader: errors name file:line', async () => {
  const d = tmp();
  const five = file(d, 'a.trec', 'q1 Q0 d1 1 0.5 t\nq1 Q0 d2 2 0.4\n');
  await assert.rejects(readRun(five), new RegExp(`${five}:2: expected "qid Q0 docid rank score tag", found 5 field`));
  const dup = file(d, 'b.trec', 'q1 Q0 d1 1 0.5 t\nq2 Q0 d1 1 0.5 t\n\nq1 Q0 d1 2 0.4 t\n');
  await assert.rejects(readRun(dup), new RegExp(`${dup}:4: docid d1 already retrieved for query q1 at line 1`));
  const nan = file(d, 'c.trec', 'q1 Q0 d1 1 high t\n');
  await assert.rejects(readRun(nan), new RegExp(`${nan}:1: score "high" is not a finite number`));
});

test('trec_eval -c: every qrels query is averaged, a missing or relevance-less query counts 0, others are ignored', () => {
  const qrels: Qrels = new Map([
    ['q1', new Map([['a', 1], ['b', 0]])],
    ['q2', new Map([['c', 1], ['d', 1]])],
    ['q3', new Map([['e', 0]])],
  ]);
  const run: Run = new Map([
    ['q1', [{ docid: 'a', score: 1 }, { docid: 'b', score: 2 }]],
    ['q3', [{ docid: 'e', score: 1 }]],
    ['q9', [{ docid: 'a', score: 1 }]],
  ]);
  const r = trecEval(run, qrels);
  // q1: the relevant doc at rank 2 -> nDCG = (1/log2(3)) / 1, recall 1; q2 missing -> 0; q3 no relevant -> 0.
  assert.equal(r.queries, 3);
  assert.equal(r.perQuery.get('q1')!.ndcg, 1 / Math.log2(3));
  assert.equal(r.ndcg, (1 / Math.log2(3) + 0 + 0) / 3);
  assert.equal(r.recall, 1 / 3);
  assert.deepEqual(r.perQuery.get('q2'), { ndcg: 0, recall: 0, retrieved: 0, relevant: 2 });
  assert.deepEqual(r.perQuery.get('q3'), { ndcg: 0, recall: 0, retrieved: 1, relevant: 0 });
  assert.deepEqual(r.missingFromRun, ['q2']);
  assert.deepEqual(r.withoutRelevant, ['q3']);
  assert.deepEqual(r.notInQrels, ['q9']);
  assert.equal(r.depth, 1000);
  assert.deepEqual([r.ndcgAt, r.recallAt], [10, 100]);

  // -M 1000: the 1001st hit is not evaluated.
  const deep: Run = new Map([['q2', [
    ...Array.from({ length: 1000 }, (_, i) => ({ docid: `n${i}`, score: 2 + i })),
    { docid: 'c', score: 1 }, { docid: 'd', score: 0 },
  ]]]);
  assert.equal(trecEval(deep, qrels, { recallAt: 2000 }).perQuery.get('q2')!.recall, 0);
  assert.equal(trecEval(deep, qrels, { recallAt: 2000, depth: 1001 }).perQuery.get('q2')!.recall, 0.5);
  assert.equal(trecEval(deep, qrels, { recallAt: 2000, depth: 1002 }).perQuery.get('q2')!.recall, 1);

  assert.throws(() => trecEval(new Map([['q1', [{ docid: 'a', score: 1 }, { docid: 'a', score: 2 }]]]), qrels), /docid a retrieved twice/);
  assert.throws(() => trecEval(run, new Map()), /no query/);
  assert.throws(() => trecEval(run, qrels, { ndcgAt: 0 }), /ndcgAt must be a positive integer/);
});

test('byte-order comparison of docids (strcmp on UTF-8)', () => {
  assert.ok(compareBytewise('a', 'b') < 0);
  assert.ok(compareBytewise('B', 'a') < 0);
  assert.ok(compareBytewise('ab', 'a') > 0);
  assert.equal(compareBytewise('doc#1', 'doc#1'), 0);
  const words = ['\u{1F600}', '\uffff', 'z', '\u00e9', '\ue000', 'a\u{10000}', 'a\ud7ff', ''];
  const bytes = [...words].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
  assert.deepEqual([...words].sort(compareBytewise), bytes);
  assert.notDeepEqual([...words].sort(), bytes, 'plain UTF-16 order differs, so the test can tell');
});
