"""Encodes the sequences of a batch.json with a saved model folder, through transformers AND
sentence-transformers, so that tests can check that a folder written by xlir loads in both and
gives the outputs xlir gives.

usage: encode_folder.py MODEL_DIR BATCH_JSON OUT.safetensors
writes hidden.{k} [len_k, H] (AutoModel last_hidden_state, padding removed) and st.emb [N, D]
(SentenceTransformer forward on the same token ids: its modules after the transformer).
"""
import json
import sys

import torch
from safetensors.torch import save_file


def main():
    model_dir, batch_json, out = sys.argv[1:4]
    torch.set_num_threads(1)
    from transformers import AutoModel
    from sentence_transformers import SentenceTransformer

    b = json.load(open(batch_json))
    seqs = b["queries"] + b["passages"]
    model = AutoModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    pad = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    n, L = len(seqs), max(len(s) for s in seqs)
    ids = torch.full((n, L), pad, dtype=torch.long)
    mask = torch.zeros((n, L), dtype=torch.long)
    for k, s in enumerate(seqs):
        ids[k, : len(s)] = torch.tensor(s)
        mask[k, : len(s)] = 1
    res = {}
    with torch.no_grad():
        h = model(input_ids=ids, attention_mask=mask).last_hidden_state
        for k, s in enumerate(seqs):
            res[f"hidden.{k}"] = h[k, : len(s)].contiguous()
        st = SentenceTransformer(model_dir, device="cpu")
        feats = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
        res["st.emb"] = st(feats)["sentence_embedding"].contiguous()
    save_file(res, out)


if __name__ == "__main__":
    main()
