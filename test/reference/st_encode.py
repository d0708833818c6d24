"""Encodes texts with sentence-transformers from a model folder: the reference for `xlir encode`.

usage: st_encode.py MODEL_DIR TEXTS_JSON MAX_LENGTH PREFIX OUT.npy
"""
import json
import sys

import numpy as np
import torch


def main():
    model_dir, texts_json, max_len, prefix, out = sys.argv[1:6]
    torch.set_num_threads(1)
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(model_dir, device="cpu")
    st.max_seq_length = int(max_len)
    texts = [prefix + t for t in json.load(open(texts_json))]
    emb = st.encode(texts, batch_size=8, convert_to_numpy=True, normalize_embeddings=False)
    np.save(out, emb.astype(np.float32))


if __name__ == "__main__":
    main()
