// The typed encoder API over the native engine: create or load a model, encode token batches or
// texts, save it in the Hugging Face / sentence-transformers layout. Training and evaluation code
// build on this, not on the raw addon.
import { existsSync } from 'node:fs';
import { native, type NativeModel, type NativeModelConfig, type Precision, type TokenBatch } from './native.ts';
import { loadWeights, readModelFolder, saveModelFolder, type FolderMeta, type ReadOptions, type SaveOptions } from './checkpoint.ts';
import { TextTokenizer } from './tokenizer.ts';

/** Where the engine runs: the CPU, a CUDA device, or 'emulated' (the device code path on the CPU, for tests). */
export type Device = 'cpu' | 'emulated' | `cuda:${number}`;

/** Normalises and checks a device name; throws with the reason when CUDA cannot be used. */
export function checkDevice(device: string): Device {
  if (device === 'cpu' || device === 'emulated') return device;
  const m = /^cuda(?::(\d+))?$/.exec(device);
  if (m) {
    const info = native().info();
    const n = Number(m[1] ?? 0);
    if (!info.cuda) throw new Error(`device '${device}' requested but CUDA is unavailable (${info.cudaReason})`);
    if (n >= info.cudaDevices)
      throw new Error(`device '${device}' requested but only ${info.cudaDevices} CUDA device(s) are usable (${info.cudaReason})`);
    return `cuda:${n}`;
  }
  throw new Error(`unknown device '${device}': expected 'cpu' or 'cuda:N'`);
}

export interface LoadOptions extends ReadOptions {
  precision?: Precision;
  device?: string;
}

export interface TextEncodeOptions {
  maxLength: number;
  prefix?: string;
  /** Sequences per engine call; bounds memory. */
  batchSize?: number;
  onProgress?: (done: number, total: number) => void;
}

export class Encoder {
  /** Options every save() of this encoder uses (a training run's prompts and xlir_training.json). */
  saveDefaults: SaveOptions = {};

  private constructor(
    readonly model: NativeModel,
    readonly config: NativeModelConfig,
    readonly tokenizer: TextTokenizer | undefined,
    readonly tokenizerPath: string | undefined,
    /** From the folder it was loaded from: its sentence-transformers prompts, xlir training inputs and weight files. */
    readonly folderInputs: Partial<Pick<FolderMeta, 'prompts' | 'training' | 'weightFiles'>> = {},
  ) {}

  /** A randomly initialised model (weights ~ normal(0, 0.02) from config.seed). */
  static create(config: NativeModelConfig, opts: { tokenizerPath?: string; precision?: Precision; device?: string } = {}): Encoder {
    const device = checkDevice(opts.device ?? 'cpu');
    const m = new (native().Model)(config);
    if (opts.precision) m.setPrecision(opts.precision);
    if (device !== 'cpu') m.toDevice(device);
    const tok = opts.tokenizerPath ? TextTokenizer.fromFile(opts.tokenizerPath) : undefined;
    if (tok && tok.vocabSize > config.vocabSize)
      throw new Error(`${opts.tokenizerPath}: tokenizer has ${tok.vocabSize} tokens but the model's vocabulary is ${config.vocabSize}`);
    return new Encoder(m, config, tok, opts.tokenizerPath);
  }

  /** Loads a Hugging Face or sentence-transformers folder (weights, and tokenizer.json when present). */
  static load(dir: string, opts: LoadOptions = {}): Encoder {
    const device = checkDevice(opts.device ?? 'cpu');
    const folder = readModelFolder(dir, opts);
    try {
      const m = new (native().Model)(folder.config);
      try {
        loadWeights(m, folder);
      } catch (e) {
        m.dispose();
        throw e;
      }
      if (opts.precision) m.setPrecision(opts.precision);
      if (device !== 'cpu') m.toDevice(device);
      const tok = folder.tokenizerPath && existsSync(folder.tokenizerPath) ? TextTokenizer.fromFile(folder.tokenizerPath) : undefined;
      if (tok && tok.vocabSize > folder.config.vocabSize) {
        m.dispose();
        throw new Error(`${folder.tokenizerPath}: the tokenizer has ${tok.vocabSize} tokens but the model's vocabulary (${folder.meta.configPath}) has ${folder.config.vocabSize}: they do not belong together`);
      }
      return new Encoder(m, folder.config, tok, folder.tokenizerPath, { prompts: folder.meta.prompts, training: folder.meta.training, weightFiles: folder.meta.weightFiles });
    } finally {
      folder.tensors.close();
    }
  }

  get embeddingDim(): number {
    return this.model.embeddingDim;
  }

  save(dir: string, opts: SaveOptions = {}): void {
    saveModelFolder(this.model, this.config, dir, { tokenizerJsonPath: this.tokenizerPath, ...this.saveDefaults, ...opts });
  }

  encodeTokens(batch: TokenBatch): Promise<Float32Array> {
    return this.model.encode(batch);
  }

  /** Embeddings [texts.length, embeddingDim] in input order. */
  async encodeTexts(texts: readonly string[], opts: TextEncodeOptions): Promise<Float32Array> {
    const tok = this.tokenizer;
    if (!tok) throw new Error('this model has no tokenizer.json: encode token ids with encodeTokens()');
    const D = this.embeddingDim, bs = opts.batchSize ?? 64;
    const out = new Float32Array(texts.length * D);
    for (let i = 0; i < texts.length; i += bs) {
      const chunk = texts.slice(i, i + bs);
      out.set(await this.model.encode(tok.encodeBatch(chunk, opts)), i * D);
      opts.onProgress?.(Math.min(i + bs, texts.length), texts.length);
    }
    return out;
  }

  dispose(): void {
    this.model.dispose();
  }
}

/** Concatenates packed batches (queries then passages share one engine call). */
export function concatBatches(...bs: TokenBatch[]): TokenBatch {
  const T = bs.reduce((n, b) => n + b.ids.length, 0), B = bs.reduce((n, b) => n + b.lengths.length, 0);
  const ids = new Int32Array(T), lengths = new Int32Array(B);
  const anyType = bs.some((b) => b.typeIds), anySeq = bs.some((b) => b.seqIds);
  const typeIds = anyType ? new Int32Array(T) : undefined;
  const seqIds = anySeq ? new Uint32Array(B) : undefined;
  let t = 0, s = 0;
  for (const b of bs) {
    ids.set(b.ids, t);
    lengths.set(b.lengths, s);
    if (typeIds && b.typeIds) typeIds.set(b.typeIds, t);
    if (seqIds) {
      if (b.seqIds) seqIds.set(b.seqIds, s);
      else for (let k = 0; k < b.lengths.length; k++) seqIds[s + k] = s + k;
    }
    t += b.ids.length;
    s += b.lengths.length;
  }
  return { ids, lengths, typeIds, seqIds };
}
