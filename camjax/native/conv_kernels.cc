// Direct stride-1 convolution kernels for XLA:CPU, called through the XLA FFI.
//
// Layouts: input NHWC, kernel HWIO, output NHWC, float32, any kernel size and
// padding. Two operations:
//   camjax_conv_fwd:  y[n,h,w,o]  = sum_{i,j,c} x[n, h+i-pt, w+j-pl, c] * k[i,j,c,o]
//   camjax_conv_dw:   dk[i,j,c,o] = sum_{n,h,w} x[n, h+i-pt, w+j-pl, c] * g[n,h,w,o]
// (x read as zero outside the image). The input gradient is camjax_conv_fwd on g
// with the kernel flipped and transposed (built in Python).
//
// Why: XLA:CPU builds the weight gradient as a convolution whose "kernel" is the
// whole image, which its libraries run at a fraction of the machine's speed, plus
// two transposed copies of 16 MB tensors. Here every operand is read in place.
//
// Scheme: the work is split into chunks (one image, a band of output rows). Each
// chunk first copies its input rows, zero-padded, into a small per-thread buffer
// that stays in the core's cache; the inner loops are then branch-free register
// tiles of AVX-512 fused multiply-adds: output positions x 16-wide output-channel
// vectors for the forward, (kernel column, input channel) x output-channel vectors
// for the weight gradient. Chunks are shared among XLA's intra-op threads through
// an atomic counter; weight-gradient partial sums are per participant and added
// in a fixed order, so results do not depend on scheduling.

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

extern "C" int camjax_native_isa() {
#if defined(__AVX512F__)
  return 512;
#else
  return 0;
#endif
}

#if defined(__AVX512F__)

namespace {

constexpr int64_t kBandBytes = 384 * 1024;  // per-chunk working set, fits in L2
constexpr int64_t kKernelSliceBytes = 64 * 1024;  // forward: kernel slice reused per band

struct Geometry {
  int64_t n, h, w, c;  // input
  int64_t kh, kw, o;   // kernel
  int64_t ho, wo;      // output
  int64_t pt, pl;      // top / left padding (the rest follows from the sizes)
};

// x (n, h, w, c), kernel (kh, kw, c, o), output (n, ho, wo, o); nullopt if they don't fit.
template <typename Dims>
std::optional<Geometry> ConvGeometry(const Dims& x, const Dims& k, const Dims& y, int64_t pt,
                                     int64_t pl) {
  if (x.size() != 4 || k.size() != 4 || y.size() != 4 || k[2] != x[3] || y[0] != x[0] ||
      y[3] != k[3]) {
    return std::nullopt;
  }
  return Geometry{x[0], x[1], x[2], x[3], k[0], k[1], k[3], y[1], y[2], pt, pl};
}

inline __mmask16 LaneMask(int64_t remaining) {
  if (remaining >= 16) return 0xFFFF;
  if (remaining <= 0) return 0;
  return static_cast<__mmask16>((1u << remaining) - 1u);
}

// Rows [r0, r1) of the output need input rows r0 - pt .. r1 - 1 + kh - 1 - pt.
// Copy them into buf as (r1 - r0 + kh - 1) x (wo + kw - 1) x c, zero outside the image.
void CopyBand(const float* x, const Geometry& g, int64_t n, int64_t r0, int64_t r1,
              float* buf) {
  const int64_t rows = r1 - r0 + g.kh - 1;
  const int64_t wp = g.wo + g.kw - 1;
  const int64_t c = g.c;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t ih = r0 + r - g.pt;
    float* dst = buf + r * wp * c;
    if (ih < 0 || ih >= g.h) {
      std::memset(dst, 0, sizeof(float) * wp * c);
      continue;
    }
    const float* src = x + ((n * g.h + ih) * g.w) * c;
    const int64_t lo = std::max<int64_t>(0, g.pl);          // first column inside
    const int64_t hi = std::min<int64_t>(wp, g.w + g.pl);   // one past the last
    if (lo > 0) std::memset(dst, 0, sizeof(float) * std::min(lo, wp) * c);
    if (hi > lo) {
      std::memcpy(dst + lo * c, src + (lo - g.pl) * c, sizeof(float) * (hi - lo) * c);
    }
    const int64_t tail = wp - std::max(hi, lo);
    if (tail > 0) std::memset(dst + std::max(hi, lo) * c, 0, sizeof(float) * tail * c);
  }
}

int64_t BandRows(const Geometry& g) {
  const int64_t per_row = 4 * ((g.wo + g.kw - 1) * g.c + g.wo * g.o);
  return std::clamp<int64_t>(kBandBytes / std::max<int64_t>(per_row, 1), 1, g.ho);
}

// Runs body(task) for task in [0, tasks) on the caller and on XLA's intra-op pool.
// Tasks are claimed through an atomic counter, so a pool thread that starts late
// finds no work and returns; the caller waits only for claimed tasks, which are run
// by threads that are awake, so this cannot deadlock when the caller is itself a
// pool thread.
template <typename Body>
void ParallelFor(ffi::ThreadPool& pool, int64_t tasks, Body body) {
  struct Shared {
    std::atomic<int64_t> next{0}, done{0};
    std::mutex mu;
    std::condition_variable cv;
  };
  auto shared = std::make_shared<Shared>();
  const int64_t helpers = std::min<int64_t>(std::max<int64_t>(1, pool.num_threads()), tasks) - 1;
  auto work = [shared, tasks, body]() {
    int64_t finished = 0;
    for (int64_t t; (t = shared->next.fetch_add(1)) < tasks;) {
      body(t);
      ++finished;
    }
    if (finished && shared->done.fetch_add(finished) + finished == tasks) {
      std::lock_guard<std::mutex> lock(shared->mu);
      shared->cv.notify_all();
    }
  };
  for (int64_t t = 0; t < helpers; ++t) pool.Schedule(decltype(work)(work));
  work();
  std::unique_lock<std::mutex> lock(shared->mu);
  shared->cv.wait(lock, [&] { return shared->done.load() == tasks; });
}

// ---------------------------------------------------------------- forward ----

// Input channels [c0, c1) of the sum over taps and channels.
struct Channels {
  int64_t c0, c1;
  bool first;  // start from zero; otherwise add to the partial sum already in the output
};

// PB consecutive output positions x OB output-channel vectors.
template <int PB, int OB>
inline void FwdTile(const float* band, int64_t wp, const float* k, const Geometry& g,
                    int64_t r, int64_t w0, int64_t o0, Channels ch, float* out_row) {
  __m512 acc[PB][OB];
  __mmask16 mask[OB];
  #pragma GCC unroll 32
  for (int oo = 0; oo < OB; ++oo) mask[oo] = LaneMask(g.o - o0 - 16 * oo);
  #pragma GCC unroll 32
  for (int p = 0; p < PB; ++p)
    #pragma GCC unroll 32
    for (int oo = 0; oo < OB; ++oo)
      acc[p][oo] = ch.first ? _mm512_setzero_ps()
                            : _mm512_maskz_loadu_ps(mask[oo],
                                                    out_row + (w0 + p) * g.o + o0 + 16 * oo);
  for (int64_t i = 0; i < g.kh; ++i) {
    for (int64_t j = 0; j < g.kw; ++j) {
      const float* xs = band + ((r + i) * wp + w0 + j) * g.c;
      const float* ks = k + ((i * g.kw + j) * g.c) * g.o + o0;
      for (int64_t c = ch.c0; c < ch.c1; ++c) {
        __m512 kv[OB];
        #pragma GCC unroll 32
        for (int oo = 0; oo < OB; ++oo)
          kv[oo] = _mm512_maskz_loadu_ps(mask[oo], ks + c * g.o + 16 * oo);
        #pragma GCC unroll 32
        for (int p = 0; p < PB; ++p) {
          const __m512 xv = _mm512_set1_ps(xs[p * g.c + c]);
          #pragma GCC unroll 32
          for (int oo = 0; oo < OB; ++oo) acc[p][oo] = _mm512_fmadd_ps(xv, kv[oo], acc[p][oo]);
        }
      }
    }
  }
  #pragma GCC unroll 32
  for (int p = 0; p < PB; ++p)
    #pragma GCC unroll 32
    for (int oo = 0; oo < OB; ++oo)
      _mm512_mask_storeu_ps(out_row + (w0 + p) * g.o + o0 + 16 * oo, mask[oo], acc[p][oo]);
}

template <int OB, int PB>
void FwdRowTail(int64_t pb, const float* band, int64_t wp, const float* k, const Geometry& g,
                int64_t r, int64_t w0, int64_t o0, Channels ch, float* out_row) {
  if constexpr (PB > 0) {
    if (pb == PB) return FwdTile<PB, OB>(band, wp, k, g, r, w0, o0, ch, out_row);
    return FwdRowTail<OB, PB - 1>(pb, band, wp, k, g, r, w0, o0, ch, out_row);
  }
}

template <int OB>
void FwdRows(const float* band, const float* k, const Geometry& g, int64_t rows,
             float* out) {
  constexpr int PB = 24 / OB;
  const int64_t wp = g.wo + g.kw - 1;
  // Input channels in blocks whose slice of the kernel (all taps, OB vectors of output
  // channels) stays in L1/L2 while every position of the band uses it.
  const int64_t block = std::max<int64_t>(1, kKernelSliceBytes / (g.kh * g.kw * OB * 64));
  for (int64_t o0 = 0; o0 < g.o; o0 += 16 * OB) {
    for (int64_t c0 = 0; c0 < g.c; c0 += block) {
      const Channels ch{c0, std::min(g.c, c0 + block), c0 == 0};
      for (int64_t r = 0; r < rows; ++r) {
        float* out_row = out + r * g.wo * g.o;
        int64_t w0 = 0;
        for (; w0 + PB <= g.wo; w0 += PB) {
          FwdTile<PB, OB>(band, wp, k, g, r, w0, o0, ch, out_row);
        }
        if (w0 < g.wo) {
          FwdRowTail<OB, PB - 1>(g.wo - w0, band, wp, k, g, r, w0, o0, ch, out_row);
        }
      }
    }
  }
}

ffi::Error ConvFwd(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> k,
                   ffi::ResultBuffer<ffi::F32> y, int64_t pt, int64_t pl) {
  const auto geometry = ConvGeometry(x.dimensions(), k.dimensions(), y->dimensions(), pt, pl);
  if (!geometry) {
    return ffi::Error::InvalidArgument("camjax_conv_fwd: shapes must be NHWC, HWIO, NHWC");
  }
  const Geometry g = *geometry;
  if (g.n == 0 || g.ho == 0 || g.wo == 0 || g.o == 0) return ffi::Error::Success();
  const int64_t band_rows = BandRows(g);
  const int64_t bands = (g.ho + band_rows - 1) / band_rows;
  const int64_t buf_floats = (band_rows + g.kh - 1) * (g.wo + g.kw - 1) * g.c;
  const float* xp = x.typed_data();
  const float* kp = k.typed_data();
  float* yp = y->typed_data();
  const int64_t o16 = (g.o + 15) / 16;
  auto body = [=](int64_t chunk) {
    thread_local std::vector<float> buf;
    if (static_cast<int64_t>(buf.size()) < buf_floats) buf.resize(buf_floats);
    const int64_t n = chunk / bands;
    const int64_t r0 = (chunk % bands) * band_rows;
    const int64_t r1 = std::min(g.ho, r0 + band_rows);
    CopyBand(xp, g, n, r0, r1, buf.data());
    float* out = yp + ((n * g.ho + r0) * g.wo) * g.o;
    if (o16 % 4 == 0) {
      FwdRows<4>(buf.data(), kp, g, r1 - r0, out);
    } else if (o16 % 2 == 0) {
      FwdRows<2>(buf.data(), kp, g, r1 - r0, out);
    } else {
      FwdRows<1>(buf.data(), kp, g, r1 - r0, out);
    }
  };
  ParallelFor(pool, g.n * bands, body);
  return ffi::Error::Success();
}

// -------------------------------------------------------- weight gradient ----

// JB kernel columns x CB input channels x OB output-channel vectors, accumulated over
// every position of the band into the participant's partial sum dk (kh, kw, c, o).
template <int JB, int CB, int OB>
void DwTile(const float* band, int64_t wp, const float* grad, const Geometry& g,
            int64_t rows, int64_t i, int64_t j0, int64_t c0, int64_t o0, float* dk) {
  __m512 acc[JB][CB][OB];
  __mmask16 mask[OB];
  #pragma GCC unroll 32
  for (int oo = 0; oo < OB; ++oo) mask[oo] = LaneMask(g.o - o0 - 16 * oo);
  #pragma GCC unroll 32
  for (int jj = 0; jj < JB; ++jj)
    #pragma GCC unroll 32
    for (int cc = 0; cc < CB; ++cc)
      #pragma GCC unroll 32
      for (int oo = 0; oo < OB; ++oo)
        acc[jj][cc][oo] = _mm512_maskz_loadu_ps(
            mask[oo], dk + ((i * g.kw + j0 + jj) * g.c + c0 + cc) * g.o + o0 + 16 * oo);
  for (int64_t r = 0; r < rows; ++r) {
    const float* xs = band + ((r + i) * wp + j0) * g.c + c0;
    const float* gs = grad + r * g.wo * g.o + o0;
    for (int64_t w = 0; w < g.wo; ++w) {
      __m512 gv[OB];
      #pragma GCC unroll 32
      for (int oo = 0; oo < OB; ++oo)
        gv[oo] = _mm512_maskz_loadu_ps(mask[oo], gs + w * g.o + 16 * oo);
      #pragma GCC unroll 32
      for (int jj = 0; jj < JB; ++jj) {
        #pragma GCC unroll 32
        for (int cc = 0; cc < CB; ++cc) {
          const __m512 xv = _mm512_set1_ps(xs[(w + jj) * g.c + cc]);
          #pragma GCC unroll 32
          for (int oo = 0; oo < OB; ++oo)
            acc[jj][cc][oo] = _mm512_fmadd_ps(xv, gv[oo], acc[jj][cc][oo]);
        }
      }
    }
  }
  #pragma GCC unroll 32
  for (int jj = 0; jj < JB; ++jj)
    #pragma GCC unroll 32
    for (int cc = 0; cc < CB; ++cc)
      #pragma GCC unroll 32
      for (int oo = 0; oo < OB; ++oo)
        _mm512_mask_storeu_ps(dk + ((i * g.kw + j0 + jj) * g.c + c0 + cc) * g.o + o0 + 16 * oo,
                              mask[oo], acc[jj][cc][oo]);
}

template <int JB, int OB, int CB>
void DwChannelTail(int64_t cb, const float* band, int64_t wp, const float* grad,
                   const Geometry& g, int64_t rows, int64_t i, int64_t j0, int64_t c0,
                   int64_t o0, float* dk) {
  if constexpr (CB > 0) {
    if (cb == CB) return DwTile<JB, CB, OB>(band, wp, grad, g, rows, i, j0, c0, o0, dk);
    return DwChannelTail<JB, OB, CB - 1>(cb, band, wp, grad, g, rows, i, j0, c0, o0, dk);
  }
}

template <int JB, int OB>
void DwBand(const float* band, const float* grad, const Geometry& g, int64_t rows, float* dk) {
  constexpr int CB = std::min(16, 24 / (JB * OB));
  const int64_t wp = g.wo + g.kw - 1;
  for (int64_t i = 0; i < g.kh; ++i) {
    for (int64_t j0 = 0; j0 < g.kw; j0 += JB) {
      for (int64_t c0 = 0; c0 < g.c; c0 += CB) {
        const int64_t cb = std::min<int64_t>(CB, g.c - c0);
        for (int64_t o0 = 0; o0 < g.o; o0 += 16 * OB) {
          if (cb == CB) {
            DwTile<JB, CB, OB>(band, wp, grad, g, rows, i, j0, c0, o0, dk);
          } else {
            DwChannelTail<JB, OB, CB - 1>(cb, band, wp, grad, g, rows, i, j0, c0, o0, dk);
          }
        }
      }
    }
  }
}

ffi::Error ConvDw(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> grad,
                  ffi::ResultBuffer<ffi::F32> dk, int64_t pt, int64_t pl) {
  const auto geometry =
      ConvGeometry(x.dimensions(), dk->dimensions(), grad.dimensions(), pt, pl);
  if (!geometry) {
    return ffi::Error::InvalidArgument("camjax_conv_dw: shapes must be NHWC, NHWC, HWIO");
  }
  const Geometry g = *geometry;
  float* out = dk->typed_data();
  const int64_t k_floats = g.kh * g.kw * g.c * g.o;
  std::memset(out, 0, sizeof(float) * k_floats);
  if (g.n == 0 || g.ho == 0 || g.wo == 0 || k_floats == 0) return ffi::Error::Success();
  const int64_t band_rows = BandRows(g);
  const int64_t bands = (g.ho + band_rows - 1) / band_rows;
  const int64_t buf_floats = (band_rows + g.kh - 1) * (g.wo + g.kw - 1) * g.c;
  const int64_t chunks = g.n * bands;
  // A fixed number of slices of consecutive chunks, each summed into its own partial
  // and the partials added in slice order: the result depends on the thread count
  // only, not on which thread ran what, so equal runs give bitwise equal gradients.
  const int64_t slices = std::min<int64_t>(std::max<int64_t>(1, pool.num_threads()), chunks);
  std::vector<float> partials((slices - 1) * k_floats, 0.0f);
  const float* xp = x.typed_data();
  const float* gp = grad.typed_data();
  const int64_t o16 = (g.o + 15) / 16;
  const bool wide = g.c < 8 && g.kw == 3;  // few channels: tile over kernel columns too
  float* partial_base = partials.data();
  auto body = [=](int64_t slice) {
    std::vector<float> buf(buf_floats);
    float* part = slice == 0 ? out : partial_base + (slice - 1) * k_floats;
    for (int64_t chunk = slice * chunks / slices; chunk < (slice + 1) * chunks / slices;
         ++chunk) {
      const int64_t n = chunk / bands;
      const int64_t r0 = (chunk % bands) * band_rows;
      const int64_t r1 = std::min(g.ho, r0 + band_rows);
      CopyBand(xp, g, n, r0, r1, buf.data());
      const float* gr = gp + ((n * g.ho + r0) * g.wo) * g.o;
      if (wide) {
        if (o16 % 2 == 0) {
          DwBand<3, 2>(buf.data(), gr, g, r1 - r0, part);
        } else {
          DwBand<3, 1>(buf.data(), gr, g, r1 - r0, part);
        }
      } else if (o16 % 4 == 0) {
        DwBand<1, 4>(buf.data(), gr, g, r1 - r0, part);
      } else if (o16 % 2 == 0) {
        DwBand<1, 2>(buf.data(), gr, g, r1 - r0, part);
      } else {
        DwBand<1, 1>(buf.data(), gr, g, r1 - r0, part);
      }
    }
  };
  ParallelFor(pool, slices, body);
  for (int64_t s = 1; s < slices; ++s) {
    const float* part = partials.data() + (s - 1) * k_floats;
    for (int64_t e = 0; e < k_floats; ++e) out[e] += part[e];
  }
  return ffi::Error::Success();
}

// ------------------------------------------------------ batch statistics ----

constexpr int64_t kStatRows = 256;  // rows per partial sum (float within, double across)

// Per-channel sums over the rows of an (R, C) array, in one pass:
//   forward  (dy == nullptr): s0 = sum(x),  s1 = sum(x * x)
//   backward:                 s0 = sum(g),  s1 = sum(g * (x - mean)),
//   g = dy, or dy where (x - mean) * coef + bias > 0 when relu (ReLU's mask, 0 at 0).
// Partials cover fixed row blocks and are added in block order in double precision,
// so the result does not depend on the thread count.
void ChannelSums(ffi::ThreadPool& pool, const float* x, const float* dy, const float* mean,
                 const float* coef, const float* bias, bool relu, int64_t rows, int64_t c,
                 float* out) {
  const int64_t blocks = std::max<int64_t>(1, (rows + kStatRows - 1) / kStatRows);
  std::vector<float> partial(blocks * 2 * c);
  float* part_base = partial.data();
  const int64_t cv = (c + 15) / 16;
  ParallelFor(pool, blocks, [=](int64_t b) {
    float* part = part_base + b * 2 * c;
    const int64_t r0 = b * kStatRows;
    const int64_t r1 = std::min(rows, r0 + kStatRows);
    for (int64_t v = 0; v < cv; ++v) {
      const __mmask16 m = LaneMask(c - 16 * v);
      __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
      __m512 t0 = _mm512_setzero_ps(), t1 = _mm512_setzero_ps();  // second chain
      if (dy == nullptr) {
        int64_t r = r0;
        for (; r + 1 < r1; r += 2) {
          const __m512 a = _mm512_maskz_loadu_ps(m, x + r * c + 16 * v);
          const __m512 b2 = _mm512_maskz_loadu_ps(m, x + (r + 1) * c + 16 * v);
          s0 = _mm512_add_ps(s0, a);
          s1 = _mm512_fmadd_ps(a, a, s1);
          t0 = _mm512_add_ps(t0, b2);
          t1 = _mm512_fmadd_ps(b2, b2, t1);
        }
        if (r < r1) {
          const __m512 a = _mm512_maskz_loadu_ps(m, x + r * c + 16 * v);
          s0 = _mm512_add_ps(s0, a);
          s1 = _mm512_fmadd_ps(a, a, s1);
        }
      } else {
        const __m512 mu = _mm512_maskz_loadu_ps(m, mean + 16 * v);
        const __m512 k = _mm512_maskz_loadu_ps(m, coef + 16 * v);
        const __m512 bb = _mm512_maskz_loadu_ps(m, bias + 16 * v);
        const __m512 zero = _mm512_setzero_ps();
        for (int64_t r = r0; r < r1; ++r) {
          const __m512 xc = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + r * c + 16 * v), mu);
          __m512 g = _mm512_maskz_loadu_ps(m, dy + r * c + 16 * v);
          if (relu) {
            // multiply, then add (no fused rounding): the mask XLA's ReLU would give
            const __mmask16 on =
                _mm512_cmp_ps_mask(_mm512_add_ps(_mm512_mul_ps(xc, k), bb), zero, _CMP_GT_OQ);
            g = _mm512_maskz_mov_ps(on, g);
          }
          if (r & 1) {
            t0 = _mm512_add_ps(t0, g);
            t1 = _mm512_fmadd_ps(g, xc, t1);
          } else {
            s0 = _mm512_add_ps(s0, g);
            s1 = _mm512_fmadd_ps(g, xc, s1);
          }
        }
      }
      _mm512_mask_storeu_ps(part + 16 * v, m, _mm512_add_ps(s0, t0));
      _mm512_mask_storeu_ps(part + c + 16 * v, m, _mm512_add_ps(s1, t1));
    }
  });
  for (int64_t e = 0; e < 2 * c; ++e) {
    double total = 0.0;
    for (int64_t b = 0; b < blocks; ++b) total += partial[b * 2 * c + e];
    out[e] = static_cast<float>(total);
  }
}

ffi::Error BatchStats(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x,
                      ffi::ResultBuffer<ffi::F32> out) {
  const auto xd = x.dimensions();
  const int64_t c = xd.size() ? xd.back() : 0;
  if (c == 0 || out->element_count() != static_cast<size_t>(2 * c)) {
    return ffi::Error::InvalidArgument("camjax_batch_stats: result must be (2, channels)");
  }
  const int64_t rows = static_cast<int64_t>(x.element_count()) / c;
  ChannelSums(pool, x.typed_data(), nullptr, nullptr, nullptr, nullptr, false, rows, c,
              out->typed_data());
  return ffi::Error::Success();
}

ffi::Error BatchGradStats(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> dy,
                          ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> mean,
                          ffi::Buffer<ffi::F32> coef, ffi::Buffer<ffi::F32> bias,
                          ffi::ResultBuffer<ffi::F32> out, bool relu) {
  const auto xd = x.dimensions();
  const int64_t c = xd.size() ? xd.back() : 0;
  if (c == 0 || dy.element_count() != x.element_count() ||
      mean.element_count() != static_cast<size_t>(c) ||
      coef.element_count() != static_cast<size_t>(c) ||
      bias.element_count() != static_cast<size_t>(c) ||
      out->element_count() != static_cast<size_t>(2 * c)) {
    return ffi::Error::InvalidArgument("camjax_batch_grad_stats: inconsistent shapes");
  }
  const int64_t rows = static_cast<int64_t>(x.element_count()) / c;
  ChannelSums(pool, x.typed_data(), dy.typed_data(), mean.typed_data(), coef.typed_data(),
              bias.typed_data(), relu, rows, c, out->typed_data());
  return ffi::Error::Success();
}

}  // namespace

// Both convolutions: (activation, kernel or gradient) -> result, and the padding.
static auto ConvBinding() {
  return ffi::Ffi::Bind()
      .Ctx<ffi::ThreadPool>()
      .Arg<ffi::Buffer<ffi::F32>>()
      .Arg<ffi::Buffer<ffi::F32>>()
      .Ret<ffi::Buffer<ffi::F32>>()
      .Attr<int64_t>("pad_top")
      .Attr<int64_t>("pad_left");
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(camjax_conv_fwd, ConvFwd, ConvBinding());
XLA_FFI_DEFINE_HANDLER_SYMBOL(camjax_conv_dw, ConvDw, ConvBinding());

XLA_FFI_DEFINE_HANDLER_SYMBOL(camjax_batch_stats, BatchStats,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(camjax_batch_grad_stats, BatchGradStats,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<bool>("relu"));

#endif  // __AVX512F__
