"""C source of the native spatial costs (compiled by ``native_costs.native_library``).

One job: the arithmetic, so that the loader, the cache and the autograd wrappers in
``native_costs`` stay readable. Single-threaded, float32, vectorised by the compiler; every
function writes values and gradients into buffers the caller allocates.

Two static kernels do the pair loops (one layer each, coordinates as columns ``(dim, ld)``);
the exported functions here arrange layers around them keeping each layer's gradient apart
(``proximity`` / ``transport``, for a per-layer upstream gradient). ``PAIR_SOURCE`` is that
part; ``native_costs_network_source.NETWORK_SOURCE`` (compiled after it) sums every layer into
one weighted total and its final gradients in one call.
"""

PAIR_SOURCE = r"""
#include <math.h>
#include <stdint.h>
#include <string.h>

/* e^-r for 0 <= r <= 80, inlined so the pair loops stay in registers (libm's vector expf is a
   call per vector, which spills the loop's accumulators): r = n ln2 + f, |f| <= ln2 / 2, e^f
   by Cephes' expf polynomial (relative error ~1e-7), 2^n built in the exponent bits. */
static inline float exp_neg(float r) {
    const float x = -fminf(r, 80.0f);
    const float n = rintf(x * 1.44269504088896341f);
    const float f = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * f + 1.3981999507e-3f;
    p = p * f + 8.3334519073e-3f;
    p = p * f + 4.1665795894e-2f;
    p = p * f + 1.6666665459e-1f;
    p = p * f + 5.0000001201e-1f;
    p = p * f * f + f + 1.0f;
    const int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* Transpose rows (n, dim) into columns (dim, ld) starting at column off. */
static void to_columns(const float* rows, long n, long dim, float* cols, long ld, long off) {
    for (long i = 0; i < n; ++i)
        for (long a = 0; a < dim; ++a) cols[a * ld + off + i] = rows[i * dim + a];
}

/* rows[(off + i) * dim + a] += scale * cols[a * ld + i], i < n. */
static void add_rows(const float* cols, long ld, long n, long dim, float scale, float* rows,
                     long off) {
    for (long i = 0; i < n; ++i)
        for (long a = 0; a < dim; ++a) rows[(off + i) * dim + a] += scale * cols[a * ld + i];
}

/* One layer's proximity pairs. x: m points as columns (stride ld). Adds to g (columns, stride
   ldg) the unscaled sums sum_{j != i} k_ij (p_j - p_i), k = e^-r / r, and returns
   sum_{i != j} e^-r. The pair matrix is symmetric: row i visits j > i only and updates both
   ends. Scratch: d2, k, m floats each (dim != 2 only). */
static double proximity_pairs(const float* x, long ld, long m, long dim, float eps, float* g,
                              long ldg, float* d2, float* k) {
    double sum = 0.0;
    if (dim == 2) { /* the common case, one fused pass per row */
        const float *x0 = x, *x1 = x + ld;
        float *g0 = g, *g1 = g + ldg;
        for (long i = 0; i + 1 < m; ++i) {
            const float a0 = x0[i], a1 = x1[i];
            float row = 0.0f, ksum = 0.0f, acc0 = 0.0f, acc1 = 0.0f;
            for (long j = i + 1; j < m; ++j) {
                const float dx = x0[j] - a0, dy = x1[j] - a1;
                const float d = dx * dx + dy * dy + eps;
                const float inv = 1.0f / sqrtf(d);
                const float e = exp_neg(d * inv);
                const float kj = e * inv;
                row += e;
                ksum += kj;
                acc0 += kj * x0[j];
                acc1 += kj * x1[j];
                g0[j] -= kj * dx;
                g1[j] -= kj * dy;
            }
            sum += 2.0 * row;
            g0[i] += acc0 - ksum * a0;
            g1[i] += acc1 - ksum * a1;
        }
        return sum;
    }
    for (long i = 0; i + 1 < m; ++i) {
        const long rest = m - i - 1;
        for (long j = 0; j < rest; ++j) d2[j] = eps;
        for (long a = 0; a < dim; ++a) {
            const float* xa = x + a * ld + i + 1;
            const float xi = xa[-1];
            for (long j = 0; j < rest; ++j) {
                const float diff = xa[j] - xi;
                d2[j] += diff * diff;
            }
        }
        float row = 0.0f, ksum = 0.0f;
        for (long j = 0; j < rest; ++j) {
            const float inv = 1.0f / sqrtf(d2[j]);
            const float e = exp_neg(d2[j] * inv);
            row += e;
            k[j] = e * inv;
            ksum += k[j];
        }
        sum += 2.0 * row;
        for (long a = 0; a < dim; ++a) {
            const float* xa = x + a * ld + i + 1;
            float* ga = g + a * ldg + i + 1;
            const float xi = xa[-1];
            float acc = 0.0f;
            for (long j = 0; j < rest; ++j) { acc += k[j] * xa[j]; ga[j] += k[j] * (xi - xa[j]); }
            ga[-1] += acc - ksum * xi;
        }
    }
    return sum;
}

/* Transport of one post point (p0, p1) against M pre points q (dim 2, linear weights w):
   returns sum_j r_j g(w_j); adds scale * g / r * (q - p) into gq, writes scale * r g'(w) into
   gw and scale * sum_j g / r * (p - q_j) into out. Separate buffers (restrict) and a constant
   norm once inlined, so that the loop vectorises. */
static inline float transport_row2(const float* restrict q0, const float* restrict q1, float p0,
                                   float p1, const float* restrict w, long M, int norm, float eps,
                                   float scale, float* restrict gq0, float* restrict gq1,
                                   float* restrict gw, float* restrict out) {
    float row = 0.0f, hsum = 0.0f, acc0 = 0.0f, acc1 = 0.0f;
    for (long j = 0; j < M; ++j) {
        const float dx = q0[j] - p0, dy = q1[j] - p1;
        const float d = dx * dx + dy * dy + eps;
        const float inv = 1.0f / sqrtf(d);
        const float r = d * inv, v = w[j];
        const float gj = norm == 1 ? fabsf(v) : v * v;
        const float hj = gj * inv * scale;
        row += r * gj;
        hsum += hj;
        acc0 += hj * q0[j];
        acc1 += hj * q1[j];
        gq0[j] += hj * dx;
        gq1[j] += hj * dy;
        gw[j] = norm == 1 ? r * scale * ((float)(v > 0.0f) - (float)(v < 0.0f))
                          : 2.0f * r * scale * v;
    }
    out[0] = hsum * p0 - acc0;
    out[1] = hsum * p1 - acc1;
    return row;
}

/* One layer's transport pairs: N post points P and M pre points Q (columns, stride ld),
   weights w (N, M * kk) rows. Returns sum_ij r_ij g(w_ij); adds scale * dT'/dp into gP
   (columns, stride ldp) and scale * dT'/dq into gQ (stride ldq), T' = sum_ij r g, and writes
   scale * dT'/dw into gw. Scratch: d2, h, g, M floats each. norm: 1 (|w|) or 2 (w^2). */
static double transport_pairs(const float* P, const float* Q, long ld, long N, long M,
                              long dim, const float* weights, long kk, int norm, float eps,
                              float scale, float* gP, long ldp, float* gQ, long ldq,
                              float* wgrad, float* d2, float* h, float* g) {
    double sum = 0.0;
    for (long i = 0; i < N; ++i) {
        const float* w = weights + i * M * kk;
        float* gw = wgrad + i * M * kk;
        float row = 0.0f, hsum = 0.0f;
        if (dim == 2 && kk == 1) { /* the common case (linear layers), one fused pass */
            float out[2];
            sum += norm == 1
                ? transport_row2(Q, Q + ld, P[i], P[ld + i], w, M, 1, eps, scale, gQ, gQ + ldq,
                                 gw, out)
                : transport_row2(Q, Q + ld, P[i], P[ld + i], w, M, 2, eps, scale, gQ, gQ + ldq,
                                 gw, out);
            gP[i] += out[0];
            gP[ldp + i] += out[1];
            continue;
        }
        for (long j = 0; j < M; ++j) d2[j] = eps;
        for (long a = 0; a < dim; ++a) {
            const float* q = Q + a * ld;
            const float p = P[a * ld + i];
            for (long j = 0; j < M; ++j) { const float diff = q[j] - p; d2[j] += diff * diff; }
        }
        for (long j = 0; j < M; ++j) {
            float s = 0.0f;
            for (long c = 0; c < kk; ++c) {
                const float v = w[j * kk + c];
                s += norm == 1 ? fabsf(v) : v * v;
            }
            g[j] = s;
        }
        for (long j = 0; j < M; ++j) {
            const float inv = 1.0f / sqrtf(d2[j]);
            const float r = d2[j] * inv;
            row += r * g[j];
            h[j] = g[j] * inv * scale;
            hsum += h[j];
            d2[j] = r * scale;
        }
        sum += row;
        for (long j = 0; j < M; ++j) {
            for (long c = 0; c < kk; ++c) {
                const float v = w[j * kk + c];
                gw[j * kk + c] = norm == 1
                    ? d2[j] * ((float)(v > 0.0f) - (float)(v < 0.0f))
                    : 2.0f * d2[j] * v;
            }
        }
        for (long a = 0; a < dim; ++a) {
            const float* q = Q + a * ld;
            const float p = P[a * ld + i];
            float* gq = gQ + a * ldq;
            float acc = 0.0f;
            for (long j = 0; j < M; ++j) { acc += h[j] * q[j]; gq[j] += h[j] * (q[j] - p); }
            gP[a * ldp + i] += hsum * p - acc;
        }
    }
    return sum;
}

/* Proximity of L layers. positions[l]: (n[l], dim) rows. grad: (sum n, dim) rows, written
   unscaled (dP_l/dp). work: 2 * dim * sum n + 2 * max n floats. values[l] = P_l. */
void proximity(long L, const float** positions, const long* n, long dim, float eps,
               float* grad, float* work, float* values) {
    long total = 0, widest = 0;
    for (long l = 0; l < L; ++l) { total += n[l]; if (n[l] > widest) widest = n[l]; }
    float* cols = work;
    float* gcols = work + dim * total;
    float* d2 = gcols + dim * total;
    long off = 0;
    for (long l = 0; l < L; ++l) {
        to_columns(positions[l], n[l], dim, cols, total, off);
        off += n[l];
    }
    memset(gcols, 0, sizeof(float) * dim * total);
    memset(grad, 0, sizeof(float) * dim * total);
    const double diagonal = exp(-sqrt((double)eps));
    off = 0;
    for (long l = 0; l < L; ++l) {
        const long m = n[l];
        const double mm = (double)m * (double)m;
        const double sum = proximity_pairs(cols + off, total, m, dim, eps, gcols + off, total,
                                           d2, d2 + widest);
        values[l] = (float)((sum + (double)m * diagonal) / mm);
        add_rows(gcols + off, total, m, dim, (float)(2.0 / mm), grad, off);
        off += m;
    }
}

/* Multiply the rows of layer l of grad (sum n, dim) by upstream[l]. */
void scale_rows(long L, const long* n, long dim, const float* upstream, float* grad) {
    for (long l = 0; l < L; ++l) {
        const float s = upstream[l];
        for (long e = 0; e < n[l] * dim; ++e) grad[e] *= s;
        grad += n[l] * dim;
    }
}

/* Transport of L layers over U position tensors. points[u]: (size[u], dim) rows. Layer l
   connects post owner post[l] to pre owner pre[l] through weights[l], (N, M * K[l]) rows.
   Writes values[l], the unscaled position gradients of each layer into pgrad (dim, sum N) and
   qgrad (dim, sum M) columns, and the unscaled weight gradients into wgrad[l].
   work: dim * sum size + 3 * max M floats. norm: 1 (|w|) or 2 (w^2). */
void transport(long L, long U, const float** points, const long* size, long dim,
               const long* post, const long* pre, const float** weights, const long* K,
               int norm, float eps, float* pgrad, float* qgrad, float** wgrad, float* work,
               float* values) {
    long total = 0, widest = 0, sum_n = 0, sum_m = 0;
    long start[64];
    for (long u = 0; u < U; ++u) { start[u] = total; total += size[u]; }
    for (long l = 0; l < L; ++l) {
        sum_n += size[post[l]]; sum_m += size[pre[l]];
        if (size[pre[l]] > widest) widest = size[pre[l]];
    }
    float* cols = work;
    float* d2 = work + dim * total;
    for (long u = 0; u < U; ++u) to_columns(points[u], size[u], dim, cols, total, start[u]);
    memset(pgrad, 0, sizeof(float) * dim * sum_n);
    memset(qgrad, 0, sizeof(float) * dim * sum_m);
    long poff = 0, qoff = 0;
    for (long l = 0; l < L; ++l) {
        const long N = size[post[l]], M = size[pre[l]];
        const double inv = 1.0 / ((double)N * (double)M);
        const double sum = transport_pairs(
            cols + start[post[l]], cols + start[pre[l]], total, N, M, dim, weights[l], K[l],
            norm, eps, (float)inv, pgrad + poff, sum_n, qgrad + qoff, sum_m, wgrad[l], d2,
            d2 + widest, d2 + 2 * widest);
        values[l] = (float)(sum * inv);
        poff += N; qoff += M;
    }
}

/* Owner gradients (total, dim) rows = sum over layers of upstream[l] * (its pgrad, qgrad);
   wgrad[l] *= upstream[l]. */
void transport_backward(long L, long U, const long* size, long dim, const long* post,
                        const long* pre, const long* wsize, const float* upstream,
                        const float* pgrad, const float* qgrad, float** wgrad, float* out) {
    long total = 0, sum_n = 0, sum_m = 0;
    long start[64];
    for (long u = 0; u < U; ++u) { start[u] = total; total += size[u]; }
    for (long l = 0; l < L; ++l) { sum_n += size[post[l]]; sum_m += size[pre[l]]; }
    memset(out, 0, sizeof(float) * dim * total);
    long poff = 0, qoff = 0;
    for (long l = 0; l < L; ++l) {
        const long N = size[post[l]], M = size[pre[l]];
        const float s = upstream[l];
        add_rows(pgrad + poff, sum_n, N, dim, s, out, start[post[l]]);
        add_rows(qgrad + qoff, sum_m, M, dim, s, out, start[pre[l]]);
        float* gw = wgrad[l];
        for (long e = 0; e < wsize[l]; ++e) gw[e] *= s;
        poff += N; qoff += M;
    }
}
"""
