// Worker-thread tokenization and its cache: the same ids as tokenizing on the main thread, a second
// call reads the cache, a changed option misses it, a damaged cache file is reported.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildWordPieceTokenizerJson, TextTokenizer } from '../src/tokenizer.ts';
import { tokenizeAll } from '../src/token-cache.ts';

const shared = fileURLToPath(new URL('../../shared', import.meta.url));
const vocab = join(shared, 'data/tokenizers/mbert-cased-wordpiece/mbert_modified_vocab.txt');

test('worker tokenization equals the main thread, and is cached', { skip: existsSync(vocab) ? false : `${shared} missing` }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'xlir-tok-'));
  const tokPath = join(dir, 'tokenizer.json');
  writeFileSync(tokPath, JSON.stringify(buildWordPieceTokenizerJson(vocab, { lowercase: false })));
  const d = JSON.parse(readFileSync(join(shared, 'data/xquad-r/de.json'), 'utf8'));
  const texts: string[] = d.data.flatMap((a: { paragraphs: { qas: { question: string }[] }[] }) =>
    a.paragraphs.flatMap((p) => p.qas.map((q) => q.question)));
  assert.ok(texts.length > 1000);
  const o = { tokenizerPath: tokPath, maxLength: 32, prefix: 'Query: ', cacheDir: join(dir, 'cache'), workers: 2 };
  const a = await tokenizeAll(texts, o);
  assert.equal(a.fromCache, false);
  const tok = TextTokenizer.fromFile(tokPath);
  for (let i = 0; i < texts.length; i += 97) assert.deepEqual(a.get(i), tok.encode(texts[i], o), `text ${i}`);
  assert.equal(a.count, texts.length);
  const b = await tokenizeAll(texts, o);
  assert.equal(b.fromCache, true);
  assert.deepEqual(b.ids, a.ids);
  assert.deepEqual(b.offsets, a.offsets);
  const c = await tokenizeAll(texts, { ...o, maxLength: 16 });
  assert.equal(c.fromCache, false, 'a different maxLength must not hit the cache');
  assert.ok(c.ids.length < a.ids.length);
  const file = join(o.cacheDir, readdirSync(o.cacheDir)[0]);
  writeFileSync(file, readFileSync(file).subarray(0, 100));
  await assert.rejects(tokenizeAll(texts, file.includes(a.key) ? o : { ...o, maxLength: 16 }), /truncated token cache/);
});
