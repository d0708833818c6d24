#!/usr/bin/env python3
"""Reference data for the engine's parity tests, produced by Hugging Face transformers + PyTorch.

    hf_reference.py --arch bert|roberta --out DIR [--seed 0]

writes

    DIR/model/                  save_pretrained() of the tiny random base model (config.json + model.safetensors)
    DIR/batch.json              the token ids: {"queries": [[...] x4], "passages": [[...] x6]}
    DIR/reference.safetensors   hidden states, embeddings, losses, gradients, parameters after 3 AdamW steps
    DIR/reference.json          everything a reader needs to interpret the above (config, ids, orders, shapes)

See README.md next to this file for the tensor names. Everything runs in float32 on one CPU thread so
that the same seed reproduces the files bit for bit, and in a couple of seconds.
"""
from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

# One thread: parallel CPU reductions may split work differently from run to run, and the point of
# these files is that they are bitwise reproducible (a changed hash means the reference changed).
torch.set_num_threads(1)

import transformers  # noqa: E402  (after set_num_threads on purpose)
from safetensors.torch import save_file  # noqa: E402
from transformers import BertConfig, BertModel, XLMRobertaConfig, XLMRobertaModel  # noqa: E402

try:  # save_pretrained's "Writing model shards" bar is noise in test logs
    transformers.utils.logging.disable_progress_bar()
except AttributeError:
    pass

NUM_QUERIES = 4
NUM_NEGATIVES = 2
NUM_PASSAGES = NUM_QUERIES + NUM_NEGATIVES
MIN_LEN, MAX_LEN = 3, 20  # token counts including CLS and SEP
ID_LOW, ID_HIGH = 3, 99   # ordinary token ids are drawn from [ID_LOW, ID_HIGH)

SCALE = 20.0  # = 1 / temperature 0.05, sentence-transformers' MultipleNegativesRankingLoss default
ADAMW = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
MAX_GRAD_NORM = 1.0
NUM_STEPS = 3
INIT_STD = 0.1  # re-randomisation: N(0, 0.1) for everything, LayerNorm weights 1 + N(0, 0.1)

# Special token ids. BERT: [PAD]=0, CLS/SEP as the brief fixes them (2, 3). RoBERTa/XLM-R: <s>=0,
# <pad>=1, </s>=2, the real XLM-R ids; positions start at pad+1 = 2, hence 2 more position rows.
SPECIAL = {
    "bert": {"cls": 2, "sep": 3, "pad": 0},
    "roberta": {"cls": 0, "sep": 2, "pad": 1},
}


def make_config(arch: str) -> dict:
    """The exact keyword arguments given to BertConfig / XLMRobertaConfig."""
    sp = SPECIAL[arch]
    cfg = dict(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        type_vocab_size=2,
        hidden_act="gelu",  # exact erf GELU in transformers (not the tanh approximation)
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        initializer_range=0.02,
        pad_token_id=sp["pad"],
    )
    if arch == "bert":
        cfg.update(layer_norm_eps=1e-12, max_position_embeddings=40)
    else:
        # 40 usable positions + the pad+1 = 2 offset.
        cfg.update(layer_norm_eps=1e-5, max_position_embeddings=42, bos_token_id=sp["cls"], eos_token_id=sp["sep"])
    return cfg


def build_model(arch: str, seed: int) -> torch.nn.Module:
    cfg_kwargs = make_config(arch)
    torch.manual_seed(seed)
    if arch == "bert":
        config = BertConfig(**cfg_kwargs)
        cls = BertModel
    else:
        config = XLMRobertaConfig(**cfg_kwargs)
        cls = XLMRobertaModel
    # Plain softmax attention: the reference should be the textbook computation, not whichever
    # fused kernel this torch build picks for SDPA.
    config._attn_implementation = "eager"
    model = cls(config, add_pooling_layer=True)

    # transformers initialises biases to 0 and LayerNorm to (1, 0); a kernel that forgets a bias or
    # swaps gamma/beta would still pass against such weights. Re-randomise everything with an own
    # generator so the weights do not depend on how many draws the library's init happened to make.
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32) * INIT_STD
            if name.endswith("LayerNorm.weight"):
                noise += 1.0
            p.copy_(noise)
    return model


def make_batch(arch: str, seed: int) -> tuple[list[list[int]], list[list[int]]]:
    """10 sequences of 10 distinct lengths in [MIN_LEN, MAX_LEN]; first token CLS, last SEP."""
    sp = SPECIAL[arch]
    gen = torch.Generator().manual_seed(seed + 1_000_003)
    n = NUM_QUERIES + NUM_PASSAGES
    lengths = (torch.randperm(MAX_LEN - MIN_LEN + 1, generator=gen)[:n] + MIN_LEN).tolist()
    seqs = []
    for length in lengths:
        body = torch.randint(ID_LOW, ID_HIGH, (length - 2,), generator=gen).tolist()
        seqs.append([sp["cls"], *body, sp["sep"]])
    for s in seqs:  # [3, 99) never contains the pad id (0 or 1), but say so explicitly
        assert sp["pad"] not in s, s
    return seqs[:NUM_QUERIES], seqs[NUM_QUERIES:]


def pad_batch(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # As sentence-transformers' Pooling(mean): masked sum / clamp(count, 1e-9), in float32.
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / torch.clamp(m.sum(1), min=1e-9)


def infonce(q: torch.Tensor, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """q [Q, D], p [P, D] unit rows. Returns (query->passage loss, passage->query loss), float32.

    q->p: cross-entropy of query i over all P passages, label i (passages >= Q are hard negatives).
    p->q: cross-entropy of positive passage j over the Q queries, label j.
    """
    nq = q.shape[0]
    scores = (q @ p.T) * SCALE
    labels = torch.arange(nq)
    l_qp = F.cross_entropy(scores, labels)
    l_pq = F.cross_entropy(scores[:, :nq].T, labels)
    return l_qp, l_pq


def run(arch: str, out: Path, seed: int) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    sp = SPECIAL[arch]
    model = build_model(arch, seed)
    model.train()  # dropout is 0, so train and eval mode compute the same thing

    save_kwargs = {}
    if "safe_serialization" in inspect.signature(model.save_pretrained).parameters:
        save_kwargs["safe_serialization"] = True  # transformers 4.x; 5.x always writes safetensors
    model.save_pretrained(str(out / "model"), **save_kwargs)

    queries, passages = make_batch(arch, seed)
    with open(out / "batch.json", "w") as f:
        json.dump({"queries": queries, "passages": passages}, f)
        f.write("\n")

    seqs = queries + passages
    lengths = [len(s) for s in seqs]
    ids, mask = pad_batch(seqs, sp["pad"])
    type_ids = torch.zeros_like(ids)

    params = dict(model.named_parameters())
    decay = [p for p in params.values() if p.ndim >= 2]
    no_decay = [p for p in params.values() if p.ndim < 2]  # biases, LayerNorm weights and biases
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": ADAMW["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
        lr=ADAMW["lr"], betas=ADAMW["betas"], eps=ADAMW["eps"], weight_decay=ADAMW["weight_decay"],
    )

    t: dict[str, torch.Tensor] = {}
    for step in range(NUM_STEPS):
        opt.zero_grad(set_to_none=True)
        outputs = model(input_ids=ids, attention_mask=mask, token_type_ids=type_ids)
        hidden = outputs.last_hidden_state
        pooled = mean_pool(hidden, mask)
        qn = F.normalize(pooled[:NUM_QUERIES], p=2, dim=-1)
        pn = F.normalize(pooled[NUM_QUERIES:], p=2, dim=-1)
        qn.retain_grad()
        pn.retain_grad()
        l_qp, l_pq = infonce(qn, pn)
        loss_sym = (l_qp + l_pq) / 2

        if step == 0:
            # Everything about the initial model comes from this first forward.
            for k, n in enumerate(lengths):
                t[f"hidden.{k}"] = hidden[k, :n].detach().clone()
            t["emb.cls"] = hidden[:, 0].detach().clone()
            t["emb.mean"] = pooled.detach().clone()
            t["emb.mean_norm"] = torch.cat([qn, pn]).detach().clone()
            t["emb.pooler"] = outputs.pooler_output.detach().clone()
            t["loss"] = l_qp.detach().reshape(1).clone()
            t["loss.sym"] = loss_sym.detach().reshape(1).clone()

        t[f"steploss.{step}"] = l_qp.detach().reshape(1).clone()
        # Step 0 keeps the graph for the loss.sym gradients below.
        l_qp.backward(retain_graph=(step == 0))

        # Mean pooling never touches the pooler, so its .grad is None. Materialise zeros so that every
        # parameter is treated alike: AdamW skips params whose grad is None, which would exempt
        # pooler.dense.weight from weight decay; an engine that updates one flat buffer decays it.
        for p in params.values():
            if p.grad is None:
                p.grad = torch.zeros_like(p)

        if step == 0:
            for name, p in params.items():
                t[f"grad.{name}"] = p.grad.detach().clone()
            t["gemb.q"] = qn.grad.detach().clone()
            t["gemb.p"] = pn.grad.detach().clone()
            # d loss.sym / d normalised embeddings. Only after copying qn.grad/pn.grad: retain_grad()
            # hooks fire inside autograd.grad too and would add this into them. Parameter .grads are
            # not touched by autograd.grad.
            gq_sym, gp_sym = torch.autograd.grad(loss_sym, [qn, pn])
            t["gemb.q.sym"] = gq_sym.detach().clone()
            t["gemb.p.sym"] = gp_sym.detach().clone()

        norm = torch.nn.utils.clip_grad_norm_(list(params.values()), max_norm=MAX_GRAD_NORM)
        t[f"gradnorm.{step}"] = norm.detach().to(torch.float32).reshape(1).clone()
        opt.step()

    for name, p in params.items():
        t[f"step3.{name}"] = p.detach().clone()

    for name, v in t.items():
        assert v.dtype == torch.float32, name
        assert torch.isfinite(v).all(), name
        t[name] = v.contiguous()
    save_file(t, str(out / "reference.safetensors"))

    desc = describe(arch, seed, lengths, queries, passages, params, t)
    with open(out / "reference.json", "w") as f:
        json.dump(desc, f, indent=2)
        f.write("\n")
    return desc


def describe(arch, seed, lengths, queries, passages, params, t) -> dict:
    sp = SPECIAL[arch]
    return {
        "generator": "test/reference/hf_reference.py",
        "command": f"hf_reference.py --arch {arch} --seed {seed}",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "arch": arch,
        "hf_class": "BertModel" if arch == "bert" else "XLMRobertaModel",
        "seed": seed,
        "config": make_config(arch),
        "attn_implementation": "eager",
        "add_pooling_layer": True,
        "init": {
            "description": "after the library init, every parameter is overwritten in named_parameters() order "
                           "from torch.Generator().manual_seed(seed): N(0, std) for all, plus 1.0 for "
                           "*LayerNorm.weight",
            "std": INIT_STD,
        },
        "special_tokens": sp,
        "position_ids": ("0 .. len-1" if arch == "bert"
                         else f"pad+1 .. pad+len, i.e. {sp['pad'] + 1} .. len+{sp['pad']} (no padding inside sequences)"),
        "token_type_ids": "all 0",
        "batch": {
            "file": "batch.json",
            "num_queries": NUM_QUERIES,
            "num_passages": NUM_PASSAGES,
            "passage_order": "passages[i] for i < num_queries is the positive of queries[i]; "
                             "the rest are extra hard negatives shared by all queries",
            "sequence_index": "k = 0..3 are queries 0..3, k = 4..9 are passages 0..5",
            "lengths": lengths,
            "ids": "first token CLS, last SEP, the rest uniform in "
                   f"[{ID_LOW}, {ID_HIGH}); lengths distinct, in [{MIN_LEN}, {MAX_LEN}]",
            "padding": "the model ran on all 10 sequences right-padded with the pad id, attention_mask 1/0",
        },
        "loss": {
            "embedding": "mean over non-padding tokens of last_hidden_state, then L2-normalised (F.normalize)",
            "scale": SCALE,
            "temperature": 1.0 / SCALE,
            "loss": "mean over queries i of cross_entropy(scale * q_i . p_j over all 6 passages j, label i); float32",
            "loss.sym": "(loss + mean over positives j<4 of cross_entropy(scale * q_i . p_j over the 4 queries i, "
                        "label j)) / 2",
        },
        "optimizer": {
            "class": "torch.optim.AdamW",
            **{k: (list(v) if isinstance(v, tuple) else v) for k, v in ADAMW.items()},
            "weight_decay_groups": "decay for params with ndim >= 2; 0 for ndim == 1 (biases, LayerNorm)",
            "max_grad_norm": MAX_GRAD_NORM,
            "clip": "torch.nn.utils.clip_grad_norm_ over all parameters before each step",
            "steps": NUM_STEPS,
            "loss_per_step": "`loss` (not loss.sym), recomputed on the same batch each step; grads zeroed between steps",
            "pooler_grads": "pooler.* get no gradient from mean pooling; their grads are set to zeros so AdamW "
                            "treats them like every other parameter (pooler.dense.weight is weight-decayed)",
        },
        "parameters": [{"name": n, "shape": list(p.shape)} for n, p in params.items()],
        "tensors": {
            name: {"shape": list(v.shape), "sha256": hashlib.sha256(v.numpy().tobytes()).hexdigest()[:16]}
            for name, v in t.items()
        },
        "tensor_meanings": {
            "hidden.{k}": "[len_k, hidden] last_hidden_state of sequence k without padding",
            "emb.cls": "[10, hidden] last_hidden_state[:, 0]",
            "emb.mean": "[10, hidden] mean over non-padding tokens (not normalised)",
            "emb.mean_norm": "[10, hidden] emb.mean L2-normalised: the embeddings the loss sees",
            "emb.pooler": "[10, hidden] pooler_output = tanh(dense(CLS))",
            "loss": "[1] query->passage InfoNCE",
            "loss.sym": "[1] symmetric InfoNCE",
            "gemb.q": "[4, hidden] d loss / d normalised query embeddings",
            "gemb.p": "[6, hidden] d loss / d normalised passage embeddings",
            "gemb.q.sym": "[4, hidden] d loss.sym / d normalised query embeddings",
            "gemb.p.sym": "[6, hidden] d loss.sym / d normalised passage embeddings",
            "grad.{name}": "d loss / d parameter at the initial weights (before clipping)",
            "steploss.{s}": "[1] loss before optimizer step s (steploss.0 == loss)",
            "gradnorm.{s}": "[1] total L2 norm returned by clip_grad_norm_ at step s (before clipping)",
            "step3.{name}": "parameter after 3 clipped AdamW steps",
        },
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", choices=["bert", "roberta"], required=True)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    desc = run(args.arch, args.out, args.seed)
    ts = desc["tensors"]
    print(f"{args.arch}: wrote {args.out} ({len(ts)} tensors; loss {float(_load_scalar(args.out, 'loss')):.6f})",
          file=sys.stderr)
    return 0


def _load_scalar(out: Path, name: str) -> float:
    from safetensors.torch import load_file
    return load_file(str(out / "reference.safetensors"))[name].item()


if __name__ == "__main__":
    sys.exit(main())
