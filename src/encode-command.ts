// `xlir encode`: texts of a JSONL file -> .npy [N, D] in input order, streamed in batches so that
// neither the texts nor the embeddings need to fit in memory at once.
import { existsSync } from 'node:fs';
import { Encoder } from './encoder.ts';
import { countJsonlRecords, readJsonl } from './jsonl.ts';
import { NpyWriter } from './npy.ts';
import { prepareOutputFile } from './output-path.ts';
import { resolveInputs } from './input-defaults.ts';
import type { Pooling, Precision } from './native.ts';

export interface EncodeArgs {
  model: string;
  input: string;
  output: string;
  pooling?: Pooling;
  normalize?: boolean;
  /** Default 512, or with `prompt` the model's (src/input-defaults.ts). */
  maxLength?: number;
  /** Default '', or with `prompt` the model's. */
  prefix?: string;
  /** The texts are queries or passages: prefix and length default to what the model takes for them. */
  prompt?: 'query' | 'passage';
  batchSize: number;
  precision: Precision;
  device: string;
  log?: (s: string) => void;
}

export async function runEncode(a: EncodeArgs): Promise<{ count: number; dim: number }> {
  const log = a.log ?? ((s: string) => process.stderr.write(s));
  if (!existsSync(a.input)) throw new Error(`${a.input}: no such file`);
  if (!(a.batchSize >= 1)) throw new Error(`--batch-size must be >= 1, got ${a.batchSize}`);
  prepareOutputFile(a.output, '--output');
  const enc = Encoder.load(a.model, { pooling: a.pooling, normalize: a.normalize, precision: a.precision, device: a.device });
  try {
    if (!enc.tokenizer) throw new Error(`${a.model}: no tokenizer.json in the model folder`);
    let prefix = a.prefix ?? '', maxLength = a.maxLength ?? 512;
    if (a.prompt) {
      const q = a.prompt === 'query';
      const { inputs, note } = resolveInputs(enc.folderInputs, q ? { queryPrefix: a.prefix, maxQueryLength: a.maxLength } : { passagePrefix: a.prefix, maxPassageLength: a.maxLength },
        q ? ['queryPrefix', 'maxQueryLength'] : ['passagePrefix', 'maxPassageLength']);
      [prefix, maxLength] = q ? [inputs.queryPrefix, inputs.maxQueryLength] : [inputs.passagePrefix, inputs.maxPassageLength];
      if (note) log(`encode: ${a.prompt} inputs: ${note}\n`);
    } else if (a.prefix === undefined && (enc.folderInputs.training || enc.folderInputs.prompts))
      log(`encode: no prefix; this model takes "${enc.folderInputs.training?.queryPrefix ?? enc.folderInputs.prompts?.query ?? ''}" before queries: --prompt query|passage gives its inputs\n`);
    const n = await countJsonlRecords(a.input);
    const D = enc.embeddingDim;
    const out = new NpyWriter(a.output, [n, D]);
    let done = 0, buf: string[] = [];
    const t0 = performance.now();
    const flush = async () => {
      if (!buf.length) return;
      out.write(await enc.encodeTexts(buf, { maxLength, prefix, batchSize: a.batchSize }));
      done += buf.length;
      buf = [];
      const sec = (performance.now() - t0) / 1000;
      log(`\rencode: ${done}/${n} texts  ${(done / sec).toFixed(1)} texts/s`);
    };
    try {
      for await (const { line, value } of readJsonl(a.input)) {
        if (typeof value.text !== 'string') throw new Error(`${a.input}:${line}: expected a string field "text"`);
        buf.push(value.text);
        if (buf.length >= a.batchSize) await flush();
      }
      await flush();
      out.close();
    } catch (e) {
      out.abort();
      throw e;
    }
    log(`\nencode: wrote ${a.output} [${n}, ${D}] float32\n`);
    return { count: n, dim: D };
  } finally {
    enc.dispose();
  }
}
