// `xlir train` end to end on synthetic multilingual pairs: config file + flag overrides, a falling
// validation loss, the run folder's contents, a model that loads back, a changed run refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { definingConfigs, parseTrainArgs } from '../src/train-config.ts';
import { runTrain } from '../src/train-command.ts';
import { runEncode } from '../src/encode-command.ts';
import { readNpy } from '../src/npy.ts';
import { Encoder } from '../src/encoder.ts';
import { mulberry32 } from '../src/rng.ts';
import { native } from '../src/native.ts';

const LANGS = ['en', 'de', 'sw'];
const WORDS = 120;

// A vocabulary of per-language words ("en17", "de17", ...): word k means the same in every language,
// so translations exist and cross-lingual batches have something to learn.
function makeData(dir: string, groups: number): { data: string; vocab: string } {
  const vocab = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'];
  for (const l of LANGS) for (let k = 0; k < WORDS; k++) vocab.push(`${l}${k}`);
  const r = mulberry32(7);
  const lines: string[] = [];
  for (let g = 0; g < groups; g++) {
    const words = Array.from({ length: 4 + Math.floor(r() * 4) }, () => Math.floor(r() * WORDS));
    const extra = Array.from({ length: 3 }, () => Math.floor(r() * WORDS));
    for (const l of LANGS) {
      const q = words.map((k) => `${l}${k}`).join(' ');
      const p = [...words, ...extra].reverse().map((k) => `${l}${k}`).join(' ');
      lines.push(JSON.stringify({ group: `g${g}`, lang: l, dataset: 'synthetic', query: q, positive: p }));
    }
  }
  writeFileSync(join(dir, 'train.jsonl'), lines.join('\n') + '\n');
  writeFileSync(join(dir, 'vocab.txt'), vocab.join('\n') + '\n');
  return { data: join(dir, 'train.jsonl'), vocab: join(dir, 'vocab.txt') };
}

test('config file values are overridden by flags; bad values name the option', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'xlir-cfg-'));
  writeFileSync(join(dir, 'c.yaml'), 'data: [a.jsonl]\nout: run\nscratch: tiny\ntokenizer: v.txt\nbatch-size: 12\nalpha: 0.3\nlr: 1e-4\n');
  const c = await parseTrainArgs(['--config', join(dir, 'c.yaml'), '--lr', '2e-4', '--held-out-languages', 'el', 'vi']);
  assert.equal(c.batchSize, 12);
  assert.equal(c.alpha, 0.3);
  assert.equal(c.lr, 2e-4, 'the flag overrides the file');
  assert.deepEqual(c.heldOutLanguages, ['el', 'vi']);
  assert.equal(c.temperature, 0.05, 'METHOD.md default');
  assert.equal(c.sparseEmbeddings, false, 'the exact dense embedding update by default');
  assert.equal((await parseTrainArgs(['--config', join(dir, 'c.yaml'), '--sparse-embeddings'])).sparseEmbeddings, true);
  assert.equal(c.activationRecompute, false, 'activations kept by default');
  assert.equal(c.alignmentTexts, 'queries', 'the alignment term pairs translated queries by default');
  assert.ok(!('alignmentTexts' in definingConfigs(c)[0]), 'a later option at its default leaves run keys as they were');
  // Keys of earlier versions: without sparseEmbeddings (before it existed: the key written now), and
  // with it at its place among the options (the versions since, up to --learn-temperature).
  // --checkpoint-every left the key later (the key written now lacks it; the second form has it).
  const [now, withCheckpointEvery, since] = definingConfigs(c);
  assert.ok(!('sparseEmbeddings' in now) && !('checkpointEvery' in now));
  assert.equal(withCheckpointEvery.checkpointEvery, c.checkpointEvery);
  assert.deepEqual(Object.keys(now), Object.keys(withCheckpointEvery).filter((k) => k !== 'checkpointEvery'));
  const keys = Object.keys(since);
  assert.equal(keys[keys.indexOf('sparseEmbeddings') - 1], 'freezeEmbeddings');
  assert.deepEqual(Object.keys(withCheckpointEvery), keys.filter((k) => k !== 'sparseEmbeddings'));
  assert.equal(definingConfigs(await parseTrainArgs(['--config', join(dir, 'c.yaml'), '--learn-temperature'])).length, 2, 'no version before --checkpoint-every left the key had it');
  assert.equal(definingConfigs(await parseTrainArgs(['--config', join(dir, 'c.yaml'), '--sparse-embeddings']))[0].sparseEmbeddings, true);
  const ap = await parseTrainArgs(['--config', join(dir, 'c.yaml'), '--alignment-texts', 'passages']);
  assert.equal(definingConfigs(ap)[0].alignmentTexts, 'passages');
  await assert.rejects(parseTrainArgs(['--config', join(dir, 'c.yaml'), '--alignment-texts', 'both']), /alignment-texts/);
  assert.equal((await parseTrainArgs(['--config', join(dir, 'c.yaml'), '--activation-recompute', '--device', 'emulated'])).activationRecompute, true);
  writeFileSync(join(dir, 'c.json'), JSON.stringify({ data: ['a.jsonl'], out: 'o', model: 'm', alpha: 1.5 }));
  await assert.rejects(parseTrainArgs(['--config', join(dir, 'c.json')]), /--alpha must be in \[0, 1\], got 1.5/);
  await assert.rejects(parseTrainArgs(['--data', 'a', '--out', 'o']), /exactly one of --model DIR .* or --scratch/);
  // A repeated flag, and a config key that is no option (with the likely one), are named.
  await assert.rejects(parseTrainArgs(['--config', join(dir, 'c.yaml'), '--lr', '1e-4', '--lr', '2e-4']), /--lr was given 2 times \(0\.0001, 0\.0002\): give it once/);
  assert.deepEqual((await parseTrainArgs(['--config', join(dir, 'c.yaml'), '--data', 'x.jsonl', '--data', 'y.jsonl'])).data, ['x.jsonl', 'y.jsonl'], 'a list option may repeat');
  writeFileSync(join(dir, 'typo.yaml'), 'data: [a.jsonl]\nout: run\nscratch: tiny\ntokenizer: v.txt\nbatch_sise: 4\n');
  await assert.rejects(parseTrainArgs(['--config', join(dir, 'typo.yaml')]), /typo\.yaml: unknown option "batch_sise" \(did you mean "batch-size"\?\)/);
  writeFileSync(join(dir, 'camel.yaml'), 'data: [a.jsonl]\nout: run\nscratch: tiny\ntokenizer: v.txt\nbatchSize: 4\n');
  assert.equal((await parseTrainArgs(['--config', join(dir, 'camel.yaml')])).batchSize, 4, 'camelCase keys are the same options');
  writeFileSync(join(dir, 'bad.yaml'), 'data: [a\n');
  await assert.rejects(parseTrainArgs(['--config', join(dir, 'bad.yaml')]), /bad\.yaml: not valid YAML/);
});

test('xlir train: hybrid batches on synthetic pairs, falling validation loss, a model that loads back', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'xlir-train-'));
  const { data, vocab } = makeData(dir, 90);
  const out = join(dir, 'run');
  const args = ['--data', data, '--out', out, '--scratch', 'tiny', '--tokenizer', vocab, '--batch-size', '8', '--steps', '40',
    '--lr', '1e-3', '--eval-every', '10', '--validation-fraction', '0.2', '--validation-batches', '3', '--max-passage-length', '24',
    '--cache-dir', join(dir, 'cache'), '--seed', '3', '--sub-batch-size', '10'];
  const logs: string[] = [];
  const r = await runTrain(await parseTrainArgs(args), (s) => logs.push(s));
  assert.equal(r.result.state.stopped, 'done');
  const v = r.result.validation.map((x) => x.loss);
  assert.equal(v.length, 4);
  assert.ok(v[v.length - 1] < v[0] - 0.05, `validation loss did not fall: ${v.join(' ')}`);
  for (const f of ['run.json', 'data-report.json', 'log.jsonl', 'checkpoint/state.json', 'best/config.json', 'model/config.json', 'tokenizer.json'])
    assert.ok(existsSync(join(out, f)), `${f} missing from the run folder`);
  const run = JSON.parse(readFileSync(join(out, 'run.json'), 'utf8'));
  assert.equal(run.seed, 3);
  assert.equal(run.config.batching, 'hybrid');
  assert.equal(typeof run.xlir, 'string');
  assert.equal(run.state.step, 40);
  const steps = readFileSync(join(out, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((e) => e.type === 'step');
  assert.equal(steps.length, 40);
  // Each step says which batch it trained on: hybrid gives both types, a mono batch its language.
  assert.deepEqual(new Set(steps.map((e) => e.batch)), new Set(['mono', 'cross']));
  assert.ok(steps.every((e) => e.dataset === 'synthetic' && (e.batch === 'mono') === ['en', 'de', 'sw'].includes(e.language)));

  // The selected model is the best validation one, and it loads with its tokenizer.
  const enc = Encoder.load(join(out, 'model'));
  try {
    const e = await enc.encodeTexts(['Query: en1 en2 en3'], { maxLength: 16 });
    assert.equal(e.length, enc.embeddingDim);
    assert.ok(Math.abs(e.reduce((s, x) => s + x * x, 0) - 1) < 1e-4, 'embeddings are L2-normalised');
    // It carries the inputs it was trained on, for evaluation and for sentence-transformers.
    assert.deepEqual(enc.folderInputs.training, {
      queryPrefix: 'Query: ', passagePrefix: 'Passage: ', maxQueryLength: 64, maxPassageLength: 24,
      run: { runKey: run.runKey, seed: 3, steps: 40, xlir: run.xlir, data: [data], out },
    });
    assert.deepEqual(enc.folderInputs.prompts, { query: 'Query: ', passage: 'Passage: ' });
    assert.equal(JSON.parse(readFileSync(join(out, 'model', 'sentence_bert_config.json'), 'utf8')).max_seq_length, 64);
    // xlir encode --prompt passage takes them: the same embeddings as the training's passage inputs.
    const texts = ['en1 en2 en3 en4 en5 en6 en7 en8 en9 en10 en11 en12 en13 en14 en15 en16 en17 en18 en19 en20 en21 en22 en23 en24 en25 en26', 'de3 de4'];
    writeFileSync(join(dir, 'p.jsonl'), texts.map((t) => JSON.stringify({ text: t })).join('\n') + '\n');
    const notes: string[] = [];
    await runEncode({ model: join(out, 'model'), input: join(dir, 'p.jsonl'), output: join(dir, 'p.npy'), prompt: 'passage', batchSize: 8, precision: 'fp32', device: 'cpu', log: (l) => notes.push(l) });
    assert.ok(notes.some((l) => /passage inputs: passagePrefix "Passage: ", maxPassageLength 24 \(from the model's xlir_training\.json\)/.test(l)), notes.join(''));
    const want = await enc.encodeTexts(texts, { maxLength: 24, prefix: 'Passage: ' });
    assert.deepEqual(readNpy(join(dir, 'p.npy')).data, want);
    assert.notDeepEqual(want, await enc.encodeTexts(texts, { maxLength: 64, prefix: 'Passage: ' }), 'the first text is longer than 24 tokens: the length matters');
  } finally {
    enc.dispose();
  }

  // Same folder, other settings: refused rather than silently mixing two runs, naming what differs,
  // before anything is written (the finished run keeps its record and its tokenizer).
  const kept = ['run.json', 'data-report.json', 'tokenizer.json', 'log.jsonl'].map((f) => readFileSync(join(out, f), 'utf8'));
  await assert.rejects(runTrain(await parseTrainArgs([...args, '--alpha', '0.7', '--lowercase']), () => {}),
    /belongs to a run with other settings \(lowercase: false -> true; alpha: 0\.5 -> 0\.7\)/);
  assert.deepEqual(['run.json', 'data-report.json', 'tokenizer.json', 'log.jsonl'].map((f) => readFileSync(join(out, f), 'utf8')), kept,
    'a refused rerun changed the run folder');
  // Same settings (a checkpoint interval is not one): the finished run is recognised, nothing is
  // retrained, and its record still covers the whole run.
  const again = await runTrain(await parseTrainArgs([...args, '--checkpoint-every', '7']), (s) => logs.push(s));
  assert.ok(logs.some((l) => /already finished/.test(l)));
  assert.deepEqual(again.result.losses, r.result.losses, 'losses of every step, read back from log.jsonl');
  assert.deepEqual(again.result.validation, r.result.validation);
  const rerun = JSON.parse(readFileSync(join(out, 'run.json'), 'utf8'));
  assert.equal(rerun.started, run.started, 'the run keeps its start');
  assert.equal(rerun.resumed.length, 1);
  assert.equal(rerun.validation.length, 4);
  // A checkpoint state that cannot be read is named, not taken for a fresh start.
  writeFileSync(join(out, 'checkpoint', 'state.json'), '{"runKey": "ab');
  await assert.rejects(runTrain(await parseTrainArgs(args), () => {}), /checkpoint[/\\]state\.json: not a readable checkpoint state/);
  // Without its checkpoint, the finished run is reported as it finished (experiments remove
  // checkpoints); without its model too, it is refused rather than restarted over its own log.
  rmSync(join(out, 'checkpoint'), { recursive: true });
  const noCkpt: string[] = [];
  const back = await runTrain(await parseTrainArgs(args), (s) => noCkpt.push(s));
  assert.ok(noCkpt.some((l) => /already finished .*its checkpoint was removed/.test(l)), noCkpt.join('\n'));
  assert.deepEqual(back.result.losses, r.result.losses);
  assert.deepEqual(back.result.state, r.result.state);
  rmSync(join(out, 'model'), { recursive: true });
  await assert.rejects(runTrain(await parseTrainArgs(args), () => {}), /log\.jsonl records 40 steps but there is no checkpoint to resume them from/);
  assert.equal(readFileSync(join(out, 'log.jsonl'), 'utf8').trim().split('\n').filter((l) => l.includes('"step"')).length >= 40, true);
});

test('xlir train: held-out languages are absent from training; empty data is an error naming the file', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'xlir-train-'));
  const { data, vocab } = makeData(dir, 40);
  const base = ['--scratch', 'tiny', '--tokenizer', vocab, '--batch-size', '6', '--steps', '2', '--eval-every', '0',
    '--cache-dir', join(dir, 'cache'), '--held-out-languages', 'sw'];
  const logs: string[] = [];
  await runTrain(await parseTrainArgs([...base, '--data', data, '--out', join(dir, 'a')]), (s) => logs.push(s));
  const report = JSON.parse(readFileSync(join(dir, 'a', 'data-report.json'), 'utf8'));
  assert.equal(report.train.heldOut.records, 40);
  assert.deepEqual(Object.keys(report.train.kept.byLanguage).sort(), ['de', 'en']);
  // Inputs that would silently train something else than asked are refused or noted.
  await assert.rejects(runTrain(await parseTrainArgs([...base, '--data', data, '--out', join(dir, 'hn'), '--hard-negatives', '1']), () => {}),
    /--hard-negatives 1: no training pair has "negatives"/);
  const notes: string[] = [];
  await runTrain(await parseTrainArgs([...base, '--data', data, '--out', join(dir, 'vi'), '--held-out-languages', 'vi']), (l) => notes.push(l));
  assert.ok(notes.some((l) => /note: --held-out-languages vi: not in the training data/.test(l)), notes.join('\n'));
  writeFileSync(join(dir, 'afile'), 'x');
  await assert.rejects(runTrain(await parseTrainArgs([...base, '--data', data, '--out', join(dir, 'afile')]), () => {}), /--out .*afile: exists and is not a folder/);
  await assert.rejects(parseTrainArgs([...base, '--data', data, '--out', 'o', '--weight-decay', '-0.1']), /--weight-decay must be >= 0, got -0\.1/);
  assert.throws(() => Encoder.load(join(dir, 'a')), /no config\.json .*it looks like a run folder: its model is .*[/\\]a[/\\]model/);
  // A tokenizer larger than the model's vocabulary does not belong to it.
  const big = JSON.parse(readFileSync(join(dir, 'a', 'model', 'tokenizer.json'), 'utf8'));
  for (let k = 0; k < 50; k++) big.model.vocab[`extra${k}`] = 10_000 + k;
  writeFileSync(join(dir, 'a', 'model', 'tokenizer.json'), JSON.stringify(big));
  assert.throws(() => Encoder.load(join(dir, 'a', 'model')), /tokenizer\.json: the tokenizer has \d+ tokens but the model's vocabulary .*config\.json\) has \d+/);
  writeFileSync(join(dir, 'empty.jsonl'), '');
  await assert.rejects(runTrain(await parseTrainArgs([...base, '--out', join(dir, 'b'), '--data', join(dir, 'empty.jsonl')]), () => {}),
    /empty\.jsonl/);
});

test('xlir train --learn-temperature: the temperature moves, is logged and recorded in run.json; without it, another run', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'xlir-train-temp-'));
  const { data, vocab } = makeData(dir, 40);
  const common = ['--data', data, '--out', join(dir, 'run'), '--scratch', 'tiny', '--tokenizer', vocab, '--batch-size', '6',
    '--steps', '6', '--lr', '1e-3', '--eval-every', '3', '--validation-fraction', '0.3', '--validation-batches', '1',
    '--cache-dir', join(dir, 'cache'), '--seed', '2', '--temperature', '0.1'];
  const args = [...common, '--learn-temperature', '--temperature-lr', '5e-2'];
  const logs: string[] = [];
  const r = await runTrain(await parseTrainArgs(args), (s) => logs.push(s));
  assert.equal(r.result.state.stopped, 'done');
  assert.ok(logs.some((l) => /temperature learned from 0\.1 \(peak lr 0\.05\)/.test(l)), logs.join('\n'));
  const run = JSON.parse(readFileSync(join(dir, 'run', 'run.json'), 'utf8'));
  assert.equal(run.config.learnTemperature, true);
  assert.equal(typeof run.learnedTemperature, 'number');
  assert.ok(Math.abs(run.learnedTemperature - 0.1) > 1e-3, `temperature did not move: ${run.learnedTemperature}`);
  assert.ok(logs.some((l) => new RegExp(`learned temperature ${run.learnedTemperature.toPrecision(4)}`).test(l)));
  const steps = readFileSync(join(dir, 'run', 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((e) => e.type === 'step');
  assert.equal(steps[0].temperature, 1 / Math.fround(10));
  assert.equal(steps.length, 6);
  // The same run without learning it is another run: its checkpoint is refused.
  await assert.rejects(runTrain(await parseTrainArgs(common), () => {}), /belongs to a run with other settings/);
});

// The same 4-step run (gradient caching on) on the CPU and with `deviceArgs`, in dir/cpu and dir/dev;
// the device run's log lines are kept.
async function cpuAndDeviceRuns(deviceArgs: string[], extra: string[] = []) {
  const dir = mkdtempSync(join(tmpdir(), 'xlir-train-dev-'));
  const { data, vocab } = makeData(dir, 40);
  const base = ['--data', data, '--scratch', 'tiny', '--tokenizer', vocab, '--batch-size', '6', '--steps', '4',
    '--eval-every', '0', '--cache-dir', join(dir, 'cache'), '--seed', '5', '--sub-batch-size', '5', ...extra];
  const cpu = await runTrain(await parseTrainArgs([...base, '--out', join(dir, 'cpu')]), () => {});
  const logs: string[] = [];
  const dev = await runTrain(await parseTrainArgs([...base, '--out', join(dir, 'dev'), ...deviceArgs]), (s) => logs.push(s));
  return { dir, cpu, dev, logs };
}

test('xlir train --device emulated --activation-recompute: the device path end to end, same losses as the CPU', async () => {
  const { cpu, dev, logs } = await cpuAndDeviceRuns(['--device', 'emulated', '--activation-recompute']);
  assert.ok(logs.some((l) => /^device: emulated, .*activations recomputed/.test(l)), logs.join('\n'));
  // The emulated device equals the CPU bit for bit in fp32, and recompute changes no gradient.
  assert.deepEqual(dev.result.losses, cpu.result.losses);
});

// On CUDA (a GPU, or the emulated addon that test/cuda-emu.test.ts loads through XLIR_ADDON): the
// trainer's CUDA path, InfoNCE on the GPU included, gives the CPU run's losses up to summation order.
const cudaInfo = native().info();
test('xlir train --device cuda:0: the CUDA path end to end, with the losses of the CPU run', { skip: cudaInfo.cuda ? false : `no CUDA (${cudaInfo.cudaReason})` }, async () => {
  // With a learned temperature: its gradient comes from the GPU InfoNCE's embedding gradients.
  const { dir, cpu, dev, logs } = await cpuAndDeviceRuns(['--device', 'cuda:0'], ['--learn-temperature', '--temperature-lr', '1e-2']);
  assert.ok(logs.some((l) => /^device: cuda:0/.test(l)), logs.join('\n'));
  // fp32 kernels differ from the CPU in summation order only (1e-6 relative per forward); four
  // AdamW steps on a tiny model keep the losses within 1e-4 relative (device.test.ts: 2e-3 over 50).
  assert.equal(dev.result.losses.length, cpu.result.losses.length);
  const worst = Math.max(...dev.result.losses.map((l, i) => Math.abs(l - cpu.result.losses[i]) / Math.abs(cpu.result.losses[i])));
  console.log(`train-command.test.ts: cuda:0 (${cudaInfo.cudaReason}) vs CPU, worst relative loss difference ${worst.toExponential(2)}`);
  dev.result.losses.forEach((l, i) => assert.ok(Math.abs(l - cpu.result.losses[i]) <= 1e-4 * Math.abs(cpu.result.losses[i]),
    `step ${i}: cuda:0 ${l} vs CPU ${cpu.result.losses[i]}`));
  // The learned temperature: the same gradient up to summation order, so the same value to 1e-5.
  const temp = (d: string) => JSON.parse(readFileSync(join(dir, d, 'run.json'), 'utf8')).learnedTemperature as number;
  assert.ok(Math.abs(temp('dev') - temp('cpu')) <= 1e-5 * temp('cpu') && temp('cpu') !== 0.05, `temperature ${temp('dev')} vs CPU ${temp('cpu')}`);
  // the model written from the device loads on the CPU and encodes as the CPU run's model does
  const a = Encoder.load(join(dir, 'dev', 'model')), c = Encoder.load(join(dir, 'cpu', 'model'));
  const texts = ['en3 en5 en7', 'de1 de2'];
  const ea = await a.encodeTexts(texts, { maxLength: 16 }), ec = await c.encodeTexts(texts, { maxLength: 16 });
  const diff = Math.hypot(...ea.map((x, i) => x - ec[i])) / Math.hypot(...ec);
  assert.ok(diff < 1e-4, `saved models differ by ${diff}`);
  console.log(`train-command.test.ts: saved cuda:0 model vs CPU model, relative embedding difference ${diff.toExponential(2)}`);
  a.dispose();
  c.dispose();
});

// Pairs that share a positive passage (every group here has a twin asking another question about the
// same passage) are kept out of each other's batches by default, which the run's key records; a
// checkpoint of a run that let them meet is not silently continued with other batches.
test('xlir train --shared-positives: twins are kept apart by default, and an earlier run is named when resumed', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'xlir-train-shared-'));
  const { data, vocab } = makeData(dir, 30);
  const twins = readFileSync(data, 'utf8').trim().split('\n').map((l) => {
    const r = JSON.parse(l);
    return JSON.stringify({ ...r, group: `${r.group}-twin`, query: r.query.split(' ').reverse().join(' ') });
  });
  writeFileSync(join(dir, 'twins.jsonl'), twins.join('\n') + '\n');
  const common = ['--data', data, join(dir, 'twins.jsonl'), '--scratch', 'tiny', '--tokenizer', vocab, '--batch-size', '6', '--steps', '3',
    '--eval-every', '0', '--validation-fraction', '0', '--cache-dir', join(dir, 'cache'), '--seed', '1'];
  const logs: string[] = [];
  await runTrain(await parseTrainArgs([...common, '--out', join(dir, 'sep')]), (s) => logs.push(s));
  assert.ok(logs.some((l) => /batches: 60 groups share a positive passage .* no batch holds two of them/.test(l)), logs.join('\n'));
  const allowLogs: string[] = [];
  await runTrain(await parseTrainArgs([...common, '--out', join(dir, 'allow'), '--shared-positives', 'allow']), (s) => allowLogs.push(s));
  assert.ok(!allowLogs.some((l) => /share a positive passage/.test(l)));
  const key = (d: string) => JSON.parse(readFileSync(join(dir, d, 'run.json'), 'utf8')).runKey;
  assert.notEqual(key('sep'), key('allow'), 'the batches differ, so the run keys must');
  await assert.rejects(runTrain(await parseTrainArgs([...common, '--out', join(dir, 'allow')]), () => {}),
    /allow[/\\]checkpoint was written by a run whose batches could hold two pairs with the same positive passage; resume it with --shared-positives allow/);
  // Data without shared passages: the option changes nothing, not even the key.
  await runTrain(await parseTrainArgs([...common.slice(0, 1), data, ...common.slice(3), '--out', join(dir, 'plain')]), () => {});
  await runTrain(await parseTrainArgs([...common.slice(0, 1), data, ...common.slice(3), '--out', join(dir, 'plain2'), '--shared-positives', 'allow']), () => {});
  assert.equal(key('plain'), key('plain2'));
});

// One run per folder: a live process's lock refuses a second run (even with --overwrite, which would
// delete the first run's files under it); a dead process's lock is taken over; the lock goes with the run.
test('xlir train: a run folder in use by a live process is refused; a stale lock is taken over', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'xlir-train-lock-'));
  const { data, vocab } = makeData(dir, 20);
  const out = join(dir, 'run');
  const args = ['--data', data, '--out', out, '--scratch', 'tiny', '--tokenizer', vocab, '--batch-size', '6', '--steps', '2',
    '--eval-every', '0', '--validation-fraction', '0', '--cache-dir', join(dir, 'cache')];
  mkdirSync(out);
  writeFileSync(join(out, 'lock'), `${process.ppid}\n`);  // the test runner: alive
  for (const extra of [[], ['--overwrite']])
    await assert.rejects(runTrain(await parseTrainArgs([...args, ...extra]), () => {}), new RegExp(`run is in use by another xlir train \\(process ${process.ppid}\\)`));
  assert.ok(existsSync(join(out, 'lock')), '--overwrite deleted a live run\'s folder');
  writeFileSync(join(out, 'lock'), '999999999\n');  // no such process
  const r = await runTrain(await parseTrainArgs(args), () => {});
  assert.equal(r.result.state.stopped, 'done');
  assert.ok(!existsSync(join(out, 'lock')), 'the lock is released');
});

// The command line: Ctrl-C stops the run at a checkpoint and the exit status says it did not finish.
test('xlir train: SIGINT writes a checkpoint and exits with status 130', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'xlir-train-int-'));
  const { data, vocab } = makeData(dir, 20);
  const out = join(dir, 'run');
  const cli = new URL('../bin/xlir.mjs', import.meta.url).pathname;
  const child = spawn(process.execPath, [cli, 'train', '--data', data, '--out', out, '--scratch', 'tiny', '--tokenizer', vocab, '--batch-size', '6',
    '--steps', '100000', '--eval-every', '0', '--validation-fraction', '0', '--cache-dir', join(dir, 'cache'), '--threads', '1'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (b) => (stderr += b));
  const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
  const t0 = Date.now();
  while (!(existsSync(join(out, 'log.jsonl')) && readFileSync(join(out, 'log.jsonl'), 'utf8').includes('"step"'))) {
    if (Date.now() - t0 > 60_000) (child.kill('SIGKILL'), assert.fail(`no step logged in 60 s: ${stderr}`));
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill('SIGINT');
  assert.equal(await exited, 130, stderr);
  assert.match(stderr, /stopped at step \d+; run the same command again to resume/);
  assert.ok(existsSync(join(out, 'checkpoint', 'state.json')));
});
