import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NativeModel, NativeModelConfig, ParameterInfo } from '../src/native.ts';
import { SafetensorsFile, decodeBF16, encodeBF16, writeSafetensors } from '../src/safetensors.ts';
import { loadWeights, parseHfConfig, readModelFolder, saveModelFolder } from '../src/checkpoint.ts';
import { PYTHON, SKIP_REASON, runPython } from './reference/python.ts';

const made: string[] = [];
const tmp = () => { const d = mkdtempSync(join(tmpdir(), 'xlir-ckpt-')); made.push(d); return d; };
after(() => { for (const d of made) rmSync(d, { recursive: true, force: true }); });
const bitsOf = (a: Float32Array) => [...new Uint32Array(a.buffer, a.byteOffset, a.length)];
const json = (path: string) => JSON.parse(readFileSync(path, 'utf8'));

// ---------------------------------------------------------------------------------------------
// A stand-in for the native model: the parameter list the engine exposes, random values, and
// setParameter's shape check. Enough to exercise checkpoint I/O without the addon.

function parameterShapes(c: NativeModelConfig): [string, number[]][] {
  const H = c.hiddenSize, I = c.intermediateSize;
  const out: [string, number[]][] = [
    ['embeddings.word_embeddings.weight', [c.vocabSize, H]],
    ['embeddings.position_embeddings.weight', [c.maxPositions, H]],
    ['embeddings.token_type_embeddings.weight', [c.typeVocabSize, H]],
    ['embeddings.LayerNorm.weight', [H]],
    ['embeddings.LayerNorm.bias', [H]],
  ];
  for (let l = 0; l < c.numLayers; l++) {
    const p = `encoder.layer.${l}.`;
    for (const m of ['query', 'key', 'value']) out.push([`${p}attention.self.${m}.weight`, [H, H]], [`${p}attention.self.${m}.bias`, [H]]);
    out.push(
      [`${p}attention.output.dense.weight`, [H, H]], [`${p}attention.output.dense.bias`, [H]],
      [`${p}attention.output.LayerNorm.weight`, [H]], [`${p}attention.output.LayerNorm.bias`, [H]],
      [`${p}intermediate.dense.weight`, [I, H]], [`${p}intermediate.dense.bias`, [I]],
      [`${p}output.dense.weight`, [H, I]], [`${p}output.dense.bias`, [H]],
      [`${p}output.LayerNorm.weight`, [H]], [`${p}output.LayerNorm.bias`, [H]],
    );
  }
  if (c.hasPooler) out.push(['pooler.dense.weight', [H, H]], ['pooler.dense.bias', [H]]);
  if (c.dense) {
    out.push(['dense.linear.weight', [c.dense.outFeatures, H]]);
    if (c.dense.bias) out.push(['dense.linear.bias', [c.dense.outFeatures]]);
  }
  return out;
}

class FakeModel implements Pick<NativeModel, 'parameters' | 'getParameter' | 'setParameter' | 'hiddenSize' | 'embeddingDim' | 'numParameters'> {
  readonly values = new Map<string, Float32Array>();
  private readonly infos: ParameterInfo[] = [];
  readonly hiddenSize: number;
  readonly embeddingDim: number;
  readonly numParameters: number;
  failOn?: string;

  constructor(readonly config: NativeModelConfig, seed = config.seed) {
    let s = seed >>> 0 || 1;
    const rand = () => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return s / 2 ** 32 * 2 - 1; };
    let offset = 0;
    for (const [name, shape] of parameterShapes(config)) {
      const n = shape.reduce((a, b) => a * b, 1);
      this.values.set(name, Float32Array.from({ length: n }, rand));
      this.infos.push({ name, shape, trainable: true, offset });
      offset += n;
    }
    this.numParameters = offset;
    this.hiddenSize = config.hiddenSize;
    this.embeddingDim = config.dense?.outFeatures ?? config.hiddenSize;
  }

  parameters(): ParameterInfo[] {
    return this.infos.map((p) => ({ ...p, shape: [...p.shape] }));
  }

  getParameter(name: string): Float32Array {
    if (name === this.failOn) throw new Error(`simulated failure reading "${name}"`);
    const v = this.values.get(name);
    if (!v) throw new Error(`no parameter "${name}"`);
    return v.slice();
  }

  setParameter(name: string, data: Float32Array, shape: number[]): void {
    const info = this.infos.find((p) => p.name === name);
    if (!info) throw new Error(`no parameter "${name}"`);
    if (info.shape.join() !== shape.join()) throw new Error(`"${name}": shape [${shape}] given, parameter is [${info.shape}]`);
    if (data.length !== this.values.get(name)!.length) throw new Error(`"${name}": ${data.length} values`);
    this.values.set(name, data.slice());
  }

  asNative(): NativeModel {
    return this as unknown as NativeModel;
  }
}

function tinyConfig(over: Partial<NativeModelConfig> = {}): NativeModelConfig {
  const roberta = over.arch === 'roberta';
  return {
    arch: 'bert', vocabSize: 100, hiddenSize: 32, numLayers: 2, numHeads: 4, intermediateSize: 64,
    maxPositions: roberta ? 66 : 64, typeVocabSize: roberta ? 1 : 2, layerNormEps: roberta ? 1e-5 : 1e-12,
    padTokenId: roberta ? 1 : 0, hiddenDropout: 0.1, attentionDropout: 0.1, pooling: roberta ? 'mean' : 'pooler',
    hasPooler: true, normalize: false, seed: 7, ...over,
  };
}

function hfConfigFor(c: NativeModelConfig, over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    model_type: c.arch === 'bert' ? 'bert' : 'xlm-roberta', vocab_size: c.vocabSize, hidden_size: c.hiddenSize,
    num_hidden_layers: c.numLayers, num_attention_heads: c.numHeads, intermediate_size: c.intermediateSize,
    max_position_embeddings: c.maxPositions, type_vocab_size: c.typeVocabSize, layer_norm_eps: c.layerNormEps,
    pad_token_id: c.padTokenId, hidden_dropout_prob: c.hiddenDropout, attention_probs_dropout_prob: c.attentionDropout,
    hidden_act: 'gelu', ...over,
  };
}

/** A Hugging Face folder as transformers 4.x pretraining checkpoints look: prefixed names plus heads. */
function writeHfFolder(dir: string, model: FakeModel, opts: { prefix?: string; extra?: Record<string, number[]>; config?: Record<string, unknown>; rename?: (n: string) => string } = {}): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(hfConfigFor(model.config, opts.config)));
  const tensors = [...model.values].filter(([n]) => !n.startsWith('dense.')).map(([name, data]) => ({
    name: (opts.prefix ?? '') + (opts.rename ? opts.rename(name) : name),
    shape: model.parameters().find((p) => p.name === name)!.shape,
    data,
  }));
  for (const [name, shape] of Object.entries(opts.extra ?? {})) {
    tensors.push({ name, shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(0.5) });
  }
  writeSafetensors(join(dir, 'model.safetensors'), tensors, { metadata: { format: 'pt' } });
  return dir;
}

function assertSameParameters(a: FakeModel, b: FakeModel, msg = '') {
  assert.deepEqual([...a.values.keys()].sort(), [...b.values.keys()].sort(), msg);
  for (const [name, v] of a.values) assert.deepEqual(bitsOf(b.values.get(name)!), bitsOf(v), `${msg} ${name}`);
}

// ---------------------------------------------------------------------------------------------
// config.json

test('config.json fields map onto the engine config; absent optional fields take the transformers defaults', () => {
  const { config, modelType, defaulted } = parseHfConfig({
    model_type: 'xlm-roberta', vocab_size: 250002, hidden_size: 768, num_hidden_layers: 12, num_attention_heads: 12,
    intermediate_size: 3072, max_position_embeddings: 514, type_vocab_size: 1, layer_norm_eps: 1e-5, pad_token_id: 1,
    hidden_dropout_prob: 0.1, attention_probs_dropout_prob: 0.2, hidden_act: 'gelu', position_embedding_type: 'absolute',
  }, 'x/config.json');
  assert.equal(modelType, 'xlm-roberta');
  assert.deepEqual(defaulted, []);
  assert.deepEqual(config, {
    arch: 'roberta', vocabSize: 250002, hiddenSize: 768, numLayers: 12, numHeads: 12, intermediateSize: 3072,
    maxPositions: 514, typeVocabSize: 1, layerNormEps: 1e-5, padTokenId: 1, hiddenDropout: 0.1, attentionDropout: 0.2,
  });
  const minimal = parseHfConfig({ model_type: 'bert', vocab_size: 10, hidden_size: 8, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 16, max_position_embeddings: 32 }, 'c.json');
  assert.deepEqual(minimal.defaulted.sort(), ['attention_probs_dropout_prob', 'hidden_dropout_prob', 'layer_norm_eps', 'pad_token_id', 'type_vocab_size']);
  assert.equal(minimal.config.typeVocabSize, 2);
  assert.equal(minimal.config.padTokenId, 0);
  assert.equal(minimal.config.layerNormEps, 1e-12);
  assert.equal(parseHfConfig({ ...hfConfigFor(tinyConfig({ arch: 'roberta' })), pad_token_id: undefined, model_type: 'roberta' }, 'c').config.padTokenId, 1);
});

test('unsupported or incomplete config.json is rejected naming the file and the field', () => {
  const base = hfConfigFor(tinyConfig());
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ hidden_act: 'gelu_new' }, /field "hidden_act" is "gelu_new"; only "gelu"/],
    [{ position_embedding_type: 'relative_key' }, /field "position_embedding_type" is "relative_key"/],
    [{ is_decoder: true }, /field "is_decoder" is true/],
    [{ add_cross_attention: true }, /field "add_cross_attention"/],
    [{ hidden_size: 30 }, /field "hidden_size" \(30\) is not divisible by num_attention_heads \(4\)/],
    [{ num_hidden_layers: undefined }, /field "num_hidden_layers" is missing/],
    [{ intermediate_size: '64' }, /field "intermediate_size" must be an integer/],
    [{ model_type: 'gpt2' }, /field "model_type" is "gpt2"; only "bert", "xlm-roberta" and "roberta"/],
    [{ model_type: undefined }, /field "model_type" is missing/],
    [{ hidden_dropout_prob: 1.5 }, /field "hidden_dropout_prob" must be a probability/],
    [{ pad_token_id: 100 }, /field "pad_token_id" \(100\) is not below vocab_size/],
  ];
  for (const [over, re] of cases) {
    const dir = tmp();
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...base, ...over }));
    assert.throws(() => readModelFolder(dir), (e: Error) => {
      assert.ok(e.message.includes(join(dir, 'config.json')), `names the file: ${e.message}`);
      assert.match(e.message, re);
      return true;
    }, JSON.stringify(over));
  }
  const dir = tmp();
  writeFileSync(join(dir, 'config.json'), '{"model_type": "bert",');
  assert.throws(() => readModelFolder(dir), /config\.json: invalid JSON/);
});

// ---------------------------------------------------------------------------------------------
// Reading Hugging Face folders

test('HF folder: prefixes stripped, heads and buffers ignored, pooler detected, BERT defaults to pooler pooling', () => {
  const cfg = tinyConfig();
  const src = new FakeModel(cfg);
  const dir = writeHfFolder(join(tmp(), 'bert'), src, {
    prefix: 'bert.',
    extra: { 'cls.predictions.bias': [100], 'cls.seq_relationship.weight': [2, 32], 'bert.embeddings.position_ids': [1, 64] },
  });
  writeFileSync(join(dir, 'tokenizer.json'), '{}');
  const f = readModelFolder(dir);
  try {
    assert.deepEqual(f.tensors.names(), [...src.values.keys()].sort());
    assert.deepEqual(f.meta.ignoredTensors, ['bert.embeddings.position_ids', 'cls.predictions.bias', 'cls.seq_relationship.weight']);
    assert.equal(f.config.hasPooler, true);
    assert.equal(f.config.pooling, 'pooler');
    assert.equal(f.meta.poolingSource, 'default');
    assert.equal(f.config.normalize, false);
    assert.equal(f.config.dense, undefined);
    assert.equal(f.meta.format, 'huggingface');
    assert.equal(f.tokenizerPath, join(dir, 'tokenizer.json'));
    assert.deepEqual(f.tensors.shape('encoder.layer.1.intermediate.dense.weight'), [64, 32]);
    assert.deepEqual(bitsOf(f.tensors.get('encoder.layer.1.output.dense.bias')), bitsOf(src.values.get('encoder.layer.1.output.dense.bias')!));
    const { seed: _s, ...rest } = f.config;
    const { seed: _t, ...expected } = cfg;
    assert.deepEqual(rest, { ...expected, dense: undefined });
  } finally {
    f.tensors.close();
  }

  const noPooler = new FakeModel(tinyConfig({ hasPooler: false }));
  const g = readModelFolder(writeHfFolder(join(tmp(), 'bert2'), noPooler));
  assert.equal(g.config.hasPooler, false);
  assert.equal(g.config.pooling, 'cls', 'BERT without pooler weights pools CLS');
  assert.equal(g.tokenizerPath, undefined);
  g.tensors.close();
});

test('HF folder: XLM-R with roberta. prefix and lm_head defaults to mean pooling; overrides apply and are checked', () => {
  const cfg = tinyConfig({ arch: 'roberta', hasPooler: false });
  const dir = writeHfFolder(join(tmp(), 'xlmr'), new FakeModel(cfg), { prefix: 'roberta.', extra: { 'lm_head.dense.weight': [32, 32], 'lm_head.bias': [100] } });
  const f = readModelFolder(dir);
  assert.equal(f.config.arch, 'roberta');
  assert.equal(f.config.pooling, 'mean');
  assert.equal(f.config.hasPooler, false);
  assert.equal(f.config.padTokenId, 1);
  assert.equal(f.meta.modelType, 'xlm-roberta');
  assert.deepEqual(f.meta.ignoredTensors, ['lm_head.bias', 'lm_head.dense.weight']);
  assert.ok(f.tensors.names().every((n) => !n.startsWith('roberta.')));
  f.tensors.close();

  const o = readModelFolder(dir, { pooling: 'cls', normalize: true, seed: 42 });
  assert.deepEqual([o.config.pooling, o.config.normalize, o.config.seed, o.meta.poolingSource], ['cls', true, 42, 'override']);
  o.tensors.close();
  assert.throws(() => readModelFolder(dir, { pooling: 'pooler' }), /pooling "pooler" needs pooler\.dense\.weight/);
});

test('HF folder: legacy LayerNorm gamma/beta names, name collisions, sharded checkpoints', () => {
  const src = new FakeModel(tinyConfig());
  const legacy = writeHfFolder(join(tmp(), 'legacy'), src, { prefix: 'bert.', rename: (n) => n.replace(/LayerNorm\.weight$/, 'LayerNorm.gamma').replace(/LayerNorm\.bias$/, 'LayerNorm.beta') });
  const f = readModelFolder(legacy);
  assert.deepEqual(f.tensors.names(), [...src.values.keys()].sort());
  f.tensors.close();

  const clash = writeHfFolder(join(tmp(), 'clash'), src, { prefix: 'bert.', extra: { 'embeddings.LayerNorm.weight': [32] } });
  assert.throws(() => readModelFolder(clash), /two tensors map to "embeddings\.LayerNorm\.weight": "bert\.embeddings\.LayerNorm\.weight" in .* and "embeddings\.LayerNorm\.weight"/);

  // Two shards and an index, as transformers writes them for large models.
  const dir = join(tmp(), 'sharded');
  mkdirSync(dir);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(hfConfigFor(src.config)));
  const names = [...src.values.keys()];
  const shapes = new Map(src.parameters().map((p) => [p.name, p.shape]));
  const halves = [names.slice(0, 20), names.slice(20)];
  const weightMap: Record<string, string> = {};
  halves.forEach((part, i) => {
    const file = `model-0000${i + 1}-of-00002.safetensors`;
    writeSafetensors(join(dir, file), part.map((n) => ({ name: n, shape: shapes.get(n)!, data: src.values.get(n)! })));
    for (const n of part) weightMap[n] = file;
  });
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
  const s = readModelFolder(dir);
  assert.equal(s.meta.weightFiles.length, 2);
  const dst = new FakeModel(src.config, 99);
  assert.deepEqual(loadWeights(dst.asNative(), s), []);
  assertSameParameters(src, dst, 'sharded');
  s.tensors.close();
  weightMap[names[0]] = 'model-00002-of-00002.safetensors';
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: weightMap }));
  assert.throws(() => readModelFolder(dir), new RegExp(`weight_map puts "${names[0].replace(/\./g, '\\.')}" in model-00002-of-00002\\.safetensors, which does not contain it`));
});

test('folders without safetensors weights are refused with a clear message', () => {
  const dir = tmp();
  writeFileSync(join(dir, 'config.json'), JSON.stringify(hfConfigFor(tinyConfig())));
  writeFileSync(join(dir, 'pytorch_model.bin'), 'pickle');
  assert.throws(() => readModelFolder(dir), /only in pytorch_model\.bin; safetensors is required/);
  const empty = tmp();
  writeFileSync(join(empty, 'config.json'), JSON.stringify(hfConfigFor(tinyConfig())));
  assert.throws(() => readModelFolder(empty), /no model\.safetensors/);
  assert.throws(() => readModelFolder(tmp()), /no config\.json/);
  assert.throws(() => readModelFolder(join(tmp(), 'absent')), /not a directory/);
});

// ---------------------------------------------------------------------------------------------
// loadWeights

test('loadWeights copies every parameter and reports unused tensors', () => {
  const src = new FakeModel(tinyConfig());
  const dir = writeHfFolder(join(tmp(), 'm'), src, { prefix: 'bert.', extra: { 'classifier.weight': [3, 32], 'cls.predictions.bias': [100] } });
  const dst = new FakeModel(src.config, 1234);
  assert.notDeepEqual(bitsOf(dst.values.get('pooler.dense.bias')!), bitsOf(src.values.get('pooler.dense.bias')!));
  const unused = loadWeights(dst.asNative(), dir);
  assert.deepEqual(unused, ['classifier.weight'], 'heads are ignored silently, other leftovers reported');
  assertSameParameters(src, dst);

  // A model without pooler leaves the checkpoint's pooler unused.
  const noPooler = new FakeModel(tinyConfig({ hasPooler: false }), 5);
  assert.deepEqual(loadWeights(noPooler.asNative(), dir), ['classifier.weight', 'pooler.dense.bias', 'pooler.dense.weight']);
});

test('loadWeights names missing and mis-shaped tensors and leaves the model untouched', () => {
  const src = new FakeModel(tinyConfig({ hasPooler: false }));
  const dir = writeHfFolder(join(tmp(), 'm'), src);
  const withPooler = new FakeModel(tinyConfig(), 3);
  const before = withPooler.getParameter('embeddings.word_embeddings.weight');
  assert.throws(() => loadWeights(withPooler.asNative(), dir), (e: Error) => {
    assert.match(e.message, /checkpoint lacks tensors the model needs: "pooler\.dense\.weight" \[32, 32\], "pooler\.dense\.bias" \[32\]/);
    return true;
  });
  assert.deepEqual(bitsOf(withPooler.values.get('embeddings.word_embeddings.weight')!), bitsOf(before), 'nothing was set');

  const bigger = new FakeModel(tinyConfig({ hasPooler: false, vocabSize: 120 }), 3);
  assert.throws(() => loadWeights(bigger.asNative(), dir), (e: Error) => {
    assert.match(e.message, /"embeddings\.word_embeddings\.weight": model expects \[120, 32\], checkpoint has \[100, 32\]/);
    assert.ok(e.message.includes(join(dir, 'model.safetensors')), 'names the file');
    return true;
  });
});

// ---------------------------------------------------------------------------------------------
// Saving

test('saveModelFolder writes a transformers + sentence-transformers folder that reads back identically', () => {
  const root = tmp();
  const variants: { label: string; cfg: NativeModelConfig; modules: string[]; dense: [number, number, string][] }[] = [
    { label: 'bert pooler + normalize', cfg: tinyConfig({ pooling: 'pooler', normalize: true }), modules: ['Transformer', 'Pooling', 'Dense', 'Normalize'], dense: [[32, 32, 'Tanh']] },
    { label: 'bert cls + dense, no pooler', cfg: tinyConfig({ pooling: 'cls', hasPooler: false, dense: { outFeatures: 16, activation: 'tanh', bias: true } }), modules: ['Transformer', 'Pooling', 'Dense'], dense: [[32, 16, 'Tanh']] },
    { label: 'xlmr mean + identity dense without bias', cfg: tinyConfig({ arch: 'roberta', dense: { outFeatures: 8, activation: 'identity', bias: false } }), modules: ['Transformer', 'Pooling', 'Dense'], dense: [[32, 8, 'Identity']] },
    { label: 'bert pooler + dense + normalize', cfg: tinyConfig({ pooling: 'pooler', normalize: true, dense: { outFeatures: 24, activation: 'tanh', bias: true } }), modules: ['Transformer', 'Pooling', 'Dense', 'Dense', 'Normalize'], dense: [[32, 32, 'Tanh'], [32, 24, 'Tanh']] },
    { label: 'xlmr mean, plain', cfg: tinyConfig({ arch: 'roberta', normalize: true }), modules: ['Transformer', 'Pooling', 'Normalize'], dense: [] },
  ];
  for (const v of variants) {
    const model = new FakeModel(v.cfg);
    const dir = join(root, v.label.replace(/\W+/g, '_'));
    saveModelFolder(model.asNative(), v.cfg, dir, { extraMeta: { step: 1200, run: 'abc' } });

    const hf = json(join(dir, 'config.json'));
    assert.deepEqual(hf.architectures, [v.cfg.arch === 'bert' ? 'BertModel' : 'XLMRobertaModel'], v.label);
    assert.equal(hf.model_type, v.cfg.arch === 'bert' ? 'bert' : 'xlm-roberta');
    assert.deepEqual(parseHfConfig(hf, 'config.json').defaulted, [], 'every field written');
    const weights = SafetensorsFile.open(join(dir, 'model.safetensors'));
    try {
      const expected = [...model.values.keys()].filter((n) => !n.startsWith('dense.')).sort();
      assert.deepEqual(weights.names().sort(), expected, `${v.label}: encoder (+ pooler) tensors, no prefix`);
      assert.deepEqual(weights.metadata, { format: 'pt', step: '1200', run: 'abc' });
    } finally {
      weights.close();
    }
    const modules = json(join(dir, 'modules.json')) as { idx: number; path: string; type: string }[];
    assert.deepEqual(modules.map((m) => m.type.split('.').pop()), v.modules, v.label);
    assert.equal(modules[0].path, '');
    const pooling = json(join(dir, modules[1].path, 'config.json'));
    assert.equal(pooling.word_embedding_dimension, 32);
    assert.equal(pooling.pooling_mode_cls_token, v.cfg.pooling !== 'mean');
    assert.equal(pooling.pooling_mode_mean_tokens, v.cfg.pooling === 'mean');
    const denses = modules.filter((m) => m.type.endsWith('Dense'));
    assert.deepEqual(denses.map((m) => {
      const c = json(join(dir, m.path, 'config.json'));
      return [c.in_features, c.out_features, c.activation_function.split('.').pop()];
    }), v.dense);
    if (v.cfg.pooling === 'pooler') {
      const d = SafetensorsFile.open(join(dir, denses[0].path, 'model.safetensors'));
      assert.deepEqual(bitsOf(d.read('linear.weight')), bitsOf(model.values.get('pooler.dense.weight')!), 'pooler published as CLS + Dense(Tanh)');
      d.close();
    }
    const stc = json(join(dir, 'config_sentence_transformers.json'));
    assert.equal(stc.similarity_fn_name, v.cfg.normalize ? 'cosine' : 'dot');
    // BERT: 64 positions; XLM-R: 66 positions minus the pad offset of 2.
    assert.equal(json(join(dir, 'sentence_bert_config.json')).max_seq_length, 64);

    const back = readModelFolder(dir, { seed: v.cfg.seed });
    try {
      assert.equal(back.meta.format, 'sentence-transformers');
      assert.deepEqual(back.config, { ...v.cfg, dense: v.cfg.dense }, `${v.label}: config survives the round trip`);
      const dst = new FakeModel(v.cfg, 4242);
      assert.deepEqual(loadWeights(dst.asNative(), back), [], v.label);
      assertSameParameters(model, dst, v.label);
    } finally {
      back.tensors.close();
    }
  }
  assert.deepEqual(readdirSync(root).filter((n) => /tmp|old/.test(n)), [], 'no temporary folders left');

  // English RoBERTa keeps its model_type when asked to; missing parent folders are created.
  const rcfg = tinyConfig({ arch: 'roberta' });
  const nested = join(root, 'runs', 'r1', 'final');
  saveModelFolder(new FakeModel(rcfg).asNative(), rcfg, nested, { modelType: 'roberta' });
  assert.deepEqual([json(join(nested, 'config.json')).model_type, json(join(nested, 'config.json')).architectures], ['roberta', ['RobertaModel']]);
  const r = readModelFolder(nested);
  assert.equal(r.meta.modelType, 'roberta');
  r.tensors.close();
});

test('saveModelFolder: BF16 weights, tokenizer files, atomic replacement, refusals', () => {
  const root = tmp();
  const cfg = tinyConfig({ normalize: true });
  const model = new FakeModel(cfg);
  const tokDir = join(root, 'tok');
  mkdirSync(tokDir);
  writeFileSync(join(tokDir, 'tokenizer.json'), '{"version":"1.0"}');
  writeFileSync(join(tokDir, 'tokenizer_config.json'), '{"model_max_length":64}');
  const dir = join(root, 'out');

  saveModelFolder(model.asNative(), cfg, dir, { dtype: 'BF16', tokenizerJsonPath: join(tokDir, 'tokenizer.json') });
  assert.equal(json(join(dir, 'config.json')).dtype, 'bfloat16');
  assert.equal(readFileSync(join(dir, 'tokenizer.json'), 'utf8'), '{"version":"1.0"}');
  assert.ok(existsSync(join(dir, 'tokenizer_config.json')));
  const back = readModelFolder(dir);
  assert.equal(back.tokenizerPath, join(dir, 'tokenizer.json'));
  const w = model.values.get('encoder.layer.0.attention.self.query.weight')!;
  const h = new Uint16Array(w.length);
  encodeBF16(w, h);
  const rounded = new Float32Array(w.length);
  decodeBF16(h, rounded);
  assert.deepEqual(bitsOf(back.tensors.get('encoder.layer.0.attention.self.query.weight')), bitsOf(rounded));
  assert.equal(back.config.pooling, 'pooler', 'BF16 pooler and its Dense copy round identically, so the pooler is still recognised');
  back.tensors.close();

  // Replacing: the new folder takes the place of the old one.
  const model2 = new FakeModel(cfg, 77);
  saveModelFolder(model2.asNative(), cfg, dir);
  const f2 = readModelFolder(dir);
  assert.deepEqual(bitsOf(f2.tensors.get('pooler.dense.bias')), bitsOf(model2.values.get('pooler.dense.bias')!));
  assert.equal(existsSync(join(dir, 'tokenizer.json')), false, 'nothing of the old folder survives');
  f2.tensors.close();

  // A failure while writing leaves the previous folder as it was.
  const snapshot = readFileSync(join(dir, 'model.safetensors'));
  const failing = new FakeModel(cfg, 78);
  failing.failOn = 'encoder.layer.1.output.dense.weight';
  assert.throws(() => saveModelFolder(failing.asNative(), cfg, dir), /simulated failure/);
  assert.deepEqual(readFileSync(join(dir, 'model.safetensors')), snapshot);
  assert.deepEqual(readdirSync(root).sort(), ['out', 'tok'], 'no temporary or set-aside folders');

  // A process killed between the two renames of a replacement left the folder aside: reading puts it back.
  renameSync(dir, `${dir}.old-999999999`);
  const restored = readModelFolder(dir);
  assert.deepEqual(bitsOf(restored.tensors.get('pooler.dense.bias')), bitsOf(model2.values.get('pooler.dense.bias')!));
  restored.tensors.close();
  assert.deepEqual(readdirSync(root).sort(), ['out', 'tok']);

  // Inconsistent inputs are refused before anything is written.
  assert.throws(() => saveModelFolder(model.asNative(), { ...cfg, numLayers: 3 }, join(root, 'x')), /model has 2 encoder layers but config\.numLayers is 3/);
  assert.throws(() => saveModelFolder(model.asNative(), { ...cfg, vocabSize: 50 }, join(root, 'x')), /"embeddings\.word_embeddings\.weight" has shape \[100, 32\] but the config implies \[50, 32\]/);
  const noPooler = new FakeModel(tinyConfig({ hasPooler: false }));
  assert.throws(() => saveModelFolder(noPooler.asNative(), tinyConfig({ hasPooler: false, pooling: 'pooler' }), join(root, 'x')), /pooling "pooler" but the model has no pooler/);
  assert.throws(() => saveModelFolder(noPooler.asNative(), tinyConfig({ pooling: 'cls' }), join(root, 'x')), /config\.hasPooler is true but the model has no pooler/);
  assert.throws(() => saveModelFolder(model.asNative(), cfg, join(root, 'x'), { modelType: 'roberta' }), /model_type "roberta" does not describe arch "bert"/);
  assert.throws(() => saveModelFolder(model.asNative(), cfg, tokDir), /refusing to replace a non-empty folder that is not a model folder/);
  assert.throws(() => saveModelFolder(model.asNative(), cfg, join(root, 'y'), { extraMeta: { format: 'tf' } }), /may not set "format"/);
  assert.throws(() => saveModelFolder(model.asNative(), cfg, join(root, 'z'), { tokenizerJsonPath: join(root, 'nope.json') }), /tokenizer file not found/);
  assert.deepEqual(readdirSync(root).sort(), ['out', 'tok']);
});

// ---------------------------------------------------------------------------------------------
// sentence-transformers folders written by others

function writeStFolder(root: string, opts: { modules: [string, string][]; pooling?: Record<string, unknown>; dense?: Record<string, unknown>; denseWeights?: { weight: Float32Array; bias?: Float32Array }; model: FakeModel; transformerPath?: string }): string {
  const tpath = opts.transformerPath ?? '';
  writeHfFolder(join(root, tpath), opts.model);
  writeFileSync(join(root, 'modules.json'), JSON.stringify(opts.modules.map(([type, path], idx) => ({ idx, name: String(idx), path, type }))));
  for (const [type, path] of opts.modules) {
    if (type.endsWith('Pooling')) { mkdirSync(join(root, path), { recursive: true }); writeFileSync(join(root, path, 'config.json'), JSON.stringify(opts.pooling)); }
    if (type.endsWith('Dense')) {
      mkdirSync(join(root, path), { recursive: true });
      writeFileSync(join(root, path, 'config.json'), JSON.stringify(opts.dense));
      if (opts.denseWeights) {
        const out = (opts.dense!.out_features as number), inF = (opts.dense!.in_features as number);
        const t = [{ name: 'linear.weight', shape: [out, inF], data: opts.denseWeights.weight }];
        if (opts.denseWeights.bias) t.push({ name: 'linear.bias', shape: [out], data: opts.denseWeights.bias });
        writeSafetensors(join(root, path, 'model.safetensors'), t);
      }
    }
  }
  return root;
}

test('sentence-transformers folders: pooling forms, Dense vs pooler, subfolder transformer, refusals', () => {
  const model = new FakeModel(tinyConfig());
  const T = 'sentence_transformers.models.Transformer', P = 'sentence_transformers.models.Pooling';
  const D = 'sentence_transformers.base.modules.dense.Dense', N = 'sentence_transformers.models.Normalize';
  const legacyCls = { word_embedding_dimension: 32, pooling_mode_cls_token: true, pooling_mode_mean_tokens: false };
  const rand = new FakeModel(tinyConfig({ dense: { outFeatures: 16, activation: 'tanh', bias: true } }), 9);

  // New-style pooling config, transformer in 0_Transformer, Dense that is not the pooler.
  const a = readModelFolder(writeStFolder(tmp(), {
    model, transformerPath: '0_Transformer',
    modules: [[T, '0_Transformer'], [P, '1_Pooling'], [D, '2_Dense'], [N, '3_Normalize']],
    pooling: { embedding_dimension: 32, pooling_mode: 'cls' },
    dense: { in_features: 32, out_features: 16, bias: true, activation_function: 'torch.nn.modules.activation.Tanh' },
    denseWeights: { weight: rand.values.get('dense.linear.weight')!, bias: rand.values.get('dense.linear.bias')! },
  }));
  assert.deepEqual([a.config.pooling, a.config.normalize, a.config.dense], ['cls', true, { outFeatures: 16, activation: 'tanh', bias: true }]);
  assert.deepEqual(bitsOf(a.tensors.get('dense.linear.weight')), bitsOf(rand.values.get('dense.linear.weight')!));
  assert.ok(a.meta.configPath.endsWith(join('0_Transformer', 'config.json')));
  a.tensors.close();

  // Legacy pooling config, Dense(Tanh) equal to the pooler (LaBSE's layout): the pooler.
  const b = readModelFolder(writeStFolder(tmp(), {
    model, modules: [[T, ''], [P, '1_Pooling'], [D, '2_Dense']], pooling: legacyCls,
    dense: { in_features: 32, out_features: 32, bias: true, activation_function: 'torch.nn.modules.activation.Tanh' },
    denseWeights: { weight: model.values.get('pooler.dense.weight')!, bias: model.values.get('pooler.dense.bias')! },
  }));
  assert.deepEqual([b.config.pooling, b.config.dense, b.config.normalize], ['pooler', undefined, false]);
  assert.ok(!b.tensors.has('dense.linear.weight'));
  b.tensors.close();

  const mean = readModelFolder(writeStFolder(tmp(), { model, modules: [[T, ''], [P, '1_Pooling']], pooling: { word_embedding_dimension: 32 } }));
  assert.equal(mean.config.pooling, 'mean', 'no mode flag set means mean, as sentence-transformers decides');
  mean.tensors.close();

  const refusals: [Parameters<typeof writeStFolder>[1], RegExp][] = [
    [{ model, modules: [[T, ''], [P, '1_Pooling']], pooling: { pooling_mode: 'max' } }, /1_Pooling.config\.json: field "pooling_mode" selects pooling \["max"\]/],
    [{ model, modules: [[T, ''], [P, '1_Pooling']], pooling: { pooling_mode_cls_token: true, pooling_mode_mean_tokens: true } }, /field "pooling_mode_cls_token, pooling_mode_mean_tokens" selects pooling \["cls","mean"\]/],
    [{ model, modules: [[T, ''], [P, '1_Pooling']], pooling: { word_embedding_dimension: 48, pooling_mode: 'cls' } }, /field "word_embedding_dimension" is 48 but the transformer's hidden_size is 32/],
    [{ model, modules: [[P, '1_Pooling'], [T, '']], pooling: legacyCls }, /module order Pooling -> Transformer is not supported/],
    [{ model, modules: [[T, ''], [P, '1_Pooling'], ['sentence_transformers.models.LayerNorm', '2_LayerNorm']], pooling: legacyCls }, /type "sentence_transformers\.models\.LayerNorm"; only Transformer, Pooling, Dense and Normalize/],
    [{ model, modules: [[T, ''], [P, '1_Pooling'], [D, '2_Dense']], pooling: legacyCls, dense: { in_features: 32, out_features: 16, activation_function: 'torch.nn.modules.activation.ReLU' } }, /2_Dense.config\.json: field "activation_function" is "torch\.nn\.modules\.activation\.ReLU"/],
    [{ model, modules: [[T, ''], [P, '1_Pooling'], [D, '2_Dense']], pooling: legacyCls, dense: { in_features: 32, out_features: 16 } }, /2_Dense: no model\.safetensors/],
    [{ model, modules: [[T, ''], [P, '1_Pooling'], [D, '2_Dense']], pooling: legacyCls, dense: { in_features: 32, out_features: 16, bias: true }, denseWeights: { weight: new Float32Array(16 * 32) } }, /missing tensor "linear\.bias" \(expected shape \[16\]/],
  ];
  for (const [spec, re] of refusals) assert.throws(() => readModelFolder(writeStFolder(tmp(), spec)), re);

  const noBias = readModelFolder(writeStFolder(tmp(), {
    model, modules: [[T, ''], [P, '1_Pooling'], [D, '2_Dense']], pooling: legacyCls,
    dense: { in_features: 32, out_features: 16, bias: false, activation_function: 'torch.nn.modules.linear.Identity' },
    denseWeights: { weight: new Float32Array(16 * 32) },
  }));
  assert.deepEqual(noBias.config.dense, { outFeatures: 16, activation: 'identity', bias: false });
  assert.ok(!noBias.tensors.has('dense.linear.bias'));
  noBias.tensors.close();
  const binOnly = writeStFolder(tmp(), { model, modules: [[T, ''], [P, '1_Pooling'], [D, '2_Dense']], pooling: legacyCls, dense: { in_features: 32, out_features: 16 } });
  writeFileSync(join(binOnly, '2_Dense', 'pytorch_model.bin'), 'pickle');
  assert.throws(() => readModelFolder(binOnly), /2_Dense: the Dense weights are only in pytorch_model\.bin; safetensors is required/);
});

// ---------------------------------------------------------------------------------------------
// Interop with transformers / sentence-transformers

interface Expected { dir: string; pooling: string; hasPooler: boolean; normalize?: boolean; dense?: unknown; tensors: Record<string, { shape: number[]; samples: [number, number][]; sha256: string }> }
const sha256 = (a: Float32Array) => createHash('sha256').update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength)).digest('hex');

test('interop (a): folders written by transformers / sentence-transformers load with the right shapes and values', (t) => {
  if (!PYTHON) { t.skip(SKIP_REASON); return; }
  const made = runPython<Record<string, Expected>>('make', tmp());
  assert.ok(Object.keys(made).length >= 8);
  for (const [label, exp] of Object.entries(made)) {
    const f = readModelFolder(exp.dir);
    try {
      assert.deepEqual(f.tensors.names(), Object.keys(exp.tensors).sort(), `${label}: exactly the encoder tensors, under engine names`);
      for (const [name, e] of Object.entries(exp.tensors)) {
        assert.deepEqual(f.tensors.shape(name), e.shape, `${label} ${name}`);
        const data = f.tensors.get(name);
        for (const [i, value] of e.samples) assert.equal(data[i], value, `${label} ${name}[${i}]`);
        assert.equal(sha256(data), e.sha256, `${label} ${name}: every value`);
      }
      assert.equal(f.config.pooling, exp.pooling, label);
      assert.equal(f.config.hasPooler, exp.hasPooler, label);
      assert.equal(f.config.hiddenSize, 32);
      assert.equal(f.config.numLayers, 2);
      if (exp.normalize !== undefined) assert.equal(f.config.normalize, exp.normalize, label);
      if (exp.dense !== undefined) assert.deepEqual(f.config.dense ?? null, exp.dense, label);
      if (label.startsWith('st_')) assert.ok(f.tokenizerPath, `${label}: tokenizer found`);
      // The whole path: a model built from this config takes every tensor.
      const dst = new FakeModel(f.config);
      assert.deepEqual(loadWeights(dst.asNative(), f), [], label);
    } finally {
      f.tensors.close();
    }
  }
});

interface CheckResult {
  missing: string[]; unexpected: string[]; mismatched: string[][]; error_msgs: string[];
  hf_warnings: string[]; st_warnings: string[];
  modules: { class: string; mode?: string; in_features?: number; out_features?: number; bias?: boolean; activation?: string }[];
  pooled_vs_cls: number; pooled_vs_mean: number; pooler_dense_vs_pooler_output: number | null;
  embedding_norms: number[]; embedding_dim: number; dump: string;
}

test('interop (b): folders written by saveModelFolder load in transformers and sentence-transformers', (t) => {
  if (!PYTHON) { t.skip(SKIP_REASON); return; }
  const root = tmp();
  const toks = runPython<{ bert: string; xlmr: string }>('tokenizers', join(root, 'tok'));
  const variants = [
    { label: 'bert_pooler_normalize', cfg: tinyConfig({ pooling: 'pooler', normalize: true }), tok: toks.bert },
    { label: 'xlmr_mean_dense', cfg: tinyConfig({ arch: 'roberta', dense: { outFeatures: 16, activation: 'tanh', bias: true } }), tok: toks.xlmr },
    { label: 'bert_cls_identity_nobias', cfg: tinyConfig({ pooling: 'cls', dense: { outFeatures: 8, activation: 'identity', bias: false }, normalize: true }), tok: toks.bert },
    { label: 'bert_pooler_dense_bf16', cfg: tinyConfig({ pooling: 'pooler', dense: { outFeatures: 24, activation: 'tanh', bias: true } }), tok: toks.bert, dtype: 'BF16' as const },
    { label: 'xlmr_no_pooler', cfg: tinyConfig({ arch: 'roberta', hasPooler: false, normalize: true }), tok: toks.xlmr },
    { label: 'bert_no_pooler_cls', cfg: tinyConfig({ pooling: 'cls', hasPooler: false }), tok: toks.bert },
  ];
  const models = new Map<string, FakeModel>();
  for (const v of variants) {
    const m = new FakeModel(v.cfg);
    // Weights on the scale transformers initialises with, so activations stay in a sane range.
    for (const a of m.values.values()) for (let i = 0; i < a.length; i++) a[i] *= 0.05;
    models.set(v.label, m);
    saveModelFolder(m.asNative(), v.cfg, join(root, v.label), { tokenizerJsonPath: v.tok, dtype: v.dtype });
  }
  const results = runPython<Record<string, CheckResult>>('check', ...variants.map((v) => join(root, v.label)));
  for (const v of variants) {
    const r = results[join(root, v.label)];
    const m = models.get(v.label)!;
    // BertModel / XLMRobertaModel always have a pooler: a model without one is reported missing it by
    // plain AutoModel (by design; sentence-transformers is told add_pooling_layer=False and stays quiet).
    const missing = v.cfg.hasPooler ? [] : ['pooler.dense.bias', 'pooler.dense.weight'];
    assert.deepEqual([r.missing.sort(), r.unexpected, r.mismatched, r.error_msgs], [missing, [], [], []], `${v.label}: AutoModel loading info`);
    if (v.cfg.hasPooler) assert.deepEqual(r.hf_warnings, [], `${v.label}: AutoModel loads without warnings`);
    else assert.ok(r.hf_warnings.length > 0 && r.hf_warnings.every((w) => /pooler/.test(w)), `${v.label}: only the pooler is reported`);
    assert.deepEqual(r.st_warnings, [], `${v.label}: SentenceTransformer loads without warnings`);

    const expectedModules: CheckResult['modules'] = [{ class: 'Transformer' }, { class: 'Pooling', mode: v.cfg.pooling === 'mean' ? 'mean' : 'cls' }];
    if (v.cfg.pooling === 'pooler') expectedModules.push({ class: 'Dense', in_features: 32, out_features: 32, bias: true, activation: 'Tanh' });
    if (v.cfg.dense) expectedModules.push({ class: 'Dense', in_features: 32, out_features: v.cfg.dense.outFeatures, bias: v.cfg.dense.bias, activation: v.cfg.dense.activation === 'tanh' ? 'Tanh' : 'Identity' });
    if (v.cfg.normalize) expectedModules.push({ class: 'Normalize' });
    assert.deepEqual(r.modules, expectedModules, v.label);
    assert.equal(r.embedding_dim, v.cfg.dense?.outFeatures ?? 32);
    if (v.cfg.normalize) for (const n of r.embedding_norms) assert.ok(Math.abs(n - 1) < 1e-5, `${v.label}: normalised`);
    // sentence-transformers computes what transformers computes for the chosen pooling.
    if (v.cfg.pooling === 'mean') assert.ok(r.pooled_vs_mean < 1e-5, `${v.label}: mean pooling ${r.pooled_vs_mean}`);
    else assert.ok(r.pooled_vs_cls < 1e-6, `${v.label}: CLS pooling ${r.pooled_vs_cls}`);
    if (v.cfg.pooling === 'pooler') {
      assert.ok(r.pooler_dense_vs_pooler_output !== null && r.pooler_dense_vs_pooler_output < 1e-6, `${v.label}: CLS + Dense(Tanh) = BertPooler (${r.pooler_dense_vs_pooler_output})`);
    }

    // Python's parameters, dumped with the reference writer, equal ours bit for bit (after BF16 rounding where saved as BF16).
    const round = (a: Float32Array) => {
      if (v.dtype !== 'BF16') return a;
      const h = new Uint16Array(a.length);
      encodeBF16(a, h);
      const out = new Float32Array(a.length);
      decodeBF16(h, out);
      return out;
    };
    const dump = SafetensorsFile.open(r.dump);
    try {
      const names = dump.names();
      for (const [name, value] of m.values) {
        if (name.startsWith('dense.')) continue;
        assert.deepEqual(bitsOf(dump.read(`hf.${name}`)), bitsOf(round(value)), `${v.label}: AutoModel ${name}`);
        const stName = names.find((n) => n.startsWith('st.0.') && n.endsWith(`.${name}`));
        assert.ok(stName, `${v.label}: SentenceTransformer has ${name}`);
        assert.deepEqual(bitsOf(dump.read(stName!)), bitsOf(round(value)), `${v.label}: SentenceTransformer ${name}`);
      }
      let idx = 2;
      if (v.cfg.pooling === 'pooler') {
        assert.deepEqual(bitsOf(dump.read(`st.${idx}.linear.weight`)), bitsOf(round(m.values.get('pooler.dense.weight')!)));
        assert.deepEqual(bitsOf(dump.read(`st.${idx}.linear.bias`)), bitsOf(round(m.values.get('pooler.dense.bias')!)));
        idx++;
      }
      if (v.cfg.dense) {
        assert.deepEqual(bitsOf(dump.read(`st.${idx}.linear.weight`)), bitsOf(round(m.values.get('dense.linear.weight')!)));
        assert.equal(names.includes(`st.${idx}.linear.bias`), v.cfg.dense.bias);
        if (v.cfg.dense.bias) assert.deepEqual(bitsOf(dump.read(`st.${idx}.linear.bias`)), bitsOf(round(m.values.get('dense.linear.bias')!)));
      }
      const stCount = names.filter((n) => n.startsWith('st.')).length;
      const expectedSt = [...m.values.keys()].length + (v.cfg.pooling === 'pooler' ? 2 : 0);
      assert.equal(stCount, expectedSt, `${v.label}: SentenceTransformer holds exactly our tensors`);
    } finally {
      dump.close();
    }
  }
});
