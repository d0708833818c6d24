#!/usr/bin/env python3
"""The PyTorch peer that the xlir engine is benchmarked against.

    torch_train_step.py --layers L --hidden H --heads N --ffn F --vocab V --batch B --seq S \
        --steps K --precision fp32|bf16 --threads T [--mode train|encode] [--json]
    torch_train_step.py ... --device cuda [--length-mix --batch B | --lengths-file F] [--encode-batch N]

Builds a randomly initialised XLMRobertaModel of the given shape (dropout 0.1, SDPA attention) and
times what a sentence-transformers user runs:

  train:  one optimisation step on B/2 queries + B/2 positive passages, S tokens each (B*S tokens):
          SentenceTransformer(model, Pooling(mean), Normalize) -> MultipleNegativesRankingLoss(scale=20)
          -> backward -> clip_grad_norm_(1.0) -> AdamW.step -> zero_grad.
  encode: torch.inference_mode() forward of the B sequences + mean pooling + normalize.

bf16 is mixed precision as the Hugging Face / sentence-transformers trainers do it on CPU: fp32
weights and optimizer, forward and loss under torch.autocast("cpu", dtype=torch.bfloat16).
Two warm-up steps are run first and not timed. Throughput = B*S*steps / time of the timed steps.

--device cuda (GPU peer of bench/gpu_train_step.ts): the model, optimizer and batches live on the
GPU; bf16 is torch.autocast("cuda", dtype=torch.bfloat16) over fp32 weights, as the Hugging Face
trainer's bf16=True does; every timed step is bracketed by torch.cuda.synchronize(); peak memory is
torch.cuda.max_memory_allocated over the timed steps. Without a usable GPU it stops with
"--device cuda requested but torch.cuda.is_available() is False".

Realistic lengths instead of B sequences of S tokens (both modes, either device):
  --lengths-file F  JSON {"queries": [[ids...], ...], "passages": [[ids...], ...]} (each sequence's
                    token ids, <s> first and </s> last), written by bench/gpu_train_step.ts, so both
                    engines run the very same sequences. Used for every step.
  --length-mix      B/2 queries of 8-32 tokens and B/2 passages of 64-256 tokens drawn here by
                    length_mix_batch() (mulberry32, src/rng.ts's generator, seeded by --seed, the
                    draw order documented there): the same batch gpu_train_step.ts draws for that seed.
As sentence-transformers does, the queries and the passages are two batches, each padded to its own
longest sequence (attention_mask 0 on the padding). Throughput then counts real (non-pad) tokens;
padded tokens/s is reported too. Encode sorts the sequences by length and pads each chunk of
--encode-batch (sentence-transformers' encode(): sort by length, default batch_size 32).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import warnings


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, required=True)
    ap.add_argument("--hidden", type=int, required=True)
    ap.add_argument("--heads", type=int, required=True)
    ap.add_argument("--ffn", type=int, required=True)
    ap.add_argument("--vocab", type=int, required=True)
    ap.add_argument("--batch", type=int, help="sequences per step (train: B/2 queries + B/2 passages)")
    ap.add_argument("--seq", type=int, help="tokens per sequence, CLS and SEP included (not with the length options)")
    ap.add_argument("--steps", type=int, required=True, help="timed steps (after the warm-up steps)")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--threads", type=int, help="CPU threads (required with --device cpu)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--length-mix", action="store_true",
                    help="queries 8-32 and passages 64-256 tokens drawn with mulberry32(--seed) (see module doc)")
    ap.add_argument("--lengths-file", help="JSON {queries: [[ids]], passages: [[ids]]} to run instead (see module doc)")
    ap.add_argument("--encode-batch", type=int, default=32,
                    help="with the length options: sequences per encode batch after sorting by length")
    ap.add_argument("--mode", choices=["train", "encode"], default="train")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--loss-impl", choices=["auto", "st", "plain"], default="auto",
                    help="st: sentence-transformers' own SentenceTransformer + MultipleNegativesRankingLoss; "
                         "plain: the same computation written out in torch; auto: st when importable")
    ap.add_argument("--json", action="store_true", help="print one JSON line instead of text")
    args = ap.parse_args(argv)
    if args.device == "cpu" and args.threads is None:
        ap.error("--threads is required with --device cpu")
    if args.length_mix and args.lengths_file:
        ap.error("--length-mix and --lengths-file exclude each other")
    if args.lengths_file:
        if args.batch is not None or args.seq is not None:
            ap.error("--lengths-file gives the sequences: leave out --batch and --seq")
    else:
        if args.batch is None:
            ap.error("--batch is required (unless --lengths-file is given)")
        if args.length_mix:
            if args.seq is not None:
                ap.error("--length-mix draws the lengths: leave out --seq")
        elif args.seq is None:
            ap.error("--seq is required (unless --length-mix or --lengths-file is given)")
        if args.mode == "train" and (args.batch < 2 or args.batch % 2):
            ap.error("--batch must be even in train mode (B/2 queries + B/2 passages)")
        if args.length_mix and args.batch % 2:
            ap.error("--batch must be even with --length-mix (B/2 queries + B/2 passages)")
    if (args.seq is not None and args.seq < 2) or args.vocab <= 3 or args.hidden % args.heads:
        ap.error("need --seq >= 2, --vocab > 3 and --hidden divisible by --heads")
    if args.encode_batch < 1:
        ap.error("--encode-batch must be positive")
    return args


def mulberry32(seed):
    """src/rng.ts's mulberry32, bit for bit: a function returning floats in [0, 1). JavaScript's
    int32 arithmetic is reproduced with 32-bit masks (the bit patterns are the same; the final
    `>>> 0` reads them unsigned)."""
    m = 0xFFFFFFFF
    a = seed & m

    def imul(x, y):
        return (x * y) & m

    def next_float():
        nonlocal a
        a = (a + 0x6D2B79F5) & m
        t = a
        t = imul(t ^ (t >> 15), t | 1)
        t ^= (t + imul(t ^ (t >> 7), t | 61)) & m
        return ((t ^ (t >> 14)) & m) / 4294967296

    return next_float


def length_mix_batch(pairs, vocab, seed):
    """The batch of bench/gpu_train_step.ts's makeLengthMixBatch, drawn in the same order from
    r = mulberry32(seed): first the query lengths 8 + floor(r() * 25) (8..32), then the passage
    lengths 64 + floor(r() * 193) (64..256), then each sequence's ids, queries first: <s> = 0, then
    3 + floor(r() * (vocab - 3)) for the L - 2 inner tokens (never a special id), </s> = 2."""
    r = mulberry32(seed)
    lq = [8 + int(r() * 25) for _ in range(pairs)]
    lp = [64 + int(r() * 193) for _ in range(pairs)]

    def seq(n):
        return [0] + [3 + int(r() * (vocab - 3)) for _ in range(n - 2)] + [2]

    queries = [seq(n) for n in lq]
    passages = [seq(n) for n in lp]
    return queries, passages


def load_lengths_file(path, vocab):
    """{"queries": [[ids]], "passages": [[ids]]}; fails naming the file and what is wrong."""
    with open(path) as f:
        j = json.load(f)
    out = []
    for key in ("queries", "passages"):
        seqs = j.get(key) if isinstance(j, dict) else None
        if not isinstance(seqs, list) or not seqs:
            raise SystemExit(f"{path}: '{key}' must be a non-empty list of token-id lists")
        for i, s in enumerate(seqs):
            if not isinstance(s, list) or len(s) < 2 or not all(isinstance(t, int) and 0 <= t < vocab for t in s):
                raise SystemExit(f"{path}: {key}[{i}] must be a list of at least 2 token ids in [0, {vocab})")
        out.append(seqs)
    if len(out[1]) < len(out[0]):
        raise SystemExit(f"{path}: fewer passages ({len(out[1])}) than queries ({len(out[0])})")
    return out[0], out[1]


def main(argv=None) -> int:
    args = parse_args(argv)

    import torch
    # Before anything touches the intra-op pool.
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda requested but torch.cuda.is_available() is False "
              f"(torch {torch.__version__}, built for CUDA {torch.version.cuda})", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    on_cuda = args.device == "cuda"

    # The sequences: B x S (the CPU benchmark) or the realistic length mix, as lists of token ids.
    mixed = None
    if args.lengths_file:
        mixed = load_lengths_file(args.lengths_file, args.vocab)
    elif args.length_mix:
        mixed = length_mix_batch(args.batch // 2, args.vocab, args.seed)
    if mixed is not None:
        args.batch = len(mixed[0]) + len(mixed[1])
    longest = max(len(s) for s in mixed[0] + mixed[1]) if mixed else args.seq

    import torch.nn.functional as F
    import transformers
    from torch import nn
    from transformers import AutoModel, XLMRobertaConfig

    transformers.utils.logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    torch.manual_seed(args.seed)

    # XLM-R conventions: <s>=0, <pad>=1, </s>=2, positions start at pad+1, one token type.
    config = XLMRobertaConfig(
        vocab_size=args.vocab, hidden_size=args.hidden, num_hidden_layers=args.layers,
        num_attention_heads=args.heads, intermediate_size=args.ffn,
        max_position_embeddings=max(514, longest + 2), type_vocab_size=1,
        hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
        layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0, eos_token_id=2,
    )
    # AutoModel.from_config is how AutoModel.from_pretrained builds it for sentence-transformers
    # (XLMRobertaModel with its pooler, which mean pooling leaves unused).
    hf = AutoModel.from_config(config, attn_implementation="sdpa")
    attn_impl = getattr(hf.config, "_attn_implementation", "unknown")

    class HFEncoder(nn.Module):
        """What sentence-transformers' Transformer module does in forward(): run the AutoModel and
        store last_hidden_state as token_embeddings. (The real module insists on loading a
        checkpoint and tokenizer from disk; the forward computation is the same.)"""

        def __init__(self, model):
            super().__init__()
            self.auto_model = model

        def forward(self, features):
            out = self.auto_model(input_ids=features["input_ids"], attention_mask=features["attention_mask"],
                                  return_dict=True)
            features["token_embeddings"] = out.last_hidden_state
            return features

    loss_impl = args.loss_impl
    st_version = None
    try:
        import sentence_transformers
        st_version = sentence_transformers.__version__
    except ImportError:
        if loss_impl == "st":
            raise
        loss_impl = "plain"
    if loss_impl == "auto":
        loss_impl = "st"

    if loss_impl == "st":
        from sentence_transformers import SentenceTransformer
        try:  # sentence-transformers >= 6
            from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
            from sentence_transformers.sentence_transformer.modules import Normalize, Pooling
        except ImportError:  # 3.x - 5.x
            from sentence_transformers.losses import MultipleNegativesRankingLoss
            from sentence_transformers.models import Normalize, Pooling
        model = SentenceTransformer(modules=[HFEncoder(hf), Pooling(args.hidden, "mean"), Normalize()],
                                    device=args.device)
        mnrl = MultipleNegativesRankingLoss(model, scale=20.0)

        def embed(features):
            return model(features)["sentence_embedding"]

        def train_loss(q_feats, p_feats):
            # Exactly the trainer's call: the loss runs the model on each column itself.
            return mnrl([q_feats, p_feats], torch.empty(0))
    else:
        model = HFEncoder(hf).to(device)

        def embed(features):
            h = model(features)["token_embeddings"]
            m = features["attention_mask"].unsqueeze(-1).to(h.dtype)
            pooled = (h * m).sum(1) / torch.clamp(m.sum(1), min=1e-9)
            return F.normalize(pooled, p=2, dim=-1)

        def train_loss(q_feats, p_feats):
            # MultipleNegativesRankingLoss written out: two forwards (queries, then passages), as
            # sentence-transformers does for an (anchor, positive) dataset, then cross-entropy over the
            # scaled cosine-similarity matrix with the diagonal as labels.
            q, p = embed(q_feats), embed(p_feats)
            scores = F.normalize(q, dim=-1) @ F.normalize(p, dim=-1).T * 20.0
            return F.cross_entropy(scores, torch.arange(q.shape[0], device=q.device))

    n_params = sum(p.numel() for p in model.parameters())

    def make_features(n):
        # Random ids without special tokens inside, <s> first and </s> last, no padding: every sequence
        # has exactly S tokens, so the timed work is B*S tokens. attention_mask as a tokenizer returns it.
        ids = torch.randint(3, args.vocab, (n, args.seq))
        ids[:, 0] = 0
        ids[:, -1] = 2
        return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device)}

    def pad_features(seqs):
        # What the tokenizer's padding=True gives sentence-transformers: pad id 1 up to the longest
        # sequence of this batch, attention_mask 0 on the padding.
        n = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), n), 1, dtype=torch.long)
        mask = torch.zeros((len(seqs), n), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, :len(s)] = torch.tensor(s, dtype=torch.long)
            mask[i, :len(s)] = 1
        return {"input_ids": ids.to(device), "attention_mask": mask.to(device)}

    autocast = (lambda: torch.autocast(args.device, dtype=torch.bfloat16)) if args.precision == "bf16" \
        else (lambda: torch.autocast(args.device, enabled=False))

    def sync():
        if on_cuda:
            torch.cuda.synchronize()

    # Tokens of one timed step: real (non-pad) and as computed (padded); equal for B x S.
    real_tokens = padded_tokens = args.batch * (args.seq or 0)

    last_loss = None
    if args.mode == "train":
        model.train()
        # The Hugging Face Trainer's grouping: no weight decay on biases and LayerNorm weights.
        decay = [p for p in model.parameters() if p.ndim >= 2]
        no_decay = [p for p in model.parameters() if p.ndim < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                                lr=args.lr, betas=(0.9, 0.999), eps=1e-8)
        half = args.batch // 2
        if mixed is None:
            # A fresh batch per step, made before the clock starts, so that data generation is not timed.
            batches = [(make_features(half), make_features(half)) for _ in range(args.warmup + args.steps)]
        else:
            # The same two padded batches every step (the TS side runs the same sequences every step).
            qf, pf = pad_features(mixed[0]), pad_features(mixed[1])
            batches = [(qf, pf)] * (args.warmup + args.steps)
            real_tokens = sum(len(s) for s in mixed[0] + mixed[1])
            padded_tokens = sum(f["input_ids"].numel() for f in (qf, pf))

        def step(i):
            nonlocal last_loss
            q_feats, p_feats = batches[i]
            with autocast():
                loss = train_loss(q_feats, p_feats)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            last_loss = loss.item()  # the .item() a logging trainer does; also forces completion
    else:
        model.eval()
        if mixed is None:
            batches = [make_features(args.batch) for _ in range(args.warmup + args.steps)]

            def step(i):
                with torch.inference_mode(), autocast():
                    emb = embed(batches[i])
                emb.float().sum().item()
        else:
            # sentence-transformers' encode(): sort by length (longest first), then batches of
            # --encode-batch, each padded to its own longest sequence.
            seqs = sorted(mixed[0] + mixed[1], key=len, reverse=True)
            chunks = [pad_features(seqs[i:i + args.encode_batch]) for i in range(0, len(seqs), args.encode_batch)]
            real_tokens = sum(len(s) for s in seqs)
            padded_tokens = sum(c["input_ids"].numel() for c in chunks)

            def step(i):
                with torch.inference_mode(), autocast():
                    embs = [embed(c) for c in chunks]
                torch.cat(embs).float().sum().item()

    for i in range(args.warmup):
        step(i)
    sync()
    if on_cuda:
        torch.cuda.reset_peak_memory_stats()
    times = []
    t_all = time.perf_counter()
    for i in range(args.warmup, args.warmup + args.steps):
        t0 = time.perf_counter()
        step(i)
        sync()
        times.append(time.perf_counter() - t0)
    total = time.perf_counter() - t_all

    tokens = real_tokens
    result = {
        "engine": "torch",
        "mode": args.mode,
        "precision": args.precision,
        "tokens_per_s": tokens * args.steps / total,
        "ms_per_step": 1000.0 * total / args.steps,
        "ms_per_step_median": 1000.0 * statistics.median(times),
        "ms_per_step_min": 1000.0 * min(times),
        "steps": args.steps,
        "warmup": args.warmup,
        "threads": torch.get_num_threads(),
        "layers": args.layers, "hidden": args.hidden, "heads": args.heads, "ffn": args.ffn, "vocab": args.vocab,
        "batch": args.batch, "seq": args.seq, "tokens_per_step": tokens,
        "device": args.device,
        "lengths": ("file " + args.lengths_file) if args.lengths_file else
                   (f"length mix, mulberry32 seed {args.seed}" if args.length_mix else f"{args.batch} x {args.seq}"),
        "padded_tokens_per_step": padded_tokens,
        "padded_tokens_per_s": padded_tokens * args.steps / total,
        "encode_batch": args.encode_batch if (mixed is not None and args.mode == "encode") else None,
        "parameters": n_params,
        "loss_impl": ("sentence_transformers.MultipleNegativesRankingLoss" if loss_impl == "st" else "plain torch")
                     if args.mode == "train" else ("sentence_transformers" if loss_impl == "st" else "plain torch"),
        "attn_implementation": attn_impl,
        "last_loss": last_loss,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "sentence_transformers": st_version,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
    }
    if on_cuda:
        # fp32 products on the GPU: whether torch allowed TF32 (default: no, like xlir's fp32 mode).
        try:
            result["fp32_matmul_precision"] = torch.backends.cuda.matmul.fp32_precision
        except AttributeError:
            result["fp32_matmul_precision"] = "tf32" if torch.backends.cuda.matmul.allow_tf32 else "ieee"
        result["gpu"] = torch.cuda.get_device_name(device)
        result["cuda"] = torch.version.cuda
        result["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2 ** 30
    if args.json:
        print(json.dumps(result))
    else:
        print(f"torch {torch.__version__} {args.mode} {args.precision} threads={result['threads']} "
              f"L={args.layers} H={args.hidden} heads={args.heads} F={args.ffn} V={args.vocab} "
              f"B={args.batch} S={args.seq or 'mixed'} ({n_params / 1e6:.2f}M params, attention {attn_impl}, "
              f"{result['loss_impl']})")
        if on_cuda or mixed is not None:
            print(f"device {args.device}{' (' + result['gpu'] + ')' if on_cuda else ''}; {result['lengths']}: "
                  f"{real_tokens} real tokens, {padded_tokens} padded tokens per step")
            print(f"padded tokens/s: {result['padded_tokens_per_s']:.1f}")
        if on_cuda:
            print(f"peak memory: {result['peak_mem_gib']:.2f} GiB")
        print(f"tokens/s: {result['tokens_per_s']:.1f}")
        print(f"ms/step: {result['ms_per_step']:.2f} (median {result['ms_per_step_median']:.2f}, "
              f"min {result['ms_per_step_min']:.2f})")
        if last_loss is not None:
            print(f"last loss: {last_loss:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
