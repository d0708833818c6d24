// A WordPiece vocabulary made from a corpus, for from-scratch models when no pretrained vocabulary
// is at hand (the demo, the quick experiment): the corpus is normalized and pre-tokenized exactly
// as the tokenizer will do it (BertNormalizer + BertPreTokenizer, src/tokenizer.ts), then the vocab
// holds the special tokens, every character both as a word start and as a `##` continuation (so
// no text maps to [UNK]), and the words seen at least `minCount` times, most frequent first.
//
// Accents are kept (strip_accents false) even when lowercasing: BERT's accent stripping removes the
// combining vowel signs and viramas of Devanagari and Telugu, which would merge distinct words.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildWordPieceTokenizerJson, normalizerFromJson, preTokenizerFromJson } from '../tokenizer.ts';

export const SPECIAL_TOKENS = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'] as const;

export interface CorpusVocabOptions {
  lowercase: boolean;
  /** Words seen fewer times are left to character pieces (default 1: every word). */
  minCount?: number;
  /** At most this many whole words (default unlimited). */
  maxWords?: number;
}

function normalizerConfig(lowercase: boolean) {
  return { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: false, lowercase };
}

/** The vocab.txt lines (token per line, id = line index). Deterministic for a corpus. */
export function corpusVocab(texts: Iterable<string>, o: CorpusVocabOptions): string[] {
  const normalize = normalizerFromJson(normalizerConfig(o.lowercase));
  const pre = preTokenizerFromJson({ type: 'BertPreTokenizer' });
  const counts = new Map<string, number>();
  const chars = new Set<string>();
  for (const t of texts)
    for (const w of pre(normalize(t))) {
      counts.set(w, (counts.get(w) ?? 0) + 1);
      for (const c of w) chars.add(c);
    }
  const charList = [...chars].sort();
  const vocab: string[] = [...SPECIAL_TOKENS];
  const seen = new Set<string>(vocab);
  const add = (t: string) => {
    if (!seen.has(t)) (seen.add(t), vocab.push(t));
  };
  for (const c of charList) add(c);
  for (const c of charList) add(`##${c}`);
  const words = [...counts.entries()]
    .filter(([w, n]) => n >= (o.minCount ?? 1) && [...w].length > 1 && [...w].length <= 100)
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    .slice(0, o.maxWords ?? Infinity);
  for (const [w] of words) add(w);
  return vocab;
}

/**
 * Writes `<dir>/vocab.txt` and `<dir>/tokenizer.json` (the WordPiece tokenizer of that vocab, with
 * the normalizer the vocab was made with) and returns their paths.
 */
export function writeCorpusTokenizer(texts: Iterable<string>, dir: string, o: CorpusVocabOptions): { vocab: string; tokenizer: string; size: number } {
  mkdirSync(dir, { recursive: true });
  const lines = corpusVocab(texts, o);
  const vocab = join(dir, 'vocab.txt');
  writeFileSync(vocab, lines.join('\n') + '\n');
  const tokenizer = join(dir, 'tokenizer.json');
  writeFileSync(tokenizer, JSON.stringify(buildWordPieceTokenizerJson(vocab, { lowercase: o.lowercase, stripAccents: false })));
  return { vocab, tokenizer, size: lines.length };
}
