// Text → token ids for the engine, with the ids Hugging Face's Rust `tokenizers` would give, so that
// checkpoints trained or evaluated in Python see the same inputs here.
//
// Targets: a WordPiece tokenizer.json built from a BERT vocab.txt (mBERT), LaBSE's published
// tokenizer.json (WordPiece + BertNormalizer) and XLM-R's (Unigram + SentencePiece Precompiled
// normalizer + WhitespaceSplit/Metaspace).
//
// @huggingface/tokenizers (0.2.0) supplies the two models (WordPiece greedy longest-match, Unigram
// Viterbi lattice). Its Tokenizer class and most of its normalizers / pre-tokenizers are NOT used,
// because for these targets they give other ids than the Rust library:
//  - Precompiled ignores the SentencePiece charsmap it is given and applies NFKC plus a few hand-written
//    replacements instead, so XLM-R text that the charsmap maps differently (e.g. U+2581, U+FF5E
//    edge cases) is tokenized differently. We read the charsmap's double-array trie as Rust does.
//  - BertNormalizer walks UTF-16 code units, so CJK ideographs outside the BMP (Ext. B–F, common in
//    names) are not isolated; it also lowercases before stripping accents (Rust: the reverse) and uses
//    String#toLowerCase, whose final-sigma rule turns a word-final Σ into ς where Rust gives σ.
//  - BertPreTokenizer, clean_text and strip_accents use the current Unicode tables of V8's \p{..},
//    while Rust's `unicode_categories` crate has older ones: e.g. U+2E4E is punctuation in JS but
//    not in Rust, U+0890 is removed as Cf only in JS. We use tables dumped from the Rust library
//    (test/reference/tokenizer_reference.py bert-probe), independent of the Node/ICU version.
//  - Whitespace / WhitespaceSplit use JS \w / \s (ASCII \w; \s includes U+FEFF, lacks U+0085).
//  - Metaspace never splits (Rust splits on ▁ by default) and Unigram fuses unknown tokens across
//    all pre-tokens of a section, not per word.
//  - The Tokenizer class requires every top-level key and a tokenizer_config, has no truncation,
//    and has no post-processor query to know which special tokens to keep when truncating.
import { readFileSync } from 'node:fs';
import * as hfTokenizers from '@huggingface/tokenizers';
import type { TokenBatch } from './native.ts';

// The package's index.d.ts re-exports with extensionless relative paths (`export * from
// "./normalizers"`), which NodeNext resolution cannot follow, so the one class we use is typed here.
const { ReplaceNormalizer } = hfTokenizers as unknown as {
  ReplaceNormalizer: new (cfg: object) => { normalize(text: string): string };
};

export interface EncodeOptions {
  /** Maximum length INCLUDING the special tokens ([CLS]/[SEP], <s>/</s>); longer texts are cut at
   * the end of their content, the closing special token is kept (Hugging Face truncation). */
  maxLength: number;
  /** Prepended to the text before tokenization, e.g. "query: ". */
  prefix?: string;
}

export interface WordPieceBuildOptions {
  lowercase: boolean;
  /** Default (undefined): follow `lowercase`, as BertNormalizer's strip_accents=None does. */
  stripAccents?: boolean;
  /** Isolate CJK ideographs (BERT's tokenize_chinese_chars). Default true. */
  handleChineseChars?: boolean;
}

type Json = Record<string, any>;

// ---------------------------------------------------------------------------------------------
// Character classes of the Rust library (tokenizers 0.23.2), as code point ranges in hex.
// Regenerate with: python test/reference/tokenizer_reference.py bert-probe
// (the test compares them against the Rust library for every code point when XLIR_PYTHON is set).
// Removed by clean_text: NUL, U+FFFD and `char::is_other()` (Cc Cf Co Cs) minus tab/LF/CR.
const RUST_OTHER =
  '0-8 b-c e-1f 7f-9f ad 600-605 61c 6dd 70f 180e 200b-200f 202a-202e 2060-2064 2066-206f ' +
  'e000-f8ff feff fff9-fffb fffd 110bd 1bca0-1bca3 1d173-1d17a e0001 e0020-e007f f0000-ffffd ' +
  '100000-10fffd ';
// `char::is_whitespace()`.
const RUST_WHITESPACE =
  '9-d 20 85 a0 1680 2000-200a 2028-2029 202f 205f 3000 ';
// `is_chinese_char()` of the Bert normalizer.
const RUST_CHINESE =
  '3400-4dbf 4e00-9fff f900-faff 20000-2a6df 2a700-2b81f 2b920-2ceaf 2f800-2fa1f ';
// `is_bert_punc()`: ASCII punctuation or a Unicode P* category in the crate's tables.
const RUST_PUNCTUATION =
  '21-2f 3a-40 5b-60 7b-7e a1 a7 ab b6-b7 bb bf 37e 387 55a-55f 589-58a 5be 5c0 5c3 5c6 5f3-5f4 ' +
  '609-60a 60c-60d 61b 61e-61f 66a-66d 6d4 700-70d 7f7-7f9 830-83e 85e 964-965 970 af0 df4 e4f ' +
  'e5a-e5b f04-f12 f14 f3a-f3d f85 fd0-fd4 fd9-fda 104a-104f 10fb 1360-1368 1400 166d-166e ' +
  '169b-169c 16eb-16ed 1735-1736 17d4-17d6 17d8-17da 1800-180a 1944-1945 1a1e-1a1f 1aa0-1aa6 ' +
  '1aa8-1aad 1b5a-1b60 1bfc-1bff 1c3b-1c3f 1c7e-1c7f 1cc0-1cc7 1cd3 2010-2027 2030-2043 2045-2051 ' +
  '2053-205e 207d-207e 208d-208e 2308-230b 2329-232a 2768-2775 27c5-27c6 27e6-27ef 2983-2998 ' +
  '29d8-29db 29fc-29fd 2cf9-2cfc 2cfe-2cff 2d70 2e00-2e2e 2e30-2e42 3001-3003 3008-3011 3014-301f ' +
  '3030 303d 30a0 30fb a4fe-a4ff a60d-a60f a673 a67e a6f2-a6f7 a874-a877 a8ce-a8cf a8f8-a8fa a8fc ' +
  'a92e-a92f a95f a9c1-a9cd a9de-a9df aa5c-aa5f aade-aadf aaf0-aaf1 abeb fd3e-fd3f fe10-fe19 ' +
  'fe30-fe52 fe54-fe61 fe63 fe68 fe6a-fe6b ff01-ff03 ff05-ff0a ff0c-ff0f ff1a-ff1b ff1f-ff20 ' +
  'ff3b-ff3d ff3f ff5b ff5d ff5f-ff65 10100-10102 1039f 103d0 1056f 10857 1091f 1093f 10a50-10a58 ' +
  '10a7f 10af0-10af6 10b39-10b3f 10b99-10b9c 11047-1104d 110bb-110bc 110be-110c1 11140-11143 ' +
  '11174-11175 111c5-111c9 111cd 111db 111dd-111df 11238-1123d 112a9 114c6 115c1-115d7 ' +
  '11641-11643 1173c-1173e 12470-12474 16a6e-16a6f 16af5 16b37-16b3b 16b44 1bc9f 1da87-1da8b ';
// Mn in the crate's tables (what strip_accents removes after NFD).
const RUST_MARK_NONSPACING =
  '300-36f 483-487 591-5bd 5bf 5c1-5c2 5c4-5c5 5c7 610-61a 64b-65f 670 6d6-6dc 6df-6e4 6e7-6e8 ' +
  '6ea-6ed 711 730-74a 7a6-7b0 7eb-7f3 816-819 81b-823 825-827 829-82d 859-85b 8e3-902 93a 93c ' +
  '941-948 94d 951-957 962-963 981 9bc 9c1-9c4 9cd 9e2-9e3 a01-a02 a3c a41-a42 a47-a48 a4b-a4d ' +
  'a51 a70-a71 a75 a81-a82 abc ac1-ac5 ac7-ac8 acd ae2-ae3 b01 b3c b3f b41-b44 b4d b56 b62-b63 ' +
  'b82 bc0 bcd c00 c3e-c40 c46-c48 c4a-c4d c55-c56 c62-c63 c81 cbc cbf cc6 ccc-ccd ce2-ce3 d01 ' +
  'd41-d44 d4d d62-d63 dca dd2-dd4 dd6 e31 e34-e3a e47-e4e eb1 eb4-eb9 ebb-ebc ec8-ecd f18-f19 ' +
  'f35 f37 f39 f71-f7e f80-f84 f86-f87 f8d-f97 f99-fbc fc6 102d-1030 1032-1037 1039-103a ' +
  '103d-103e 1058-1059 105e-1060 1071-1074 1082 1085-1086 108d 109d 135d-135f 1712-1714 1732-1734 ' +
  '1752-1753 1772-1773 17b4-17b5 17b7-17bd 17c6 17c9-17d3 17dd 180b-180d 18a9 1920-1922 1927-1928 ' +
  '1932 1939-193b 1a17-1a18 1a1b 1a56 1a58-1a5e 1a60 1a62 1a65-1a6c 1a73-1a7c 1a7f 1ab0-1abd ' +
  '1b00-1b03 1b34 1b36-1b3a 1b3c 1b42 1b6b-1b73 1b80-1b81 1ba2-1ba5 1ba8-1ba9 1bab-1bad 1be6 ' +
  '1be8-1be9 1bed 1bef-1bf1 1c2c-1c33 1c36-1c37 1cd0-1cd2 1cd4-1ce0 1ce2-1ce8 1ced 1cf4 1cf8-1cf9 ' +
  '1dc0-1df5 1dfc-1dff 20d0-20dc 20e1 20e5-20f0 2cef-2cf1 2d7f 2de0-2dff 302a-302d 3099-309a a66f ' +
  'a674-a67d a69e-a69f a6f0-a6f1 a802 a806 a80b a825-a826 a8c4 a8e0-a8f1 a926-a92d a947-a951 ' +
  'a980-a982 a9b3 a9b6-a9b9 a9bc a9e5 aa29-aa2e aa31-aa32 aa35-aa36 aa43 aa4c aa7c aab0 aab2-aab4 ' +
  'aab7-aab8 aabe-aabf aac1 aaec-aaed aaf6 abe5 abe8 abed fb1e fe00-fe0f fe20-fe2f 101fd 102e0 ' +
  '10376-1037a 10a01-10a03 10a05-10a06 10a0c-10a0f 10a38-10a3a 10a3f 10ae5-10ae6 11001 ' +
  '11038-11046 1107f-11081 110b3-110b6 110b9-110ba 11100-11102 11127-1112b 1112d-11134 11173 ' +
  '11180-11181 111b6-111be 111ca-111cc 1122f-11231 11234 11236-11237 112df 112e3-112ea ' +
  '11300-11301 1133c 11340 11366-1136c 11370-11374 114b3-114b8 114ba 114bf-114c0 114c2-114c3 ' +
  '115b2-115b5 115bc-115bd 115bf-115c0 115dc-115dd 11633-1163a 1163d 1163f-11640 116ab 116ad ' +
  '116b0-116b5 116b7 1171d-1171f 11722-11725 11727-1172b 16af0-16af4 16b30-16b36 16f8f-16f92 ' +
  '1bc9d-1bc9e 1d167-1d169 1d17b-1d182 1d185-1d18b 1d1aa-1d1ad 1d242-1d244 1da00-1da36 ' +
  '1da3b-1da6c 1da75 1da84 1da9b-1da9f 1daa1-1daaf 1e8d0-1e8d6 e0100-e01ef ';
// Mn Mc Me in the crate's tables (what the StripAccents normalizer removes).
const RUST_COMBINING_MARK =
  '300-36f 483-489 591-5bd 5bf 5c1-5c2 5c4-5c5 5c7 610-61a 64b-65f 670 6d6-6dc 6df-6e4 6e7-6e8 ' +
  '6ea-6ed 711 730-74a 7a6-7b0 7eb-7f3 816-819 81b-823 825-827 829-82d 859-85b 8d4-8e1 8e3-903 ' +
  '93a-93c 93e-94f 951-957 962-963 981-983 9bc 9be-9c4 9c7-9c8 9cb-9cd 9d7 9e2-9e3 a01-a03 a3c ' +
  'a3e-a42 a47-a48 a4b-a4d a51 a70-a71 a75 a81-a83 abc abe-ac5 ac7-ac9 acb-acd ae2-ae3 b01-b03 ' +
  'b3c b3e-b44 b47-b48 b4b-b4d b56-b57 b62-b63 b82 bbe-bc2 bc6-bc8 bca-bcd bd7 c00-c03 c3e-c44 ' +
  'c46-c48 c4a-c4d c55-c56 c62-c63 c81-c83 cbc cbe-cc4 cc6-cc8 cca-ccd cd5-cd6 ce2-ce3 d01-d03 ' +
  'd3e-d44 d46-d48 d4a-d4d d57 d62-d63 d82-d83 dca dcf-dd4 dd6 dd8-ddf df2-df3 e31 e34-e3a ' +
  'e47-e4e eb1 eb4-eb9 ebb-ebc ec8-ecd f18-f19 f35 f37 f39 f3e-f3f f71-f84 f86-f87 f8d-f97 ' +
  'f99-fbc fc6 102b-103e 1056-1059 105e-1060 1062-1064 1067-106d 1071-1074 1082-108d 108f ' +
  '109a-109d 135d-135f 1712-1714 1732-1734 1752-1753 1772-1773 17b4-17d3 17dd 180b-180d 1885-1886 ' +
  '18a9 1920-192b 1930-193b 1a17-1a1b 1a55-1a5e 1a60-1a7c 1a7f 1ab0-1abe 1b00-1b04 1b34-1b44 ' +
  '1b6b-1b73 1b80-1b82 1ba1-1bad 1be6-1bf3 1c24-1c37 1cd0-1cd2 1cd4-1ce8 1ced 1cf2-1cf4 1cf8-1cf9 ' +
  '1dc0-1df5 1dfb-1dff 20d0-20f0 2cef-2cf1 2d7f 2de0-2dff 302a-302f 3099-309a a66f-a672 a674-a67d ' +
  'a69e-a69f a6f0-a6f1 a802 a806 a80b a823-a827 a880-a881 a8b4-a8c5 a8e0-a8f1 a926-a92d a947-a953 ' +
  'a980-a983 a9b3-a9c0 a9e5 aa29-aa36 aa43 aa4c-aa4d aa7b-aa7d aab0 aab2-aab4 aab7-aab8 aabe-aabf ' +
  'aac1 aaeb-aaef aaf5-aaf6 abe3-abea abec-abed fb1e fe00-fe0f fe20-fe2f 101fd 102e0 10376-1037a ' +
  '10a01-10a03 10a05-10a06 10a0c-10a0f 10a38-10a3a 10a3f 10ae5-10ae6 11000-11002 11038-11046 ' +
  '1107f-11082 110b0-110ba 11100-11102 11127-11134 11173 11180-11182 111b3-111c0 111ca-111cc ' +
  '1122c-11237 1123e 112df-112ea 11300-11303 1133c 1133e-11344 11347-11348 1134b-1134d 11357 ' +
  '11362-11363 11366-1136c 11370-11374 11435-11446 114b0-114c3 115af-115b5 115b8-115c0 ' +
  '115dc-115dd 11630-11640 116ab-116b7 1171d-1172b 11c2f-11c36 11c38-11c3f 11c92-11ca7 ' +
  '11ca9-11cb6 16af0-16af4 16b30-16b36 16f51-16f7e 16f8f-16f92 1bc9d-1bc9e 1d165-1d169 ' +
  '1d16d-1d172 1d17b-1d182 1d185-1d18b 1d1aa-1d1ad 1d242-1d244 1da00-1da36 1da3b-1da6c 1da75 ' +
  '1da84 1da9b-1da9f 1daa1-1daaf 1e000-1e006 1e008-1e018 1e01b-1e021 1e023-1e024 1e026-1e02a ' +
  '1e8d0-1e8d6 1e944-1e94a e0100-e01ef ';

const F_OTHER = 1, F_WHITESPACE = 2, F_CHINESE = 4, F_PUNCT = 8, F_MN = 16, F_MARK = 32;
let charFlags: Uint8Array | undefined;

function flagsTable(): Uint8Array {
  if (charFlags) return charFlags;
  const t = new Uint8Array(0x110000);
  const mark = (ranges: string, flag: number): void => {
    for (const r of ranges.split(' ')) {
      if (!r) continue;
      const [a, b] = r.split('-');
      const lo = parseInt(a, 16), hi = b === undefined ? lo : parseInt(b, 16);
      for (let cp = lo; cp <= hi; cp++) t[cp] |= flag;
    }
  };
  mark(RUST_OTHER, F_OTHER);
  mark(RUST_WHITESPACE, F_WHITESPACE);
  mark(RUST_CHINESE, F_CHINESE);
  mark(RUST_PUNCTUATION, F_PUNCT);
  mark(RUST_MARK_NONSPACING, F_MN);
  mark(RUST_COMBINING_MARK, F_MARK);
  return (charFlags = t);
}

// ---------------------------------------------------------------------------------------------
// Normalizers

type NormalizeFn = (text: string) => string;

// Rust lowercases char by char (char::to_lowercase); String#toLowerCase additionally applies the
// context-dependent Final_Sigma rule, the only contextual rule it has, so only Σ needs the slow path.
function lowercaseRust(text: string): string {
  if (!text.includes('\u03A3')) return text.toLowerCase();
  let out = '';
  for (const c of text) out += c === '\u03A3' ? '\u03C3' : c.toLowerCase();
  return out;
}

function removeMarks(text: string, flag: number): string {
  const t = flagsTable();
  let out = '';
  for (const c of text) if (!(t[c.codePointAt(0)!] & flag)) out += c;
  return out;
}

function bertNormalizer(cfg: Json): NormalizeFn {
  const cleanText = cfg.clean_text ?? true;
  const chinese = cfg.handle_chinese_chars ?? true;
  const lowercase = cfg.lowercase ?? true;
  const stripAccents = cfg.strip_accents ?? lowercase;
  return (text) => {
    const t = flagsTable();
    if (cleanText || chinese) {
      let out = '';
      for (const c of text) {
        const cp = c.codePointAt(0)!;
        const f = t[cp];
        if (cleanText) {
          if (f & F_OTHER) continue;
          if (f & F_WHITESPACE) { out += ' '; continue; }
        }
        out += chinese && (f & F_CHINESE) ? ` ${c} ` : c;
      }
      text = out;
    }
    if (stripAccents) text = removeMarks(text.normalize('NFD'), F_MN);
    if (lowercase) text = lowercaseRust(text);
    return text;
  };
}

function nmtNormalizer(): NormalizeFn {
  return (text) => {
    let out = '';
    for (const c of text) {
      const cp = c.codePointAt(0)!;
      if ((cp >= 0x1 && cp <= 0x8) || cp === 0xB || (cp >= 0xE && cp <= 0x1F) || cp === 0x7F || cp === 0x8F || cp === 0x9F) continue;
      const space = cp === 0x9 || cp === 0xA || cp === 0xC || cp === 0xD || cp === 0x1680 || (cp >= 0x200B && cp <= 0x200F) ||
        cp === 0x2028 || cp === 0x2029 || cp === 0x2581 || cp === 0xFEFF || cp === 0xFFFD;
      out += space ? ' ' : c;
    }
    return out;
  };
}

/**
 * SentencePiece's compiled normalization rules (XLM-R: nmt_nfkc): a Darts double-array trie over
 * UTF-8 keys whose values index NUL-terminated replacements. Follows the Rust `Precompiled`
 * normalizer: each grapheme cluster shorter than 6 UTF-8 bytes is looked up whole, and replaced by
 * the value of its FIRST (shortest) matching prefix; otherwise, and when that finds nothing, each
 * code point is looked up alone.
 */
export class PrecompiledCharsmap {
  private readonly trie: Uint32Array;
  private readonly replacements: Uint8Array;
  private readonly cache = new Map<string, string>();
  private static readonly utf8 = new TextEncoder();
  private static readonly utf8d = new TextDecoder('utf-8', { fatal: true });
  private static segmenter: Intl.Segmenter | undefined;

  constructor(charsmapBase64: string) {
    const buf = Buffer.from(charsmapBase64, 'base64');
    if (buf.length < 4) throw new Error('precompiled_charsmap is too short');
    const trieBytes = buf.readUInt32LE(0);
    if (trieBytes % 4 !== 0 || 4 + trieBytes > buf.length || trieBytes === 0) {
      throw new Error(`precompiled_charsmap is malformed (trie of ${trieBytes} bytes in ${buf.length})`);
    }
    this.trie = new Uint32Array(trieBytes / 4);
    for (let i = 0; i < this.trie.length; i++) this.trie[i] = buf.readUInt32LE(4 + 4 * i);
    this.replacements = new Uint8Array(buf.subarray(4 + trieBytes));
  }

  /** Value of the shortest key that is a prefix of `key`, or -1. */
  private firstMatch(key: Uint8Array): number {
    const a = this.trie;
    const offset = (u: number): number => (u >>> 10) * ((u & 0x200) ? 256 : 1);
    let unit = a[0];
    let pos = offset(unit);
    for (const c of key) {
      if (c === 0) break;
      pos ^= c;
      unit = a[pos];
      if (unit === undefined || ((unit & 0x800000FF) >>> 0) !== c) return -1;
      pos ^= offset(unit);
      if ((unit >>> 8) & 1) return a[pos] & 0x7FFFFFFF;
    }
    return -1;
  }

  private replacement(index: number): string {
    let end = index;
    while (end < this.replacements.length && this.replacements[end] !== 0) end++;
    return PrecompiledCharsmap.utf8d.decode(this.replacements.subarray(index, end));
  }

  private transform(piece: string): string | undefined {
    const v = this.firstMatch(PrecompiledCharsmap.utf8.encode(piece));
    return v < 0 ? undefined : this.replacement(v);
  }

  private grapheme(g: string): string {
    const hit = this.cache.get(g);
    if (hit !== undefined) return hit;
    let out: string | undefined;
    if (Buffer.byteLength(g, 'utf8') < 6) out = this.transform(g);
    if (out === undefined) {
      out = '';
      for (const c of g) out += this.transform(c) ?? c;
    }
    if (this.cache.size >= 200_000) this.cache.clear();
    this.cache.set(g, out);
    return out;
  }

  private segmented(text: string): string {
    PrecompiledCharsmap.segmenter ??= new Intl.Segmenter('en', { granularity: 'grapheme' });
    let out = '';
    for (const { segment } of PrecompiledCharsmap.segmenter.segment(text)) out += this.grapheme(segment);
    return out;
  }

  /** Reference path: every grapheme cluster found by Intl.Segmenter (slow; for tests). */
  normalizeBySegmenter(text: string): string {
    return this.segmented(text);
  }

  normalize(text: string): string {
    // Intl.Segmenter costs about a microsecond per character, most of the time. Only code points
    // that may share a cluster with a neighbour need it: between two code points that are both
    // outside MAY_JOIN there is always a cluster boundary, so the text is cut there and only the
    // runs touching MAY_JOIN are segmented.
    let out = '';
    let runStart = 0, prevJoins = false;
    for (let i = 0; i < text.length;) {
      const cp = text.codePointAt(i)!;
      const joins = mayJoin(cp);
      if (i > runStart && !prevJoins && !joins) {
        out += this.run(text, runStart, i);
        runStart = i;
      }
      prevJoins = joins;
      i += cp > 0xFFFF ? 2 : 1;
    }
    if (text.length > runStart) out += this.run(text, runStart, text.length);
    return out;
  }

  private run(text: string, from: number, to: number): string {
    const piece = text.slice(from, to);
    if (to - from === 1 || (to - from === 2 && text.codePointAt(from)! > 0xFFFF)) return this.grapheme(piece);
    return this.segmented(piece);
  }
}

// Code points next to which UAX #29 may put no grapheme cluster boundary: Extend (Grapheme_Extend,
// emoji modifiers) and ZWJ (GB9, GB11; ZWJ is Cf), SpacingMark (GB9a: Mc and Thai/Lao AM), Prepend
// (GB9b: the Cf ones and those listed), Hangul jamo (GB6-8), regional indicators (GB12/13), CR LF (GB3).
const MAY_JOIN = /^[\p{Grapheme_Extend}\p{Mc}\p{Cf}\r\n\u0E33\u0EB3\u0D4E\u1100-\u11FF\uA960-\uA97F\uD7B0-\uD7FF\u{111C2}\u{111C3}\u{1193F}\u{11941}\u{113D1}\u{11A3A}\u{11A84}-\u{11A89}\u{11D46}\u{11F02}\u{1F1E6}-\u{1F1FF}\u{1F3FB}-\u{1F3FF}]$/u;
let mayJoinTable: Int8Array | undefined;

function mayJoin(cp: number): boolean {
  const t = (mayJoinTable ??= new Int8Array(0x110000).fill(-1));
  if (t[cp] < 0) t[cp] = MAY_JOIN.test(String.fromCodePoint(cp)) ? 1 : 0;
  return t[cp] === 1;
}

function buildNormalizer(cfg: Json | null | undefined, where: string): NormalizeFn | null {
  if (cfg == null) return null;
  switch (cfg.type) {
    case 'BertNormalizer': return bertNormalizer(cfg);
    case 'Precompiled': {
      // An empty charsmap means "no rules" (Rust accepts it and leaves the text alone).
      if (!cfg.precompiled_charsmap) return (t) => t;
      const pc = new PrecompiledCharsmap(cfg.precompiled_charsmap);
      return (t) => pc.normalize(t);
    }
    case 'Sequence': {
      const parts = (cfg.normalizers ?? []).map((c: Json, i: number) => buildNormalizer(c, `${where}.normalizers[${i}]`))
        .filter((f: NormalizeFn | null): f is NormalizeFn => f !== null);
      return (t) => parts.reduce((s: string, f: NormalizeFn) => f(s), t);
    }
    case 'Nmt': return nmtNormalizer();
    case 'Lowercase': return lowercaseRust;
    // Unlike BertNormalizer's strip_accents: every combining mark, and no NFD first.
    case 'StripAccents': return (t) => removeMarks(t, F_MARK);
    case 'Strip': {
      const left = cfg.strip_left ?? true, right = cfg.strip_right ?? true;
      const ws = /^[\t-\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]+/u;
      const wsEnd = /[\t-\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]+$/u;
      return (t) => {
        if (left) t = t.replace(ws, '');
        if (right) t = t.replace(wsEnd, '');
        return t;
      };
    }
    case 'Prepend': return (t) => (t.length ? cfg.prepend + t : t);
    case 'NFC': case 'NFD': case 'NFKC': case 'NFKD': { const form: string = cfg.type; return (t) => t.normalize(form); }
    // The library translates the Oniguruma pattern of a Regex replacement to a JS RegExp.
    case 'Replace': { const n = new ReplaceNormalizer(cfg); return (t) => n.normalize(t); }
    default:
      throw new Error(`unsupported normalizer type ${JSON.stringify(cfg.type)} at ${where}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Pre-tokenizers. A piece remembers whether it starts at offset 0 of the original text, which
// Metaspace's prepend_scheme "first" needs.

interface Piece { text: string; first: boolean }
type PreTokenizeFn = (pieces: Piece[]) => Piece[];

function splitWhere(p: Piece, isSep: (cp: number) => boolean, isolate: (cp: number) => boolean): Piece[] {
  const out: Piece[] = [];
  let cur = '', start = 0, i = 0;
  const flush = (): void => {
    if (cur) out.push({ text: cur, first: p.first && start === 0 });
    cur = '';
  };
  for (const c of p.text) {
    const cp = c.codePointAt(0)!;
    if (isSep(cp)) { flush(); }
    else if (isolate(cp)) { flush(); out.push({ text: c, first: p.first && i === 0 }); }
    else { if (!cur) start = i; cur += c; }
    i += c.length;
  }
  flush();
  return out;
}

function metaspace(cfg: Json): PreTokenizeFn {
  const rep: string = cfg.replacement ?? '\u2581';
  const scheme: string = cfg.prepend_scheme ?? (cfg.add_prefix_space === false ? 'never' : 'always');
  const split: boolean = cfg.split ?? true;
  return (pieces) => pieces.flatMap((p) => {
    if (!p.text) return [];
    let s = p.text.replaceAll(' ', rep);
    if (!s.startsWith(rep) && (scheme === 'always' || (scheme === 'first' && p.first))) s = rep + s;
    if (!split) return [{ text: s, first: p.first }];
    // MergedWithNext: every ▁ starts a new piece.
    const out: Piece[] = [];
    let from = 0;
    for (let at = s.indexOf(rep, 1); at !== -1; at = s.indexOf(rep, at + rep.length)) {
      out.push({ text: s.slice(from, at), first: p.first && from === 0 });
      from = at;
    }
    out.push({ text: s.slice(from), first: p.first && from === 0 });
    return out.filter((q) => q.text.length > 0);
  });
}

// Rust's regex \w and \s are Unicode-aware; JS's \w is ASCII-only.
const WORD_RUN = /[\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}]+|[^\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}\t-\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]+/gu;

function buildPreTokenizer(cfg: Json | null | undefined, where: string): PreTokenizeFn | null {
  if (cfg == null) return null;
  const isWs = (cp: number): boolean => (flagsTable()[cp] & F_WHITESPACE) !== 0;
  switch (cfg.type) {
    case 'BertPreTokenizer':
      return (pieces) => pieces.flatMap((p) => splitWhere(p, isWs, (cp) => (flagsTable()[cp] & F_PUNCT) !== 0));
    case 'WhitespaceSplit':
      return (pieces) => pieces.flatMap((p) => splitWhere(p, isWs, () => false));
    case 'Whitespace':
      return (pieces) => pieces.flatMap((p) => [...p.text.matchAll(WORD_RUN)].map((m) => ({ text: m[0], first: p.first && m.index === 0 })));
    case 'Metaspace':
      return metaspace(cfg);
    case 'Sequence': {
      const parts = (cfg.pretokenizers ?? []).map((c: Json, i: number) => buildPreTokenizer(c, `${where}.pretokenizers[${i}]`))
        .filter((f: PreTokenizeFn | null): f is PreTokenizeFn => f !== null);
      return (pieces) => parts.reduce((ps: Piece[], f: PreTokenizeFn) => f(ps), pieces);
    }
    default:
      throw new Error(`unsupported pre_tokenizer type ${JSON.stringify(cfg.type)} at ${where}`);
  }
}

/** The normalizer of a tokenizer.json (its "normalizer" value) as a function; identity for null. */
export function normalizerFromJson(cfg: Json | null): (text: string) => string {
  return buildNormalizer(cfg, 'normalizer') ?? ((t) => t);
}

/** The pre-tokenizer of a tokenizer.json (its "pre_tokenizer" value) as a function of a whole text. */
export function preTokenizerFromJson(cfg: Json | null): (text: string) => string[] {
  const f = buildPreTokenizer(cfg, 'pre_tokenizer');
  return (text) => (f ? f([{ text, first: true }]) : [{ text, first: true }]).map((p) => p.text);
}

// ---------------------------------------------------------------------------------------------
// Models

interface Model {
  type: 'WordPiece' | 'Unigram';
  /** Ids of one pre-token. */
  encodeWord(word: string): number[];
  tokenToId(token: string): number | undefined;
  idToToken(id: number): string | undefined;
  maxId: number;
}

function buildModel(cfg: Json | undefined, where: string): Model {
  if (!cfg || typeof cfg !== 'object') throw new Error(`${where}: no "model" object`);
  // Like Rust, accept files without model.type and recognise the model by its fields.
  let type: string | undefined = cfg.type;
  if (type === undefined) {
    if (Array.isArray(cfg.vocab)) type = 'Unigram';
    else if ('merges' in cfg) type = 'BPE';
    else if ('continuing_subword_prefix' in cfg || 'max_input_chars_per_word' in cfg) type = 'WordPiece';
  }
  if (type === 'WordPiece') {
    if (!cfg.vocab || typeof cfg.vocab !== 'object') throw new Error(`${where}: WordPiece model without a vocab`);
    const unk: string = cfg.unk_token ?? '[UNK]';
    const prefix: string = cfg.continuing_subword_prefix ?? '##';
    const maxChars: number = cfg.max_input_chars_per_word ?? 100;
    const ids = new Map<string, number>();
    const vocab: string[] = [];
    let maxId = -1, longest = 0;
    for (const [tok, id] of Object.entries(cfg.vocab as Record<string, number>)) {
      ids.set(tok, id);
      vocab[id] = tok;
      if (id > maxId) maxId = id;
      if (tok.length > longest) longest = tok.length;
    }
    const unkId = ids.get(unk);
    if (unkId === undefined) throw new Error(`${where}: unk_token ${JSON.stringify(unk)} is not in the WordPiece vocab`);
    // Rust's greedy longest-match-first. Not the library's WordPiece: it re-joins a char array for
    // every candidate end, cubic in the word length, which is slow for unspaced Thai/Lao/Khmer runs
    // of up to 100 characters. Candidates longer than the longest vocab entry are skipped here.
    const encodeWord = (word: string): number[] => {
      const bounds: number[] = [];
      for (let i = 0; i < word.length;) {
        bounds.push(i);
        i += (word.codePointAt(i)! > 0xFFFF) ? 2 : 1;
      }
      if (bounds.length > maxChars) return [unkId];
      bounds.push(word.length);
      const out: number[] = [];
      let s = 0; // index into bounds
      while (s < bounds.length - 1) {
        const from = bounds[s];
        const room = from > 0 ? longest - prefix.length : longest;
        let e = bounds.length - 1;
        while (e > s && bounds[e] - from > room) e--;
        let found = -1;
        for (; e > s; e--) {
          const piece = from > 0 ? prefix + word.slice(from, bounds[e]) : word.slice(from, bounds[e]);
          const id = ids.get(piece);
          if (id !== undefined) { found = id; break; }
        }
        if (found < 0) return [unkId];
        out.push(found);
        s = e;
      }
      return out;
    };
    return {
      type: 'WordPiece',
      encodeWord,
      tokenToId: (t) => ids.get(t),
      idToToken: (id) => vocab[id],
      maxId,
    };
  }
  if (type === 'Unigram') {
    if (!Array.isArray(cfg.vocab) || cfg.vocab.length === 0) throw new Error(`${where}: Unigram model without a vocab`);
    if (cfg.byte_fallback) throw new Error(`${where}: Unigram byte_fallback is not supported`);
    if (!Number.isInteger(cfg.unk_id) || cfg.unk_id < 0 || cfg.unk_id >= cfg.vocab.length) {
      throw new Error(`${where}: Unigram model without a valid unk_id is not supported`);
    }
    return unigramModel(cfg.vocab, cfg.unk_id, where);
  }
  throw new Error(`${where}: unsupported model type ${JSON.stringify(type ?? null)} (supported: WordPiece, Unigram)`);
}

/**
 * Rust's Unigram::encode_optimized (SentencePiece's best-path search) over one pre-token: for each
 * start position in order, every vocab piece starting there extends the best path ending at its
 * end if strictly better; a position no one-character piece covers gets <unk> at
 * min(score) - 10. Runs of <unk> are fused into one. Not the library's Unigram: its trie of Maps
 * takes ~230 MB and ~3 s to build for a 250k-piece vocab like XLM-R's (per worker thread); a
 * Map of pieces, looked up by substrings no longer than the longest piece, is ~10x smaller.
 */
function unigramModel(entries: unknown[], unkId: number, where: string): Model {
  const ids = new Map<string, number>();
  const pieces: string[] = new Array(entries.length);
  const scores = new Float64Array(entries.length);
  let minScore = Infinity, longest = 1;
  entries.forEach((e, i) => {
    if (!Array.isArray(e) || typeof e[0] !== 'string' || typeof e[1] !== 'number') {
      throw new Error(`${where}: Unigram vocab entry ${i} is not [piece, score]`);
    }
    const [piece, score] = e as [string, number];
    pieces[i] = piece;
    scores[i] = score;
    ids.set(piece, i);
    if (score < minScore) minScore = score;
    let n = 0;
    for (const _ of piece) n++;
    if (n > longest) longest = n;
  });
  const unkScore = minScore - 10;

  const encodeWord = (word: string): number[] => {
    const bounds: number[] = [];
    for (let i = 0; i < word.length;) {
      bounds.push(i);
      i += (word.codePointAt(i)! > 0xFFFF) ? 2 : 1;
    }
    const n = bounds.length;
    bounds.push(word.length);
    const best = new Float64Array(n + 1);
    const from = new Int32Array(n + 1).fill(-1);
    const idAt = new Int32Array(n + 1);
    for (let s = 0; s < n; s++) {
      const base = best[s];
      let single = false;
      const last = Math.min(n, s + longest);
      for (let e = s + 1; e <= last; e++) {
        const id = ids.get(word.slice(bounds[s], bounds[e]));
        if (id === undefined) continue;
        const score = base + scores[id];
        if (from[e] < 0 || score > best[e]) { best[e] = score; from[e] = s; idAt[e] = id; }
        if (e === s + 1) single = true;
      }
      if (!single) {
        const score = base + unkScore;
        if (from[s + 1] < 0 || score > best[s + 1]) { best[s + 1] = score; from[s + 1] = s; idAt[s + 1] = unkId; }
      }
    }
    const out: number[] = [];
    let unkRunEnd = -1;
    for (let e = n; e > 0; e = from[e]) {
      if (idAt[e] === unkId) {
        if (unkRunEnd < 0) unkRunEnd = e;
        continue;
      }
      if (unkRunEnd >= 0) { out.push(ids.get(word.slice(bounds[e], bounds[unkRunEnd])) ?? unkId); unkRunEnd = -1; }
      out.push(ids.get(word.slice(bounds[from[e]], bounds[e])) ?? unkId);
    }
    if (unkRunEnd >= 0) out.push(ids.get(word.slice(0, bounds[unkRunEnd])) ?? unkId);
    return out.reverse();
  };
  return {
    type: 'Unigram',
    encodeWord,
    tokenToId: (t) => ids.get(t),
    idToToken: (id) => pieces[id],
    maxId: entries.length - 1,
  };
}

// ---------------------------------------------------------------------------------------------
// Special tokens added by the post-processor around a single sequence

interface Wrapping { prefix: number[]; suffix: number[] }

function buildWrapping(cfg: Json | null | undefined, where: string): Wrapping {
  if (cfg == null) return { prefix: [], suffix: [] };
  switch (cfg.type) {
    case 'BertProcessing':
    case 'RobertaProcessing': {
      const cls = cfg.cls?.[1], sep = cfg.sep?.[1];
      if (typeof cls !== 'number' || typeof sep !== 'number') throw new Error(`${where}: ${cfg.type} without cls/sep ids`);
      return { prefix: [cls], suffix: [sep] };
    }
    case 'TemplateProcessing': {
      const w: Wrapping = { prefix: [], suffix: [] };
      let seenA = false;
      for (const item of cfg.single ?? []) {
        if (item.Sequence) {
          if (item.Sequence.id !== 'A') throw new Error(`${where}: single template uses sequence ${item.Sequence.id}`);
          seenA = true;
        } else if (item.SpecialToken) {
          const sp = cfg.special_tokens?.[item.SpecialToken.id];
          if (!sp || !Array.isArray(sp.ids)) throw new Error(`${where}: special token ${JSON.stringify(item.SpecialToken.id)} has no ids`);
          (seenA ? w.suffix : w.prefix).push(...sp.ids);
        }
      }
      if (!seenA) throw new Error(`${where}: single template has no $A`);
      return w;
    }
    case 'ByteLevel': return { prefix: [], suffix: [] };
    case 'Sequence': {
      const w: Wrapping = { prefix: [], suffix: [] };
      (cfg.processors ?? []).forEach((c: Json, i: number) => {
        const inner = buildWrapping(c, `${where}.processors[${i}]`);
        w.prefix = [...inner.prefix, ...w.prefix];
        w.suffix = [...w.suffix, ...inner.suffix];
      });
      return w;
    }
    default:
      throw new Error(`unsupported post_processor type ${JSON.stringify(cfg.type)} at ${where}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Added tokens ([CLS], <mask>, ...) written literally in the text are recognised before
// normalization, as the Rust AddedVocabulary does (leftmost-longest, with lstrip/rstrip/single_word).

interface AddedToken { id: number; content: string; singleWord: boolean; lstrip: boolean; rstrip: boolean; normalized: boolean }
type Section = string | number;
// Rust checks char::is_alphanumeric() || '_' next to a single_word token.
const WORD_END = /[\p{Alphabetic}\p{N}_]$/u;
const WORD_START = /^[\p{Alphabetic}\p{N}_]/u;

class AddedTokenMatcher {
  private readonly byFirst = new Map<string, AddedToken[]>();
  constructor(tokens: AddedToken[], normalize: NormalizeFn | null, normalized: boolean) {
    for (const t of tokens) {
      if (t.normalized !== normalized || !t.content) continue;
      const content = normalized && normalize ? normalize(t.content) : t.content;
      if (!content) continue;
      const tok = { ...t, content };
      const key = content[0];
      const list = this.byFirst.get(key) ?? [];
      list.push(tok);
      list.sort((a, b) => b.content.length - a.content.length);
      this.byFirst.set(key, list);
    }
  }

  get empty(): boolean { return this.byFirst.size === 0; }

  split(text: string): Section[] {
    if (this.byFirst.size === 0) return [text];
    const isWs = (cp: number): boolean => (flagsTable()[cp] & F_WHITESPACE) !== 0;
    const out: Section[] = [];
    let emitted = 0;
    for (let i = 0; i < text.length;) {
      const cands = this.byFirst.get(text[i]);
      let m: AddedToken | undefined;
      if (cands) for (const c of cands) if (text.startsWith(c.content, i)) { m = c; break; }
      if (!m) { i++; continue; }
      let start = i, stop = i + m.content.length;
      if (m.singleWord && (WORD_END.test(text.slice(0, start)) || WORD_START.test(text.slice(stop)))) { i = stop; continue; }
      if (m.lstrip) {
        while (start > emitted && isWs(text.charCodeAt(start - 1))) start--;
      }
      if (m.rstrip) {
        while (stop < text.length && isWs(text.charCodeAt(stop))) stop++;
      }
      if (start > emitted) out.push(text.slice(emitted, start));
      out.push(m.id);
      emitted = stop;
      i = stop;
    }
    if (emitted < text.length) out.push(text.slice(emitted));
    return out;
  }
}

// ---------------------------------------------------------------------------------------------

function readJsonFile(path: string): unknown {
  let raw: string;
  try {
    raw = readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(`cannot read tokenizer file ${path}: ${(e as Error).message}`);
  }
  try {
    return JSON.parse(raw);
  } catch (e) {
    throw new Error(`tokenizer file ${path} is not valid JSON: ${(e as Error).message}`);
  }
}

/**
 * A tokenizer.json (WordPiece or Unigram) applied as the Rust `tokenizers` library applies it,
 * for single sequences. encode() is synchronous and depends only on the tokenizer and its
 * arguments (the word cache inside changes no result), so an instance can be rebuilt in a worker
 * thread from the same JSON with fromJson().
 *
 * An empty text (and one that normalizes to nothing) gives just the special tokens, e.g.
 * [CLS][SEP], as Hugging Face does: no error.
 */
export class TextTokenizer {
  /** Id of [PAD] / <pad> (the file's padding.pad_id when it has one); -1 when the vocab has none. */
  readonly padId: number;
  /** Number of rows an embedding matrix needs: highest id (vocab or added token) + 1. */
  readonly vocabSize: number;
  readonly modelType: 'WordPiece' | 'Unigram';
  /** Special ids put before / after the text of a single sequence. */
  readonly prefixIds: readonly number[];
  readonly suffixIds: readonly number[];

  private readonly normalize: NormalizeFn | null;
  private readonly preTokenize: PreTokenizeFn | null;
  private readonly model: Model;
  private readonly rawAdded: AddedTokenMatcher;
  private readonly normalizedAdded: AddedTokenMatcher;
  private readonly addedById = new Map<number, string>();
  private readonly wordCache = new Map<string, number[]>();

  static fromFile(tokenizerJsonPath: string): TextTokenizer {
    return new TextTokenizer(readJsonFile(tokenizerJsonPath), tokenizerJsonPath);
  }

  /** `source` names the tokenizer in error messages. */
  static fromJson(obj: unknown, source = 'tokenizer.json object'): TextTokenizer {
    return new TextTokenizer(obj, source);
  }

  private constructor(obj: unknown, source: string) {
    if (!obj || typeof obj !== 'object' || Array.isArray(obj)) throw new Error(`${source}: not a tokenizer.json object`);
    const j = obj as Json;
    try {
      this.model = buildModel(j.model, 'model');
      this.modelType = this.model.type;
      this.normalize = buildNormalizer(j.normalizer, 'normalizer');
      this.preTokenize = buildPreTokenizer(j.pre_tokenizer, 'pre_tokenizer');
      const w = buildWrapping(j.post_processor, 'post_processor');
      this.prefixIds = Object.freeze(w.prefix);
      this.suffixIds = Object.freeze(w.suffix);
    } catch (e) {
      throw new Error(`${source}: ${(e as Error).message}`);
    }
    const added: AddedToken[] = (Array.isArray(j.added_tokens) ? j.added_tokens : []).map((t: Json): AddedToken => ({
      id: t.id, content: t.content, singleWord: !!t.single_word, lstrip: !!t.lstrip, rstrip: !!t.rstrip,
      // Rust's default for a token that does not say: normalized unless special.
      normalized: t.normalized ?? !t.special,
    }));
    let maxId = this.model.maxId;
    for (const t of added) {
      if (!Number.isInteger(t.id) || typeof t.content !== 'string') throw new Error(`${source}: malformed added_tokens entry ${JSON.stringify(t)}`);
      this.addedById.set(t.id, t.content);
      if (t.id > maxId) maxId = t.id;
    }
    this.vocabSize = maxId + 1;
    this.rawAdded = new AddedTokenMatcher(added, null, false);
    this.normalizedAdded = new AddedTokenMatcher(added, this.normalize, true);
    const padFromFile = j.padding?.pad_id;
    this.padId = typeof padFromFile === 'number' ? padFromFile : (this.tokenToId('[PAD]') ?? this.tokenToId('<pad>') ?? -1);
  }

  /** First special id before the text ([CLS], <s>); -1 when the template adds none. */
  get clsId(): number { return this.prefixIds.length ? this.prefixIds[0] : -1; }
  /** Last special id after the text ([SEP], </s>); -1 when the template adds none. */
  get sepId(): number { return this.suffixIds.length ? this.suffixIds[this.suffixIds.length - 1] : -1; }
  get bosId(): number { return this.clsId; }
  get eosId(): number { return this.sepId; }
  get numSpecialTokens(): number { return this.prefixIds.length + this.suffixIds.length; }

  tokenToId(token: string): number | undefined {
    for (const [id, content] of this.addedById) if (content === token) return id;
    return this.model.tokenToId(token);
  }

  idToToken(id: number): string | undefined {
    return this.addedById.get(id) ?? this.model.idToToken(id);
  }

  /** Ids of the text without special tokens and without truncation. */
  encodeContent(text: string): number[] {
    const out: number[] = [];
    // Whether the text being handled starts at offset 0 of the input (Metaspace prepend_scheme "first").
    let atStart = true;
    for (const raw of this.rawAdded.split(text)) {
      if (typeof raw === 'number') { out.push(raw); atStart = false; continue; }
      const normalized = this.normalize ? this.normalize(raw) : raw;
      for (const sec of this.normalizedAdded.split(normalized)) {
        if (typeof sec === 'number') { out.push(sec); atStart = false; continue; }
        if (!sec) continue;
        const whole: Piece = { text: sec, first: atStart };
        atStart = false;
        const pieces = this.preTokenize ? this.preTokenize([whole]) : [whole];
        for (const p of pieces) {
          let ids = this.wordCache.get(p.text);
          if (!ids) {
            ids = this.model.encodeWord(p.text);
            if (this.wordCache.size >= 100_000) this.wordCache.clear();
            this.wordCache.set(p.text, ids);
          }
          for (const id of ids) out.push(id);
        }
      }
      atStart = false;
    }
    return out;
  }

  /** Special tokens + (prefix + text), truncated to maxLength keeping the closing special token(s). */
  encode(text: string, opts: EncodeOptions): Int32Array {
    const room = this.contentRoom(opts);
    if (typeof text !== 'string') throw new TypeError(`encode: text must be a string, got ${typeof text}`);
    const content = this.encodeContent((opts.prefix ?? '') + text);
    const n = Math.min(content.length, room);
    const out = new Int32Array(this.prefixIds.length + n + this.suffixIds.length);
    out.set(this.prefixIds, 0);
    for (let i = 0; i < n; i++) out[this.prefixIds.length + i] = content[i];
    out.set(this.suffixIds, this.prefixIds.length + n);
    return out;
  }

  /** Packed batch (no padding): ids of all texts back to back, lengths per text. */
  encodeBatch(texts: readonly string[], opts: EncodeOptions): TokenBatch {
    this.contentRoom(opts);
    const seqs = texts.map((t) => this.encode(t, opts));
    const lengths = new Int32Array(seqs.length);
    let total = 0;
    seqs.forEach((s, i) => { lengths[i] = s.length; total += s.length; });
    const ids = new Int32Array(total);
    let at = 0;
    for (const s of seqs) { ids.set(s, at); at += s.length; }
    return { ids, lengths };
  }

  private contentRoom(opts: EncodeOptions): number {
    const max = opts?.maxLength;
    if (!Number.isInteger(max) || max <= 0) throw new RangeError(`maxLength must be a positive integer, got ${max}`);
    if (max < this.numSpecialTokens) {
      throw new RangeError(`maxLength ${max} is shorter than the ${this.numSpecialTokens} special tokens this tokenizer adds`);
    }
    return max - this.numSpecialTokens;
  }
}

/**
 * Reads a BERT vocab.txt as the Rust WordPiece::read_file does: one token per line, id = line
 * index, trailing whitespace (and CR) trimmed, a later duplicate wins.
 */
export function readWordPieceVocab(vocabTxtPath: string): Record<string, number> {
  let raw: string;
  try {
    raw = readFileSync(vocabTxtPath, 'utf8');
  } catch (e) {
    throw new Error(`cannot read WordPiece vocab ${vocabTxtPath}: ${(e as Error).message}`);
  }
  const lines = raw.split('\n');
  if (lines.length && lines[lines.length - 1] === '') lines.pop();
  const vocab: Record<string, number> = Object.create(null);
  lines.forEach((line, i) => { vocab[line.replace(/[\t-\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]+$/u, '')] = i; });
  if (lines.length === 0) throw new Error(`WordPiece vocab ${vocabTxtPath} is empty`);
  return vocab;
}

/**
 * The tokenizer.json that transformers' BertTokenizer(vocab=vocab.txt, do_lower_case, strip_accents)
 * builds: BertNormalizer + BertPreTokenizer + WordPiece("##", max 100 chars) + [CLS] $A [SEP].
 * [PAD] [UNK] [CLS] [SEP] [MASK] become special added tokens when the vocab has them.
 */
export function buildWordPieceTokenizerJson(vocabTxtPath: string, opts: WordPieceBuildOptions): Json {
  const vocab = readWordPieceVocab(vocabTxtPath);
  for (const need of ['[UNK]', '[CLS]', '[SEP]']) {
    if (!(need in vocab)) throw new Error(`WordPiece vocab ${vocabTxtPath} has no ${need} token`);
  }
  const added = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']
    .filter((t) => t in vocab)
    .map((t) => ({ id: vocab[t], content: t, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }))
    .sort((a, b) => a.id - b.id);
  const cls = vocab['[CLS]'], sep = vocab['[SEP]'];
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: {
      type: 'BertNormalizer',
      clean_text: true,
      handle_chinese_chars: opts.handleChineseChars ?? true,
      strip_accents: opts.stripAccents ?? null,
      lowercase: opts.lowercase,
    },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '[CLS]', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '[SEP]', type_id: 0 } }],
      pair: [
        { SpecialToken: { id: '[CLS]', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '[SEP]', type_id: 0 } },
        { Sequence: { id: 'B', type_id: 1 } }, { SpecialToken: { id: '[SEP]', type_id: 1 } },
      ],
      special_tokens: {
        '[CLS]': { id: '[CLS]', ids: [cls], tokens: ['[CLS]'] },
        '[SEP]': { id: '[SEP]', ids: [sep], tokens: ['[SEP]'] },
      },
    },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: {
      type: 'WordPiece',
      unk_token: '[UNK]',
      continuing_subword_prefix: '##',
      max_input_chars_per_word: 100,
      vocab,
    },
  };
}
