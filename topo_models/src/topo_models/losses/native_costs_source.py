"""C source of the native spatial costs (compiled by ``native_costs.native_library``).

One job: the arithmetic, so that the loader, the cache and the autograd wrappers in
``native_costs`` stay readable. Single-threaded, float32, vectorised by the compiler; every
function writes values and unscaled gradients into buffers the caller allocates.
"""

C_SOURCE = r"""
#include <math.h>
#include <string.h>

/* Transpose rows (n, dim) into columns (dim, ld) starting at column off. */
static void to_columns(const float* rows, long n, long dim, float* cols, long ld, long off) {
    for (long i = 0; i < n; ++i)
        for (long a = 0; a < dim; ++a) cols[a * ld + off + i] = rows[i * dim + a];
}

/* Proximity of L layers. positions[l]: (n[l], dim) rows. grad: (sum n, dim) rows, written
   unscaled (dP_l/dp). work: 2 * dim * sum n + 2 * max n floats. values[l] = P_l.
   The pair matrix is symmetric: row i visits j > i only and updates both ends. */
void proximity(long L, const float** positions, const long* n, long dim, float eps,
               float* grad, float* work, float* values) {
    long total = 0, widest = 0;
    for (long l = 0; l < L; ++l) { total += n[l]; if (n[l] > widest) widest = n[l]; }
    float* cols = work;
    float* gcols = work + dim * total;
    float* d2 = gcols + dim * total;
    float* k = d2 + widest;
    long off = 0;
    for (long l = 0; l < L; ++l) {
        to_columns(positions[l], n[l], dim, cols, total, off);
        off += n[l];
    }
    memset(gcols, 0, sizeof(float) * dim * total);
    const float diagonal = expf(-sqrtf(eps));
    off = 0;
    for (long l = 0; l < L; ++l) {
        const long m = n[l];
        const float scale = 2.0f / ((float)m * (float)m);
        double sum = 0.0;
        if (dim == 2) { /* the common case, one fused pass per row */
            float* x0 = cols + off;
            float* x1 = cols + total + off;
            float* g0 = gcols + off;
            float* g1 = gcols + total + off;
            for (long i = 0; i + 1 < m; ++i) {
                const float a0 = x0[i], a1 = x1[i];
                float row = 0.0f, ksum = 0.0f, acc0 = 0.0f, acc1 = 0.0f;
                for (long j = i + 1; j < m; ++j) {
                    const float dx = x0[j] - a0, dy = x1[j] - a1;
                    const float r = sqrtf(dx * dx + dy * dy + eps);
                    const float e = expf(-fminf(r, 80.0f));
                    const float kj = e / r;
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
        } else for (long i = 0; i + 1 < m; ++i) {
            const long rest = m - i - 1;
            for (long j = 0; j < rest; ++j) d2[j] = eps;
            for (long a = 0; a < dim; ++a) {
                const float* x = cols + a * total + off + i + 1;
                const float xi = x[-1];
                for (long j = 0; j < rest; ++j) {
                    const float diff = x[j] - xi;
                    d2[j] += diff * diff;
                }
            }
            float row = 0.0f;
            for (long j = 0; j < rest; ++j) {
                const float r = sqrtf(d2[j]);
                const float e = expf(-fminf(r, 80.0f));
                row += e;
                k[j] = e / r;
            }
            sum += 2.0 * row;
            float ksum = 0.0f;
            for (long j = 0; j < rest; ++j) ksum += k[j];
            for (long a = 0; a < dim; ++a) {
                const float* x = cols + a * total + off + i + 1;
                float* gx = gcols + a * total + off + i + 1;
                const float xi = x[-1];
                float acc = 0.0f;
                for (long j = 0; j < rest; ++j) { acc += k[j] * x[j]; gx[j] += k[j] * (xi - x[j]); }
                gx[-1] += acc - ksum * xi;
            }
        }
        values[l] = (float)((sum + (double)m * diagonal) / ((double)m * (double)m));
        for (long i = 0; i < m; ++i)
            for (long a = 0; a < dim; ++a)
                grad[(off + i) * dim + a] = scale * gcols[a * total + off + i];
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
    float* h = d2 + widest;
    float* g = h + widest;
    for (long u = 0; u < U; ++u) to_columns(points[u], size[u], dim, cols, total, start[u]);
    long poff = 0, qoff = 0;
    for (long l = 0; l < L; ++l) {
        const long N = size[post[l]], M = size[pre[l]], kk = K[l];
        const float* P = cols + start[post[l]];
        const float* Q = cols + start[pre[l]];
        const float inv = 1.0f / ((float)N * (float)M);
        double sum = 0.0;
        for (long a = 0; a < dim; ++a)
            for (long j = 0; j < M; ++j) qgrad[a * sum_m + qoff + j] = 0.0f;
        for (long i = 0; i < N; ++i) {
            const float* w = weights[l] + i * M * kk;
            float* gw = wgrad[l] + i * M * kk;
            for (long j = 0; j < M; ++j) d2[j] = eps;
            for (long a = 0; a < dim; ++a) {
                const float* q = Q + a * total;
                const float p = P[a * total + i];
                for (long j = 0; j < M; ++j) { const float diff = q[j] - p; d2[j] += diff * diff; }
            }
            if (kk == 1) {
                if (norm == 1) for (long j = 0; j < M; ++j) g[j] = fabsf(w[j]);
                else for (long j = 0; j < M; ++j) g[j] = w[j] * w[j];
            } else {
                for (long j = 0; j < M; ++j) {
                    float s = 0.0f;
                    for (long c = 0; c < kk; ++c) {
                        const float v = w[j * kk + c];
                        s += norm == 1 ? fabsf(v) : v * v;
                    }
                    g[j] = s;
                }
            }
            float row = 0.0f, hsum = 0.0f;
            for (long j = 0; j < M; ++j) {
                const float r = sqrtf(d2[j]);
                row += r * g[j];
                h[j] = g[j] / r * inv;
                hsum += h[j];
                d2[j] = r * inv;
            }
            sum += row;
            if (kk == 1 && norm == 1) {
                for (long j = 0; j < M; ++j)
                    gw[j] = w[j] > 0.0f ? d2[j] : (w[j] < 0.0f ? -d2[j] : 0.0f);
            } else if (kk == 1) {
                for (long j = 0; j < M; ++j) gw[j] = 2.0f * d2[j] * w[j];
            } else {
                for (long j = 0; j < M; ++j) {
                    for (long c = 0; c < kk; ++c) {
                        const float v = w[j * kk + c];
                        gw[j * kk + c] = norm == 1
                            ? (v > 0.0f ? d2[j] : (v < 0.0f ? -d2[j] : 0.0f))
                            : 2.0f * d2[j] * v;
                    }
                }
            }
            for (long a = 0; a < dim; ++a) {
                const float* q = Q + a * total;
                const float p = P[a * total + i];
                float* gq = qgrad + a * sum_m + qoff;
                float acc = 0.0f;
                for (long j = 0; j < M; ++j) { acc += h[j] * q[j]; gq[j] += h[j] * (q[j] - p); }
                pgrad[a * sum_n + poff + i] = hsum * p - acc;
            }
        }
        values[l] = (float)(sum * (double)inv);
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
        for (long a = 0; a < dim; ++a) {
            float* op = out + start[post[l]] * dim + a;
            const float* gp = pgrad + a * sum_n + poff;
            for (long i = 0; i < N; ++i) op[i * dim] += s * gp[i];
            float* oq = out + start[pre[l]] * dim + a;
            const float* gq = qgrad + a * sum_m + qoff;
            for (long j = 0; j < M; ++j) oq[j * dim] += s * gq[j];
        }
        float* gw = wgrad[l];
        for (long e = 0; e < wsize[l]; ++e) gw[e] *= s;
        poff += N; qoff += M;
    }
}

"""
