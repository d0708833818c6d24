// The prefixes and lengths a model's inputs get when a command is not told: what `xlir train` used
// (xlir_training.json in the model folder), else, for the prefixes, the folder's sentence-transformers
// prompts ('query', and 'passage' or 'document': E5-style models ship theirs), else xlir's defaults
// (METHOD.md's "Query: " / "Passage: ", 64 / 256 tokens). An explicit option always wins.
// Evaluating with other inputs than the model was trained on costs accuracy without a word (a model
// trained from scratch has no trained positions past its training length), hence these defaults.
import type { FolderMeta } from './checkpoint.ts';

export interface InputSettings {
  queryPrefix: string;
  passagePrefix: string;
  maxQueryLength: number;
  maxPassageLength: number;
}

export const INPUT_DEFAULTS: InputSettings = { queryPrefix: 'Query: ', passagePrefix: 'Passage: ', maxQueryLength: 64, maxPassageLength: 256 };

/** The settings, and a line naming where those that were not given came from (empty when all were given). */
export function resolveInputs(
  folder: Pick<FolderMeta, 'prompts' | 'training'>, given: Partial<InputSettings>, noted: readonly (keyof InputSettings)[] = Object.keys(INPUT_DEFAULTS) as (keyof InputSettings)[],
): { inputs: InputSettings; note: string } {
  const t = folder.training, p = folder.prompts ?? {};
  const prompt = { queryPrefix: p.query, passagePrefix: p.passage ?? p.document };
  const inputs = { ...INPUT_DEFAULTS };
  const from = new Map<string, string[]>();
  for (const k of Object.keys(INPUT_DEFAULTS) as (keyof InputSettings)[]) {
    const g = given[k];
    if (g !== undefined) {
      (inputs as Record<string, unknown>)[k] = g;
      continue;
    }
    const fromPrompt = k === 'queryPrefix' || k === 'passagePrefix' ? prompt[k] : undefined;
    const [v, src] = t ? [t[k], "the model's xlir_training.json"] : fromPrompt !== undefined ? [fromPrompt, "the model's sentence-transformers prompts"] : [INPUT_DEFAULTS[k], "xlir's defaults"];
    (inputs as Record<string, unknown>)[k] = v;
    if (noted.includes(k)) from.set(src, [...(from.get(src) ?? []), k]);
  }
  const show = (k: keyof InputSettings) => `${k} ${JSON.stringify(inputs[k])}`;
  const note = [...from].map(([src, ks]) => `${ks.map((k) => show(k as keyof InputSettings)).join(', ')} (from ${src})`).join('; ');
  return { inputs, note };
}
