#!/usr/bin/env python3
"""The PyTorch peer that the xlir engine is benchmarked against.

    torch_train_step.py --layers L --hidden H --heads N --ffn F --vocab V --batch B --seq S \
        --steps K --precision fp32|bf16 --threads T [--mode train|encode] [--json]

Builds a randomly initialised XLMRobertaModel of the given shape (dropout 0.1, SDPA attention) and
times what a sentence-transformers user runs:

  train:  one optimisation step on B/2 queries + B/2 positive passages, S tokens each (B*S tokens):
          SentenceTransformer(model, Pooling(mean), Normalize) -> MultipleNegativesRankingLoss(scale=20)
          -> backward -> clip_grad_norm_(1.0) -> AdamW.step -> zero_grad.
  encode: torch.inference_mode() forward of the B sequences + mean pooling + normalize.

bf16 is mixed precision as the Hugging Face / sentence-transformers trainers do it on CPU: fp32
weights and optimizer, forward and loss under torch.autocast("cpu", dtype=torch.bfloat16).
Two warm-up steps are run first and not timed. Throughput = B*S*steps / time of the timed steps.
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
    ap.add_argument("--batch", type=int, required=True, help="sequences per step (train: B/2 queries + B/2 passages)")
    ap.add_argument("--seq", type=int, required=True, help="tokens per sequence, CLS and SEP included")
    ap.add_argument("--steps", type=int, required=True, help="timed steps (after the warm-up steps)")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--mode", choices=["train", "encode"], default="train")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--loss-impl", choices=["auto", "st", "plain"], default="auto",
                    help="st: sentence-transformers' own SentenceTransformer + MultipleNegativesRankingLoss; "
                         "plain: the same computation written out in torch; auto: st when importable")
    ap.add_argument("--json", action="store_true", help="print one JSON line instead of text")
    args = ap.parse_args(argv)
    if args.mode == "train" and (args.batch < 2 or args.batch % 2):
        ap.error("--batch must be even in train mode (B/2 queries + B/2 passages)")
    if args.seq < 2 or args.vocab <= 3 or args.hidden % args.heads:
        ap.error("need --seq >= 2, --vocab > 3 and --hidden divisible by --heads")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)

    import torch
    # Before anything touches the intra-op pool.
    torch.set_num_threads(args.threads)

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
        max_position_embeddings=max(514, args.seq + 2), type_vocab_size=1,
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
        model = SentenceTransformer(modules=[HFEncoder(hf), Pooling(args.hidden, "mean"), Normalize()], device="cpu")
        mnrl = MultipleNegativesRankingLoss(model, scale=20.0)

        def embed(features):
            return model(features)["sentence_embedding"]

        def train_loss(q_feats, p_feats):
            # Exactly the trainer's call: the loss runs the model on each column itself.
            return mnrl([q_feats, p_feats], torch.empty(0))
    else:
        model = HFEncoder(hf)

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
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if args.precision == "bf16" \
        else (lambda: torch.autocast("cpu", enabled=False))

    last_loss = None
    if args.mode == "train":
        model.train()
        # The Hugging Face Trainer's grouping: no weight decay on biases and LayerNorm weights.
        decay = [p for p in model.parameters() if p.ndim >= 2]
        no_decay = [p for p in model.parameters() if p.ndim < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                                lr=args.lr, betas=(0.9, 0.999), eps=1e-8)
        half = args.batch // 2
        # A fresh batch per step, made before the clock starts, so that data generation is not timed.
        batches = [(make_features(half), make_features(half)) for _ in range(args.warmup + args.steps)]

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
        batches = [make_features(args.batch) for _ in range(args.warmup + args.steps)]

        def step(i):
            with torch.inference_mode(), autocast():
                emb = embed(batches[i])
            emb.float().sum().item()

    for i in range(args.warmup):
        step(i)
    times = []
    t_all = time.perf_counter()
    for i in range(args.warmup, args.warmup + args.steps):
        t0 = time.perf_counter()
        step(i)
        times.append(time.perf_counter() - t0)
    total = time.perf_counter() - t_all

    tokens = args.batch * args.seq
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
    if args.json:
        print(json.dumps(result))
    else:
        print(f"torch {torch.__version__} {args.mode} {args.precision} threads={result['threads']} "
              f"L={args.layers} H={args.hidden} heads={args.heads} F={args.ffn} V={args.vocab} "
              f"B={args.batch} S={args.seq} ({n_params / 1e6:.2f}M params, attention {attn_impl}, "
              f"{result['loss_impl']})")
        print(f"tokens/s: {result['tokens_per_s']:.1f}")
        print(f"ms/step: {result['ms_per_step']:.2f} (median {result['ms_per_step_median']:.2f}, "
              f"min {result['ms_per_step_min']:.2f})")
        if last_loss is not None:
            print(f"last loss: {last_loss:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
