// Low-precision float quantization of float32 tensors on the CPU, as qtorch's float_quantize does it.
//
// Nearest rounding reproduces qtorch 0.3.0 bit for bit (quant_cpu.cpp: ties away from zero by
// adding half an ulp and truncating; the top exponent is a normal number; overflow, +-inf and NaN
// saturate to +-max unless exp == 8; numbers below the smallest normal go through qtorch's
// "add 2^min_exp, round, subtract" path, including its float32 double rounding and -0 -> +0).
// One deliberate difference: qtorch computes `1 << -1` (undefined) for man == 23 and flips the sign
// bit; here man == 23 adds nothing, so it keeps every float32 value.
//
// Stochastic rounding is ours: it returns one of the two neighbouring representable values, the
// upper one with probability (x - lower) / (upper - lower), exactly to 2^-32, subnormals included.
// The random word of element i is a counter-based hash of (seed, i), so a result depends only on the
// seed (drawn from torch's default generator unless given), never on threads or vector width.

#include <torch/extension.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include <cstdint>
#include <cstring>
#include <mutex>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define PEPPP_X86 1
#endif

namespace {

constexpr uint32_t kSign = 0x80000000u;
constexpr int64_t kGrain = 1 << 15;  // below this many elements one thread does the whole tensor

bool g_use_simd = true;  // tests switch it off to check the scalar path against the vector one

inline uint32_t f2u(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

inline float u2f(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// Everything the kernels need about eXmY, derived once per call exactly as qtorch derives it.
struct FloatSpec {
  uint32_t d;         // mantissa bits dropped: 23 - man
  uint32_t mask;      // the dropped bits
  uint32_t half;      // nearest: half an ulp of the target format (0 when man == 23)
  uint32_t emin_b;    // biased float32 exponent of the smallest normal: 127 + 2 - 2^(exp-1)
  uint32_t maxe_b;    // biased float32 exponent of the largest number: 127 + 2^(exp-1)
  uint32_t maxbits;   // bit pattern of the largest number, sign excluded
  float sub_scale;    // the spacing below the smallest normal: 2^(min_exp - man), exact in float32
};

FloatSpec make_spec(int64_t exp_bits, int64_t man_bits) {
  TORCH_CHECK(exp_bits >= 1 && exp_bits <= 8, "exp must be in 1..8, got ", exp_bits);
  TORCH_CHECK(man_bits >= 1 && man_bits <= 23, "man must be in 1..23, got ", man_bits);
  FloatSpec s;
  s.d = 23u - static_cast<uint32_t>(man_bits);
  s.mask = (1u << s.d) - 1u;
  s.half = s.d > 0 ? 1u << (s.d - 1) : 0u;
  const int min_exp = -((1 << (exp_bits - 1)) - 2);
  s.emin_b = static_cast<uint32_t>(127 + min_exp);
  s.maxe_b = static_cast<uint32_t>((1 << (exp_bits - 1)) + 127);
  const uint32_t max_man = (0xFFFFFFFFu << 9 >> 9) >> s.d << s.d;
  s.maxbits = (s.maxe_b << 23) | max_man;
  s.sub_scale = std::ldexp(1.0f, min_exp - static_cast<int>(man_bits));
  return s;
}

// Random words: a two-round lowbias32 hash (C. Wellons' hash-prospector) of the element index under
// a 64-bit key. Counter-based, so any split of the index range gives the same words.
inline uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  x ^= x >> 16;
  return x;
}

struct Key {
  uint32_t k0, k1;
};

// Element indices past 2^32 get a different second-round key, so 32-bit counters never repeat.
inline Key key_for(uint64_t seed, uint64_t index_hi) {
  uint32_t k1 = static_cast<uint32_t>(seed >> 32) ^ mix32(static_cast<uint32_t>(index_hi) * 0x9E3779B9u);
  return Key{static_cast<uint32_t>(seed), k1};
}

inline uint32_t rand_word(Key k, uint32_t i) { return mix32(mix32(i ^ k.k0) ^ k.k1); }

// ---- scalar kernels: the reference semantics; the vector kernels must agree bit for bit ----

inline float nearest_one(float x, const FloatSpec& s) {
  const uint32_t a = f2u(x);
  const uint32_t e = (a >> 23) & 0xFFu;
  if (e < s.emin_b) {
    // qtorch: shift onto the smallest binade, round there in float32, shift back.
    const float shift = u2f((a & kSign) | (s.emin_b << 23));
    const float val = x + shift;
    const uint32_t q = (f2u(val) + s.half) & ~s.mask;
    return u2f(q) - shift;
  }
  uint32_t q = (a + s.half) & ~s.mask;
  if (((q >> 23) & 0xFFu) > s.maxe_b) q = (a & kSign) | s.maxbits;
  return u2f(q);
}

inline float stochastic_one(float x, uint32_t r, const FloatSpec& s) {
  const uint32_t a = f2u(x);
  const uint32_t e = (a >> 23) & 0xFFu;
  if (e < s.emin_b) {
    // Exact integer rounding on the fixed grid of spacing sub_scale: the significand sig (in units
    // of 2^(e_eff-150)) loses its low `sh` bits; round up with probability rem / 2^sh.
    const uint32_t sig = (a & 0x7FFFFFu) | (e ? 0x800000u : 0u);
    const uint32_t e_eff = e ? e : 1u;
    const uint32_t sh = s.emin_b - e_eff + s.d;
    uint32_t k = sh < 32 ? sig >> sh : 0u;
    const uint32_t rem = sig - (sh < 32 ? k << sh : 0u);
    const uint32_t frac = sh < 64 ? static_cast<uint32_t>((static_cast<uint64_t>(rem) << 32) >> sh) : 0u;
    k += r < frac ? 1u : 0u;
    const uint32_t mb = f2u(static_cast<float>(k) * s.sub_scale);
    return u2f(mb ? (mb | (a & kSign)) : 0u);  // zero comes out +0, as in nearest
  }
  uint32_t q = (a + (r & s.mask)) & ~s.mask;
  if (((q >> 23) & 0xFFu) > s.maxe_b) q = (a & kSign) | s.maxbits;
  return u2f(q);
}

void nearest_scalar(const float* in, float* out, int64_t n, const FloatSpec& s) {
  for (int64_t i = 0; i < n; ++i) out[i] = nearest_one(in[i], s);
}

void stochastic_scalar(const float* in, float* out, int64_t begin, int64_t end, Key k, const FloatSpec& s) {
  for (int64_t i = begin; i < end; ++i) out[i] = stochastic_one(in[i], rand_word(k, static_cast<uint32_t>(i)), s);
}

// ---- AVX2 kernels ----
#ifdef PEPPP_X86

struct Vec8Spec {
  __m256i mask, notmask, half, emin_b, maxe_b, maxbits, d, sign, expmask, emin_bits, c32, bias;
  __m256 sub_scale;
};

__attribute__((target("avx2,fma"))) inline Vec8Spec vec_spec(const FloatSpec& s) {
  Vec8Spec v;
  v.mask = _mm256_set1_epi32(static_cast<int>(s.mask));
  v.notmask = _mm256_set1_epi32(static_cast<int>(~s.mask));
  v.half = _mm256_set1_epi32(static_cast<int>(s.half));
  v.emin_b = _mm256_set1_epi32(static_cast<int>(s.emin_b));
  v.maxe_b = _mm256_set1_epi32(static_cast<int>(s.maxe_b));
  v.maxbits = _mm256_set1_epi32(static_cast<int>(s.maxbits));
  v.d = _mm256_set1_epi32(static_cast<int>(s.d));
  v.sign = _mm256_set1_epi32(static_cast<int>(kSign));
  v.expmask = _mm256_set1_epi32(0xFF);
  v.emin_bits = _mm256_set1_epi32(static_cast<int>(s.emin_b << 23));
  v.c32 = _mm256_set1_epi32(32);
  v.bias = _mm256_set1_epi32(static_cast<int>(kSign));
  v.sub_scale = _mm256_set1_ps(s.sub_scale);
  return v;
}

__attribute__((target("avx2,fma"))) inline __m256i mix32_v(__m256i x) {
  x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 16));
  x = _mm256_mullo_epi32(x, _mm256_set1_epi32(0x7feb352d));
  x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 15));
  x = _mm256_mullo_epi32(x, _mm256_set1_epi32(static_cast<int>(0x846ca68bu)));
  x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 16));
  return x;
}

// Rounding in the normal range: add (half or random bits), truncate, saturate past the top exponent.
__attribute__((target("avx2,fma"))) inline __m256i normal_v(__m256i a, __m256i add, const Vec8Spec& v) {
  __m256i q = _mm256_and_si256(_mm256_add_epi32(a, add), v.notmask);
  __m256i qe = _mm256_and_si256(_mm256_srli_epi32(q, 23), v.expmask);
  __m256i over = _mm256_cmpgt_epi32(qe, v.maxe_b);
  __m256i sat = _mm256_or_si256(_mm256_and_si256(a, v.sign), v.maxbits);
  return _mm256_blendv_epi8(q, sat, over);
}

__attribute__((target("avx2,fma"))) void nearest_avx2(const float* in, float* out, int64_t n, const FloatSpec& s) {
  const Vec8Spec v = vec_spec(s);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 x = _mm256_loadu_ps(in + i);
    __m256i a = _mm256_castps_si256(x);
    __m256i e = _mm256_and_si256(_mm256_srli_epi32(a, 23), v.expmask);
    __m256i sub = _mm256_cmpgt_epi32(v.emin_b, e);
    __m256i res = normal_v(a, v.half, v);
    if (!_mm256_testz_si256(sub, sub)) {
      __m256 shift = _mm256_castsi256_ps(_mm256_or_si256(_mm256_and_si256(a, v.sign), v.emin_bits));
      __m256i vb = _mm256_castps_si256(_mm256_add_ps(x, shift));
      __m256i q = _mm256_and_si256(_mm256_add_epi32(vb, v.half), v.notmask);
      __m256i rs = _mm256_castps_si256(_mm256_sub_ps(_mm256_castsi256_ps(q), shift));
      res = _mm256_blendv_epi8(res, rs, sub);
    }
    _mm256_storeu_ps(out + i, _mm256_castsi256_ps(res));
  }
  nearest_scalar(in + i, out + i, n - i, s);
}

__attribute__((target("avx2,fma"))) void stochastic_avx2(const float* in, float* out, int64_t begin, int64_t end,
                                                         Key k, const FloatSpec& s) {
  const Vec8Spec v = vec_spec(s);
  const __m256i k0 = _mm256_set1_epi32(static_cast<int>(k.k0));
  const __m256i k1 = _mm256_set1_epi32(static_cast<int>(k.k1));
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i implicit = _mm256_set1_epi32(0x800000);
  const __m256i manmask = _mm256_set1_epi32(0x7FFFFF);
  const __m256i one = _mm256_set1_epi32(1);
  const __m256i zero = _mm256_setzero_si256();
  int64_t i = begin;
  for (; i + 8 <= end; i += 8) {
    __m256i idx = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(i))), lanes);
    __m256i r = mix32_v(_mm256_xor_si256(mix32_v(_mm256_xor_si256(idx, k0)), k1));
    __m256 x = _mm256_loadu_ps(in + i);
    __m256i a = _mm256_castps_si256(x);
    __m256i e = _mm256_and_si256(_mm256_srli_epi32(a, 23), v.expmask);
    __m256i sub = _mm256_cmpgt_epi32(v.emin_b, e);
    __m256i res = normal_v(a, _mm256_and_si256(r, v.mask), v);
    if (!_mm256_testz_si256(sub, sub)) {
      __m256i ezero = _mm256_cmpeq_epi32(e, zero);
      __m256i sig = _mm256_or_si256(_mm256_and_si256(a, manmask), _mm256_andnot_si256(ezero, implicit));
      __m256i e_eff = _mm256_max_epi32(e, one);
      __m256i sh = _mm256_add_epi32(_mm256_sub_epi32(v.emin_b, e_eff), v.d);
      // vpsrlvd / vpsllvd give 0 for counts of 32 or more, which is what the scalar branches do.
      __m256i kq = _mm256_srlv_epi32(sig, sh);
      __m256i rem = _mm256_sub_epi32(sig, _mm256_sllv_epi32(kq, sh));
      __m256i frac = _mm256_or_si256(_mm256_sllv_epi32(rem, _mm256_sub_epi32(v.c32, sh)),
                                     _mm256_srlv_epi32(rem, _mm256_sub_epi32(sh, v.c32)));
      // unsigned r < frac
      __m256i up = _mm256_cmpgt_epi32(_mm256_xor_si256(frac, v.bias), _mm256_xor_si256(r, v.bias));
      kq = _mm256_sub_epi32(kq, up);
      __m256i mb = _mm256_castps_si256(_mm256_mul_ps(_mm256_cvtepi32_ps(kq), v.sub_scale));
      __m256i nz = _mm256_cmpeq_epi32(mb, zero);
      __m256i rs = _mm256_or_si256(mb, _mm256_andnot_si256(nz, _mm256_and_si256(a, v.sign)));
      res = _mm256_blendv_epi8(res, rs, sub);
    }
    _mm256_storeu_ps(out + i, _mm256_castsi256_ps(res));
  }
  stochastic_scalar(in, out, i, end, k, s);
}

bool have_avx2() {
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
}
#endif

bool use_avx2() {
#ifdef PEPPP_X86
  return g_use_simd && have_avx2();
#else
  return false;
#endif
}

uint64_t draw_seed() {
  auto gen = at::get_generator_or_default<at::CPUGeneratorImpl>(c10::nullopt, at::detail::getDefaultCPUGenerator());
  std::lock_guard<std::mutex> lock(gen->mutex_);
  return gen->random64();
}

at::Tensor check_input(const at::Tensor& x) {
  TORCH_CHECK(x.device().is_cpu(), "expected a CPU tensor, got one on ", x.device());
  TORCH_CHECK(x.scalar_type() == at::kFloat, "expected a float32 tensor, got ", x.scalar_type());
  return x.contiguous();
}

at::Tensor float_quantize_nearest(const at::Tensor& x, int64_t exp_bits, int64_t man_bits) {
  const FloatSpec s = make_spec(exp_bits, man_bits);
  at::Tensor in = check_input(x);
  at::Tensor out = at::empty_like(in, at::MemoryFormat::Contiguous);
  const float* ip = in.data_ptr<float>();
  float* op = out.data_ptr<float>();
  const bool simd = use_avx2();
  at::parallel_for(0, in.numel(), kGrain, [&](int64_t b, int64_t e) {
#ifdef PEPPP_X86
    if (simd) {
      nearest_avx2(ip + b, op + b, e - b, s);
      return;
    }
#endif
    nearest_scalar(ip + b, op + b, e - b, s);
  });
  return out;
}

at::Tensor float_quantize_stochastic(const at::Tensor& x, int64_t exp_bits, int64_t man_bits,
                                     c10::optional<int64_t> seed) {
  const FloatSpec s = make_spec(exp_bits, man_bits);
  at::Tensor in = check_input(x);
  at::Tensor out = at::empty_like(in, at::MemoryFormat::Contiguous);
  const uint64_t key = seed.has_value() ? static_cast<uint64_t>(*seed) : draw_seed();
  const float* ip = in.data_ptr<float>();
  float* op = out.data_ptr<float>();
  const bool simd = use_avx2();
  at::parallel_for(0, in.numel(), kGrain, [&](int64_t b, int64_t e) {
    // split at multiples of 2^32 so a 32-bit counter plus a per-range key covers any size
    while (b < e) {
      const int64_t hi = b >> 32;
      const int64_t stop = std::min<int64_t>(e, (hi + 1) << 32);
      const Key k = key_for(key, static_cast<uint64_t>(hi));
#ifdef PEPPP_X86
      if (simd) {
        stochastic_avx2(ip, op, b, stop, k, s);
      } else {
        stochastic_scalar(ip, op, b, stop, k, s);
      }
#else
      stochastic_scalar(ip, op, b, stop, k, s);
#endif
      b = stop;
    }
  });
  return out;
}

void set_simd(bool on) { g_use_simd = on; }

bool simd_active() { return use_avx2(); }

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("float_quantize_nearest", &float_quantize_nearest, "eXmY nearest (qtorch-exact)", py::arg("x"),
        py::arg("exp"), py::arg("man"));
  m.def("float_quantize_stochastic", &float_quantize_stochastic, "eXmY stochastic, counter-based RNG",
        py::arg("x"), py::arg("exp"), py::arg("man"), py::arg("seed") = py::none());
  m.def("set_simd", &set_simd, "use the AVX2 kernels when the CPU has them (tests switch this off)");
  m.def("simd_active", &simd_active, "whether the AVX2 kernels are in use");
}
