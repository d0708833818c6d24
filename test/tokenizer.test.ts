// Tokenization: pure tests always run; comparisons with the Rust `tokenizers` library (through
// test/reference/tokenizer_reference.py) run when XLIR_PYTHON names a python that has
// tokenizers + transformers, e.g. XLIR_PYTHON=/tmp/venv/bin/python.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  buildWordPieceTokenizerJson, normalizerFromJson, PrecompiledCharsmap, preTokenizerFromJson, TextTokenizer,
} from '../src/tokenizer.ts';

const SHARED = fileURLToPath(new URL('../../shared', import.meta.url));
const MBERT_VOCAB = join(SHARED, 'data/tokenizers/mbert-cased-wordpiece/mbert_modified_vocab.txt');
const XQUAD_DIR = join(SHARED, 'data/xquad-r');
const XQUAD_LANGS = ['ar', 'de', 'el', 'en', 'es', 'hi', 'ru', 'th', 'tr', 'vi', 'zh'];
const PYTHON = process.env.XLIR_PYTHON;
const REFERENCE = fileURLToPath(new URL('./reference/tokenizer_reference.py', import.meta.url));
const NO_PYTHON = 'XLIR_PYTHON not set: set it to a python with tokenizers and transformers to compare with the Rust tokenizers library';

const tmp = mkdtempSync(join(tmpdir(), 'xlir-tokenizer-test-'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));

function writeTmp(name: string, content: string): string {
  const p = join(tmp, name);
  writeFileSync(p, content);
  return p;
}

const ids = (a: Int32Array): number[] => Array.from(a);

// --- a tiny BERT vocab, ids = line numbers --------------------------------------------------

const TINY_VOCAB = [
  '[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', // 0-4
  'the', 'quick', 'brown', 'fox', '##es', 'jump', '##ed', '!', ',', '.', // 5-14
  'un', '##aff', '##able', '中', '国', 'naive', 'naïve', 'οδοσ', 'οδος', 'The', // 15-24
  'a', 'b', 'c', 'd', 'e', 'query', ':', 'x', '𠀀', // 25-33
];
const tinyVocabPath = writeTmp('vocab.txt', TINY_VOCAB.join('\n') + '\n');
const id = (tok: string): number => {
  const i = TINY_VOCAB.indexOf(tok);
  assert.ok(i >= 0, tok);
  return i;
};
const uncased = TextTokenizer.fromJson(buildWordPieceTokenizerJson(tinyVocabPath, { lowercase: true }), 'uncased');
const cased = TextTokenizer.fromJson(buildWordPieceTokenizerJson(tinyVocabPath, { lowercase: false }), 'cased');

test('buildWordPieceTokenizerJson: the BertTokenizer layout, special tokens from the vocab', () => {
  const j = buildWordPieceTokenizerJson(tinyVocabPath, { lowercase: false }) as any;
  assert.equal(j.model.type, 'WordPiece');
  assert.equal(j.model.continuing_subword_prefix, '##');
  assert.equal(j.model.max_input_chars_per_word, 100);
  assert.equal(Object.keys(j.model.vocab).length, TINY_VOCAB.length);
  assert.equal(j.model.vocab['##able'], 17);
  assert.deepEqual(j.normalizer, { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: false });
  assert.deepEqual(j.pre_tokenizer, { type: 'BertPreTokenizer' });
  assert.deepEqual(j.added_tokens.map((t: any) => [t.id, t.content, t.special, t.normalized]),
    [[0, '[PAD]', true, false], [1, '[UNK]', true, false], [2, '[CLS]', true, false], [3, '[SEP]', true, false], [4, '[MASK]', true, false]]);
  assert.deepEqual(j.post_processor.special_tokens['[CLS]'].ids, [2]);
  assert.deepEqual(j.post_processor.special_tokens['[SEP]'].ids, [3]);
  const k = buildWordPieceTokenizerJson(tinyVocabPath, { lowercase: true, stripAccents: false }) as any;
  assert.equal(k.normalizer.strip_accents, false);
  assert.equal(k.normalizer.lowercase, true);
  // JSON-serialisable (what a caller writes to disk as tokenizer.json)
  assert.deepEqual(JSON.parse(JSON.stringify(j)).model.vocab['中'], 18);
});

test('TextTokenizer: ids of the special tokens and sizes', () => {
  assert.equal(uncased.clsId, 2);
  assert.equal(uncased.sepId, 3);
  assert.equal(uncased.bosId, 2);
  assert.equal(uncased.eosId, 3);
  assert.equal(uncased.padId, 0);
  assert.equal(uncased.vocabSize, TINY_VOCAB.length);
  assert.equal(uncased.numSpecialTokens, 2);
  assert.equal(uncased.modelType, 'WordPiece');
  assert.equal(uncased.tokenToId('##aff'), 16);
  assert.equal(uncased.idToToken(16), '##aff');
});

test('WordPiece: greedy longest match, punctuation split off, an unknown word is one [UNK]', () => {
  const m = { maxLength: 64 };
  assert.deepEqual(ids(uncased.encode('The quick brown foxes jumped!', m)),
    [2, id('the'), id('quick'), id('brown'), id('fox'), id('##es'), id('jump'), id('##ed'), id('!'), 3]);
  assert.deepEqual(ids(uncased.encode('unaffable,x', m)), [2, id('un'), id('##aff'), id('##able'), id(','), id('x'), 3]);
  assert.deepEqual(ids(uncased.encode('zzz quick', m)), [2, 1, id('quick'), 3]);
  // cased: no lowercasing, so "The" and "the" differ; "QUICK" is unknown
  assert.deepEqual(ids(cased.encode('The the QUICK', m)), [2, id('The'), id('the'), 1, 3]);
});

test('WordPiece: CJK ideographs are isolated, including those outside the BMP', () => {
  const m = { maxLength: 64 };
  assert.deepEqual(ids(cased.encode('中国', m)), [2, id('中'), id('国'), 3]);
  // U+20000 is a surrogate pair in JS; it must still be split off as one character
  assert.deepEqual(ids(cased.encode('𠀀中x', m)), [2, id('𠀀'), id('中'), id('x'), 3]);
});

test('Bert normalizer: Rust semantics for lowercase, accents and character classes', () => {
  const m = { maxLength: 64 };
  // Rust lowercases char by char: a final capital sigma becomes σ, not ς (String#toLowerCase)
  assert.deepEqual(ids(uncased.encode('ΟΔΟΣ', m)), [2, id('οδοσ'), 3]);
  // lowercase implies strip_accents unless told otherwise
  assert.deepEqual(ids(uncased.encode('NAÏVE', m)), [2, id('naive'), 3]);
  const keepAccents = TextTokenizer.fromJson(buildWordPieceTokenizerJson(tinyVocabPath, { lowercase: true, stripAccents: false }));
  assert.deepEqual(ids(keepAccents.encode('NAÏVE', m)), [2, id('naïve'), 3]);
  // clean_text: control characters removed, every Unicode space splits
  assert.deepEqual(ids(cased.encode('a\u0000b\u200bc\u00a0d\u3000e', m)), [2, 1, id('d'), id('e'), 3]);
  assert.deepEqual(ids(cased.encode('a\u00a0b', m)), [2, id('a'), id('b'), 3]);
  // U+2E4E is punctuation for JS \p{P} but not in the Rust crate's tables: no split, one [UNK]
  assert.deepEqual(ids(cased.encode('a\u2E4Eb', m)), [2, 1, 3]);
  // U+0890 is Cf today but not in the Rust crate's tables: kept, so the word is unknown
  assert.deepEqual(ids(cased.encode('x\u0890', m)), [2, 1, 3]);
});

test('truncation: maxLength counts the special tokens and the closing [SEP] is kept', () => {
  const text = 'a b c d e';
  assert.deepEqual(ids(cased.encode(text, { maxLength: 64 })), [2, 25, 26, 27, 28, 29, 3]);
  assert.deepEqual(ids(cased.encode(text, { maxLength: 7 })), [2, 25, 26, 27, 28, 29, 3]);
  assert.deepEqual(ids(cased.encode(text, { maxLength: 5 })), [2, 25, 26, 27, 3]);
  assert.deepEqual(ids(cased.encode(text, { maxLength: 2 })), [2, 3]);
  // a word split into pieces is cut between pieces, as Hugging Face does
  assert.deepEqual(ids(uncased.encode('unaffable', { maxLength: 4 })), [2, id('un'), id('##aff'), 3]);
  assert.throws(() => cased.encode(text, { maxLength: 1 }), /maxLength 1 is shorter than the 2 special tokens/);
  assert.throws(() => cased.encode(text, { maxLength: 0 }), /positive integer/);
  assert.throws(() => cased.encode(text, { maxLength: 3.5 }), /positive integer/);
});

test('prefix: prepended to the text before tokenization, and counted by truncation', () => {
  const m = { maxLength: 64, prefix: 'Query: ' };
  assert.deepEqual(ids(uncased.encode('the fox', m)), ids(uncased.encode('Query: the fox', { maxLength: 64 })));
  assert.deepEqual(ids(uncased.encode('the fox', m)), [2, id('query'), id(':'), id('the'), id('fox'), 3]);
  assert.deepEqual(ids(uncased.encode('the fox', { maxLength: 4, prefix: 'Query: ' })), [2, id('query'), id(':'), 3]);
  assert.deepEqual(ids(uncased.encode('', m)), [2, id('query'), id(':'), 3]);
});

test('empty and blank texts give just the special tokens', () => {
  for (const t of ['', ' ', '\n\t ', '\u200b']) assert.deepEqual(ids(cased.encode(t, { maxLength: 8 })), [2, 3], JSON.stringify(t));
});

test('special tokens written in the text are recognised (as Hugging Face does)', () => {
  assert.deepEqual(ids(cased.encode('a [SEP] b[MASK]', { maxLength: 16 })), [2, 25, 3, 26, 4, 3]);
});

test('encodeBatch: packed ids, one length per text, same ids as encode', () => {
  const texts = ['the quick brown fox', '', 'unaffable', 'a b c d e'];
  const opts = { maxLength: 5, prefix: 'x ' };
  const batch = uncased.encodeBatch(texts, opts);
  assert.ok(batch.ids instanceof Int32Array);
  assert.ok(batch.lengths instanceof Int32Array);
  assert.equal(batch.lengths.length, texts.length);
  assert.equal(batch.ids.length, batch.lengths.reduce((a, b) => a + b, 0));
  let at = 0;
  texts.forEach((t, i) => {
    const single = uncased.encode(t, opts);
    assert.equal(batch.lengths[i], single.length);
    assert.deepEqual(ids(batch.ids.subarray(at, at + single.length)), ids(single));
    at += single.length;
  });
  const empty = uncased.encodeBatch([], { maxLength: 8 });
  assert.equal(empty.ids.length, 0);
  assert.equal(empty.lengths.length, 0);
  assert.throws(() => uncased.encodeBatch([], { maxLength: 1 }), /special tokens/);
});

// --- a hand-made Unigram tokenizer.json with XLM-R's layout ------------------------------------

function unigramJson(preTokenizer: object, maskLstrip: boolean): object {
  const vocab: [string, number][] = [
    ['<s>', 0], ['<pad>', 0], ['</s>', 0], ['<unk>', 0],
    ['▁', -2], ['▁hello', -3], ['▁world', -3.5], ['wor', -4], ['ld', -4], ['▁h', -5], ['ello', -5], ['▁wor', -4.5],
    ['<mask>', 0],
  ];
  const special = (id: number, content: string, lstrip = false): object =>
    ({ id, content, single_word: false, lstrip, rstrip: false, normalized: false, special: true });
  return {
    version: '1.0',
    added_tokens: [special(0, '<s>'), special(1, '<pad>'), special(2, '</s>'), special(3, '<unk>'), special(12, '<mask>', maskLstrip)],
    normalizer: null,
    pre_tokenizer: preTokenizer,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '</s>', type_id: 0 } }],
      pair: [],
      special_tokens: { '<s>': { id: '<s>', ids: [0], tokens: ['<s>'] }, '</s>': { id: '</s>', ids: [2], tokens: ['</s>'] } },
    },
    decoder: null,
    model: { type: 'Unigram', unk_id: 3, vocab },
  };
}
const XLMR_PRE = { type: 'Sequence', pretokenizers: [{ type: 'WhitespaceSplit' }, { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true }] };

test('Unigram: best-scoring pieces, unknown runs fused into one <unk>, <s> x </s>', () => {
  const tok = TextTokenizer.fromJson(unigramJson(XLMR_PRE, true));
  assert.equal(tok.modelType, 'Unigram');
  assert.equal(tok.padId, 1);
  assert.equal(tok.bosId, 0);
  assert.equal(tok.eosId, 2);
  assert.equal(tok.vocabSize, 13);
  const m = { maxLength: 32 };
  assert.deepEqual(ids(tok.encode('hello world', m)), [0, 5, 6, 2]);
  // "▁world" (-3.5) beats "▁wor" + "ld" (-8.5)
  assert.deepEqual(ids(tok.encode('  hello   world ', m)), [0, 5, 6, 2]);
  assert.deepEqual(ids(tok.encode('hello ☃☃☃ world', m)), [0, 5, 4, 3, 6, 2]);
  assert.deepEqual(ids(tok.encode('helloworld', m)), [0, 5, 7, 8, 2]);
  assert.deepEqual(ids(tok.encode('hello world world world', { maxLength: 4 })), [0, 5, 6, 2]);
  assert.deepEqual(ids(tok.encode('', m)), [0, 2]);
  assert.deepEqual(ids(tok.encode('hello <mask>', m)), [0, 5, 12, 2]);
});

test('Metaspace without WhitespaceSplit: every ▁ starts a piece; lstrip of <mask> eats the space', () => {
  const pre = { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true };
  const m = { maxLength: 32 };
  const strip = TextTokenizer.fromJson(unigramJson(pre, true));
  const keep = TextTokenizer.fromJson(unigramJson(pre, false));
  assert.deepEqual(ids(strip.encode('hello  world', m)), [0, 5, 4, 6, 2]);
  assert.deepEqual(ids(strip.encode('hello <mask>', m)), [0, 5, 12, 2]);
  assert.deepEqual(ids(keep.encode('hello <mask>', m)), [0, 5, 4, 12, 2]);
  const never = TextTokenizer.fromJson(unigramJson({ ...pre, prepend_scheme: 'never' }, true));
  assert.deepEqual(ids(never.encode('hello world', m)), [0, 3, 10, 6, 2]);
  // the old serialisation (add_prefix_space) still means "always"
  const legacy = TextTokenizer.fromJson(unigramJson({ type: 'Metaspace', replacement: '▁', add_prefix_space: true }, true));
  assert.deepEqual(ids(legacy.encode('hello world', m)), [0, 5, 6, 2]);
});

// --- SentencePiece precompiled charsmap ---------------------------------------------------------

// Compiled by spm_train from the rules in tokenizer_reference.py (PRECOMPILED_FIXTURE_RULES); the
// expected outputs are the Rust Precompiled normalizer's (tokenizers 0.23.2). Regenerate with
// `python test/reference/tokenizer_reference.py precompiled-fixture`.
const FIXTURE_CHARSMAP =
  'AAQAAAAAAQBBDQAABgAAgAsAAIDMAAIAgQ0AAA8AAICknAIAqIQDAOCcAgCk+AIAvx0AABIAAICAIAIAiwUAAAAAAICBBQAAAQAA' +
  'gIAEAgCACQAAgQUAAAgAAICxBQAAFgAAgJ9kAgCYDAIAgBkAAJYoAgADAACAHAAAAB8AAAAeAAAArNQCACAAAAAjAAAAIgAAACUA' +
  'AABltAMAJwAAACYAAAApAAAAKAAAACsAAAAqAAAALQAAACwAAAAvAAAALgAAADEAAAC9WAIAMwAAADIAAAA1AAAANAAAADcAAAA2' +
  'AAAAOQAAADgAAAA7AAAAOgAAAD0AAAA8AAAAPwAAAD4AAABCDQEAQAAAAEMAAABCAAAARQAAAEQAAABHAAAARgAAAEkAAABIAAAA' +
  'SwAAAEoAAABNAAAATAAAAE8AAABOAAAAUQAAAFAAAABTAAAAUgAAAFUAAABUAAAAVwAAAFYAAABZAAAAWAAAAFsAAABaAAAAXQAA' +
  'AFwAAABfAAAAXgAAAGEAAABgAAAAYwAAAGIAAABlAAAAZAAAAGcAAABmAAAAaQAAAGgAAABrAAAAagAAAG0AAABsAAAAbwAAAG4A' +
  'AABxAAAAcAAAAHMAAAByAAAAdQAAAHQAAAB3AAAAdgAAAHkAAAB4AAAAewAAAHoAAAB9AAAAfAAAAH8AAAB+AAAAgQAAAIAAAACD' +
  'AAAAggAAAIUAAACEAAAAhwAAAIYAAACJAAAAiAAAAIsAAACKAAAAjQAAAIwAAACPAAAAjgAAAJEAAACQAAAAkwAAAJIAAACVAAAA' +
  'lAAAAJcAAACWAAAAmQAAAJgAAACbAAAAmgAAAJ0AAACcAAAAnwAAAJ4AAADgDAAAoAAAAOK8AADjxAAApQAAAKQAAACnAAAApgAA' +
  'AKkAAACoAAAAqwAAAKoAAACtAAAArAAAAK8AAADvjAAA8NwAALAAAACzAAAAsgAAALUAAAC0AAAAtwAAALYAAAC5AAAAuAAAALsA' +
  'AAC6AAAAvQAAALwAAAC/AAAAvgAAAMEAAADAAAAAwwAAAMIAAADFAAAAxAAAAMcAAADGAAAAyQAAAMgAAADLAAAAygAAAM0AAADM' +
  'AAAAzwAAAM4AAADRAAAA0AAAANMAAADSAAAA1QAAANQAAADXAAAA1gAAANkAAADYAAAA2wAAANoAAADdAAAA3AAAAN8AAADeAAAA' +
  '4QAAAOAAAADjAAAA4gAAAOUAAADkAAAA5wAAAOYAAADpAAAA6AAAAOsAAADqAAAA7QAAAOwAAADvAAAA7gAAAPEAAADwAAAA8wAA' +
  'APIAAAD1AAAA9AAAAPcAAAD2AAAA+QAAAPgAAAD7AAAA+gAAAP0AAAD8AAAA/wAAAP4AAAAAIAA6KQBhAGZpAHh5egDDqQDgpJ0A' +
  '44KiAA==';
const FIXTURE_EXPECTED: Record<string, string> = {"\uff71\ufb01": "\u30a2fi", "e\u0301": "\u00e9", "A": "a", "AB": "aB", "ABC": "aBC", "BA": "Ba", "x\u3000y": "x y", "a\u200bb": "ab", "\u2581x": " x", "\ud83d\ude00!": ":)!", "\u0928\u093f": "\u0928\u093f", "\u0928\u092e\u093f": "\u0928\u092e\u093f", "e\u0301\u0301": "\u00e9", "xe\u0301\u0301y": "x\u00e9y", "Ae\u0301": "a\u00e9", "plain text": "plain text", "": "", "\u0000A": "\u0000a", "\ud83d\ude00\ud83c\udffb": ":)\ud83c\udffb", "e\u200de\u0301": "e\u200d\u00e9"};

test('PrecompiledCharsmap: the double-array trie and the grapheme rule of the Rust normalizer', () => {
  const pc = new PrecompiledCharsmap(FIXTURE_CHARSMAP);
  for (const [input, expected] of Object.entries(FIXTURE_EXPECTED)) {
    assert.equal(pc.normalize(input), expected, JSON.stringify(input));
    assert.equal(pc.normalizeBySegmenter(input), expected, JSON.stringify(input));
  }
  assert.throws(() => new PrecompiledCharsmap('AAAA'), /malformed|too short/);
});

test('PrecompiledCharsmap: segmenting only around joining characters gives the same text', () => {
  const pc = new PrecompiledCharsmap(FIXTURE_CHARSMAP);
  // characters the charsmap rewrites, next to characters that join grapheme clusters
  const pool = ['e', '\u0301', 'A', 'B', 'x', ' ', '\u200d', '\u200c', '😀', '\u{1F3FB}', '\u{1F1EB}', '\u{1F1F7}',
    '\r', '\n', '\u1100', '\u1161', '\u11A8', '가', 'न', '\u093F', '\u094D', 'ก', '\u0E33', '\u0600', '\u0D4E',
    'ﬁ', '\uFF71', '\u3000', '\u2581', '\u0308', '\uFE0F', '\u{E0061}'];
  let seed = 12345;
  const rnd = (n: number): number => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return seed % n; };
  for (let i = 0; i < 5000; i++) {
    let s = '';
    for (let k = 1 + rnd(12); k > 0; k--) s += pool[rnd(pool.length)];
    assert.equal(pc.normalize(s), pc.normalizeBySegmenter(s), JSON.stringify(s));
  }
});

// --- errors ----------------------------------------------------------------------------------

test('errors name the file, the unsupported type, the missing token', () => {
  const missing = join(tmp, 'nope', 'tokenizer.json');
  assert.throws(() => TextTokenizer.fromFile(missing), (e: Error) => e.message.includes(missing) && /cannot read/.test(e.message));
  const bad = writeTmp('bad.json', '{"model": ');
  assert.throws(() => TextTokenizer.fromFile(bad), (e: Error) => e.message.includes(bad) && /not valid JSON/.test(e.message));
  const bpe = writeTmp('bpe.json', JSON.stringify({ model: { type: 'BPE', vocab: {}, merges: [] } }));
  assert.throws(() => TextTokenizer.fromFile(bpe), (e: Error) => e.message.includes(bpe) && /unsupported model type "BPE"/.test(e.message));
  const wp = buildWordPieceTokenizerJson(tinyVocabPath, { lowercase: false }) as any;
  assert.throws(() => TextTokenizer.fromJson({ ...wp, normalizer: { type: 'Foo' } }, 'x.json'), /x\.json: unsupported normalizer type "Foo"/);
  assert.throws(() => TextTokenizer.fromJson({ ...wp, pre_tokenizer: { type: 'ByteLevel' } }), /unsupported pre_tokenizer type "ByteLevel"/);
  assert.throws(() => TextTokenizer.fromJson({ ...wp, post_processor: { type: 'Bar' } }), /unsupported post_processor type "Bar"/);
  assert.throws(() => TextTokenizer.fromJson([]), /not a tokenizer\.json object/);
  assert.throws(() => TextTokenizer.fromJson({}), /no "model" object/);
  const noCls = writeTmp('nocls.txt', '[PAD]\n[UNK]\n[SEP]\nx\n');
  assert.throws(() => buildWordPieceTokenizerJson(noCls, { lowercase: false }), (e: Error) => e.message.includes(noCls) && /no \[CLS\]/.test(e.message));
  assert.throws(() => buildWordPieceTokenizerJson(join(tmp, 'none.txt'), { lowercase: false }), /cannot read WordPiece vocab .*none\.txt/);
  assert.throws(() => cased.encode(42 as unknown as string, { maxLength: 8 }), /text must be a string/);
});

// --- comparisons with the Rust tokenizers library ------------------------------------------------

function python(args: string[], input?: unknown): any {
  const out = execFileSync(PYTHON!, [REFERENCE, ...args], {
    input: input === undefined ? undefined : JSON.stringify(input),
    maxBuffer: 1 << 30,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  return JSON.parse(out.toString('utf8'));
}

/** The first sentences and questions of the first paragraphs, every XQuAD-R language, plus edge cases. */
function sampleTexts(paragraphs: number): string[] {
  const texts: string[] = [];
  for (const lang of XQUAD_LANGS) {
    const d = JSON.parse(readFileSync(join(XQUAD_DIR, `${lang}.json`), 'utf8'));
    for (const p of d.data.flatMap((a: any) => a.paragraphs).slice(0, paragraphs)) {
      texts.push(...p.sentences.slice(0, 3), ...p.qas.slice(0, 3).map((q: any) => q.question), p.context);
    }
  }
  texts.push('', ' ', '  a  b  ', '\u00a0x\u3000y', 'ＡＢＣ１２３～', 'か\u3099', 'e\u0301 é', 'ΟΔΟΣ naïve', '▁x ▁',
    '<mask> hi <s>x</s> [SEP] [CLS]x', 'x\u200by\ufeffz', '\u0000a\u0001b', 'ﬁ ½ ㈱ ℡', '😀🥰 👍🏽 🇫🇷', 'क्षत्रिय',
    'Ǆ ǅ İ', '\t\n\r', 'a\u0085b', '𠀀𪚥 x', 'a\u2E4Eb x\u0890y', 'x'.repeat(150), 'ก'.repeat(120));
  return texts;
}

function compare(name: string, ours: number[][], theirs: number[][], texts: string[]): void {
  assert.equal(ours.length, theirs.length);
  const bad = texts.map((t, i) => i).filter((i) => JSON.stringify(ours[i]) !== JSON.stringify(theirs[i]));
  if (bad.length) {
    const i = bad[0];
    assert.fail(`${name}: ${bad.length}/${texts.length} texts differ; first ${JSON.stringify(texts[i].slice(0, 80))}\n` +
      `  ours   ${JSON.stringify(ours[i])}\n  theirs ${JSON.stringify(theirs[i])}`);
  }
}

const haveShared = existsSync(MBERT_VOCAB) && existsSync(XQUAD_DIR);
const NO_SHARED = `shared data not found at ${SHARED} (mBERT vocab, xquad-r)`;

test('mBERT WordPiece built from vocab.txt = Rust tokenizers = transformers BertTokenizer', async (t) => {
  if (!haveShared) return t.skip(NO_SHARED);
  if (!PYTHON) return t.skip(NO_PYTHON);
  const texts = sampleTexts(2);
  const variants: { lowercase: boolean; stripAccents?: boolean }[] = [
    { lowercase: false }, // mBERT cased
    { lowercase: true }, // uncased: lowercase + strip accents
    { lowercase: true, stripAccents: false },
  ];
  for (const v of variants) {
    const json = buildWordPieceTokenizerJson(MBERT_VOCAB, v);
    const path = writeTmp(`mbert-${v.lowercase}-${v.stripAccents}.json`, JSON.stringify(json));
    const tok = TextTokenizer.fromFile(path);
    assert.equal(tok.vocabSize, 119547);
    for (const maxLength of [512, 24]) {
      await t.test(`lowercase=${v.lowercase} stripAccents=${v.stripAccents} maxLength=${maxLength}`, (st) => {
        const ours = texts.map((s) => ids(tok.encode(s, { maxLength })));
        const rust = python(['encode'], { tokenizer: path, texts, maxLength }).ids;
        compare('our tokenizer.json in Rust tokenizers', ours, rust, texts);
        const tf = python(['encode-bert-vocab'], { vocab: MBERT_VOCAB, lowercase: v.lowercase, stripAccents: v.stripAccents ?? null, texts, maxLength });
        compare('transformers BertTokenizer(vocab.txt)', ours, tf.fast, texts);
        if (tf.legacy) {
          const differ = texts.filter((_, i) => JSON.stringify(tf.legacy[i]) !== JSON.stringify(ours[i])).length;
          // The pure-python tokenizer is not what transformers uses; it differs on e.g. Hindi nukta.
          st.diagnostic(`pure-python BertTokenizerLegacy differs on ${differ}/${texts.length} texts (informational)`);
        }
      });
    }
  }
});

test('Unigram + SentencePiece charsmap (XLM-R layout) = Rust tokenizers', async (t) => {
  if (!haveShared) return t.skip(NO_SHARED);
  if (!PYTHON) return t.skip(NO_PYTHON);
  // a small multilingual corpus for the SentencePiece model
  const corpus: string[] = [];
  for (const lang of XQUAD_LANGS) {
    const d = JSON.parse(readFileSync(join(XQUAD_DIR, `${lang}.json`), 'utf8'));
    corpus.push(...d.data.flatMap((a: any) => a.paragraphs).slice(0, 60).map((p: any) => p.context.replace(/\n/g, ' ')));
  }
  const corpusPath = writeTmp('corpus.txt', corpus.join('\n') + '\n');
  const built = python(['build-unigram', '--out', join(tmp, 'unigram'), '--corpus', corpusPath, '--vocab-size', '6000']);
  if (built.note) t.diagnostic(built.note);
  if (!built.precompiled) t.diagnostic('the Precompiled charsmap path is NOT covered (install spm_train: Debian package sentencepiece)');
  const texts = sampleTexts(3);
  for (const [name, path] of Object.entries(built.files as Record<string, string>)) {
    const tok = TextTokenizer.fromFile(path);
    assert.equal(tok.padId, 1);
    assert.equal(tok.bosId, 0);
    assert.equal(tok.eosId, 2);
    for (const maxLength of [512, 24]) {
      await t.test(`${name} maxLength=${maxLength}`, () => {
        const ours = texts.map((s) => ids(tok.encode(s, { maxLength })));
        const rust = python(['encode'], { tokenizer: path, texts, maxLength }).ids;
        compare(`${name} in Rust tokenizers`, ours, rust, texts);
      });
    }
  }
});

test('normalizers and pre-tokenizers, one by one = Rust tokenizers', (t) => {
  if (!haveShared) return t.skip(NO_SHARED);
  if (!PYTHON) return t.skip(NO_PYTHON);
  const texts = sampleTexts(1);
  const normalizers: object[] = [
    { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
    { type: 'BertNormalizer', clean_text: false, handle_chinese_chars: false, strip_accents: true, lowercase: false },
    { type: 'Nmt' }, { type: 'NFC' }, { type: 'NFD' }, { type: 'NFKC' }, { type: 'NFKD' }, { type: 'Lowercase' }, { type: 'StripAccents' },
    { type: 'Sequence', normalizers: [{ type: 'NFD' }, { type: 'StripAccents' }, { type: 'Lowercase' }] },
    { type: 'Strip', strip_left: true, strip_right: true }, { type: 'Strip', strip_left: false, strip_right: true },
    { type: 'Prepend', prepend: '▁' },
    { type: 'Replace', pattern: { Regex: ' {2,}' }, content: '▁' }, { type: 'Replace', pattern: { String: 'a' }, content: 'bc' },
  ];
  for (const cfg of normalizers) {
    const ours = texts.map(normalizerFromJson(cfg));
    const rust: string[] = python(['normalize'], { normalizer: cfg, texts }).out;
    const bad = texts.findIndex((_, i) => ours[i] !== rust[i]);
    assert.equal(bad, -1, `${JSON.stringify(cfg)} on ${JSON.stringify(texts[bad])}: ours ${JSON.stringify(ours[bad])}, Rust ${JSON.stringify(rust[bad])}`);
  }
  const metaspace = (o: object) => ({ type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true, ...o });
  const preTokenizers: object[] = [
    { type: 'BertPreTokenizer' }, { type: 'WhitespaceSplit' }, { type: 'Whitespace' },
    metaspace({}), metaspace({ split: false }), metaspace({ prepend_scheme: 'first' }), metaspace({ prepend_scheme: 'never' }),
    { type: 'Sequence', pretokenizers: [{ type: 'WhitespaceSplit' }, metaspace({ prepend_scheme: 'first' })] },
  ];
  for (const cfg of preTokenizers) {
    const ours = texts.map(preTokenizerFromJson(cfg));
    const rust: string[][] = python(['pre-tokenize'], { preTokenizer: cfg, texts }).out;
    const bad = texts.findIndex((_, i) => JSON.stringify(ours[i]) !== JSON.stringify(rust[i]));
    assert.equal(bad, -1, `${JSON.stringify(cfg)} on ${JSON.stringify(texts[bad])}: ours ${JSON.stringify(ours[bad])}, Rust ${JSON.stringify(rust[bad])}`);
  }
});

test('character tables = Rust BertNormalizer / StripAccents / BertPreTokenizer on every code point', (t) => {
  if (!PYTHON) return t.skip(NO_PYTHON);
  const probe = python(['bert-probe']);
  t.diagnostic(`tokenizers ${probe.tokenizersVersion}`);
  const expand = (ranges: [number, number][]): Set<number> => {
    const s = new Set<number>();
    for (const [a, b] of ranges) for (let cp = a; cp <= b; cp++) s.add(cp);
    return s;
  };
  const bert = (o: object) => normalizerFromJson({ type: 'BertNormalizer', clean_text: false, handle_chinese_chars: false, strip_accents: false, lowercase: false, ...o });
  const clean = bert({ clean_text: true }), chinese = bert({ handle_chinese_chars: true }), strip = bert({ strip_accents: true });
  const stripAccents = normalizerFromJson({ type: 'StripAccents' });
  const preTokenize = preTokenizerFromJson({ type: 'BertPreTokenizer' });
  const ours = {
    removed: new Set<number>(), toSpace: new Set<number>(), chinese: new Set<number>(), markNonspacing: new Set<number>(),
    combiningMark: new Set<number>(), punctuation: new Set<number>(), whitespace: new Set<number>(),
  };
  for (let cp = 0; cp < 0x110000; cp++) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    const c = String.fromCodePoint(cp);
    const cl = clean(c);
    if (cl === '') ours.removed.add(cp);
    else if (cl === ' ' && cp !== 0x20) ours.toSpace.add(cp);
    if (chinese(c) === ` ${c} `) ours.chinese.add(cp);
    if (strip(c) === '') ours.markNonspacing.add(cp);
    if (stripAccents(c) === '') ours.combiningMark.add(cp);
    const pieces = preTokenize(`a${c}a`);
    if (pieces.length === 3) ours.punctuation.add(cp);
    else if (pieces.length === 2) ours.whitespace.add(cp);
  }
  for (const [name, set] of Object.entries(ours)) {
    const rust = expand(probe[name]);
    const onlyOurs = [...set].filter((cp) => !rust.has(cp));
    const onlyRust = [...rust].filter((cp) => !set.has(cp));
    const hex = (a: number[]): string => a.slice(0, 20).map((cp) => cp.toString(16)).join(' ');
    assert.ok(onlyOurs.length === 0 && onlyRust.length === 0, `${name}: only ours [${hex(onlyOurs)}], only Rust [${hex(onlyRust)}]`);
  }
});
