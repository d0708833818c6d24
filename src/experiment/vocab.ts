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
  /**
   * Subword vocabulary of about this many tokens, learned by byte-pair-style merges over the
   * corpus' words (pieces shared by related words and languages: an unseen word splits into
   * trained pieces). Default 0: whole words (every word of the corpus seen minCount times).
   */
  size?: number;
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
  if (o.size) {
    for (const t of mergePieces(counts, o.size - vocab.length)) add(t);
    return vocab;
  }
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

/**
 * Byte-pair-style merges over word types (a word = its first character, then `##` characters):
 * repeatedly merge the most frequent adjacent pair (ties: the smaller pair string), until `budget`
 * new tokens or no pair occurs twice. Returns the merged tokens in merge order.
 */
export function mergePieces(counts: Map<string, number>, budget: number): string[] {
  const words: { syms: string[]; n: number }[] = [...counts.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1))
    .map(([w, n]) => ({ syms: [...w].map((c, i) => (i ? `##${c}` : c)), n }));
  const join = (a: string, b: string) => a + b.slice(2);
  const key = (a: string, b: string) => `${a}\u0000${b}`;
  const pairCount = new Map<string, number>();
  const pairWords = new Map<string, Set<number>>();
  const addWord = (wi: number, sign: 1 | -1) => {
    const { syms, n } = words[wi];
    for (let i = 0; i + 1 < syms.length; i++) {
      const k = key(syms[i], syms[i + 1]);
      pairCount.set(k, (pairCount.get(k) ?? 0) + sign * n);
      if (sign > 0) {
        let s = pairWords.get(k);
        if (!s) pairWords.set(k, (s = new Set()));
        s.add(wi);
      }
    }
  };
  words.forEach((_, i) => addWord(i, 1));
  const out: string[] = [];
  const made = new Set<string>();
  while (out.length < budget) {
    let best = '', bestN = 1;
    for (const [k, n] of pairCount) if (n > bestN || (n === bestN && n > 1 && k < best)) (best = k), (bestN = n);
    if (!best) break;
    const [a, b] = best.split('\u0000');
    const merged = join(a, b);
    for (const wi of [...(pairWords.get(best) ?? [])]) {
      addWord(wi, -1);
      const s = words[wi].syms, t: string[] = [];
      for (let i = 0; i < s.length; i++) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b) (t.push(merged), i++);
        else t.push(s[i]);
      }
      words[wi].syms = t;
      addWord(wi, 1);
    }
    pairCount.delete(best);
    pairWords.delete(best);
    if (!made.has(merged)) (made.add(merged), out.push(merged));
  }
  return out;
}
