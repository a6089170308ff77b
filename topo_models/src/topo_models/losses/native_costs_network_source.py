"""C source of the one-call network costs (compiled after ``native_costs_source.PAIR_SOURCE``,
whose static pair kernels it calls).

``spatial_costs`` runs every layer's proximity and transport as tasks on the OpenMP team and
sums them, in a fixed order, into one weighted total and its final gradients, written into one
buffer per parameter (so that each can become that parameter's ``.grad`` as it is).
"""

NETWORK_SOURCE = r"""
/* The scratch floats of each task of network_costs (in task order: Lp proximity layers, then
   Lt transport layers): its own gradient columns and the pair loop's buffers. */
static long task_work(long t, long dim, long Lp, const long* size, const long* prox,
                      const long* post, const long* pre) {
    if (t < Lp) return (dim + 2) * size[prox[t]];
    const long N = size[post[t - Lp]], M = size[pre[t - Lp]];
    return dim * (N + M) + 3 * M;
}

/* Both costs of a network. points[u]: (size[u], dim) rows of U position tensors. Proximity
   over the Lp owners prox[l]; transport over Lt layers (post[l], pre[l], weights[l]
   (N, M * K[l]) rows). Writes values = [P_1..P_Lp, T_1..T_Lt, mean P, mean T] (a mean of no
   layer is 0), *total = alpha * mean P + beta * mean T, and the gradients of *total: grad[u]
   (size[u], dim) rows for the points of owner u and wgrad[l] for the weights.
   Each layer is a task with its own gradient columns, run on the threads of the OpenMP team
   (torch's, when torch's libgomp is the one loaded) largest first, then summed in layer
   order: the numbers do not depend on the number of threads or on which ran what.
   work: dim * sum size + the sum of task_work floats. */
static void network_costs(long U, const float** points, const long* size, long dim, float eps,
                          long Lp, const long* prox, double alpha, long Lt, const long* post,
                          const long* pre, const float** weights, const long* K, int norm,
                          double beta, float** grad, float** wgrad, float* work, float* values,
                          float* total) {
    long count = 0, start[64], offset[128], order[128], cost[128];
    double sums[128];
    const long T = Lp + Lt;
    for (long u = 0; u < U; ++u) { start[u] = count; count += size[u]; }
    float* cols = work;
    for (long u = 0; u < U; ++u) to_columns(points[u], size[u], dim, cols, count, start[u]);
    long at = dim * count;
    for (long t = 0; t < T; ++t) {
        offset[t] = at;
        at += task_work(t, dim, Lp, size, prox, post, pre);
        /* pair count, an exponential weighing about twice a square root */
        cost[t] = t < Lp ? size[prox[t]] * size[prox[t]]
                         : size[post[t - Lp]] * size[pre[t - Lp]] / 2;
        long k = t;
        for (; k > 0 && cost[order[k - 1]] < cost[t]; --k) order[k] = order[k - 1];
        order[k] = t;
    }
    long next = 0;
    #pragma omp parallel
    for (;;) {
        const long k = __atomic_fetch_add(&next, 1, __ATOMIC_RELAXED);
        if (k >= T) break;
        const long t = order[k];
        float* own = work + offset[t];
        if (t < Lp) {
            const long u = prox[t], m = size[u];
            memset(own, 0, sizeof(float) * dim * m);
            sums[t] = proximity_pairs(cols + start[u], count, m, dim, eps, own, m, own + dim * m,
                                      own + dim * m + m);
        } else {
            const long l = t - Lp, N = size[post[l]], M = size[pre[l]];
            const double inv = 1.0 / ((double)N * (double)M);
            float* scratch = own + dim * (N + M);
            memset(own, 0, sizeof(float) * dim * (N + M));
            sums[t] = inv * transport_pairs(
                cols + start[post[l]], cols + start[pre[l]], count, N, M, dim, weights[l],
                K[l], norm, eps, (float)(beta * inv / (double)Lt), own, N, own + dim * N, M,
                wgrad[l], scratch, scratch + M, scratch + 2 * M);
        }
    }
    const double diagonal = exp(-sqrt((double)eps));
    double mean_p = 0.0, mean_t = 0.0;
    for (long u = 0; u < U; ++u) memset(grad[u], 0, sizeof(float) * dim * size[u]);
    for (long l = 0; l < Lp; ++l) {
        const long u = prox[l], m = size[u];
        const double mm = (double)m * (double)m;
        values[l] = (float)((sums[l] + (double)m * diagonal) / mm);
        mean_p += values[l] / (double)Lp;
        add_rows(work + offset[l], m, m, dim, (float)(2.0 * alpha / ((double)Lp * mm)), grad[u],
                 0);
    }
    for (long l = 0; l < Lt; ++l) {
        const long N = size[post[l]], M = size[pre[l]];
        const float* own = work + offset[Lp + l];
        values[Lp + l] = (float)sums[Lp + l];
        mean_t += values[Lp + l] / (double)Lt;
        add_rows(own, N, N, dim, 1.0f, grad[post[l]], 0);
        add_rows(own + dim * N, M, M, dim, 1.0f, grad[pre[l]], 0);
    }
    values[Lp + Lt] = (float)mean_p;
    values[Lp + Lt + 1] = (float)mean_t;
    *total = (float)(alpha * mean_p + beta * mean_t);
}

/* network_costs with its arguments packed, so that a call from Python converts five:
   layout = [U, dim, Lp, Lt, norm, size[U], prox[Lp], post[Lt], pre[Lt], K[Lt]],
   constants = [eps, alpha, beta], tensors = [points[U], weights[Lt], grad[U], wgrad[Lt], total]. */
void spatial_costs(const long* layout, const double* constants, void** tensors, float* work,
                   float* values) {
    const long U = layout[0], dim = layout[1], Lp = layout[2], Lt = layout[3];
    const long* size = layout + 5;
    const long* prox = size + U;
    const long* post = prox + Lp;
    const long* pre = post + Lt;
    const long* K = pre + Lt;
    void** grads = tensors + U + Lt;
    network_costs(U, (const float**)tensors, size, dim, (float)constants[0], Lp, prox,
                  constants[1], Lt, post, pre, (const float**)(tensors + U), K, (int)layout[4],
                  constants[2], (float**)grads, (float**)(grads + U), work, values,
                  (float*)grads[U + Lt]);
}

/* The work floats spatial_costs needs for this layout. */
long spatial_costs_work(const long* layout) {
    const long U = layout[0], dim = layout[1], Lp = layout[2], Lt = layout[3];
    const long* size = layout + 5;
    long floats = 0;
    for (long u = 0; u < U; ++u) floats += dim * size[u];
    for (long t = 0; t < Lp + Lt; ++t)
        floats += task_work(t, dim, Lp, size, size + U, size + U + Lp, size + U + Lp + Lt);
    return floats;
}
"""
