"""Reference side of the checkpoint interop tests (run by test/*.test.ts when XLIR_PYTHON is set).

Every command writes its findings as JSON to the OUT path it is given, so that progress bars and
library chatter on stdout/stderr never mix with the answer.

  safetensors-make DIR OUT     reference-written files with F32/F16/BF16/F64 incl. special values
  safetensors-read FILE OUT    how the reference library reads a file we wrote (bit patterns)
  npy-make FILE OUT            numpy.save of a float32 matrix
  npy-read FILE OUT            how numpy reads a .npy we wrote
  make DIR OUT                 tiny transformers / sentence-transformers folders + expected tensors
  tokenizers DIR OUT           tiny tokenizer.json folders (bert, xlmr) for saved-folder checks
  check OUT_JSON DIR...        load folders we wrote with AutoModel and SentenceTransformer
"""
import hashlib
import json
import logging
import os
import sys
import warnings


def dump(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)


def f32_bits(t):
    import numpy as np

    return t.detach().float().contiguous().numpy().astype("<f4").view("<u4").tolist()


def digest(t):
    """sha256 of the tensor as little-endian float32: compares every value exactly."""
    import numpy as np

    return hashlib.sha256(t.detach().float().contiguous().numpy().astype("<f4").tobytes()).hexdigest()


# ---------------------------------------------------------------------------------------------


def safetensors_make(d, out):
    import torch
    from safetensors.torch import save_file

    os.makedirs(d, exist_ok=True)
    specials = torch.tensor(
        [0.0, -0.0, 1.0, -2.5, 65504.0, 6.0e-8, 6.1e-5, 1e-40, float("inf"), float("-inf"), float("nan"), 3.14159, 1e30]
    )
    g = torch.Generator().manual_seed(3)
    rand = torch.randn(7, 5, generator=g)
    tensors = {
        "f16.special": specials.to(torch.float16),
        "bf16.special": specials.to(torch.bfloat16),
        "f16.rand": rand.to(torch.float16),
        "bf16.rand": rand.to(torch.bfloat16),
        "f32.rand": rand,
        "f64.rand": rand.double() * 1.0000001,
        "scalar": torch.tensor(2.0),
        "empty": torch.zeros(0, 3),
    }
    path = os.path.join(d, "ref.safetensors")
    save_file(tensors, path, metadata={"format": "pt", "who": "reference"})
    expected = {}
    for k, v in tensors.items():
        expected[k] = {"shape": list(v.shape), "bits": f32_bits(v.reshape(-1))}
    dump(out, {"file": path, "tensors": expected})


def safetensors_read(path, out):
    from safetensors import safe_open

    res = {}
    with safe_open(path, "pt") as f:
        meta = f.metadata()
        for k in f.keys():
            t = f.get_tensor(k)
            res[k] = {"dtype": str(t.dtype), "shape": list(t.shape), "bits": f32_bits(t.reshape(-1))}
    dump(out, {"metadata": meta, "tensors": res})


def npy_make(path, out):
    import numpy as np

    a = (np.arange(12, dtype=np.float32).reshape(3, 4) - 5.5) / 3
    np.save(path, a)
    dump(out, {"shape": list(a.shape), "bits": a.reshape(-1).view("<u4").tolist()})


def npy_read(path, out):
    import numpy as np

    a = np.load(path)
    m = np.load(path, mmap_mode="r")
    dump(out, {"dtype": str(a.dtype), "shape": list(a.shape), "fortran": bool(np.isfortran(a)) if a.ndim > 1 else False,
               "bits": a.reshape(-1).view("<u4").tolist(), "mmap_equal": bool((m == a).all())})


# ---------------------------------------------------------------------------------------------

TINY = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)


def expected_tensors(state):
    """engine name -> shape, a few values and the digest of the whole tensor."""
    out = {}
    for k, v in state.items():
        if not v.is_floating_point():
            continue
        flat = v.detach().float().reshape(-1)
        idx = sorted({0, 1, flat.numel() // 2, flat.numel() - 1}) if flat.numel() else []
        out[k] = {"shape": list(v.shape), "samples": [[i, flat[i].item()] for i in idx], "sha256": digest(v)}
    return out


def bert_tokenizer(d):
    from transformers import BertTokenizerFast

    os.makedirs(d, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(95)]
    with open(os.path.join(d, "vocab.txt"), "w") as f:
        f.write("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(vocab_file=os.path.join(d, "vocab.txt"))
    tok.save_pretrained(d)
    return tok


def xlmr_tokenizer(d):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    os.makedirs(d, exist_ok=True)
    vocab = {t: i for i, t in enumerate(["<s>", "<pad>", "</s>", "<unk>"] + [f"w{i}" for i in range(95)] + ["<mask>"])}
    t = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    t.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    t.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    tok = PreTrainedTokenizerFast(tokenizer_object=t, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                  unk_token="<unk>", mask_token="<mask>", cls_token="<s>", sep_token="</s>")
    tok.save_pretrained(d)
    return tok


def make(root, out):
    import torch
    from transformers import (BertConfig, BertForPreTraining, BertModel, XLMRobertaConfig, XLMRobertaForMaskedLM,
                              XLMRobertaModel)

    torch.manual_seed(0)
    bert_cfg = BertConfig(**TINY, max_position_embeddings=64)
    xlmr_cfg = XLMRobertaConfig(**TINY, max_position_embeddings=66, type_vocab_size=1)
    result = {}

    def randomize(model):
        # Fresh init leaves LayerNorm at exactly 1/0 and biases at 0: perturb everything so that a
        # swapped or mis-mapped tensor cannot compare equal by accident.
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.05)
        return model

    def save(name, model, base, **info):
        d = os.path.join(root, name)
        model.save_pretrained(d)
        result[name] = {"dir": d, "tensors": expected_tensors(base.state_dict()), **info}

    m = randomize(BertForPreTraining(bert_cfg))
    save("bert_pretraining", m, m.bert, pooling="pooler", hasPooler=True)
    m = randomize(BertModel(bert_cfg))
    save("bert_model", m, m, pooling="pooler", hasPooler=True)
    m = randomize(XLMRobertaForMaskedLM(xlmr_cfg))
    save("xlmr_mlm", m, m.roberta, pooling="mean", hasPooler=False)
    m = randomize(XLMRobertaModel(xlmr_cfg))
    save("xlmr_model", m, m, pooling="mean", hasPooler=True)
    m = randomize(BertModel(bert_cfg))
    save("bert_fp16", m.half(), m, pooling="pooler", hasPooler=True)
    m = randomize(BertModel(bert_cfg))
    save("bert_bf16", m.to(torch.bfloat16), m, pooling="pooler", hasPooler=True)

    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules.dense import Dense
    from sentence_transformers.base.modules.normalize import Normalize
    from sentence_transformers.base.modules.transformer import Transformer
    from sentence_transformers.sentence_transformer.modules.pooling import Pooling

    def st_folder(name, arch_dir, tok, pooling, dense, normalize):
        src = os.path.join(root, "_src_" + name)
        base = randomize(BertModel(bert_cfg) if tok == "bert" else XLMRobertaModel(xlmr_cfg))
        base.save_pretrained(src)
        (bert_tokenizer if tok == "bert" else xlmr_tokenizer)(src)
        mods = [Transformer(src), Pooling(32, pooling_mode=pooling)]
        if dense:
            mods.append(randomize(Dense(32, 16, activation_function=torch.nn.Tanh())))
        if normalize:
            mods.append(Normalize())
        st = SentenceTransformer(modules=mods)
        d = os.path.join(root, name)
        st.save(d)
        tensors = expected_tensors(st[0].auto_model.state_dict())
        if dense:
            tensors.update({"dense." + k: v for k, v in expected_tensors(st[2].state_dict()).items()})
        result[name] = {"dir": d, "tensors": tensors, "pooling": pooling, "hasPooler": True, "normalize": normalize,
                        "dense": {"outFeatures": 16, "activation": "tanh", "bias": True} if dense else None}

    st_folder("st_bert_cls_dense", "bert", "bert", "cls", True, True)
    st_folder("st_xlmr_mean", "xlmr", "xlmr", "mean", False, True)
    dump(out, result)


def tokenizers(root, out):
    bert_tokenizer(os.path.join(root, "bert"))
    xlmr_tokenizer(os.path.join(root, "xlmr"))
    dump(out, {"bert": os.path.join(root, "bert", "tokenizer.json"), "xlmr": os.path.join(root, "xlmr", "tokenizer.json")})


class Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records = []

    def emit(self, record):
        self.records.append(f"{record.name}: {record.getMessage()}")


def check(out, dirs):
    import torch
    from safetensors.torch import save_file
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_warning()
    hf_logging.disable_progress_bar()
    result = {}
    for d in dirs:
        def capturing(load):
            cap = Capture()
            roots = [logging.getLogger(), logging.getLogger("transformers"), logging.getLogger("sentence_transformers")]
            for lg in roots:
                lg.addHandler(cap)
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    value = load()
            finally:
                for lg in roots:
                    lg.removeHandler(cap)
            return value, cap.records + [f"{w.category.__name__}: {w.message}" for w in caught]

        (model, info), hf_warnings = capturing(lambda: AutoModel.from_pretrained(d, output_loading_info=True))
        st, st_warnings = capturing(lambda: SentenceTransformer(d, device="cpu"))
        model.eval()
        st.eval()
        tensors = {"hf." + k: v.detach().clone().contiguous() for k, v in model.state_dict().items() if v.is_floating_point()}
        tensors.update({"st." + k: v.detach().clone().contiguous() for k, v in st.state_dict().items() if v.is_floating_point()})
        dump_path = os.path.join(d + ".python-view.safetensors")
        save_file({k: v.float() for k, v in tensors.items()}, dump_path)

        modules = []
        for m in st:
            desc = {"class": type(m).__name__}
            if type(m).__name__ == "Pooling":
                desc["mode"] = m.pooling_mode
            if type(m).__name__ == "Dense":
                desc.update(in_features=m.in_features, out_features=m.out_features, bias=m.bias,
                            activation=type(m.activation_function).__name__)
            modules.append(desc)

        # The encoder as sentence-transformers runs it must equal transformers' own outputs: CLS/mean
        # of last_hidden_state, or pooler_output when the saved CLS + Dense(Tanh) stands for the pooler.
        prep = getattr(st, "preprocess", None) or st.tokenize  # tokenize before sentence-transformers 6
        feats = prep(["w1 w2 w3", "w4"])
        pooled = after_first_dense = None
        with torch.no_grad():
            x = dict(feats)
            for m in st:
                if type(m).__name__ == "Normalize":
                    break
                x = m(x)
                if type(m).__name__ == "Pooling":
                    pooled = x["sentence_embedding"].clone()
                elif type(m).__name__ == "Dense" and after_first_dense is None:
                    after_first_dense = x["sentence_embedding"].clone()
            hf_out = model(**{k: v for k, v in feats.items() if k in ("input_ids", "attention_mask", "token_type_ids")})
            pooler_diff = None
            if (hf_out.pooler_output is not None and after_first_dense is not None
                    and after_first_dense.shape == hf_out.pooler_output.shape):
                pooler_diff = (after_first_dense - hf_out.pooler_output).abs().max().item()
            mask = feats["attention_mask"].unsqueeze(-1).float()
            hf_mean = (hf_out.last_hidden_state * mask).sum(1) / mask.sum(1)
            hf_cls = hf_out.last_hidden_state[:, 0]
            embedding = st.encode(["w1 w2 w3", "w4"], convert_to_tensor=True)
        result[d] = {
            "missing": list(info["missing_keys"]),
            "unexpected": list(info["unexpected_keys"]),
            "mismatched": [list(map(str, x)) for x in info.get("mismatched_keys", [])],
            "error_msgs": list(map(str, info.get("error_msgs", []))),
            "hf_warnings": hf_warnings,
            "st_warnings": st_warnings,
            "modules": modules,
            "pooled_vs_cls": (pooled - hf_cls).abs().max().item(),
            "pooled_vs_mean": (pooled - hf_mean).abs().max().item(),
            "pooler_dense_vs_pooler_output": pooler_diff,
            "embedding_norms": embedding.norm(dim=-1).tolist(),
            "embedding_dim": int(embedding.shape[-1]),
            "dump": dump_path,
        }
    dump(out, result)


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "safetensors-make":
        safetensors_make(args[0], args[1])
    elif cmd == "safetensors-read":
        safetensors_read(args[0], args[1])
    elif cmd == "npy-make":
        npy_make(args[0], args[1])
    elif cmd == "npy-read":
        npy_read(args[0], args[1])
    elif cmd == "make":
        make(args[0], args[1])
    elif cmd == "tokenizers":
        tokenizers(args[0], args[1])
    elif cmd == "check":
        check(args[0], args[1:])
    else:
        raise SystemExit(f"unknown command {cmd}")
