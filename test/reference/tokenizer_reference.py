#!/usr/bin/env python3
"""Reference tokenization with Hugging Face `tokenizers` / `transformers`, for test/tokenizer.test.ts.

The TypeScript tokenizer must give the ids that the Rust tokenizers library gives (that is what
transformers and sentence-transformers feed the models with), so the tests ask this script for them.
Needs: tokenizers, transformers. Optional: the `spm_train` binary (Debian package `sentencepiece`),
used to get a real SentencePiece `nmt_nfkc` precompiled charsmap like XLM-R's.

Sub-commands (every result is one JSON document on stdout):
  encode            stdin {"tokenizer": path, "texts": [...], "maxLength": n}
                    -> {"ids": [[...], ...]}  (Tokenizer.from_file, truncation at maxLength)
  normalize         stdin {"normalizer": <tokenizer.json "normalizer" value>, "texts": [...]} -> {"out": [...]}
  pre-tokenize      stdin {"preTokenizer": <tokenizer.json "pre_tokenizer" value>, "texts": [...]} -> {"out": [[...]]}
  encode-bert-vocab stdin {"vocab": path, "lowercase": bool, "stripAccents": bool|null, "texts": [...], "maxLength": n}
                    -> {"fast": [[...]], "legacy": [[...]] | null}
                    transformers' own BertTokenizer built from vocab.txt (and the pure-python legacy one)
  build-unigram     --out DIR --corpus FILE [--vocab-size N]
                    -> {"files": {"xlmr": path, "metaspace_split": path}, "precompiled": bool, "note": str}
  bert-probe        -> per code point behaviour of BertNormalizer / BertPreTokenizer, as ranges
  precompiled-fixture -> {"charsmap": base64, "expected": {input: output}}: a small SentencePiece
                    charsmap compiled by spm_train from PRECOMPILED_FIXTURE_RULES, and what the Rust
                    Precompiled normalizer makes of PRECOMPILED_FIXTURE_INPUTS (embedded in the test)
"""
import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile


def _ranges(cps):
    out = []
    for cp in sorted(cps):
        if out and out[-1][1] == cp - 1:
            out[-1][1] = cp
        else:
            out.append([cp, cp])
    return out


def cmd_encode(req):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(req["tokenizer"])
    tok.no_padding()
    tok.enable_truncation(max_length=req["maxLength"])
    encs = tok.encode_batch(req["texts"])
    return {"ids": [e.ids for e in encs]}


def _component(kind, cfg):
    # Tokenizer.from_str builds the component from the JSON exactly as it would from a tokenizer.json.
    from tokenizers import Tokenizer

    j = {"version": "1.0", "added_tokens": [], "normalizer": None, "pre_tokenizer": None, "post_processor": None,
         "decoder": None, "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                   "max_input_chars_per_word": 100, "vocab": {"[UNK]": 0}}}
    j[kind] = cfg
    return getattr(Tokenizer.from_str(json.dumps(j)), kind)


def cmd_normalize(req):
    n = _component("normalizer", req["normalizer"])
    return {"out": [n.normalize_str(t) for t in req["texts"]]}


def cmd_pre_tokenize(req):
    p = _component("pre_tokenizer", req["preTokenizer"])
    return {"out": [[piece for piece, _ in p.pre_tokenize_str(t)] for t in req["texts"]]}


def cmd_encode_bert_vocab(req):
    from transformers import BertTokenizer

    kwargs = dict(do_lower_case=req["lowercase"], strip_accents=req.get("stripAccents"))
    fast = BertTokenizer(vocab=req["vocab"], **kwargs)
    out = {"fast": fast(req["texts"], truncation=True, max_length=req["maxLength"])["input_ids"], "legacy": None}
    try:
        # The pure-python BasicTokenizer + WordpieceTokenizer: an implementation independent of Rust.
        from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy as LegacyBert

        legacy = LegacyBert(vocab_file=req["vocab"], **kwargs)
        out["legacy"] = legacy(req["texts"], truncation=True, max_length=req["maxLength"])["input_ids"]
    except Exception as e:  # transformers without the legacy module: the Rust one alone is the reference
        out["legacyError"] = repr(e)
    return out


# --- SentencePiece model protobuf, read by hand (no sentencepiece/protobuf python packages here) ---

def _read_varint(buf, pos):
    shift = result = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf):
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        num, wt = key >> 3, key & 7
        if wt == 0:
            val, pos = _read_varint(buf, pos)
        elif wt == 1:
            val, pos = buf[pos:pos + 8], pos + 8
        elif wt == 2:
            n, pos = _read_varint(buf, pos)
            val, pos = buf[pos:pos + n], pos + n
        elif wt == 5:
            val, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wt}")
        yield num, wt, val


def read_spm_model(path):
    """(pieces [(piece, score, type)], precompiled_charsmap bytes) of a SentencePiece .model file."""
    data = open(path, "rb").read()
    pieces, charsmap = [], b""
    for num, _, val in _fields(data):
        if num == 1:
            piece, score, typ = "", 0.0, 1
            for n2, _, v2 in _fields(val):
                if n2 == 1:
                    piece = v2.decode("utf-8")
                elif n2 == 2:
                    score = struct.unpack("<f", v2)[0]
                elif n2 == 3:
                    typ = v2
            pieces.append((piece, score, typ))
        elif num == 3:
            for n2, _, v2 in _fields(val):
                if n2 == 2:
                    charsmap = bytes(v2)
    return pieces, charsmap


def cmd_build_unigram(args):
    from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers, processors, decoders
    from tokenizers.models import Unigram

    os.makedirs(args.out, exist_ok=True)
    note = ""
    if shutil.which("spm_train"):
        work = tempfile.mkdtemp()
        prefix = os.path.join(work, "m")
        subprocess.run(
            ["spm_train", f"--input={args.corpus}", f"--model_prefix={prefix}", f"--vocab_size={args.vocab_size}",
             "--model_type=unigram", "--character_coverage=0.9995", "--normalization_rule_name=nmt_nfkc",
             "--num_threads=1", "--minloglevel=2"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        pieces, charsmap = read_spm_model(prefix + ".model")
        shutil.rmtree(work, ignore_errors=True)
        # fairseq's dictionary order, as XLM-R's tokenizer.json has it: <s> <pad> </s> <unk>, then the
        # SentencePiece pieces after its own <unk> <s> </s>, then <mask>.
        vocab = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
        vocab += [(p, s) for p, s, _ in pieces[3:]]
        vocab += [("<mask>", 0.0)]
        precompiled = True
    else:
        note = "spm_train not found: trained with tokenizers' UnigramTrainer and an Nmt+NFKC normalizer (no Precompiled charsmap)"
        from tokenizers import trainers

        t = Tokenizer(Unigram())
        t.normalizer = normalizers.Sequence([normalizers.Nmt(), normalizers.NFKC()])
        t.pre_tokenizer = pre_tokenizers.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=args.vocab_size, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                                          unk_token="<unk>", shrinking_factor=0.75)
        t.train([args.corpus], trainer)
        model = json.loads(t.to_str())["model"]
        vocab = [tuple(v) for v in model["vocab"]] + [("<mask>", 0.0)]
        charsmap = None
        precompiled = False

    files = {}
    # (1) what transformers' XLMRobertaTokenizer builds, i.e. the layout of the published XLM-R tokenizer.json
    try:
        from transformers import XLMRobertaTokenizer

        kw = {"_spm_precompiled_charsmap": charsmap} if charsmap else {}
        xt = XLMRobertaTokenizer(vocab=vocab, **kw)
        if not charsmap:
            xt.backend_tokenizer.normalizer = normalizers.Sequence([normalizers.Nmt(), normalizers.NFKC()])
        tok = xt.backend_tokenizer
    except Exception as e:  # older/newer transformers: assemble the same pipeline by hand
        note += f"; XLMRobertaTokenizer(vocab=...) failed ({e!r}), pipeline assembled by hand"
        tok = Tokenizer(Unigram(vocab, unk_id=3, byte_fallback=False))
        tok.normalizer = normalizers.Precompiled(charsmap) if charsmap else normalizers.Sequence(
            [normalizers.Nmt(), normalizers.NFKC()])
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")])
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
        from tokenizers import AddedToken

        tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ["<s>", "<pad>", "</s>", "<unk>"]]
                               + [AddedToken("<mask>", special=True, normalized=False, lstrip=True)])
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    files["xlmr"] = os.path.join(args.out, "xlmr-like.tokenizer.json")
    tok.save(files["xlmr"])

    # (2) the layout later converters write: Precompiled + Replace(" {2,}"), Metaspace that splits itself
    tok2 = Tokenizer.from_str(tok.to_str())
    base = [normalizers.Precompiled(charsmap)] if charsmap else [normalizers.Nmt(), normalizers.NFKC()]
    tok2.normalizer = normalizers.Sequence(base + [normalizers.Replace(Regex(" {2,}"), " ")])
    tok2.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    files["metaspace_split"] = os.path.join(args.out, "metaspace-split.tokenizer.json")
    tok2.save(files["metaspace_split"])
    return {"files": files, "precompiled": precompiled, "note": note.strip("; ")}


# (source code points, replacement code points), hex; cover a multi-code-point key (e + U+0301),
# a key that is a prefix of another (A / A B), deletion, and a key of 6 UTF-8 bytes (na + i sign).
PRECOMPILED_FIXTURE_RULES = [
    ("FF71", "30A2"), ("FB01", "66 69"), ("65 301", "E9"), ("41", "61"), ("41 42", "78 79 7A"),
    ("3000", "20"), ("200B", ""), ("2581", "20"), ("1F600", "3A 29"), ("928 93F", "91D"),
]
PRECOMPILED_FIXTURE_INPUTS = [
    "\uff71\ufb01", "e\u0301", "A", "AB", "ABC", "BA", "x\u3000y", "a\u200bb", "\u2581x", "\U0001F600!",
    "\u0928\u093f", "\u0928\u092e\u093f", "e\u0301\u0301", "xe\u0301\u0301y", "Ae\u0301", "plain text", "",
    "\u0000A", "\U0001F600\U0001F3FB", "e\u200de\u0301",
]


def cmd_precompiled_fixture():
    import base64
    from tokenizers.normalizers import Precompiled

    if not shutil.which("spm_train"):
        raise SystemExit("spm_train not found (Debian package `sentencepiece`)")
    work = tempfile.mkdtemp()
    try:
        with open(os.path.join(work, "rules.tsv"), "w") as f:
            for src, dst in PRECOMPILED_FIXTURE_RULES:
                f.write(f"{src}\t{dst}\n")
        with open(os.path.join(work, "corpus.txt"), "w") as f:
            for i in range(200):
                f.write(" ".join("abcdefghij"[(i * 7 + j * 3) % 10] * (1 + j % 4) for j in range(12)) + "\n")
        subprocess.run(
            ["spm_train", f"--input={work}/corpus.txt", f"--model_prefix={work}/m", "--vocab_size=20",
             "--model_type=unigram", f"--normalization_rule_tsv={work}/rules.tsv", "--num_threads=1",
             "--minloglevel=2"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, charsmap = read_spm_model(f"{work}/m.model")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    norm = Precompiled(charsmap)
    return {"charsmap": base64.b64encode(charsmap).decode(),
            "expected": {t: norm.normalize_str(t) for t in PRECOMPILED_FIXTURE_INPUTS}}


def cmd_bert_probe():
    """Which code points the Rust BertNormalizer / BertPreTokenizer treat how. The Rust crate classifies
    characters with its own (older) Unicode tables, so this cannot be derived from JavaScript's \\p{..}."""
    from tokenizers.normalizers import BertNormalizer, StripAccents
    from tokenizers.pre_tokenizers import BertPreTokenizer

    cps = [cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF and cp != ord("|")]
    sep = "|"  # left alone by every step below, so the output splits back into one part per code point

    def per_char(normalizer):
        out = normalizer.normalize_str(sep.join(chr(cp) for cp in cps)).split(sep)
        assert len(out) == len(cps)
        return out

    clean = per_char(BertNormalizer(clean_text=True, handle_chinese_chars=False, strip_accents=False, lowercase=False))
    cjk = per_char(BertNormalizer(clean_text=False, handle_chinese_chars=True, strip_accents=False, lowercase=False))
    strip = per_char(BertNormalizer(clean_text=False, handle_chinese_chars=False, strip_accents=True, lowercase=False))
    removed = [cp for cp, s in zip(cps, clean) if s == ""]
    to_space = [cp for cp, s in zip(cps, clean) if s == " " and cp != 0x20]
    chinese = [cp for cp, s in zip(cps, cjk) if s == f" {chr(cp)} "]
    mark_nonspacing = [cp for cp, s in zip(cps, strip) if s == ""]
    # The StripAccents normalizer removes every combining mark (Mn Mc Me), without NFD.
    combining = [cp for cp, s in zip(cps, per_char(StripAccents())) if s == ""]
    strip_map = {cp: s for cp, s in zip(cps, strip) if s != chr(cp) and s != ""}

    # Pre-tokenizer: "a" + c + "a" for every c, in one string. Punctuation comes out as a
    # one-character piece; whitespace is the only thing no piece covers.
    all_cps = [cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF]
    text = "".join("a" + chr(cp) + "a" for cp in all_cps)
    pieces = BertPreTokenizer().pre_tokenize_str(text)
    covered = bytearray(len(text))
    punct = set()
    for piece, (s, e) in pieces:
        for i in range(s, e):
            covered[i] = 1
        if e - s == 1 and piece != "a":
            punct.add(ord(piece))
    whitespace = [all_cps[i // 3] for i in range(1, len(text), 3) if not covered[i]]
    punct = sorted(punct)
    return {
        "tokenizersVersion": __import__("tokenizers").__version__,
        "removed": _ranges(removed), "toSpace": _ranges(to_space), "chinese": _ranges(chinese),
        "markNonspacing": _ranges(mark_nonspacing), "combiningMark": _ranges(combining), "punctuation": _ranges(punct), "whitespace": _ranges(whitespace),
        "stripOther": {str(k): v for k, v in strip_map.items()},
    }


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("encode")
    sub.add_parser("encode-bert-vocab")
    sub.add_parser("normalize")
    sub.add_parser("pre-tokenize")
    b = sub.add_parser("build-unigram")
    b.add_argument("--out", required=True)
    b.add_argument("--corpus", required=True)
    b.add_argument("--vocab-size", type=int, default=8000)
    sub.add_parser("bert-probe")
    sub.add_parser("precompiled-fixture")
    args = ap.parse_args()
    if args.cmd == "encode":
        res = cmd_encode(json.load(sys.stdin))
    elif args.cmd == "encode-bert-vocab":
        res = cmd_encode_bert_vocab(json.load(sys.stdin))
    elif args.cmd == "normalize":
        res = cmd_normalize(json.load(sys.stdin))
    elif args.cmd == "pre-tokenize":
        res = cmd_pre_tokenize(json.load(sys.stdin))
    elif args.cmd == "build-unigram":
        res = cmd_build_unigram(args)
    elif args.cmd == "precompiled-fixture":
        res = cmd_precompiled_fixture()
    else:
        res = cmd_bert_probe()
    json.dump(res, sys.stdout, ensure_ascii=True)


if __name__ == "__main__":
    main()
