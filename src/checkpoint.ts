// Model folders on disk <-> the engine: reads Hugging Face and sentence-transformers folders
// (safetensors only) into a NativeModelConfig plus lazily read tensors under engine names, loads
// them into a NativeModel, and saves a model as a folder that both transformers and
// sentence-transformers load as is.
import {
  closeSync, copyFileSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync,
  rmSync, statSync, writeSync,
} from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { Arch, NativeModel, NativeModelConfig, Pooling } from './native.ts';
import { SafetensorsFile, fsyncDir, writeSafetensors, type TensorToWrite } from './safetensors.ts';
import { recoverDir, replaceDir, tmpDirFor } from './atomic-dir.ts';

const fmtShape = (s: readonly number[]) => `[${s.join(', ')}]`;
const sameShape = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((d, i) => d === b[i]);

function readJson(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(`${path}: cannot read (${(e as Error).message})`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${path}: invalid JSON (${(e as Error).message})`);
  }
}

function readJsonObject(path: string): Record<string, unknown> {
  const v = readJson(path);
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`${path}: expected a JSON object`);
  return v as Record<string, unknown>;
}

// =============================================================================================
// config.json <-> NativeModelConfig

/** The architecture part of the engine config: everything config.json determines. */
export type EncoderConfig = Pick<NativeModelConfig,
  'arch' | 'vocabSize' | 'hiddenSize' | 'numLayers' | 'numHeads' | 'intermediateSize' | 'maxPositions' |
  'typeVocabSize' | 'layerNormEps' | 'padTokenId' | 'hiddenDropout' | 'attentionDropout'>;

/** The config.json model_type values we read and write. */
export type HfModelType = 'bert' | 'xlm-roberta' | 'roberta';
const MODEL_TYPES: Record<string, Arch> = { bert: 'bert', 'xlm-roberta': 'roberta', roberta: 'roberta' };

/**
 * Maps a Hugging Face config.json. Size fields are required; the others take the default the
 * transformers config class would give them (listed in `defaulted`), so that we build exactly the
 * model transformers would build from the same file.
 */
export function parseHfConfig(json: Record<string, unknown>, file: string): { config: EncoderConfig; modelType: HfModelType; defaulted: string[] } {
  const fail = (field: string, why: string): never => { throw new Error(`${file}: field "${field}" ${why}`); };
  const modelType = json.model_type;
  if (typeof modelType !== 'string') fail('model_type', 'is missing (expected "bert", "xlm-roberta" or "roberta")');
  const arch = MODEL_TYPES[modelType as string];
  if (!arch) fail('model_type', `is ${JSON.stringify(modelType)}; only "bert", "xlm-roberta" and "roberta" are supported`);
  const defaulted: string[] = [];

  const int = (field: string, min: number, dflt?: number): number => {
    const v = json[field];
    if (v === undefined && dflt !== undefined) { defaulted.push(field); return dflt; }
    if (v === undefined) fail(field, 'is missing');
    if (!Number.isSafeInteger(v) || (v as number) < min) fail(field, `must be an integer >= ${min}, got ${JSON.stringify(v)}`);
    return v as number;
  };
  const prob = (field: string): number => {
    const v = json[field];
    if (v === undefined) { defaulted.push(field); return 0.1; }
    if (typeof v !== 'number' || !(v >= 0 && v < 1)) fail(field, `must be a probability in [0, 1), got ${JSON.stringify(v)}`);
    return v as number;
  };
  const mustBe = (field: string, expected: unknown, dflt: unknown) => {
    const v = json[field] === undefined ? dflt : json[field];
    if (v !== expected) fail(field, `is ${JSON.stringify(v)}; only ${JSON.stringify(expected)} is supported`);
  };

  mustBe('hidden_act', 'gelu', 'gelu');
  mustBe('position_embedding_type', 'absolute', 'absolute');
  mustBe('is_decoder', false, false);
  mustBe('add_cross_attention', false, false);

  const hiddenSize = int('hidden_size', 1);
  const numHeads = int('num_attention_heads', 1);
  if (hiddenSize % numHeads !== 0) fail('hidden_size', `(${hiddenSize}) is not divisible by num_attention_heads (${numHeads})`);
  const vocabSize = int('vocab_size', 1);
  let padTokenId: number;
  if (json.pad_token_id === null && arch === 'bert') {
    // BERT uses the pad id only as the embedding's padding_idx; nothing positional depends on it.
    padTokenId = 0;
    defaulted.push('pad_token_id');
  } else {
    padTokenId = int('pad_token_id', 0, arch === 'bert' ? 0 : 1);
  }
  if (padTokenId >= vocabSize) fail('pad_token_id', `(${padTokenId}) is not below vocab_size (${vocabSize})`);
  const eps = json.layer_norm_eps;
  let layerNormEps = 1e-12;
  if (eps === undefined) defaulted.push('layer_norm_eps');
  else if (typeof eps !== 'number' || !(eps > 0)) fail('layer_norm_eps', `must be a positive number, got ${JSON.stringify(eps)}`);
  else layerNormEps = eps;

  const config: EncoderConfig = {
    arch,
    vocabSize,
    hiddenSize,
    numLayers: int('num_hidden_layers', 1),
    numHeads,
    intermediateSize: int('intermediate_size', 1),
    maxPositions: int('max_position_embeddings', 1),
    typeVocabSize: int('type_vocab_size', 1, 2),
    layerNormEps,
    padTokenId,
    hiddenDropout: prob('hidden_dropout_prob'),
    attentionDropout: prob('attention_probs_dropout_prob'),
  };
  return { config, modelType: modelType as HfModelType, defaulted };
}

const ARCHITECTURES: Record<HfModelType, string> = { bert: 'BertModel', 'xlm-roberta': 'XLMRobertaModel', roberta: 'RobertaModel' };

/** config.json as transformers writes it for BertModel / XLMRobertaModel (or RobertaModel when asked). */
export function hfConfigJson(c: EncoderConfig, dtype: 'float32' | 'bfloat16' = 'float32', modelType?: HfModelType): Record<string, unknown> {
  const roberta = c.arch === 'roberta';
  const type = modelType ?? (roberta ? 'xlm-roberta' : 'bert');
  if ((type === 'bert') === roberta) throw new Error(`model_type "${type}" does not describe arch "${c.arch}"`);
  const out: Record<string, unknown> = {
    architectures: [ARCHITECTURES[type]],
    model_type: type,
    vocab_size: c.vocabSize,
    hidden_size: c.hiddenSize,
    num_hidden_layers: c.numLayers,
    num_attention_heads: c.numHeads,
    intermediate_size: c.intermediateSize,
    max_position_embeddings: c.maxPositions,
    type_vocab_size: c.typeVocabSize,
    layer_norm_eps: c.layerNormEps,
    pad_token_id: c.padTokenId,
    hidden_dropout_prob: c.hiddenDropout,
    attention_probs_dropout_prob: c.attentionDropout,
    hidden_act: 'gelu',
    initializer_range: 0.02,
    is_decoder: false,
    add_cross_attention: false,
    dtype,
  };
  if (roberta) Object.assign(out, { bos_token_id: 0, eos_token_id: 2 });
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => (a < b ? -1 : 1)));
}

// =============================================================================================
// Tensors under engine names

/** Maps engine tensor names to tensors in open safetensors files; reads each on demand. */
export class TensorStore {
  private readonly sources = new Map<string, { file: SafetensorsFile; tensor: string }>();
  private readonly files = new Set<SafetensorsFile>();

  /** Registers `tensor` of `file` under `name`; a second source for one name is an error. */
  add(name: string, file: SafetensorsFile, tensor: string): void {
    const prev = this.sources.get(name);
    if (prev) {
      throw new Error(`two tensors map to "${name}": "${prev.tensor}" in ${prev.file.path} and "${tensor}" in ${file.path}`);
    }
    this.sources.set(name, { file, tensor });
    this.files.add(file);
  }

  names(): string[] {
    return [...this.sources.keys()].sort();
  }

  has(name: string): boolean {
    return this.sources.has(name);
  }

  private source(name: string) {
    const s = this.sources.get(name);
    if (!s) throw new Error(`no tensor "${name}" in the checkpoint`);
    return s;
  }

  shape(name: string): number[] {
    const s = this.source(name);
    return s.file.info(s.tensor).shape;
  }

  /** Where the tensor comes from, for messages: `file: "stored name"`. */
  describe(name: string): string {
    const s = this.source(name);
    return `${s.file.path}: "${s.tensor}"`;
  }

  get(name: string): Float32Array {
    const s = this.source(name);
    return s.file.read(s.tensor);
  }

  close(): void {
    for (const f of this.files) f.close();
    this.files.clear();
  }
}

/** Pretraining heads and buffers: present in many checkpoints, never part of an encoder. */
function isIgnored(stripped: string): boolean {
  return stripped.startsWith('cls.') || stripped.startsWith('lm_head.') ||
    stripped === 'embeddings.position_ids' || stripped === 'embeddings.token_type_ids';
}

/** Stored name -> engine name: drops the base-model prefix and renames TF-era LayerNorm gamma/beta. */
function engineName(stored: string, arch: Arch): string {
  const prefix = arch === 'bert' ? 'bert.' : 'roberta.';
  let n = stored.startsWith(prefix) ? stored.slice(prefix.length) : stored;
  n = n.replace(/LayerNorm\.gamma$/, 'LayerNorm.weight').replace(/LayerNorm\.beta$/, 'LayerNorm.bias');
  return n;
}

const TORCH_ONLY = ['pytorch_model.bin', 'pytorch_model.bin.index.json', 'tf_model.h5', 'flax_model.msgpack', 'model.ckpt.index'];

function safetensorsRequired(dir: string, what: string): never {
  const found = TORCH_ONLY.filter((f) => existsSync(join(dir, f)));
  if (found.length) {
    throw new Error(`${dir}: ${what} are only in ${found.join(', ')}; safetensors is required (pickle files are not read). ` +
      `Convert once in Python: AutoModel.from_pretrained(dir).save_pretrained(dir, safe_serialization=True)`);
  }
  throw new Error(`${dir}: no model.safetensors (or model.safetensors.index.json) for ${what}`);
}

/** Opens model.safetensors, or every shard listed in model.safetensors.index.json. */
function openWeightFiles(dir: string): SafetensorsFile[] {
  const single = join(dir, 'model.safetensors');
  if (existsSync(single)) return [SafetensorsFile.open(single)];
  const indexPath = join(dir, 'model.safetensors.index.json');
  if (!existsSync(indexPath)) safetensorsRequired(dir, 'the model weights');
  const index = readJsonObject(indexPath);
  const map = index.weight_map;
  if (typeof map !== 'object' || map === null) throw new Error(`${indexPath}: field "weight_map" is missing`);
  const shards = new Map<string, SafetensorsFile>();
  try {
    for (const [tensor, shard] of Object.entries(map as Record<string, unknown>)) {
      if (typeof shard !== 'string' || shard.includes('/') || shard.includes('\\')) {
        throw new Error(`${indexPath}: weight_map["${tensor}"] must be a file name in the folder, got ${JSON.stringify(shard)}`);
      }
      let f = shards.get(shard);
      if (!f) { f = SafetensorsFile.open(join(dir, shard)); shards.set(shard, f); }
      if (!f.has(tensor)) throw new Error(`${indexPath}: weight_map puts "${tensor}" in ${shard}, which does not contain it`);
    }
  } catch (e) {
    for (const f of shards.values()) f.close();
    throw e;
  }
  return [...shards.values()];
}

// =============================================================================================
// sentence-transformers modules

type ModuleKind = 'Transformer' | 'Pooling' | 'Dense' | 'Normalize';
interface StModule { kind: ModuleKind; type: string; path: string; dir: string }

function parseModulesJson(dir: string): StModule[] {
  const file = join(dir, 'modules.json');
  const json = readJson(file);
  if (!Array.isArray(json)) throw new Error(`${file}: expected a JSON array of modules`);
  const mods = json.map((m, i) => {
    if (typeof m !== 'object' || m === null || typeof m.type !== 'string' || typeof m.path !== 'string') {
      throw new Error(`${file}: entry ${i} needs string fields "type" and "path"`);
    }
    // Class paths moved between sentence-transformers versions (models.Dense, base.modules.dense.Dense...); the class name is stable.
    const kind = m.type.split('.').pop();
    if (kind !== 'Transformer' && kind !== 'Pooling' && kind !== 'Dense' && kind !== 'Normalize') {
      throw new Error(`${file}: module ${i} has type "${m.type}"; only Transformer, Pooling, Dense and Normalize are supported`);
    }
    if (m.path.split(/[\\/]/).includes('..')) throw new Error(`${file}: module ${i} path "${m.path}" leaves the folder`);
    return { idx: Number.isFinite(m.idx) ? m.idx as number : i, kind: kind as ModuleKind, type: m.type as string, path: m.path as string, dir: join(dir, m.path) };
  }).sort((a, b) => a.idx - b.idx);
  const order = mods.map((m) => m.kind).join(' -> ');
  if (!/^Transformer -> Pooling( -> Dense)*( -> Normalize)?$/.test(order)) {
    throw new Error(`${file}: module order ${order} is not supported (expected Transformer -> Pooling [-> Dense...] [-> Normalize])`);
  }
  return mods.map(({ kind, type, path, dir: d }) => ({ kind, type, path, dir: d }));
}

const LEGACY_POOLING: Record<string, string> = {
  pooling_mode_cls_token: 'cls',
  pooling_mode_max_tokens: 'max',
  pooling_mode_mean_tokens: 'mean',
  pooling_mode_mean_sqrt_len_tokens: 'mean_sqrt_len_tokens',
  pooling_mode_weightedmean_tokens: 'weightedmean',
  pooling_mode_lasttoken: 'lasttoken',
};

/** Reads 1_Pooling/config.json in either the boolean (pooling_mode_*) or the newer `pooling_mode` form. */
function readPooling(mod: StModule, hiddenSize: number): 'cls' | 'mean' {
  const file = join(mod.dir, 'config.json');
  const cfg = readJsonObject(file);
  const dim = cfg.word_embedding_dimension ?? cfg.embedding_dimension;
  if (dim !== undefined && dim !== hiddenSize) {
    throw new Error(`${file}: field "${cfg.word_embedding_dimension !== undefined ? 'word_embedding_dimension' : 'embedding_dimension'}" is ${dim} but the transformer's hidden_size is ${hiddenSize}`);
  }
  let modes: string[];
  let field: string;
  if (cfg.pooling_mode !== undefined) {
    field = 'pooling_mode';
    const m = cfg.pooling_mode;
    modes = Array.isArray(m) ? m.map(String) : [String(m)];
  } else {
    const active = Object.keys(LEGACY_POOLING).filter((k) => cfg[k] === true);
    field = active.join(', ') || 'pooling_mode_*';
    // No mode set means mean pooling, as sentence-transformers decides.
    modes = active.length ? active.map((k) => LEGACY_POOLING[k]) : ['mean'];
  }
  if (modes.length !== 1 || (modes[0] !== 'cls' && modes[0] !== 'mean')) {
    throw new Error(`${file}: field "${field}" selects pooling ${JSON.stringify(modes)}; only a single "cls" or "mean" is supported`);
  }
  return modes[0] as 'cls' | 'mean';
}

interface DenseModule {
  file: SafetensorsFile;
  inFeatures: number;
  outFeatures: number;
  bias: boolean;
  activation: 'tanh' | 'identity';
}

function readDense(mod: StModule): DenseModule {
  const cfgPath = join(mod.dir, 'config.json');
  const cfg = readJsonObject(cfgPath);
  const posInt = (field: string): number => {
    const v = cfg[field];
    if (!Number.isSafeInteger(v) || (v as number) < 1) throw new Error(`${cfgPath}: field "${field}" must be a positive integer, got ${JSON.stringify(v)}`);
    return v as number;
  };
  const inFeatures = posInt('in_features');
  const outFeatures = posInt('out_features');
  const bias = cfg.bias === undefined ? true : cfg.bias;
  if (typeof bias !== 'boolean') throw new Error(`${cfgPath}: field "bias" must be a boolean`);
  if (cfg.use_residual === true) throw new Error(`${cfgPath}: field "use_residual" is true; residual Dense modules are not supported`);
  // sentence-transformers' Dense defaults to Tanh when the config names no activation.
  const act = cfg.activation_function ?? 'torch.nn.modules.activation.Tanh';
  let activation: 'tanh' | 'identity';
  if (act === null || (typeof act === 'string' && /(^|\.)Identity$/.test(act))) activation = 'identity';
  else if (typeof act === 'string' && /(^|\.)Tanh$/.test(act)) activation = 'tanh';
  else throw new Error(`${cfgPath}: field "activation_function" is ${JSON.stringify(act)}; only Tanh and Identity are supported`);

  const wPath = join(mod.dir, 'model.safetensors');
  if (!existsSync(wPath)) safetensorsRequired(mod.dir, 'the Dense weights');
  const file = SafetensorsFile.open(wPath);
  try {
    const expect = (name: string, shape: number[]) => {
      if (!file.has(name)) throw new Error(`${wPath}: missing tensor "${name}" (expected shape ${fmtShape(shape)} from ${cfgPath})`);
      const got = file.info(name).shape;
      if (!sameShape(got, shape)) throw new Error(`${wPath}: tensor "${name}" has shape ${fmtShape(got)} but ${cfgPath} implies ${fmtShape(shape)}`);
    };
    expect('linear.weight', [outFeatures, inFeatures]);
    if (bias) expect('linear.bias', [outFeatures]);
  } catch (e) {
    file.close();
    throw e;
  }
  return { file, inFeatures, outFeatures, bias, activation };
}

function bitwiseEqual(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

/**
 * A Dense(hidden -> hidden, Tanh) right after CLS pooling whose weights are exactly the BERT pooler
 * computes the pooler output; this is how saveModelFolder (and LaBSE) publish pooling 'pooler'.
 */
function isPoolerDense(d: DenseModule, store: TensorStore, hiddenSize: number): boolean {
  if (d.activation !== 'tanh' || !d.bias || d.inFeatures !== hiddenSize || d.outFeatures !== hiddenSize) return false;
  if (!store.has('pooler.dense.weight') || !store.has('pooler.dense.bias')) return false;
  return bitwiseEqual(d.file.read('linear.weight'), store.get('pooler.dense.weight')) &&
    bitwiseEqual(d.file.read('linear.bias'), store.get('pooler.dense.bias'));
}

// =============================================================================================
// Reading a folder

/**
 * What a model trained by `xlir train` saw, kept in its folder (xlir_training.json) so that
 * evaluating or encoding with it defaults to the same inputs (src/input-defaults.ts) and a result
 * can name the run behind the model.
 */
export interface TrainingInputs {
  queryPrefix: string;
  passagePrefix: string;
  maxQueryLength: number;
  maxPassageLength: number;
  /** The run: its key, seed, steps and xlir version (provenance; not read back as defaults). */
  run?: Record<string, unknown>;
}

export const TRAINING_FILE = 'xlir_training.json';

function readTrainingInputs(path: string): TrainingInputs {
  const v = readJsonObject(path);
  for (const k of ['queryPrefix', 'passagePrefix'] as const)
    if (typeof v[k] !== 'string') throw new Error(`${path}: "${k}" must be a string, got ${JSON.stringify(v[k])}`);
  for (const k of ['maxQueryLength', 'maxPassageLength'] as const)
    if (!Number.isSafeInteger(v[k]) || (v[k] as number) < 3) throw new Error(`${path}: "${k}" must be an integer of at least 3, got ${JSON.stringify(v[k])}`);
  return v as unknown as TrainingInputs;
}

export interface FolderMeta {
  format: 'huggingface' | 'sentence-transformers';
  /** model_type of config.json, e.g. "xlm-roberta". */
  modelType: HfModelType;
  configPath: string;
  weightFiles: string[];
  /** config.json fields that were absent and took the transformers default. */
  defaultedFields: string[];
  /** Stored names deliberately skipped: pretraining heads (cls.*, lm_head.*) and buffers (position_ids). */
  ignoredTensors: string[];
  /** __metadata__ of the transformer weights (merged over shards). */
  safetensorsMetadata: Record<string, string>;
  /** Where config.pooling came from. */
  poolingSource: 'sentence-transformers' | 'default' | 'override';
  /** config_sentence_transformers.json prompts (sentence-transformers' prompt_name -> text), when any. */
  prompts?: Record<string, string>;
  /** xlir_training.json: how `xlir train` made the model (the inputs it was trained on). */
  training?: TrainingInputs;
  sentenceTransformers?: {
    modules: { type: string; path: string }[];
    /** sentence_bert_config.json max_seq_length, when present. */
    maxSeqLength?: number;
    /** When true, sentence-transformers lowercases text before tokenizing; the caller must do the same. */
    doLowerCase?: boolean;
  };
}

export interface ModelFolder {
  dir: string;
  config: NativeModelConfig;
  /** Tensors under engine names (see ParameterInfo.name); close() when done. */
  tensors: TensorStore;
  tokenizerPath?: string;
  meta: FolderMeta;
}

export interface ReadOptions {
  /** Overrides the pooling found in (or defaulted for) the folder. */
  pooling?: Pooling;
  /** Overrides whether embeddings are L2-normalised. */
  normalize?: boolean;
  /** Seed for NativeModelConfig (unused when all weights are loaded). Default 0. */
  seed?: number;
}

/**
 * Reads a Hugging Face folder (config.json + model.safetensors) or a sentence-transformers folder
 * (modules.json). Only headers are read here; tensor data is read when fetched from `tensors`.
 */
export function readModelFolder(dirIn: string, opts: ReadOptions = {}): ModelFolder {
  const dir = resolve(dirIn);
  // A process killed while replacing this folder (saveModelFolder) left the previous one aside.
  if (!existsSync(dir)) for (const line of recoverDir(dir)) process.stderr.write(`${line}\n`);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new Error(`${dir}: not a directory`);
  const modules = existsSync(join(dir, 'modules.json')) ? parseModulesJson(dir) : undefined;
  const tdir = modules ? modules[0].dir : dir;
  const configPath = join(tdir, 'config.json');
  if (!existsSync(configPath)) {
    // A run folder of xlir train holds its model in model/ (and best/, checkpoint/model).
    const hint = existsSync(join(dir, 'model', 'config.json')) ? `; it looks like a run folder: its model is ${join(dir, 'model')}` : '';
    throw new Error(`${tdir}: no config.json (expected a Hugging Face or sentence-transformers model folder)${hint}`);
  }
  const { config: enc, modelType, defaulted } = parseHfConfig(readJsonObject(configPath), configPath);

  const files = openWeightFiles(tdir);
  const store = new TensorStore();
  const opened: SafetensorsFile[] = [...files];
  try {
    const ignored: string[] = [];
    const metadata: Record<string, string> = {};
    for (const f of files) {
      Object.assign(metadata, f.metadata);
      for (const stored of f.names()) {
        const name = engineName(stored, enc.arch);
        if (isIgnored(name)) ignored.push(stored);
        else store.add(name, f, stored);
      }
    }
    const hasW = store.has('pooler.dense.weight'), hasB = store.has('pooler.dense.bias');
    if (hasW !== hasB) {
      throw new Error(`${files[0].path}: has pooler.dense.${hasW ? 'weight' : 'bias'} but no pooler.dense.${hasW ? 'bias' : 'weight'}`);
    }
    const hasPooler = hasW;

    let pooling: Pooling;
    let poolingSource: FolderMeta['poolingSource'] = 'default';
    let dense: NativeModelConfig['dense'];
    let normalize = false;
    let st: FolderMeta['sentenceTransformers'];
    if (modules) {
      poolingSource = 'sentence-transformers';
      const stPooling = readPooling(modules[1], enc.hiddenSize);
      pooling = stPooling;
      const denses: DenseModule[] = [];
      for (const m of modules.filter((x) => x.kind === 'Dense')) {
        const d = readDense(m);
        opened.push(d.file);
        denses.push(d);
      }
      if (stPooling === 'cls' && denses.length && isPoolerDense(denses[0], store, enc.hiddenSize)) {
        pooling = 'pooler';
        denses.shift()!.file.close(); // its tensors are the pooler's, already in the store
      }
      if (denses.length > 1) {
        throw new Error(`${join(dir, 'modules.json')}: ${denses.length} Dense modules after pooling; the engine supports one`);
      }
      const d = denses[0];
      if (d) {
        if (d.inFeatures !== enc.hiddenSize) {
          throw new Error(`${d.file.path}: Dense in_features ${d.inFeatures} does not match the pooled size ${enc.hiddenSize}`);
        }
        dense = { outFeatures: d.outFeatures, activation: d.activation, bias: d.bias };
        store.add('dense.linear.weight', d.file, 'linear.weight');
        if (d.bias) store.add('dense.linear.bias', d.file, 'linear.bias');
      }
      normalize = modules[modules.length - 1].kind === 'Normalize';
      st = { modules: modules.map((m) => ({ type: m.type, path: m.path })) };
      const sbPath = join(tdir, 'sentence_bert_config.json');
      if (existsSync(sbPath)) {
        const sb = readJsonObject(sbPath);
        if (Number.isSafeInteger(sb.max_seq_length)) st.maxSeqLength = sb.max_seq_length as number;
        if (typeof sb.do_lower_case === 'boolean') st.doLowerCase = sb.do_lower_case;
      }
    } else {
      pooling = enc.arch === 'roberta' ? 'mean' : hasPooler ? 'pooler' : 'cls';
    }
    if (opts.pooling !== undefined) { pooling = opts.pooling; poolingSource = 'override'; }
    if (opts.normalize !== undefined) normalize = opts.normalize;
    if (pooling === 'pooler' && !hasPooler) {
      throw new Error(`${dir}: pooling "pooler" needs pooler.dense.weight and pooler.dense.bias, which the checkpoint does not have`);
    }

    const tokenizer = join(tdir, 'tokenizer.json');
    let prompts: Record<string, string> | undefined;
    const stConfig = join(dir, 'config_sentence_transformers.json');
    if (existsSync(stConfig)) {
      const p = readJsonObject(stConfig).prompts;
      if (p && typeof p === 'object' && !Array.isArray(p)) {
        const strings = Object.entries(p).filter((e): e is [string, string] => typeof e[1] === 'string');
        if (strings.length) prompts = Object.fromEntries(strings);
      }
    }
    const training = existsSync(join(dir, TRAINING_FILE)) ? readTrainingInputs(join(dir, TRAINING_FILE)) : undefined;
    return {
      dir,
      config: { ...enc, pooling, hasPooler, dense, normalize, seed: opts.seed ?? 0 },
      tensors: store,
      tokenizerPath: existsSync(tokenizer) ? tokenizer : undefined,
      meta: {
        format: modules ? 'sentence-transformers' : 'huggingface',
        modelType,
        configPath,
        weightFiles: files.map((f) => f.path),
        defaultedFields: defaulted,
        ignoredTensors: ignored.sort(),
        safetensorsMetadata: metadata,
        poolingSource,
        sentenceTransformers: st,
        ...(prompts ? { prompts } : {}),
        ...(training ? { training } : {}),
      },
    };
  } catch (e) {
    for (const f of opened) f.close();
    throw e;
  }
}

// =============================================================================================
// Loading into the engine

/**
 * Copies every parameter of `model` from the folder. Checks all names and shapes before setting
 * anything, so a mismatched checkpoint leaves the model untouched. Returns the checkpoint tensors
 * the model did not use (sorted), for the caller to warn about.
 */
export function loadWeights(model: NativeModel, folder: ModelFolder | string): string[] {
  const f = typeof folder === 'string' ? readModelFolder(folder) : folder;
  try {
    const params = model.parameters();
    const missing = params.filter((p) => !f.tensors.has(p.name)).map((p) => `"${p.name}" ${fmtShape(p.shape)}`);
    if (missing.length) {
      const shown = missing.slice(0, 8).join(', ') + (missing.length > 8 ? ` and ${missing.length - 8} more` : '');
      throw new Error(`${f.dir}: checkpoint lacks tensor${missing.length > 1 ? 's' : ''} the model needs: ${shown}`);
    }
    const mismatched = params.filter((p) => !sameShape(p.shape, f.tensors.shape(p.name)))
      .map((p) => `"${p.name}": model expects ${fmtShape(p.shape)}, checkpoint has ${fmtShape(f.tensors.shape(p.name))} (${f.tensors.describe(p.name)})`);
    if (mismatched.length) throw new Error(`${f.dir}: shape mismatch: ${mismatched.join('; ')}`);
    for (const p of params) {
      const data = f.tensors.get(p.name);
      // A diverged training run's weights (NaN, inf) would only give NaN embeddings downstream.
      let bad = -1;
      for (let i = 0; i < data.length; i++) if (data[i] - data[i] !== 0) { bad = i; break; }  // NaN and ±inf, in one subtraction
      if (bad >= 0) throw new Error(`${f.tensors.describe(p.name)}: "${p.name}" holds a non-finite value (${data[bad]}) at element ${bad}: the weights are broken (a diverged training run?)`);
      try {
        model.setParameter(p.name, data, p.shape);
      } catch (e) {
        throw new Error(`${f.tensors.describe(p.name)}: loading into "${p.name}" failed: ${(e as Error).message}`);
      }
    }
    const used = new Set(params.map((p) => p.name));
    return f.tensors.names().filter((n) => !used.has(n));
  } finally {
    if (typeof folder === 'string') f.tensors.close();
  }
}

// =============================================================================================
// Saving

export interface SaveOptions {
  /** tokenizer.json to copy; tokenizer_config.json and special_tokens_map.json beside it are copied too. */
  tokenizerJsonPath?: string;
  /** Stored as strings (JSON for non-strings) in model.safetensors __metadata__. */
  extraMeta?: Record<string, unknown>;
  /** Stored dtype of model.safetensors. Default F32. */
  dtype?: 'F32' | 'BF16';
  /** sentence_bert_config.json max_seq_length; default: the longest input the position table allows. */
  maxSeqLength?: number;
  /** config_sentence_transformers.json similarity; default cosine when normalised, else dot (what the engine scores with). */
  similarity?: 'cosine' | 'dot';
  /** config.json model_type; default "bert" / "xlm-roberta" by arch (pass ModelFolder.meta.modelType to keep "roberta"). */
  modelType?: HfModelType;
  /** config_sentence_transformers.json prompts, e.g. { query: 'Query: ', passage: 'Passage: ' }. */
  prompts?: Record<string, string>;
  /** Written as xlir_training.json (TrainingInputs). */
  training?: TrainingInputs;
}

/** tokenizer_config.json matching a tokenizer.json: class, casing, special tokens, maximum length. */
export function tokenizerConfigFor(tok: Record<string, unknown>, config: NativeModelConfig): Record<string, unknown> {
  const model = (tok.model ?? {}) as Record<string, unknown>;
  const norm = (tok.normalizer ?? {}) as Record<string, unknown>;
  const added = Array.isArray(tok.added_tokens) ? (tok.added_tokens as { content: string }[]).map((t) => t.content) : [];
  const has = (s: string) => added.includes(s);
  const maxLen = config.arch === 'roberta' ? config.maxPositions - config.padTokenId - 1 : config.maxPositions;
  if (model.type === 'WordPiece') {
    const lower = norm.type === 'BertNormalizer' ? norm.lowercase === true : false;
    return {
      tokenizer_class: 'BertTokenizer', do_lower_case: lower,
      strip_accents: norm.type === 'BertNormalizer' ? (norm.strip_accents ?? null) : null,
      tokenize_chinese_chars: norm.type === 'BertNormalizer' ? norm.handle_chinese_chars !== false : true,
      cls_token: '[CLS]', sep_token: '[SEP]', pad_token: '[PAD]', unk_token: '[UNK]', mask_token: has('[MASK]') ? '[MASK]' : null,
      model_max_length: maxLen,
    };
  }
  return {
    tokenizer_class: 'XLMRobertaTokenizer', bos_token: '<s>', eos_token: '</s>', cls_token: '<s>', sep_token: '</s>',
    pad_token: '<pad>', unk_token: '<unk>', mask_token: has('<mask>') ? '<mask>' : null, model_max_length: maxLen,
  };
}

/** Files sentence-transformers / transformers read beside tokenizer.json to set special tokens and lengths. */
const TOKENIZER_SIDE_FILES = ['tokenizer_config.json', 'special_tokens_map.json'];
const ST = 'sentence_transformers.models.';

function writeFileDurable(path: string, content: string | Uint8Array): void {
  const fd = openSync(path, 'w');
  try {
    const bytes = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
    let done = 0;
    while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

const writeJson = (path: string, v: unknown) => writeFileDurable(path, JSON.stringify(v, null, 2) + '\n');

function copyDurable(from: string, to: string): void {
  copyFileSync(from, to);
  const fd = openSync(to, 'r+');
  try { fsyncSync(fd); } finally { closeSync(fd); }
}

/** Refuses configs the files could not describe faithfully, before anything is written. */
function checkModelMatchesConfig(params: Map<string, number[]>, c: NativeModelConfig): void {
  const expect = (name: string, shape: number[], why: string) => {
    const got = params.get(name);
    if (!got) throw new Error(`saveModelFolder: model has no "${name}" (${why})`);
    if (!sameShape(got, shape)) throw new Error(`saveModelFolder: "${name}" has shape ${fmtShape(got)} but the config implies ${fmtShape(shape)} (${why})`);
  };
  expect('embeddings.word_embeddings.weight', [c.vocabSize, c.hiddenSize], 'vocabSize x hiddenSize');
  expect('embeddings.position_embeddings.weight', [c.maxPositions, c.hiddenSize], 'maxPositions x hiddenSize');
  expect('embeddings.token_type_embeddings.weight', [c.typeVocabSize, c.hiddenSize], 'typeVocabSize x hiddenSize');
  const layers = new Set([...params.keys()].map((n) => /^encoder\.layer\.(\d+)\./.exec(n)?.[1]).filter((x) => x !== undefined));
  if (layers.size !== c.numLayers) throw new Error(`saveModelFolder: model has ${layers.size} encoder layers but config.numLayers is ${c.numLayers}`);
  const hasPooler = params.has('pooler.dense.weight');
  if (c.pooling === 'pooler' && !hasPooler) throw new Error('saveModelFolder: pooling "pooler" but the model has no pooler.dense.weight');
  if (c.hasPooler !== hasPooler) throw new Error(`saveModelFolder: config.hasPooler is ${c.hasPooler} but the model ${hasPooler ? 'has' : 'has no'} pooler.dense.weight`);
  if (hasPooler) expect('pooler.dense.weight', [c.hiddenSize, c.hiddenSize], 'hiddenSize x hiddenSize');
  if (c.dense) {
    expect('dense.linear.weight', [c.dense.outFeatures, c.hiddenSize], 'dense.outFeatures x hiddenSize');
    if (c.dense.bias) expect('dense.linear.bias', [c.dense.outFeatures], 'dense.outFeatures');
  } else if ([...params.keys()].some((n) => n.startsWith('dense.'))) {
    throw new Error('saveModelFolder: model has dense.* parameters but config.dense is not set');
  }
}

/** Writes one sentence-transformers Dense module folder. */
function writeDenseModule(dir: string, model: NativeModel, from: { weight: string; bias?: string }, inF: number, outF: number, activation: 'tanh' | 'identity', dtype: 'F32' | 'BF16'): void {
  mkdirSync(dir);
  writeJson(join(dir, 'config.json'), {
    in_features: inF,
    out_features: outF,
    bias: from.bias !== undefined,
    activation_function: activation === 'tanh' ? 'torch.nn.modules.activation.Tanh' : 'torch.nn.modules.linear.Identity',
  });
  const tensors: TensorToWrite[] = [{ name: 'linear.weight', shape: [outF, inF], data: () => model.getParameter(from.weight) }];
  if (from.bias) tensors.push({ name: 'linear.bias', shape: [outF], data: () => model.getParameter(from.bias!) });
  writeSafetensors(join(dir, 'model.safetensors'), tensors, { metadata: { format: 'pt' }, dtype });
}

/** Builds the whole folder at `out` (which must not exist). */
function writeFolder(model: NativeModel, c: NativeModelConfig, out: string, opts: SaveOptions, params: Map<string, number[]>): void {
  const dtype = opts.dtype ?? 'F32';
  mkdirSync(out);
  writeJson(join(out, 'config.json'), hfConfigJson(c, dtype === 'BF16' ? 'bfloat16' : 'float32', opts.modelType));

  const metadata: Record<string, string> = { format: 'pt' };
  for (const [k, v] of Object.entries(opts.extraMeta ?? {})) {
    if (k === 'format') throw new Error('saveModelFolder: extraMeta may not set "format" (transformers requires "pt")');
    metadata[k] = typeof v === 'string' ? v : JSON.stringify(v);
  }
  // Everything but the sentence-transformers Dense belongs to BertModel / XLMRobertaModel, pooler included.
  const encoderTensors: TensorToWrite[] = [...params].filter(([n]) => !n.startsWith('dense.'))
    .map(([name, shape]) => ({ name, shape, data: () => model.getParameter(name) }));
  writeSafetensors(join(out, 'model.safetensors'), encoderTensors, { metadata, dtype });

  // Legacy module class paths and pooling_mode_* booleans: what published models (LaBSE) use, and
  // what every sentence-transformers version from 2.x on loads.
  const modules: { idx: number; name: string; path: string; type: string }[] = [];
  const addModule = (kind: string, folder: string) => {
    const idx = modules.length;
    modules.push({ idx, name: String(idx), path: folder === '' ? '' : `${idx}_${folder}`, type: ST + kind });
    return modules[idx].path;
  };
  addModule('Transformer', '');
  const pooling = addModule('Pooling', 'Pooling');
  mkdirSync(join(out, pooling));
  const cls = c.pooling === 'cls' || c.pooling === 'pooler';
  writeJson(join(out, pooling, 'config.json'), {
    word_embedding_dimension: c.hiddenSize,
    pooling_mode_cls_token: cls,
    pooling_mode_mean_tokens: c.pooling === 'mean',
    pooling_mode_max_tokens: false,
    pooling_mode_mean_sqrt_len_tokens: false,
    pooling_mode_weightedmean_tokens: false,
    pooling_mode_lasttoken: false,
    include_prompt: true,
  });
  if (c.pooling === 'pooler') {
    // sentence-transformers has no pooler module: CLS pooling + Dense(Tanh) with the pooler's weights is the same function.
    writeDenseModule(join(out, addModule('Dense', 'Dense')), model, { weight: 'pooler.dense.weight', bias: 'pooler.dense.bias' },
      c.hiddenSize, c.hiddenSize, 'tanh', dtype);
  }
  if (c.dense) {
    writeDenseModule(join(out, addModule('Dense', 'Dense')), model,
      { weight: 'dense.linear.weight', bias: c.dense.bias ? 'dense.linear.bias' : undefined },
      c.hiddenSize, c.dense.outFeatures, c.dense.activation, dtype);
  }
  // Normalize has no state; sentence-transformers only needs the folder to exist.
  if (c.normalize) mkdirSync(join(out, addModule('Normalize', 'Normalize')));
  writeJson(join(out, 'modules.json'), modules);

  // RoBERTa positions start after the padding id, which shortens the usable length by padTokenId + 1.
  const maxSeq = opts.maxSeqLength ?? (c.arch === 'roberta' ? c.maxPositions - c.padTokenId - 1 : c.maxPositions);
  const sbert: Record<string, unknown> = { max_seq_length: maxSeq, do_lower_case: false };
  // BertModel / XLMRobertaModel always build a pooler unless told otherwise; without this a model
  // that has none would load with freshly initialised pooler weights and a "missing keys" report.
  // (Plain transformers users pass add_pooling_layer=False to from_pretrained themselves.)
  if (!params.has('pooler.dense.weight')) sbert.model_args = { add_pooling_layer: false };
  writeJson(join(out, 'sentence_bert_config.json'), sbert);
  writeJson(join(out, 'config_sentence_transformers.json'), {
    model_type: 'SentenceTransformer',
    prompts: opts.prompts ?? {},
    default_prompt_name: null,
    similarity_fn_name: opts.similarity ?? (c.normalize ? 'cosine' : 'dot'),
  });

  if (opts.training) writeJson(join(out, TRAINING_FILE), opts.training);

  if (opts.tokenizerJsonPath) {
    copyDurable(opts.tokenizerJsonPath, join(out, 'tokenizer.json'));
    const src = dirname(opts.tokenizerJsonPath);
    for (const side of TOKENIZER_SIDE_FILES) if (existsSync(join(src, side))) copyDurable(join(src, side), join(out, side));
    // A bare tokenizer.json (one we built from a vocab.txt, say) is not enough for transformers:
    // without tokenizer_config.json, AutoTokenizer falls back to the class defaults, and
    // BertTokenizer's default lowercases a cased vocabulary. Write the settings the json implies.
    if (!existsSync(join(src, 'tokenizer_config.json'))) {
      writeJson(join(out, 'tokenizer_config.json'), tokenizerConfigFor(readJsonObject(opts.tokenizerJsonPath), c));
    }
  }
  for (const m of modules) if (m.path) fsyncDir(join(out, m.path));
  fsyncDir(out);
}

/**
 * Saves `model` as a folder loadable by transformers (AutoModel) and sentence-transformers
 * (SentenceTransformer). The folder is built beside `dir` and renamed into place, so `dir` is
 * always either the previous complete folder or the new complete one.
 */
export function saveModelFolder(model: NativeModel, config: NativeModelConfig, dirIn: string, opts: SaveOptions = {}): void {
  const dir = resolve(dirIn);
  if (existsSync(dir)) {
    if (!statSync(dir).isDirectory()) throw new Error(`${dir}: exists and is not a directory`);
    // Replacing means deleting: only ever delete something that is recognisably a model folder.
    const entries = readdirSync(dir);
    if (entries.length && !entries.includes('config.json') && !entries.includes('modules.json')) {
      throw new Error(`${dir}: refusing to replace a non-empty folder that is not a model folder (no config.json / modules.json)`);
    }
  }
  if (opts.tokenizerJsonPath && !existsSync(opts.tokenizerJsonPath)) throw new Error(`${opts.tokenizerJsonPath}: tokenizer file not found`);
  const params = new Map(model.parameters().map((p) => [p.name, p.shape] as [string, number[]]));
  checkModelMatchesConfig(params, config);

  if (opts.modelType) hfConfigJson(config, 'float32', opts.modelType); // validates before anything is written
  mkdirSync(dirname(dir), { recursive: true });
  const tmp = tmpDirFor(dir);
  rmSync(tmp, { recursive: true, force: true });
  try {
    writeFolder(model, config, tmp, opts, params);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  try {
    replaceDir(tmp, dir);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}
