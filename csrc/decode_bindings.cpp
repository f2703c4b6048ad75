// Python bindings of the native decode step and the 8-bit-activation products (decode.h,
// quant_matvec.h); fastsynth.model.native_decode is the documented API. Kept out of
// bindings.cpp so that file only gains one registration call.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "decode.h"
#include "quant_matvec.h"

namespace py = pybind11;

namespace fastsynth {
namespace {

QuantFormat parse_format(const std::string& fmt, const std::string& what) {
  if (fmt == "q4_1" || fmt == "Q4_1") return QuantFormat::Q4_1;
  if (fmt == "q8_0" || fmt == "Q8_0") return QuantFormat::Q8_0;
  throw py::value_error(what + ": fmt must be 'q4_1' or 'q8_0', got '" + fmt + "'");
}

template <class T>
const T* checked(const py::array& a, const std::string& name, const char* dtype, size_t count) {
  if (!py::isinstance<py::array_t<T>>(a))
    throw py::value_error(name + " must be a " + dtype + " array, got dtype " + std::string(py::str(a.dtype())));
  if (!(a.flags() & py::array::c_style)) throw py::value_error(name + " must be C-contiguous");
  if (static_cast<size_t>(a.size()) != count)
    throw py::value_error(name + ": expected " + std::to_string(count) + " elements, got " + std::to_string(a.size()));
  return static_cast<const T*>(a.data());
}

QuantMatrix matrix(const py::array& blocks, const std::string& fmt, size_t out, size_t in,
                   const std::string& name) {
  QuantMatrix q;
  q.fmt = parse_format(fmt, name);
  if (in == 0 || in % kQuantBlock != 0)
    throw py::value_error(name + ": in_features must be a positive multiple of 32, got " + std::to_string(in));
  q.out = out;
  q.in = in;
  q.blocks = checked<uint8_t>(blocks, name, "uint8", out * (in / kQuantBlock) * quant_block_bytes(q.fmt));
  return q;
}

// The model's arrays plus the Python objects that own them (kept alive with the decoder).
struct PyDecoder {
  DecoderModel model;
  std::vector<py::object> owners;
};

}  // namespace

void register_decode(py::module_& m) {
  m.def(
      "decode_exp",
      [](const py::array& x) {
        const size_t n = static_cast<size_t>(x.size());
        const float* xp = checked<float>(x, "x", "float32", n);
        py::array_t<float> out(static_cast<py::ssize_t>(n));
        exp_vector(xp, n, out.mutable_data());
        return out;
      },
      py::arg("x"), "e^x of a 1-D float32 array as the native decode step computes it (tests).");
  m.def(
      "quant_matmul_int8",
      [](const py::array& blocks, const std::string& fmt, py::ssize_t out_features, const py::array& x,
         int threads, bool simd) {
        if (out_features < 1) throw py::value_error("out_features must be >= 1, got " + std::to_string(out_features));
        if (threads < 0) throw py::value_error("threads must be >= 0, got " + std::to_string(threads));
        if (x.ndim() != 2) throw py::value_error("x must be 2-D (batch, in_features), got " + std::to_string(x.ndim()) + "-D");
        const size_t batch = static_cast<size_t>(x.shape(0)), in = static_cast<size_t>(x.shape(1));
        const float* xp = checked<float>(x, "x", "float32", batch * in);
        QuantMatrix w = matrix(blocks, fmt, static_cast<size_t>(out_features), in, "blocks");
        py::array_t<float> y({static_cast<py::ssize_t>(batch), out_features});
        float* yp = y.mutable_data();
        {
          py::gil_scoped_release release;
          const size_t nblk = in / kQuantBlock;
          std::vector<int8_t> q(batch * in);
          std::vector<float> d(batch * nblk), s(batch * nblk);
          quantize_q8(xp, batch, in, q.data(), d.data(), s.data());
          quant_matmul_q8(w.blocks, w.fmt, w.out, in, Q8Activations{q.data(), d.data(), s.data()}, batch, yp,
                          threads, simd);
        }
        return y;
      },
      "y = x @ W.T with x quantised to 8 bits per 32-block (llama.cpp's Q8_1); see quant_matvec.h",
      py::arg("blocks"), py::arg("fmt"), py::arg("out_features"), py::arg("x"), py::arg("threads") = 0,
      py::arg("simd") = true);

  py::class_<PyDecoder>(m, "NativeDecoder")
      .def(py::init([](size_t hidden, size_t n_heads, size_t n_kv, size_t head_dim, size_t ffn, float eps,
                       const py::array& inv_freq, const py::array& embed, const py::array& final_norm,
                       const py::array& head_blocks, const std::string& head_fmt, const py::list& layers) {
             if (hidden == 0 || n_heads == 0 || n_kv == 0 || head_dim == 0 || ffn == 0)
               throw py::value_error("hidden, n_heads, n_kv, head_dim and ffn must be >= 1");
             if (n_heads % n_kv != 0) throw py::value_error("n_heads must be a multiple of n_kv");
             if (head_dim % 2 != 0) throw py::value_error("head_dim must be even");
             auto dec = std::make_unique<PyDecoder>();
             DecoderModel& d = dec->model;
             d.hidden = hidden, d.n_heads = n_heads, d.n_kv = n_kv, d.head_dim = head_dim, d.ffn = ffn, d.eps = eps;
             if (embed.ndim() != 2 || static_cast<size_t>(embed.shape(1)) != hidden)
               throw py::value_error("embed must be (vocab, hidden=" + std::to_string(hidden) + ")");
             d.vocab = static_cast<size_t>(embed.shape(0));
             d.inv_freq = checked<float>(inv_freq, "inv_freq", "float32", head_dim / 2);
             d.embed = checked<float>(embed, "embed", "float32", d.vocab * hidden);
             d.final_norm = checked<float>(final_norm, "final_norm", "float32", hidden);
             d.head = matrix(head_blocks, head_fmt, d.vocab, hidden, "head_blocks");
             dec->owners = {inv_freq, embed, final_norm, head_blocks};
             const size_t qkv_out = (n_heads + 2 * n_kv) * head_dim;
             for (size_t l = 0; l < layers.size(); ++l) {
               auto t = layers[l].cast<py::tuple>();
               if (t.size() != 10)
                 throw py::value_error("layers[" + std::to_string(l) + "] must be a 10-tuple (attn_norm, wqkv, fmt, wo, fmt, "
                                       "mlp_norm, w_gate_up, fmt, w_down, fmt)");
               const std::string p = "layers[" + std::to_string(l) + "].";
               DecoderLayer L;
               L.attn_norm = checked<float>(t[0].cast<py::array>(), p + "attn_norm", "float32", hidden);
               L.wqkv = matrix(t[1].cast<py::array>(), t[2].cast<std::string>(), qkv_out, hidden, p + "wqkv");
               L.wo = matrix(t[3].cast<py::array>(), t[4].cast<std::string>(), hidden, n_heads * head_dim, p + "wo");
               L.mlp_norm = checked<float>(t[5].cast<py::array>(), p + "mlp_norm", "float32", hidden);
               L.w_gate_up = matrix(t[6].cast<py::array>(), t[7].cast<std::string>(), 2 * ffn, hidden, p + "w_gate_up");
               L.w_down = matrix(t[8].cast<py::array>(), t[9].cast<std::string>(), hidden, ffn, p + "w_down");
               d.layers.push_back(L);
               dec->owners.push_back(t);
             }
             return dec;
           }),
           py::arg("hidden"), py::arg("n_heads"), py::arg("n_kv"), py::arg("head_dim"), py::arg("ffn"),
           py::arg("eps"), py::arg("inv_freq"), py::arg("embed"), py::arg("final_norm"), py::arg("head_blocks"),
           py::arg("head_fmt"), py::arg("layers"))
      .def_property_readonly("vocab", [](const PyDecoder& d) { return d.model.vocab; })
      .def(
          "step",
          [](const PyDecoder& dec, const py::array& tokens, const py::array& positions, const py::list& k_cache,
             const py::list& v_cache, size_t length, const py::object& key_mask, int threads, const std::string& mode,
             bool simd) {
            const DecoderModel& d = dec.model;
            DecodeMode md;
            if (mode == "float32") md = DecodeMode::Float32;
            else if (mode == "int8") md = DecodeMode::Int8;
            else throw py::value_error("mode must be 'float32' or 'int8', got '" + mode + "'");
            if (threads < 0) throw py::value_error("threads must be >= 0, got " + std::to_string(threads));
            if (tokens.ndim() != 1) throw py::value_error("tokens must be 1-D (batch,)");
            const size_t batch = static_cast<size_t>(tokens.shape(0));
            const int64_t* tp = checked<int64_t>(tokens, "tokens", "int64", batch);
            const int64_t* pp = checked<int64_t>(positions, "positions", "int64", batch);
            const size_t nl = d.layers.size();
            if (k_cache.size() != nl || v_cache.size() != nl)
              throw py::value_error("k_cache and v_cache must hold one array per layer (" + std::to_string(nl) + ")");
            std::vector<float*> kp(nl), vp(nl);
            size_t capacity = 0;
            for (size_t l = 0; l < nl; ++l)
              for (int kv = 0; kv < 2; ++kv) {
                py::array a = (kv ? v_cache : k_cache)[l].cast<py::array>();
                const std::string name = std::string(kv ? "v_cache" : "k_cache") + "[" + std::to_string(l) + "]";
                if (a.ndim() != 4 || static_cast<size_t>(a.shape(0)) != batch ||
                    static_cast<size_t>(a.shape(2)) != d.n_kv || static_cast<size_t>(a.shape(3)) != d.head_dim)
                  throw py::value_error(name + " must be (batch=" + std::to_string(batch) + ", capacity, n_kv=" +
                                        std::to_string(d.n_kv) + ", head_dim=" + std::to_string(d.head_dim) + ")");
                if (l == 0 && kv == 0) capacity = static_cast<size_t>(a.shape(1));
                if (static_cast<size_t>(a.shape(1)) != capacity)
                  throw py::value_error(name + ": every cache array must have the same capacity");
                if (!a.writeable()) throw py::value_error(name + " must be writeable");
                float* ptr = const_cast<float*>(checked<float>(a, name, "float32", static_cast<size_t>(a.size())));
                (kv ? vp : kp)[l] = ptr;
              }
            if (length >= capacity)
              throw py::value_error("length " + std::to_string(length) + " leaves no free cache slot (capacity " +
                                    std::to_string(capacity) + ")");
            const uint8_t* mp = nullptr;
            size_t mstride = 0;
            if (!key_mask.is_none()) {
              py::array km = key_mask.cast<py::array>();
              if (km.ndim() != 2 || static_cast<size_t>(km.shape(0)) != batch ||
                  static_cast<size_t>(km.shape(1)) < length + 1)
                throw py::value_error("key_mask must be (batch, >= length + 1) bool");
              if (!py::isinstance<py::array_t<bool>>(km)) throw py::value_error("key_mask must be a bool array");
              if (!(km.flags() & py::array::c_style)) throw py::value_error("key_mask must be C-contiguous");
              mp = static_cast<const uint8_t*>(km.data());
              mstride = static_cast<size_t>(km.shape(1));
            }
            py::array_t<float> logits({static_cast<py::ssize_t>(batch), static_cast<py::ssize_t>(d.vocab)});
            float* lp = logits.mutable_data();
            std::string error;
            {
              py::gil_scoped_release release;
              try {
                decode_step(d, tp, pp, batch, kp.data(), vp.data(), capacity, length, mp, mstride, lp, threads, md,
                            simd);
              } catch (const std::invalid_argument& e) {
                error = e.what();
              }
            }
            if (!error.empty()) throw py::value_error(error);
            return logits;
          },
          "Logits (batch, vocab) of one decode step; writes this step's keys/values at slot `length`",
          py::arg("tokens"), py::arg("positions"), py::arg("k_cache"), py::arg("v_cache"), py::arg("length"),
          py::arg("key_mask") = py::none(), py::arg("threads") = 0, py::arg("mode") = "float32",
          py::arg("simd") = true);
}

}  // namespace fastsynth
