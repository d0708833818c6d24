// End-to-end training step of the engine in C++, for GPU machines without Node (gpu-kit/run.sh):
// the same step as bench/gpu_train_step.ts (zero_grad -> training forward of the packed queries +
// passages -> InfoNCE (scale 20) -> backward -> AdamW with clipping, lr 2e-5, wd 0.01) on an
// XLM-R-base shape (12 x 768, 12 heads, FFN 3072, vocabulary 250,002), 128 queries of 8-32 tokens
// and 128 passages of 64-256 (seeded), then encoding of the same 256 sequences.
//   xlir_train_bench [--device cuda:0|emulated|cpu] [--precision bf16|fp32] [--steps 20] [--warmup 3]
//                    [--pairs 128] [--layers 12] [--lengths-out FILE] [--peak-tflops 989.4]
// Prints tokens/s (real tokens: the engine pads nothing), step ms, model FLOP utilisation against
// --peak-tflops (dense bf16 peak; H100 SXM 989.4), and, with --lengths-out, writes the batch's token
// ids as {"queries": [[...]], "passages": [[...]]} for bench/torch_train_step.py --lengths-file, so
// the PyTorch / sentence-transformers peer runs the very same sequences (gpu-kit/run.sh does this
// and prints the ratio). FLOPs per step: 6 * (non-embedding parameters) * tokens for the products,
// plus 12 * layers * hidden * sum(len^2) for attention scores and context, forward and backward (the
// usual convention; the same count is applied to the peer, so the ratio is a ratio of times).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "device_backend.h"
#include "infonce.h"
#include "model.h"
#ifdef XLIR_WITH_CUDA
#include "cuda/backend.h"
#endif

using namespace xlir;

namespace {
// mulberry32 (src/rng.ts), so a seed names the same batch everywhere.
struct Mulberry32 {
  uint32_t a;
  double next() {
    a += 0x6D2B79F5u;
    uint32_t t = a;
    t = (t ^ (t >> 15)) * (t | 1u);
    t ^= t + (t ^ (t >> 7)) * (t | 61u);
    return double(t ^ (t >> 14)) / 4294967296.0;
  }
};
double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
}  // namespace

int main(int argc, char** argv) {
  std::string device = "cuda:0", precision = "bf16", lengths_out;
  int steps = 20, warmup = 3, pairs = 128, layers = 12;
  double peak = 989.4;
  for (int i = 1; i < argc; i++) {
    const std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--device") device = val();
    else if (a == "--precision") precision = val();
    else if (a == "--steps") steps = std::stoi(val());
    else if (a == "--warmup") warmup = std::stoi(val());
    else if (a == "--pairs") pairs = std::stoi(val());
    else if (a == "--layers") layers = std::stoi(val());
    else if (a == "--lengths-out") lengths_out = val();
    else if (a == "--peak-tflops") peak = std::stod(val());
    else {
      std::fprintf(stderr, "unknown option %s (see the comment at the top of bench/train_step_native.cc)\n", a.c_str());
      return 2;
    }
  }
  try {
    ModelConfig c;
    c.roberta = true, c.vocab = 250002, c.hidden = 768, c.layers = layers, c.heads = 12, c.ffn = 3072, c.max_pos = 514;
    c.type_vocab = 1, c.ln_eps = 1e-5f, c.pad_id = 1, c.pooling = Pooling::Mean, c.seed = 1;
    Model m(c);
    m.set_precision(precision == "bf16" ? Precision::BF16 : Precision::FP32);
    [[maybe_unused]] int cuda_index = -1;  // a CUDA device: InfoNCE runs there too
    if (device == "emulated") m.to_device(make_emulated_backend(m));
#ifdef XLIR_WITH_CUDA
    else if (device.rfind("cuda", 0) == 0) {
      cuda_index = device.size() > 5 ? std::stoi(device.substr(5)) : 0;
      m.to_device(cuda::make_model_backend(m, cuda_index));
    }
#endif
    else if (device != "cpu") throw Error("device '" + device + "' is not available in this build");
    m.init_moments();

    // The batch: queries of 8-32 tokens, then passages of 64-256; ids uniform over the vocabulary
    // except the special tokens (0 <s>, 1 <pad>, 2 </s>, 3 <unk>).
    Mulberry32 r{12345u};
    std::vector<std::vector<int32_t>> seqs;
    for (int s = 0; s < 2 * pairs; s++) {
      const bool q = s < pairs;
      const int lo = q ? 8 : 64, hi = q ? 32 : 256;
      const int L = lo + int(r.next() * (hi - lo + 1));
      std::vector<int32_t> ids{0};
      for (int i = 1; i + 1 < L; i++) ids.push_back(4 + int32_t(r.next() * (c.vocab - 4)));
      ids.push_back(2);
      seqs.push_back(ids);
    }
    std::vector<int32_t> ids, lengths;
    std::vector<uint32_t> seq_ids;
    double sumsq = 0;
    for (size_t s = 0; s < seqs.size(); s++) {
      ids.insert(ids.end(), seqs[s].begin(), seqs[s].end());
      lengths.push_back(int32_t(seqs[s].size()));
      seq_ids.push_back(uint32_t(s));
      sumsq += double(seqs[s].size()) * double(seqs[s].size());
    }
    if (!lengths_out.empty()) {
      std::ofstream f(lengths_out);
      f << "{\"queries\": [";
      for (int s = 0; s < 2 * pairs; s++) {
        if (s == pairs) f << "], \"passages\": [";
        f << (s % pairs ? ", [" : "[");
        for (size_t i = 0; i < seqs[size_t(s)].size(); i++) f << (i ? ", " : "") << seqs[size_t(s)][i];
        f << "]";
      }
      f << "]}\n";
    }
    Batch b;
    b.ids = ids.data(), b.lengths = lengths.data(), b.seq_ids = seq_ids.data();
    b.T = int64_t(ids.size()), b.B = int64_t(lengths.size());
    const int64_t D = m.embedding_dim();
    std::vector<float> emb(size_t(b.B * D)), g(emb.size());
    AdamWHyper h;
    h.lr = 2e-5f, h.weight_decay = 0.01f, h.max_grad_norm = 1.f;
    double t_fwd = 0, t_bwd = 0, t_opt = 0, t0 = 0, loss = 0, norm = 0;
    for (int s = 0; s < warmup + steps; s++) {
      if (s == warmup) t0 = now(), t_fwd = t_bwd = t_opt = 0;
      const double a0 = now();
      m.zero_grad();
      m.forward(b, emb.data(), true, uint64_t(s));  // returns the embeddings: the device is done
      const double a1 = now();
      // InfoNCE where the trainer computes it (src/trainer.ts: the fused GPU kernel when the model is on
      // CUDA, the CPU function otherwise).
      float* const dq = g.data();
      float* const dp = g.data() + pairs * D;
      const float* const q = emb.data();
      const float* const p = emb.data() + pairs * D;
#ifdef XLIR_WITH_CUDA
      if (cuda_index >= 0) loss = cuda::infonce_host(cuda_index, dq, dp, q, p, pairs, pairs, D, 20.f, false);
      else
#endif
        loss = infonce_forward_backward(dq, dp, q, p, pairs, pairs, D, 20.f, false);
      m.backward(g.data());
      const double a2 = now();
      h.step = s + 1;
      norm = m.adamw_step(h);  // returns the norm: waits for the device
      const double a3 = now();
      t_fwd += a1 - a0, t_bwd += a2 - a1, t_opt += a3 - a2;
    }
    const double step_s = (now() - t0) / steps;
    // Encoding: the same sequences, inference.
    for (int s = 0; s < 2; s++) m.forward(b, emb.data(), false, 0);
    const double e0 = now();
    for (int s = 0; s < steps; s++) m.forward(b, emb.data(), false, 0);
    const double enc_s = (now() - e0) / steps;

    const double H = double(c.hidden), F = double(c.ffn), L = double(c.layers);
    const double nonemb = L * (4 * H * H + 2 * H * F + 9 * H + F);  // weights + biases + LayerNorms per layer
    const double flops = 6 * nonemb * double(b.T) + 12 * L * H * sumsq;
    std::printf("device %s  precision %s  layers %d  batch %d pairs, %ld tokens (real)  steps %d (+%d warm-up)\n",
                m.device().c_str(), precision.c_str(), layers, pairs, long(b.T), steps, warmup);
    std::printf("| step ms | tokens/s | TFLOP/s | MFU vs %.1f | forward ms | loss+backward ms | adamw ms | encode ms | encode tokens/s |\n", peak);
    std::printf("| %.1f | %.0f | %.1f | %.1f%% | %.1f | %.1f | %.1f | %.1f | %.0f |\n", step_s * 1e3, double(b.T) / step_s,
                flops / step_s / 1e12, 100 * flops / step_s / 1e12 / peak, 1e3 * t_fwd / steps, 1e3 * t_bwd / steps,
                1e3 * t_opt / steps, enc_s * 1e3, double(b.T) / enc_s);
    std::printf("{\"device\": \"%s\", \"precision\": \"%s\", \"tokens\": %ld, \"step_ms\": %.3f, \"tokens_per_s\": %.1f, "
                "\"flops_per_step\": %.6g, \"mfu\": %.4f, \"encode_ms\": %.3f, \"loss\": %.6f, \"grad_norm\": %.6f, "
                "\"device_gib\": %.2f}\n",
                m.device().c_str(), precision.c_str(), long(b.T), step_s * 1e3, double(b.T) / step_s, flops,
                flops / step_s / 1e12 / peak, enc_s * 1e3, loss, norm, double(m.device_bytes()) / (1 << 30));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "xlir_train_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
