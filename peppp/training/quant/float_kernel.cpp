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
// Random words come from 16 xoshiro128++ streams per block of 4096 elements (lane l serves elements
// l, l+16, ... of the block), seeded by hashing (seed, block, lane). So a result depends only on the
// seed (drawn from torch's default generator unless given), never on threads or vector width.

#include <torch/extension.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include <cstdint>
#include <algorithm>
#include <cstring>
#include <string>
#include <mutex>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define PEPPP_X86 1
#endif

namespace {

constexpr uint32_t kSign = 0x80000000u;
constexpr int64_t kGrain = 1 << 14;  // below this many elements one thread does the whole tensor
constexpr int64_t kLanes = 16;       // random streams per block
constexpr int64_t kBlock = 4096;     // elements per block of streams; kGrain is a multiple

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

// Seeds: a two-round lowbias32 hash (C. Wellons' hash-prospector) of a counter under a 64-bit key.
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

// Counters past 2^32 get a different second-round key, so 32-bit counters never repeat.
inline Key key_for(uint64_t seed, uint64_t counter_hi) {
  uint32_t k1 = static_cast<uint32_t>(seed >> 32) ^ mix32(static_cast<uint32_t>(counter_hi) * 0x9E3779B9u);
  return Key{static_cast<uint32_t>(seed), k1};
}

inline uint32_t hash_word(Key k, uint32_t c) { return mix32(mix32(c ^ k.k0) ^ k.k1); }

// State word w (0..3) of lane l in block b is hash_word at counter 64*b + 16*w + l.
inline Key block_key(uint64_t seed, uint64_t block) { return key_for(seed, block >> 26); }
inline uint32_t block_counter(uint64_t block) { return static_cast<uint32_t>(block << 6); }

inline uint32_t rotl(uint32_t x, int k) { return (x << k) | (x >> (32 - k)); }

// 16 xoshiro128++ generators (Blackman & Vigna), lane by lane: the reference for the vector code.
struct Streams16 {
  uint32_t s[4][kLanes];

  Streams16(uint64_t seed, uint64_t block) {
    const Key k = block_key(seed, block);
    const uint32_t c = block_counter(block);
    for (int w = 0; w < 4; ++w)
      for (int l = 0; l < kLanes; ++l) s[w][l] = hash_word(k, c + 16u * w + l);
  }

  void next(uint32_t* r) {
    for (int l = 0; l < kLanes; ++l) {
      r[l] = rotl(s[0][l] + s[3][l], 7) + s[0][l];
      const uint32_t t = s[1][l] << 9;
      s[2][l] ^= s[0][l];
      s[3][l] ^= s[1][l];
      s[1][l] ^= s[2][l];
      s[0][l] ^= s[3][l];
      s[2][l] ^= t;
      s[3][l] = rotl(s[3][l], 11);
    }
  }
};

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

// One block of at most kBlock elements starting at block * kBlock (in/out point at its start).
void stochastic_block_scalar(const float* in, float* out, int64_t len, uint64_t seed, uint64_t block,
                             const FloatSpec& s) {
  Streams16 g(seed, block);
  uint32_t r[kLanes];
  for (int64_t j = 0; j < len; j += kLanes) {
    g.next(r);
    const int64_t m = std::min<int64_t>(kLanes, len - j);
    for (int64_t l = 0; l < m; ++l) out[j + l] = stochastic_one(in[j + l], r[l], s);
  }
}

void stochastic_blocks_scalar(const float* in, float* out, int64_t n, int64_t b0, int64_t b1, uint64_t seed,
                              const FloatSpec& s) {
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t start = b * kBlock;
    stochastic_block_scalar(in + start, out + start, std::min(kBlock, n - start), seed, static_cast<uint64_t>(b), s);
  }
}

// ---- vector kernels: AVX2 (8 lanes) and AVX-512 (16 lanes), chosen at run time ----
#ifdef PEPPP_X86

#define PEPPP_AVX2 __attribute__((target("avx2,fma")))
#define PEPPP_AVX512 __attribute__((target("avx512f")))

struct Vec8Spec {
  __m256i mask, notmask, half, emin_b, maxe_b, maxbits, d, sign, expmask, absmask, emin_bits, c32, bias;
  __m256 sub_scale;
};

PEPPP_AVX2 inline Vec8Spec vec8_spec(const FloatSpec& s) {
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
  v.absmask = _mm256_set1_epi32(0x7FFFFFFF);
  v.emin_bits = _mm256_set1_epi32(static_cast<int>(s.emin_b << 23));
  v.c32 = _mm256_set1_epi32(32);
  v.bias = _mm256_set1_epi32(static_cast<int>(kSign));
  v.sub_scale = _mm256_set1_ps(s.sub_scale);
  return v;
}

PEPPP_AVX2 inline __m256i mix32_v8(__m256i x) {
  x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 16));
  x = _mm256_mullo_epi32(x, _mm256_set1_epi32(0x7feb352d));
  x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 15));
  x = _mm256_mullo_epi32(x, _mm256_set1_epi32(static_cast<int>(0x846ca68bu)));
  x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 16));
  return x;
}

// Rounding in the normal range: add (half or random bits), truncate, saturate past the top exponent.
PEPPP_AVX2 inline __m256i normal_v8(__m256i a, __m256i add, const Vec8Spec& v) {
  __m256i q = _mm256_and_si256(_mm256_add_epi32(a, add), v.notmask);
  __m256i qe = _mm256_and_si256(_mm256_srli_epi32(q, 23), v.expmask);
  __m256i over = _mm256_cmpgt_epi32(qe, v.maxe_b);
  __m256i sat = _mm256_or_si256(_mm256_and_si256(a, v.sign), v.maxbits);
  return _mm256_blendv_epi8(q, sat, over);
}

// Lanes below the smallest normal: `tiny` (nonzero ones, the costly path) and `zero` (+-0 -> +0).
PEPPP_AVX2 inline void below_v8(__m256i a, const Vec8Spec& v, __m256i* tiny, __m256i* zero) {
  __m256i e = _mm256_and_si256(_mm256_srli_epi32(a, 23), v.expmask);
  __m256i sub = _mm256_cmpgt_epi32(v.emin_b, e);
  *zero = _mm256_cmpeq_epi32(_mm256_and_si256(a, v.absmask), _mm256_setzero_si256());
  *tiny = _mm256_andnot_si256(*zero, sub);
}

PEPPP_AVX2 void nearest_avx2(const float* in, float* out, int64_t n, const FloatSpec& s) {
  const Vec8Spec v = vec8_spec(s);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 x = _mm256_loadu_ps(in + i);
    __m256i a = _mm256_castps_si256(x);
    __m256i tiny, zero;
    below_v8(a, v, &tiny, &zero);
    __m256i res = _mm256_andnot_si256(zero, normal_v8(a, v.half, v));
    if (!_mm256_testz_si256(tiny, tiny)) {
      __m256 shift = _mm256_castsi256_ps(_mm256_or_si256(_mm256_and_si256(a, v.sign), v.emin_bits));
      __m256i vb = _mm256_castps_si256(_mm256_add_ps(x, shift));
      __m256i q = _mm256_and_si256(_mm256_add_epi32(vb, v.half), v.notmask);
      __m256i rs = _mm256_castps_si256(_mm256_sub_ps(_mm256_castsi256_ps(q), shift));
      res = _mm256_blendv_epi8(res, rs, tiny);
    }
    _mm256_storeu_ps(out + i, _mm256_castsi256_ps(res));
  }
  nearest_scalar(in + i, out + i, n - i, s);
}

// Stochastic rounding of 8 values given their random words.
PEPPP_AVX2 inline __m256i stochastic_v8(__m256i a, __m256i r, const Vec8Spec& v) {
  __m256i tiny, zero;
  below_v8(a, v, &tiny, &zero);
  __m256i res = _mm256_andnot_si256(zero, normal_v8(a, _mm256_and_si256(r, v.mask), v));
  if (!_mm256_testz_si256(tiny, tiny)) {
    const __m256i zerov = _mm256_setzero_si256();
    __m256i e = _mm256_and_si256(_mm256_srli_epi32(a, 23), v.expmask);
    __m256i ezero = _mm256_cmpeq_epi32(e, zerov);
    __m256i sig = _mm256_or_si256(_mm256_and_si256(a, _mm256_set1_epi32(0x7FFFFF)),
                                  _mm256_andnot_si256(ezero, _mm256_set1_epi32(0x800000)));
    __m256i sh = _mm256_add_epi32(_mm256_sub_epi32(v.emin_b, _mm256_max_epi32(e, _mm256_set1_epi32(1))), v.d);
    // vpsrlvd / vpsllvd give 0 for counts of 32 or more, which is what the scalar branches do.
    __m256i kq = _mm256_srlv_epi32(sig, sh);
    __m256i rem = _mm256_sub_epi32(sig, _mm256_sllv_epi32(kq, sh));
    __m256i frac = _mm256_or_si256(_mm256_sllv_epi32(rem, _mm256_sub_epi32(v.c32, sh)),
                                   _mm256_srlv_epi32(rem, _mm256_sub_epi32(sh, v.c32)));
    __m256i up = _mm256_cmpgt_epi32(_mm256_xor_si256(frac, v.bias), _mm256_xor_si256(r, v.bias));  // r < frac
    kq = _mm256_sub_epi32(kq, up);
    __m256i mb = _mm256_castps_si256(_mm256_mul_ps(_mm256_cvtepi32_ps(kq), v.sub_scale));
    __m256i mzero = _mm256_cmpeq_epi32(mb, zerov);
    __m256i rs = _mm256_or_si256(mb, _mm256_andnot_si256(mzero, _mm256_and_si256(a, v.sign)));
    res = _mm256_blendv_epi8(res, rs, tiny);
  }
  return res;
}

PEPPP_AVX2 inline __m256i rotl_v8(__m256i x, int k) {
  return _mm256_or_si256(_mm256_slli_epi32(x, k), _mm256_srli_epi32(x, 32 - k));
}

// 8 lanes of xoshiro128++: the next words in r, states advanced.
PEPPP_AVX2 inline __m256i next_v8(__m256i* s0, __m256i* s1, __m256i* s2, __m256i* s3) {
  __m256i r = _mm256_add_epi32(rotl_v8(_mm256_add_epi32(*s0, *s3), 7), *s0);
  __m256i t = _mm256_slli_epi32(*s1, 9);
  *s2 = _mm256_xor_si256(*s2, *s0);
  *s3 = _mm256_xor_si256(*s3, *s1);
  *s1 = _mm256_xor_si256(*s1, *s2);
  *s0 = _mm256_xor_si256(*s0, *s3);
  *s2 = _mm256_xor_si256(*s2, t);
  *s3 = rotl_v8(*s3, 11);
  return r;
}

PEPPP_AVX2 inline __m256i hash_v8(__m256i c, __m256i k0, __m256i k1) {
  return mix32_v8(_mm256_xor_si256(mix32_v8(_mm256_xor_si256(c, k0)), k1));
}

PEPPP_AVX2 void stochastic_blocks_avx2(const float* in, float* out, int64_t n, int64_t b0, int64_t b1, uint64_t seed,
                                       const FloatSpec& s) {
  const Vec8Spec v = vec8_spec(s);
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t start = b * kBlock;
    const int64_t len = std::min(kBlock, n - start);
    const float* ip = in + start;
    float* op = out + start;
    const Key k = block_key(seed, static_cast<uint64_t>(b));
    const __m256i k0 = _mm256_set1_epi32(static_cast<int>(k.k0));
    const __m256i k1 = _mm256_set1_epi32(static_cast<int>(k.k1));
    const __m256i c = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(block_counter(b))), lanes);
    // lanes 0-7 (x) and 8-15 (y) of the block's 16 streams
    __m256i x0 = hash_v8(c, k0, k1), x1 = hash_v8(_mm256_add_epi32(c, _mm256_set1_epi32(16)), k0, k1);
    __m256i x2 = hash_v8(_mm256_add_epi32(c, _mm256_set1_epi32(32)), k0, k1);
    __m256i x3 = hash_v8(_mm256_add_epi32(c, _mm256_set1_epi32(48)), k0, k1);
    __m256i y0 = hash_v8(_mm256_add_epi32(c, _mm256_set1_epi32(8)), k0, k1);
    __m256i y1 = hash_v8(_mm256_add_epi32(c, _mm256_set1_epi32(24)), k0, k1);
    __m256i y2 = hash_v8(_mm256_add_epi32(c, _mm256_set1_epi32(40)), k0, k1);
    __m256i y3 = hash_v8(_mm256_add_epi32(c, _mm256_set1_epi32(56)), k0, k1);
    int64_t j = 0;
    for (; j + 16 <= len; j += 16) {
      __m256i rx = next_v8(&x0, &x1, &x2, &x3);
      __m256i ry = next_v8(&y0, &y1, &y2, &y3);
      __m256i ax = _mm256_castps_si256(_mm256_loadu_ps(ip + j));
      __m256i ay = _mm256_castps_si256(_mm256_loadu_ps(ip + j + 8));
      _mm256_storeu_ps(op + j, _mm256_castsi256_ps(stochastic_v8(ax, rx, v)));
      _mm256_storeu_ps(op + j + 8, _mm256_castsi256_ps(stochastic_v8(ay, ry, v)));
    }
    if (j < len) {
      alignas(32) uint32_t r[kLanes];
      _mm256_store_si256(reinterpret_cast<__m256i*>(r), next_v8(&x0, &x1, &x2, &x3));
      _mm256_store_si256(reinterpret_cast<__m256i*>(r + 8), next_v8(&y0, &y1, &y2, &y3));
      for (int64_t l = 0; j + l < len; ++l) op[j + l] = stochastic_one(ip[j + l], r[l], s);
    }
  }
}

struct Vec16Spec {
  __m512i mask, notmask, half, emin_b, maxe_b, maxbits, d, sign, absmask, emin_bits, c32;
  __m512 sub_scale;
};

PEPPP_AVX512 inline Vec16Spec vec16_spec(const FloatSpec& s) {
  Vec16Spec v;
  v.mask = _mm512_set1_epi32(static_cast<int>(s.mask));
  v.notmask = _mm512_set1_epi32(static_cast<int>(~s.mask));
  v.half = _mm512_set1_epi32(static_cast<int>(s.half));
  v.emin_b = _mm512_set1_epi32(static_cast<int>(s.emin_b));
  v.maxe_b = _mm512_set1_epi32(static_cast<int>(s.maxe_b));
  v.maxbits = _mm512_set1_epi32(static_cast<int>(s.maxbits));
  v.d = _mm512_set1_epi32(static_cast<int>(s.d));
  v.sign = _mm512_set1_epi32(static_cast<int>(kSign));
  v.absmask = _mm512_set1_epi32(0x7FFFFFFF);
  v.emin_bits = _mm512_set1_epi32(static_cast<int>(s.emin_b << 23));
  v.c32 = _mm512_set1_epi32(32);
  v.sub_scale = _mm512_set1_ps(s.sub_scale);
  return v;
}

PEPPP_AVX512 inline __m512i mix32_v16(__m512i x) {
  x = _mm512_xor_si512(x, _mm512_srli_epi32(x, 16));
  x = _mm512_mullo_epi32(x, _mm512_set1_epi32(0x7feb352d));
  x = _mm512_xor_si512(x, _mm512_srli_epi32(x, 15));
  x = _mm512_mullo_epi32(x, _mm512_set1_epi32(static_cast<int>(0x846ca68bu)));
  x = _mm512_xor_si512(x, _mm512_srli_epi32(x, 16));
  return x;
}

PEPPP_AVX512 inline __m512i normal_v16(__m512i a, __m512i add, const Vec16Spec& v) {
  __m512i q = _mm512_and_si512(_mm512_add_epi32(a, add), v.notmask);
  __mmask16 over = _mm512_cmpgt_epu32_mask(_mm512_srli_epi32(_mm512_and_si512(q, v.absmask), 23), v.maxe_b);
  return _mm512_mask_mov_epi32(q, over, _mm512_or_si512(_mm512_and_si512(a, v.sign), v.maxbits));
}

PEPPP_AVX512 inline void below_v16(__m512i a, const Vec16Spec& v, __mmask16* tiny, __mmask16* nonzero) {
  __m512i absa = _mm512_and_si512(a, v.absmask);
  *nonzero = _mm512_test_epi32_mask(absa, absa);
  *tiny = _mm512_mask_cmplt_epu32_mask(*nonzero, _mm512_srli_epi32(absa, 23), v.emin_b);
}

PEPPP_AVX512 void nearest_avx512(const float* in, float* out, int64_t n, const FloatSpec& s) {
  const Vec16Spec v = vec16_spec(s);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 x = _mm512_loadu_ps(in + i);
    __m512i a = _mm512_castps_si512(x);
    __mmask16 tiny, nonzero;
    below_v16(a, v, &tiny, &nonzero);
    __m512i res = _mm512_maskz_mov_epi32(nonzero, normal_v16(a, v.half, v));
    if (tiny) {
      __m512 shift = _mm512_castsi512_ps(_mm512_or_si512(_mm512_and_si512(a, v.sign), v.emin_bits));
      __m512i vb = _mm512_castps_si512(_mm512_add_ps(x, shift));
      __m512i q = _mm512_and_si512(_mm512_add_epi32(vb, v.half), v.notmask);
      __m512i rs = _mm512_castps_si512(_mm512_sub_ps(_mm512_castsi512_ps(q), shift));
      res = _mm512_mask_mov_epi32(res, tiny, rs);
    }
    _mm512_storeu_ps(out + i, _mm512_castsi512_ps(res));
  }
  nearest_scalar(in + i, out + i, n - i, s);
}

PEPPP_AVX512 inline __m512i stochastic_v16(__m512i a, __m512i r, const Vec16Spec& v) {
  __mmask16 tiny, nonzero;
  below_v16(a, v, &tiny, &nonzero);
  __m512i res = _mm512_maskz_mov_epi32(nonzero, normal_v16(a, _mm512_and_si512(r, v.mask), v));
  if (tiny) {
    const __m512i one = _mm512_set1_epi32(1);
    __m512i e = _mm512_srli_epi32(_mm512_and_si512(a, v.absmask), 23);
    __m512i sig = _mm512_or_si512(_mm512_and_si512(a, _mm512_set1_epi32(0x7FFFFF)),
                                  _mm512_maskz_mov_epi32(_mm512_test_epi32_mask(e, e), _mm512_set1_epi32(0x800000)));
    __m512i sh = _mm512_add_epi32(_mm512_sub_epi32(v.emin_b, _mm512_max_epu32(e, one)), v.d);
    __m512i kq = _mm512_srlv_epi32(sig, sh);
    __m512i rem = _mm512_sub_epi32(sig, _mm512_sllv_epi32(kq, sh));
    __m512i frac = _mm512_or_si512(_mm512_sllv_epi32(rem, _mm512_sub_epi32(v.c32, sh)),
                                   _mm512_srlv_epi32(rem, _mm512_sub_epi32(sh, v.c32)));
    kq = _mm512_mask_add_epi32(kq, _mm512_cmplt_epu32_mask(r, frac), kq, one);
    __m512i mb = _mm512_castps_si512(_mm512_mul_ps(_mm512_cvtepi32_ps(kq), v.sub_scale));
    __m512i rs = _mm512_or_si512(mb, _mm512_maskz_mov_epi32(_mm512_test_epi32_mask(mb, mb), _mm512_and_si512(a, v.sign)));
    res = _mm512_mask_mov_epi32(res, tiny, rs);
  }
  return res;
}

PEPPP_AVX512 inline __m512i hash_v16(__m512i c, __m512i k0, __m512i k1) {
  return mix32_v16(_mm512_xor_si512(mix32_v16(_mm512_xor_si512(c, k0)), k1));
}

PEPPP_AVX512 void stochastic_blocks_avx512(const float* in, float* out, int64_t n, int64_t b0, int64_t b1,
                                           uint64_t seed, const FloatSpec& s) {
  const Vec16Spec v = vec16_spec(s);
  const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t start = b * kBlock;
    const int64_t len = std::min(kBlock, n - start);
    const float* ip = in + start;
    float* op = out + start;
    const Key k = block_key(seed, static_cast<uint64_t>(b));
    const __m512i k0 = _mm512_set1_epi32(static_cast<int>(k.k0));
    const __m512i k1 = _mm512_set1_epi32(static_cast<int>(k.k1));
    const __m512i c = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(block_counter(b))), lanes);
    __m512i s0 = hash_v16(c, k0, k1);
    __m512i s1 = hash_v16(_mm512_add_epi32(c, _mm512_set1_epi32(16)), k0, k1);
    __m512i s2 = hash_v16(_mm512_add_epi32(c, _mm512_set1_epi32(32)), k0, k1);
    __m512i s3 = hash_v16(_mm512_add_epi32(c, _mm512_set1_epi32(48)), k0, k1);
    for (int64_t j = 0; j < len; j += 16) {
      // xoshiro128++ on 16 lanes
      __m512i r = _mm512_add_epi32(_mm512_rol_epi32(_mm512_add_epi32(s0, s3), 7), s0);
      __m512i t = _mm512_slli_epi32(s1, 9);
      s2 = _mm512_xor_si512(s2, s0);
      s3 = _mm512_xor_si512(s3, s1);
      s1 = _mm512_xor_si512(s1, s2);
      s0 = _mm512_xor_si512(s0, s3);
      s2 = _mm512_xor_si512(s2, t);
      s3 = _mm512_rol_epi32(s3, 11);
      const __mmask16 m = len - j >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (len - j)) - 1u);
      __m512i a = _mm512_castps_si512(_mm512_maskz_loadu_ps(m, ip + j));
      _mm512_mask_storeu_ps(op + j, m, _mm512_castsi512_ps(stochastic_v16(a, r, v)));
    }
  }
}

int cpu_isa() {
  static const int level = __builtin_cpu_supports("avx512f")                                     ? 2
                           : (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) ? 1
                                                                                                 : 0;
  return level;
}
#else
int cpu_isa() { return 0; }
#endif

// 0 scalar, 1 AVX2, 2 AVX-512: the best the CPU has, capped by set_isa (tests compare them all).
int g_isa_cap = 2;

int active_isa() { return std::min(cpu_isa(), g_isa_cap); }

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
  const int isa = active_isa();
  at::parallel_for(0, in.numel(), kGrain, [&](int64_t b, int64_t e) {
#ifdef PEPPP_X86
    if (isa == 2) return nearest_avx512(ip + b, op + b, e - b, s);
    if (isa == 1) return nearest_avx2(ip + b, op + b, e - b, s);
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
  const int64_t n = in.numel();
  const int isa = active_isa();
  // whole blocks per thread, so every element meets the same random word whatever the split
  at::parallel_for(0, (n + kBlock - 1) / kBlock, kGrain / kBlock, [&](int64_t b0, int64_t b1) {
#ifdef PEPPP_X86
    if (isa == 2) return stochastic_blocks_avx512(ip, op, n, b0, b1, key, s);
    if (isa == 1) return stochastic_blocks_avx2(ip, op, n, b0, b1, key, s);
#endif
    stochastic_blocks_scalar(ip, op, n, b0, b1, key, s);
  });
  return out;
}

void set_isa(int64_t cap) {
  TORCH_CHECK(cap >= 0 && cap <= 2, "isa cap must be 0 (scalar), 1 (AVX2) or 2 (AVX-512), got ", cap);
  g_isa_cap = static_cast<int>(cap);
}

std::string isa_name() {
  static const char* names[] = {"scalar", "avx2", "avx512"};
  return names[active_isa()];
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("float_quantize_nearest", &float_quantize_nearest, "eXmY nearest (qtorch-exact)", py::arg("x"),
        py::arg("exp"), py::arg("man"));
  m.def("float_quantize_stochastic", &float_quantize_stochastic, "eXmY stochastic, counter-based RNG",
        py::arg("x"), py::arg("exp"), py::arg("man"), py::arg("seed") = py::none());
  m.def("set_isa", &set_isa, "cap the instruction set: 0 scalar, 1 AVX2, 2 AVX-512 (tests compare them)");
  m.def("isa", &isa_name, "the instruction set the kernels use now");
}
