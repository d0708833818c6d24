// Which prefixes and lengths a model's inputs get when a command is not told (src/input-defaults.ts):
// an explicit option, else the model's xlir_training.json, else (prefixes only) its
// sentence-transformers prompts, else xlir's defaults; and the note says where each came from.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { INPUT_DEFAULTS, resolveInputs } from '../src/input-defaults.ts';

const training = { queryPrefix: 'q: ', passagePrefix: 'p: ', maxQueryLength: 32, maxPassageLength: 96 };

test('explicit options, then the training record, then sentence-transformers prompts, then the defaults', () => {
  assert.deepEqual(resolveInputs({}, {}).inputs, INPUT_DEFAULTS);
  assert.match(resolveInputs({}, {}).note, /^queryPrefix "Query: ", passagePrefix "Passage: ", maxQueryLength 64, maxPassageLength 256 \(from xlir's defaults\)$/);
  assert.deepEqual(resolveInputs({ training }, {}).inputs, training);
  assert.deepEqual(resolveInputs({ training }, { maxPassageLength: 200, queryPrefix: '' }).inputs, { ...training, maxPassageLength: 200, queryPrefix: '' });
  // E5-style prompts give the prefixes ('document' stands for 'passage'); the lengths stay the defaults.
  const e5 = resolveInputs({ prompts: { query: 'query: ', document: 'passage: ' } }, {});
  assert.deepEqual(e5.inputs, { queryPrefix: 'query: ', passagePrefix: 'passage: ', maxQueryLength: 64, maxPassageLength: 256 });
  assert.match(e5.note, /queryPrefix "query: ", passagePrefix "passage: " \(from the model's sentence-transformers prompts\); maxQueryLength 64, maxPassageLength 256 \(from xlir's defaults\)/);
  // A training record outranks the prompts (xlir writes both, and they agree).
  assert.equal(resolveInputs({ training, prompts: { query: 'other: ' } }, {}).inputs.queryPrefix, 'q: ');
  assert.equal(resolveInputs({ training }, { ...training }).note, '', 'nothing to say when every setting was given');
  assert.equal(resolveInputs({ training }, {}, ['maxQueryLength']).note, "maxQueryLength 32 (from the model's xlir_training.json)");
});
