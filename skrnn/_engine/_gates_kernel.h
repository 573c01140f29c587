/* The backward gate loops of _gates.h, included once per floating type with
 * SKRNN_T (the type) and SKRNN_NAME(name) (name with the type's suffix)
 * defined; it undefines them again. No include guard: that is the point.
 *
 * Arrays are row-major with nt live rows: states and their gradients have
 * rows of H, the GRU's gates and gate gradients rows of 3H (r, z, n).
 */

/* Derivative of the activation in terms of its output y; selections, not
 * branches, so that the loops calling it vectorise. */
static inline SKRNN_T SKRNN_NAME(skrnn_activation_grad)(int act, SKRNN_T y)
{
    return act == SKRNN_TANH       ? 1 - y * y
           : act == SKRNN_LOGISTIC ? y * (1 - y)
           : act == SKRNN_RELU     ? (y > 0 ? 1 : 0)
                                   : 1;
}

/* RNN, h' = act(a): da = (dh + d_out) act'(h') into dg, summed into db. */
SKRNN_SIMD static void SKRNN_NAME(skrnn_rnn_back)(
    int act, ptrdiff_t nt, ptrdiff_t H, const SKRNN_T *restrict out,
    const SKRNN_T *restrict d_out, const SKRNN_T *restrict dh,
    SKRNN_T *restrict dg, SKRNN_T *restrict db)
{
    for (ptrdiff_t i = 0; i < nt; i++)
        for (ptrdiff_t j = 0; j < H; j++) {
            const ptrdiff_t k = i * H + j;
            const SKRNN_T da =
                (dh[k] + d_out[k]) * SKRNN_NAME(skrnn_activation_grad)(act, out[k]);
            dg[k] = da;
            db[j] += da;
        }
}

/* GRU with reset after, n = act(a_n), a_n = W_in x + b_in + r (W_hn h + b_hn)
 * (hn holds W_hn h + b_hn), h' = z h + (1 - z) n. Into dgh the gradient
 * with respect to h W_hh^T: (da_r, da_z, r da_n); into dan da_n; db_hh
 * accumulates all three, db_ih da_n; dh becomes dL/dh' z, the part of dL/dh
 * that does not go through the gates. */
SKRNN_SIMD static void SKRNN_NAME(skrnn_gru_after_back)(
    int act, ptrdiff_t nt, ptrdiff_t H, const SKRNN_T *restrict g,
    const SKRNN_T *restrict h_prev, const SKRNN_T *restrict hn,
    const SKRNN_T *restrict d_out, SKRNN_T *restrict dh, SKRNN_T *restrict dgh,
    SKRNN_T *restrict dan, SKRNN_T *restrict db_ih, SKRNN_T *restrict db_hh)
{
    const ptrdiff_t H2 = 2 * H, H3 = 3 * H;
    for (ptrdiff_t i = 0; i < nt; i++)
        for (ptrdiff_t j = 0; j < H; j++) {
            const ptrdiff_t k = i * H + j, q = i * H3 + j;
            const SKRNN_T r = g[q], z = g[q + H], n = g[q + H2];
            const SKRNN_T dhj = dh[k] + d_out[k];
            const SKRNN_T da_n =
                dhj * (1 - z) * SKRNN_NAME(skrnn_activation_grad)(act, n);
            const SKRNN_T da_z = dhj * (h_prev[k] - n) * z * (1 - z);
            const SKRNN_T da_r = da_n * hn[k] * r * (1 - r);
            dgh[q] = da_r;
            dgh[q + H] = da_z;
            dgh[q + H2] = da_n * r;
            dan[k] = da_n;
            db_hh[j] += da_r;
            db_hh[H + j] += da_z;
            db_hh[H2 + j] += da_n * r;
            db_ih[H2 + j] += da_n;
            dh[k] = dhj * z;
        }
}

/* GRU with reset before, a_n = W_in x + b_in + W_hn (r h) + b_hn, first
 * part: da_z and da_n into dg (and db), dh becomes dL/dh' z. */
SKRNN_SIMD static void SKRNN_NAME(skrnn_gru_before_back_zn)(
    int act, ptrdiff_t nt, ptrdiff_t H, const SKRNN_T *restrict g,
    const SKRNN_T *restrict h_prev, const SKRNN_T *restrict d_out,
    SKRNN_T *restrict dh, SKRNN_T *restrict dg, SKRNN_T *restrict db)
{
    const ptrdiff_t H2 = 2 * H, H3 = 3 * H;
    for (ptrdiff_t i = 0; i < nt; i++)
        for (ptrdiff_t j = 0; j < H; j++) {
            const ptrdiff_t k = i * H + j, q = i * H3 + j;
            const SKRNN_T z = g[q + H], n = g[q + H2];
            const SKRNN_T dhj = dh[k] + d_out[k];
            const SKRNN_T da_n =
                dhj * (1 - z) * SKRNN_NAME(skrnn_activation_grad)(act, n);
            const SKRNN_T da_z = dhj * (h_prev[k] - n) * z * (1 - z);
            dg[q + H] = da_z;
            dg[q + H2] = da_n;
            db[H + j] += da_z;
            db[H2 + j] += da_n;
            dh[k] = dhj * z;
        }
}

/* Second part, given d_rh = dL/d(r h) = da_n W_hn: da_r into dg (and db),
 * and d_rh r added to dh. */
SKRNN_SIMD static void SKRNN_NAME(skrnn_gru_before_back_r)(
    ptrdiff_t nt, ptrdiff_t H, const SKRNN_T *restrict g,
    const SKRNN_T *restrict h_prev, const SKRNN_T *restrict d_rh,
    SKRNN_T *restrict dh, SKRNN_T *restrict dg, SKRNN_T *restrict db)
{
    const ptrdiff_t H3 = 3 * H;
    for (ptrdiff_t i = 0; i < nt; i++)
        for (ptrdiff_t j = 0; j < H; j++) {
            const ptrdiff_t k = i * H + j, q = i * H3 + j;
            const SKRNN_T r = g[q];
            const SKRNN_T da_r = d_rh[k] * h_prev[k] * r * (1 - r);
            dg[q] = da_r;
            db[j] += da_r;
            dh[k] += d_rh[k] * r;
        }
}

#undef SKRNN_T
#undef SKRNN_NAME
