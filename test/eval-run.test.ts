// The evaluation runners: evaluateRetrieval's settings equal a brute-force computation with the
// reference (sorted) AP; `xlir eval` on XQuAD-R writes the result, report and pictures; the TREC
// runner agrees across search back ends and counts qrels docids absent from the corpus;
// `xlir index` / `xlir search` find a document from its own text.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { Encoder } from '../src/encoder.ts';
import { native, type NativeModelConfig } from '../src/native.ts';
import { buildWordPieceTokenizerJson } from '../src/tokenizer.ts';
import { evaluateRetrieval, lareqaSides, type Side } from '../src/eval/lareqa-eval.ts';
import { readLareqaDir } from '../src/data/lareqa.ts';
import { averagePrecision } from '../src/eval/metrics.ts';
import { evaluateTrec } from '../src/eval/trec-eval-command.ts';
import { readRun } from '../src/eval/trec.ts';
import { runIndex, runSearch } from '../src/search-command.ts';
import { faissStatus } from '../src/search/faiss.ts';
import { mulberry32 } from '../src/rng.ts';

const cudaInfo = native().info();

const SHARED = new URL('../../shared/data/xquad-r', import.meta.url).pathname;
const WORDS = Array.from({ length: 60 }, (_, i) => `w${i}`);

/** A random tiny BERT with a WordPiece tokenizer over WORDS, saved as a model folder. */
function tinyModel(dir: string, vocabWords = WORDS): string {
  const vocab = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', ...vocabWords];
  writeFileSync(join(dir, 'vocab.txt'), vocab.join('\n') + '\n');
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(buildWordPieceTokenizerJson(join(dir, 'vocab.txt'), { lowercase: true })));
  const cfg: NativeModelConfig = {
    arch: 'bert', vocabSize: vocab.length, hiddenSize: 32, numLayers: 1, numHeads: 2, intermediateSize: 64, maxPositions: 512,
    typeVocabSize: 2, layerNormEps: 1e-12, padTokenId: 0, hiddenDropout: 0.1, attentionDropout: 0.1, pooling: 'mean',
    hasPooler: false, normalize: true, seed: 5,
  };
  const enc = Encoder.create(cfg, { tokenizerPath: join(dir, 'tokenizer.json') });
  enc.save(join(dir, 'model'));
  enc.dispose();
  return join(dir, 'model');
}

function text(r: () => number, n: number): string {
  return Array.from({ length: n }, () => WORDS[Math.floor(r() * WORDS.length)]).join(' ');
}

test('evaluateRetrieval: every setting equals brute force with the sorted reference AP', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'xlir-evalrun-'));
  const enc = Encoder.load(tinyModel(dir));
  try {
    const r = mulberry32(3);
    const langs = ['aa', 'bb', 'cc'];
    // 6 questions in each language (ids shared), 9 candidates; question q's answer is candidate q
    // in every language, plus candidate 7 for q0 in 'bb' (two correct answers, as in MLQA-R).
    const sides: Side[] = langs.map((lang) => ({
      lang,
      questions: Array.from({ length: 6 }, (_, q) => ({ id: `q${q}`, text: text(r, 4), answers: lang === 'bb' && q === 0 ? ['c0', 'c7'] : [`c${q}`] })),
      candidates: Array.from({ length: 9 }, (_, c) => ({ key: `c${c}`, text: text(r, 8) })),
    }));
    const o = { bench: 'unit', dir, files: {}, articles: 'all', maxQueryLength: 32, maxPassageLength: 32, queryPrefix: 'Query: ',
      passagePrefix: 'Passage: ', batchSize: 4, seed: 0, modelPath: dir, log: () => {} };
    const res = await evaluateRetrieval(enc, sides, o);

    // Brute force: encode, dot products in double, reference AP per (query language, pool).
    const D = enc.embeddingDim;
    // One engine call at a time: a model runs one call at once.
    const Q: Float32Array[] = [], C: Float32Array[] = [];
    for (const s of sides) Q.push(await enc.encodeTexts(s.questions.map((q) => q.text), { maxLength: 32, prefix: 'Query: ' }));
    for (const s of sides) C.push(await enc.encodeTexts(s.candidates.map((c) => c.text), { maxLength: 32, prefix: 'Passage: ' }));
    const dot = (a: Float32Array, i: number, b: Float32Array, j: number) => {
      let s = 0;
      for (let d = 0; d < D; d++) s += a[i * D + d] * b[j * D + d];
      return s;
    };
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const matrix: number[][] = [], multi: number[] = [];
    for (let qi = 0; qi < 3; qi++) {
      matrix.push([]);
      const multiAps: number[] = [];
      for (let q = 0; q < 6; q++) {
        const id = `q${q}`;
        const allScores: number[] = [], allRel: boolean[] = [];
        for (let pi = 0; pi < 3; pi++) {
          const ans = sides[pi].questions.find((x) => x.id === id)!.answers;
          const scores = sides[pi].candidates.map((_, c) => dot(Q[qi], q, C[pi], c));
          const rel = sides[pi].candidates.map((c) => ans.includes(c.key));
          (matrix[qi][pi] ??= 0);
          matrix[qi][pi] += averagePrecision(scores, rel) / 6;
          allScores.push(...scores);
          allRel.push(...rel);
        }
        multiAps.push(averagePrecision(allScores, allRel));
      }
      multi.push(mean(multiAps));
    }
    // Scores differ from the engine's only by fp32 rounding; APs are equal unless two scores of a
    // row fall within that rounding of each other, which random 32-d embeddings do not produce.
    const close = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) < 1e-9, `${what}: ${a} vs ${b}`);
    for (let qi = 0; qi < 3; qi++) for (let pi = 0; pi < 3; pi++) close(res.matrix.map[qi][pi], matrix[qi][pi], `mAP ${langs[qi]}->${langs[pi]}`);
    close(res.summary.mono.map, mean([0, 1, 2].map((i) => matrix[i][i])), 'mono mAP');
    close(res.summary.cross.map, mean([0, 1, 2].flatMap((i) => [0, 1, 2].filter((j) => j !== i).map((j) => matrix[i][j]))), 'cross mAP');
    close(res.summary.multi.map, mean(multi), 'multilingual mAP');
    for (let qi = 0; qi < 3; qi++) close(res.multilingual[langs[qi]].map, multi[qi], `multilingual mAP ${langs[qi]}`);
    assert.equal(res.perQuery.length, 18);
    assert.deepEqual(res.counts.candidates, { aa: 9, bb: 9, cc: 9 });
    assert.ok(res.summary.rankDistance >= 0);
    await assert.rejects(evaluateRetrieval(enc, [{ ...sides[0], candidates: [] }], o), /empty pool/);
  } finally {
    enc.dispose();
  }
});

test('xlir eval on XQuAD-R (2 languages, test articles): result, report and pictures', { skip: existsSync(SHARED) ? false : `../shared missing (${SHARED})` }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'xlir-evalrun-'));
  const model = tinyModel(dir);
  const { evalOptions, runEval } = await import('../src/eval-command.ts');
  const { default: yargs } = await import('yargs');
  const args = await evalOptions(yargs(['--bench', 'xquad-r', '--data', SHARED, '--model', model, '--out', join(dir, 'ev'), '--languages', 'en', 'de',
    '--articles', 'test', '--max-passage-length', '48', '--zero-shot', 'de'])).parseAsync();
  await runEval(args, () => {});
  const res = JSON.parse(readFileSync(join(dir, 'ev', 'result.json'), 'utf8'));
  const sides = lareqaSides(readLareqaDir(SHARED, { languages: ['en', 'de'] }), { articles: { side: 'test', testFraction: 0.5, seed: 0 }, context: 'paragraph' });
  assert.deepEqual(res.languages, ['en', 'de']);
  assert.deepEqual(res.counts.candidates, { en: sides[0].candidates.length, de: sides[1].candidates.length });
  assert.ok(res.counts.questions.en > 400 && res.counts.questions.en < 800, `test-side questions: ${res.counts.questions.en}`);
  assert.deepEqual(res.groups, { 'zero-shot': ['de'], seen: ['en'] });
  for (const f of ['report.md', 'heatmap.svg', 'rank-distance.svg']) assert.ok(existsSync(join(dir, 'ev', f)), `${f} missing`);
  assert.match(readFileSync(join(dir, 'ev', 'report.md'), 'utf8'), /monolingual/);
  assert.match(readFileSync(join(dir, 'ev', 'report.md'), 'utf8'), /A random ranking gives about \d+(\.\d)? here/);
  // A folder whose other file is misnamed: the file is named as not read, and one language is said to give NaN cross-lingual metrics.
  mkdirSync(join(dir, 'one'));
  symlinkSync(join(SHARED, 'en.json'), join(dir, 'one', 'en.json'));
  symlinkSync(join(SHARED, 'de.json'), join(dir, 'one', 'german.json'));
  const said: string[] = [];
  await runEval(await evalOptions(yargs(['--bench', 'xquad-r', '--data', join(dir, 'one'), '--model', model, '--out', join(dir, 'ev1'), '--articles', 'test',
    '--max-passage-length', '32'])).parseAsync(), (l) => said.push(l));
  assert.ok(said.some((l) => /note: .*one: german\.json not read/.test(l)), said.join('\n'));
  assert.ok(said.some((l) => /note: one language \(en\): the cross-lingual metrics and rank distance need two or more/.test(l)), said.join('\n'));
  // A question whose answer start lies in no sentence is left out (as the reference does), and said.
  mkdirSync(join(dir, 'hand'));
  for (const lang of ['en', 'de']) {
    const sentences = [`${lang} alpha one.`, `${lang} beta two.`];
    const context = sentences.join(' ');
    writeFileSync(join(dir, 'hand', `${lang}.json`), JSON.stringify({ version: '1.1', data: [{ title: 'A', paragraphs: [{
      context, sentences, sentence_breaks: [[0, sentences[0].length], [sentences[0].length + 1, context.length]],
      qas: [{ id: 'q1', question: 'which?', answers: [{ answer_start: 0, text: 'x' }] }, { id: 'q2', question: 'where?', answers: [{ answer_start: 999, text: 'x' }] }],
    }] }] }));
  }
  said.length = 0;
  await runEval(await evalOptions(yargs(['--bench', 'xquad-r', '--data', join(dir, 'hand'), '--model', model, '--out', join(dir, 'ev2')])).parseAsync(), (l) => said.push(l));
  assert.ok(said.some((l) => /note: .*en\.json: 1 question\(s\) left out, no sentence contains the answer start .*: q2/.test(l)), said.join('\n'));
});

/** `xlir eval` with these arguments (after --model and --out), returning the result.json. */
async function evalCli(model: string, out: string, args: string[]) {
  const { evalOptions, runEval } = await import('../src/eval-command.ts');
  const { default: yargs } = await import('yargs');
  await runEval(await evalOptions(yargs(['--model', model, '--out', out, ...args])).parseAsync(), () => {});
  return JSON.parse(readFileSync(join(out, 'result.json'), 'utf8'));
}

/** Dot products of unit embeddings, row by row. */
function scoreRows(a: Float32Array, b: Float32Array, D: number): Float32Array[] {
  const n = b.length / D;
  return Array.from({ length: a.length / D }, (_, i) => Float32Array.from({ length: n }, (_, j) => {
    let s = 0;
    for (let d = 0; d < D; d++) s += a[i * D + d] * b[j * D + d];
    return s;
  }));
}

// Tatoeba on hand-made pairs: 'aaa' lines are their English lines (the identical text is the top hit:
// acc@1 and mAP 1), 'bbb' lines are the NEXT English line (the identical text outranks the true
// translation: acc@1 0), and mAP equals the reciprocal rank computed here by brute force, in both
// directions (eng -> xxx: each English line against the pair's xxx lines, a column of the same scores).
test('xlir eval --bench tatoeba: acc@1 and mAP against brute force, both directions; groups; bad files named', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'xlir-tatoeba-'));
  const model = tinyModel(dir);
  const r = mulberry32(11);
  const eng = Array.from({ length: 12 }, () => text(r, 5));
  mkdirSync(join(dir, 'tat'));
  const write = (code: string, src: string[], en: string[]) => {
    writeFileSync(join(dir, 'tat', `tatoeba.${code}-eng.${code}`), src.join('\n') + '\n');
    writeFileSync(join(dir, 'tat', `tatoeba.${code}-eng.eng`), en.join('\n') + '\n');
  };
  write('aaa', eng, eng);
  write('bbb', eng.map((_, i) => eng[(i + 1) % eng.length]), eng);
  const res = await evalCli(model, join(dir, 'ev'), ['--bench', 'tatoeba', '--data', join(dir, 'tat'), '--low-resource', 'bbb']);
  assert.deepEqual(res.languages, ['aaa', 'bbb']);
  assert.equal(res.perLanguage.aaa['acc@1'], 1);
  assert.equal(res.perLanguage.aaa.mAP, 1);
  assert.equal(res.perLanguage.bbb['acc@1'], 0);
  const enc = Encoder.load(model);
  const o = { maxLength: 64, prefix: 'Query: ' };
  const rows = scoreRows(await enc.encodeTexts(eng.map((_, i) => eng[(i + 1) % eng.length]), o), await enc.encodeTexts(eng, o), enc.embeddingDim);
  enc.dispose();
  // Pessimistic rank of the true translation i: 1 + the number of sentences scoring at least as high.
  const ref = rows.reduce((s, row, i) => s + 1 / (1 + row.filter((x, j) => j !== i && x >= row[i]).length), 0) / rows.length;
  assert.ok(Math.abs(res.perLanguage.bbb.mAP - ref) < 1e-6, `mAP ${res.perLanguage.bbb.mAP} vs brute force ${ref}`);
  assert.ok(Math.abs(res.summary.mAP - (1 + ref) / 2) < 1e-6, 'the summary is the mean over languages');
  // eng -> xxx: English line j against every bbb line; its translation is bbb line j.
  const backRanks = rows.map((_, j) => 1 + rows.filter((row, i) => i !== j && row[j] >= rows[j][j]).length);
  const backRef = backRanks.reduce((s, r) => s + 1 / r, 0) / rows.length;
  const backAcc = backRanks.filter((r) => r === 1).length / rows.length;
  assert.ok(Math.abs(res.perLanguage.bbb['mAP eng->xxx'] - backRef) < 1e-6, `eng->xxx mAP ${res.perLanguage.bbb['mAP eng->xxx']} vs brute force ${backRef}`);
  assert.equal(res.perLanguage.bbb['acc@1 eng->xxx'], backAcc);
  assert.ok(backRef < 1 && backRef !== ref, 'the reverse direction is its own computation here, not a copy of xxx -> eng');
  assert.equal(res.perLanguage.aaa['acc@1 eng->xxx'], 1);
  assert.equal(res.perLanguage.bbb['acc@1 both directions'], (0 + backAcc) / 2);
  assert.deepEqual(res.groups['low-resource'], { languages: ['bbb'], metrics: Object.fromEntries(Object.entries(res.perLanguage.bbb).filter(([k]) => k !== 'pairs')) });
  assert.equal(res.perQuery.values.AP.length, 24);
  assert.match(readFileSync(join(dir, 'ev', 'report.md'), 'utf8'), /\| bbb \| 0\.000 \| 0\.\d{3} \| \d\.\d{3} \| 0\.\d{3} \| \d\.\d{3} \| 12 \|/);
  // xlir compare of two Tatoeba results: the shared language, the groups both have, the differences.
  await evalCli(model, join(dir, 'only-a'), ['--bench', 'tatoeba', '--data', join(dir, 'tat'), '--languages', 'aaa']);
  const { runCompare } = await import('../src/eval-command.ts');
  const md = await runCompare([join(dir, 'ev'), join(dir, 'only-a', 'result.json')], undefined);
  assert.match(md, /\| acc@1, 1 language \| 1\.000 \| 1\.000 \| ±0\.000 \|/);
  assert.match(md, /different languages; the averages are over the 1 they share/);
  assert.match(md, /Per language: acc@1\n\n\| language \| ev \| only-a \| Δ only-a \|\n\| --- \| ---: \| ---: \| ---: \|\n\| aaa \| 1\.000 \| 1\.000 \| ±0\.000 \|/);
  assert.match(md, /\| acc@1 both directions, 1 language \| 1\.000 \| 1\.000 \| ±0\.000 \|/);
  // The paired test over the queries both hold (aaa's 12; bbb's only in the first): the same model, so no difference.
  assert.match(md, /Paired bootstrap of AP per query against "ev"[^\n]*\n\n\| run \| Δ AP \| 95% interval \| p \| queries \|\n[^\n]*\n\| only-a \| ±0\.0000 \| \[±0\.0000, ±0\.0000\] \| 1\.000 \| 12 \(12 unpaired left out\) \|/);
  // A result written before eng -> xxx existed: compared on the metrics both runs have.
  const old = JSON.parse(readFileSync(join(dir, 'only-a', 'result.json'), 'utf8'));
  for (const m of ['acc@1 eng->xxx', 'mAP eng->xxx', 'acc@1 both directions']) delete old.summary[m];
  mkdirSync(join(dir, 'old'));
  writeFileSync(join(dir, 'old', 'result.json'), JSON.stringify(old));
  const mdOld = await runCompare([join(dir, 'ev'), join(dir, 'old')], undefined);
  assert.match(mdOld, /\| mAP, 1 language \| 1\.000 \| 1\.000 \| ±0\.000 \|/);
  assert.doesNotMatch(mdOld, /eng->xxx/);
  // A model that records its training inputs is evaluated with them unless told otherwise.
  writeFileSync(join(model, 'xlir_training.json'), JSON.stringify({ queryPrefix: 'q: ', passagePrefix: 'p: ', maxQueryLength: 16, maxPassageLength: 40, run: { seed: 7, steps: 12, runKey: 'abc' } }));
  const trained = await evalCli(model, join(dir, 'ev-trained'), ['--bench', 'tatoeba', '--data', join(dir, 'tat'), '--languages', 'aaa']);
  assert.deepEqual(trained.options, { prefix: 'q: ', maxLength: 16, batchSize: 64 });
  // The result names the weights (sha256 of the weight file) and the training run, not just a path.
  assert.equal(trained.model.sha256, createHash('sha256').update(readFileSync(join(model, 'model.safetensors'))).digest('hex'));
  assert.deepEqual(trained.model.run, { seed: 7, steps: 12, runKey: 'abc' });
  assert.match(readFileSync(join(dir, 'ev-trained', 'report.md'), 'utf8'), /\| trained \| seed 7, 12 steps, run key `abc` \|/);
  assert.deepEqual((await evalCli(model, join(dir, 'ev-told'), ['--bench', 'tatoeba', '--data', join(dir, 'tat'), '--languages', 'aaa', '--query-prefix', 'Query: '])).options,
    { prefix: 'Query: ', maxLength: 16, batchSize: 64 });
  writeFileSync(join(model, 'xlir_training.json'), JSON.stringify({ queryPrefix: 'q: ', passagePrefix: 'p: ', maxQueryLength: 'long', maxPassageLength: 40 }));
  await assert.rejects(evalCli(model, join(dir, 'ev-bad'), ['--bench', 'tatoeba', '--data', join(dir, 'tat')]), /xlir_training\.json: "maxQueryLength" must be an integer of at least 3, got "long"/);
  rmSync(join(model, 'xlir_training.json'));
  writeFileSync(join(dir, 'tat', 'tatoeba.ccc-eng.eng'), 'x\n');
  writeFileSync(join(dir, 'tat', 'tatoeba.ccc-eng.ccc'), 'y\nz\n');
  await assert.rejects(evalCli(model, join(dir, 'ev2'), ['--bench', 'tatoeba', '--data', join(dir, 'tat'), '--languages', 'ccc']),
    /tatoeba\.ccc-eng\.ccc has 2 lines but .*tatoeba\.ccc-eng\.eng has 1/);
});

test('xlir eval: default result folders of two runs differ; another model\'s result is not overwritten', async () => {
  const { defaultEvalOut, refuseOtherModelsResult } = await import('../src/eval-command.ts');
  assert.equal(defaultEvalOut('tydiqa', '/r/run1/model'), join('eval', 'tydiqa-run1-model'));
  assert.equal(defaultEvalOut('tydiqa', '/r/run1/checkpoint/model'), join('eval', 'tydiqa-run1-checkpoint-model'));
  assert.notEqual(defaultEvalOut('xquad-r', '/r/run1/best'), defaultEvalOut('xquad-r', '/r/run2/best'));
  assert.equal(defaultEvalOut('tatoeba', 'labse'), join('eval', `tatoeba-labse`));
  const dir = mkdtempSync(join(tmpdir(), 'xlir-eval-out-'));
  refuseOtherModelsResult(join(dir, 'none'), '/m/a');  // no result yet: nothing to refuse
  writeFileSync(join(dir, 'result.json'), JSON.stringify({ model: { path: '/m/a' } }));
  refuseOtherModelsResult(dir, '/m/a');  // the same model's result is redone
  assert.throws(() => refuseOtherModelsResult(dir, '/m/b'), /holds the result of another model \(\/m\/a\); pass --out/);
});

const TYDI = new URL('../../shared/data/tydiqa-goldp', import.meta.url).pathname;
test('xlir eval --bench tydiqa (Swahili dev): mAP, R@1 and the pool against brute force', { skip: existsSync(TYDI) ? false : `../shared missing (${TYDI})` }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'xlir-tydi-'));
  const model = tinyModel(dir);
  const res = await evalCli(model, join(dir, 'ev'), ['--bench', 'tydiqa', '--data', TYDI, '--languages', 'sw', '--max-passage-length', '48']);
  const { convertTydiqa } = await import('../src/data/convert-tydiqa.ts');
  const { records } = convertTydiqa(join(TYDI, 'swahili_tydiqa_dev.json'));
  const pool = [...new Set(records.map((x) => x.positive))];
  assert.deepEqual(res.languages, ['sw']);
  assert.equal(res.perLanguage.sw.queries, records.length);
  assert.equal(res.perLanguage.sw.candidates, pool.length);
  const enc = Encoder.load(model);
  const q = await enc.encodeTexts(records.map((x) => x.query), { maxLength: 64, prefix: 'Query: ' });
  const c = await enc.encodeTexts(pool, { maxLength: 48, prefix: 'Passage: ' });
  const rows = scoreRows(q, c, enc.embeddingDim);
  enc.dispose();
  let ap = 0, r1 = 0;
  rows.forEach((row, i) => {
    const gold = pool.indexOf(records[i].positive);
    ap += averagePrecision(row, Array.from(row, (_, j) => j === gold));
    r1 += row.every((x, j) => j === gold || x < row[gold]) ? 1 : 0;
  });
  // float32 dot products here and in the engine differ in summation order (1e-7), which can swap
  // near-tied candidates in a random tiny model's ranking: the means agree to 1e-3.
  assert.ok(Math.abs(res.perLanguage.sw.mAP - ap / rows.length) < 1e-3, `mAP ${res.perLanguage.sw.mAP} vs ${ap / rows.length}`);
  assert.ok(Math.abs(res.perLanguage.sw['R@1'] - r1 / rows.length) < 1e-3, `R@1 ${res.perLanguage.sw['R@1']} vs ${r1 / rows.length}`);
  assert.equal(res.kind, 'xlir-set-eval');
  assert.equal(typeof res.data.sha256.sw, 'string');
});

test('TREC runner: exact engine and FAISS Flat agree, and the engine on cuda:0 when CUDA is present; missing judged docids are counted; the run file reads back', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'xlir-trec-'));
  const model = tinyModel(dir);
  const r = mulberry32(9);
  const docs = Array.from({ length: 40 }, (_, i) => ({ docid: `d${i}`, title: '', text: text(r, 10) }));
  writeFileSync(join(dir, 'corpus.jsonl'), docs.map((d) => JSON.stringify(d)).join('\n') + '\n');
  writeFileSync(join(dir, 'topics.tsv'), Array.from({ length: 5 }, (_, q) => `q${q}\t${docs[q * 3].text.split(' ').slice(0, 5).join(' ')}`).join('\n') + '\n');
  writeFileSync(join(dir, 'qrels'), [...Array.from({ length: 5 }, (_, q) => `q${q} Q0 d${q * 3} 2`), 'q0 Q0 d1 1', 'q1 Q0 missing-doc 1'].join('\n') + '\n');
  const enc = Encoder.load(model);
  try {
    const base = { topics: join(dir, 'topics.tsv'), qrels: join(dir, 'qrels'), corpus: join(dir, 'corpus.jsonl'), depth: 20, maxQueryLength: 32,
      maxPassageLength: 32, queryPrefix: '', passagePrefix: '', batchSize: 8, seed: 0, modelPath: model, log: () => {} };
    const exact = await evaluateTrec(enc, { ...base, backend: 'exact', out: dir });
    assert.equal(exact.queries, 5);
    assert.ok(exact.ndcg10 > 0 && exact.ndcg10 <= 1);
    assert.equal(exact.result.warnings.corpus.missingJudged, 1);
    const run = await readRun(exact.runFile);
    assert.equal(run.size, 5);
    assert.equal(run.get('q0')!.length, 20);
    if (cudaInfo.cuda) {
      // On CUDA (a GPU, or the emulated addon of test/cuda-emu.test.ts): encoding and the exact
      // search on cuda:0, named in the result; the same run as on the CPU. The tiny model's scores
      // are far apart compared with the 1e-6 relative the GPU encoding may move them.
      const g = Encoder.load(model, { device: 'cuda:0' });
      try {
        const dir3 = mkdtempSync(join(tmpdir(), 'xlir-trec-'));
        const gpu = await evaluateTrec(g, { ...base, backend: 'exact', out: dir3 });
        assert.equal(JSON.parse(readFileSync(join(dir3, 'result.json'), 'utf8')).backend, 'engine-exact:cuda:0');
        const gpuRun = await readRun(gpu.runFile);
        for (const [q, hits] of run) assert.deepEqual(gpuRun.get(q)!.map((h) => h.docid), hits.map((h) => h.docid), `${q}: cuda:0 ranking`);
        assert.ok(Math.abs(gpu.ndcg10 - exact.ndcg10) < 1e-12 && Math.abs(gpu.recall100 - exact.recall100) < 1e-12);
      } finally {
        g.dispose();
      }
    }
    if (faissStatus().available) {
      const dir2 = mkdtempSync(join(tmpdir(), 'xlir-trec-'));
      const flat = await evaluateTrec(enc, { ...base, backend: 'Flat', out: dir2 });
      assert.ok(Math.abs(flat.ndcg10 - exact.ndcg10) < 1e-12 && Math.abs(flat.recall100 - exact.recall100) < 1e-12,
        `FAISS Flat ${flat.ndcg10}/${flat.recall100} vs exact ${exact.ndcg10}/${exact.recall100}`);
    }
  } finally {
    enc.dispose();
  }
});

test('xlir index / search: a document is found by its own text', { skip: faissStatus().available ? false : 'faiss-node binding not built' }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'xlir-index-'));
  const model = tinyModel(dir);
  const r = mulberry32(4);
  const docs = Array.from({ length: 30 }, (_, i) => ({ id: `doc${i}`, lang: i % 2 ? 'sw' : 'en', text: text(r, 12) }));
  writeFileSync(join(dir, 'c.jsonl'), docs.map((d) => JSON.stringify(d)).join('\n') + '\n');
  // The index's folder is made (before the corpus is encoded, as an impossible one is refused then).
  await runIndex({ model, corpus: join(dir, 'c.jsonl'), out: join(dir, 'idx', 'i.faiss'), factory: 'Flat', prefix: '', maxLength: 32, batchSize: 8, log: () => {} });
  await assert.rejects(runIndex({ model, corpus: join(dir, 'c.jsonl'), out: join(dir, 'c.jsonl', 'i.faiss'), factory: 'Flat', prefix: '', maxLength: 32, batchSize: 8,
    log: (l) => assert.doesNotMatch(l, /encoded/) }), /--out .*c\.jsonl[/\\]i\.faiss: cannot write in/);
  const said: string[] = [];
  const hits = await runSearch({ index: join(dir, 'idx', 'i.faiss'), queries: [docs[7].text, docs[12].text], k: 3, prefix: '', maxLength: 32, log: (l) => said.push(l) });
  assert.ok(!said.some((l) => /warning/.test(l)), said.join('\n'));
  // Another model than the index's (the same weights under another path here) is warned about.
  cpSync(model, join(dir, 'other-model'), { recursive: true });
  await runSearch({ index: join(dir, 'idx', 'i.faiss'), model: join(dir, 'other-model'), queries: ['x'], k: 1, prefix: '', maxLength: 32, log: (l) => said.push(l) });
  assert.ok(said.some((l) => /warning: .*i\.faiss was built with .*; the scores mean something only if .*other-model is the same model/.test(l)), said.join('\n'));
  assert.equal(hits[0][0].id, 'doc7');
  assert.equal(hits[0][0].lang, 'sw');
  assert.ok(Math.abs(hits[0][0].score - 1) < 1e-4, `self-similarity ${hits[0][0].score}`);
  assert.equal(hits[1][0].id, 'doc12');
  writeFileSync(join(dir, 'dup.jsonl'), [docs[0], docs[0]].map((d) => JSON.stringify(d)).join('\n') + '\n');
  await assert.rejects(runIndex({ model, corpus: join(dir, 'dup.jsonl'), out: join(dir, 'j.faiss'), factory: 'Flat', prefix: '', maxLength: 32, batchSize: 8, log: () => {} }),
    /dup\.jsonl:2: document id "doc0" given twice/);
});
