/* The gate loops of _gates.h, included once per floating type with
 * SKRNN_T (the type) and SKRNN_NAME(name) (name with the type's suffix)
 * defined; it undefines them again. No include guard: that is the point.
 *
 * Arrays are row-major with nt live rows: states and their gradients have
 * rows of H, the GRU's gates and gate gradients rows of 3H (r, z, n), the
 * LSTM's rows of 4H (i, f, g, o).
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

/* ---------------------------------------------------------------- forward */

/* a = act(a) over n contiguous values: the long runs the activations of
 * _activations.h vectorise over. */
static void SKRNN_NAME(skrnn_activate)(int act, SKRNN_T *a, ptrdiff_t n)
{
    if (act == SKRNN_TANH)
        SKRNN_NAME(skrnn_tanh)(a, n);
    else if (act == SKRNN_LOGISTIC)
        SKRNN_NAME(skrnn_sigmoid)(a, n);
    else if (act == SKRNN_RELU)
        for (ptrdiff_t i = 0; i < n; i++)
            a[i] = a[i] < 0 ? 0 : a[i]; /* NaN propagates, as np.maximum's */
}

SKRNN_SIMD static void SKRNN_NAME(skrnn_rnn_pre)(
    ptrdiff_t nt, ptrdiff_t H, const SKRNN_T *restrict b_ih,
    const SKRNN_T *restrict b_hh, SKRNN_T *restrict g)
{
    for (ptrdiff_t i = 0; i < nt; i++)
        for (ptrdiff_t j = 0; j < H; j++)
            g[i * H + j] += b_ih[j] + b_hh[j];
}

/* The GRU's r and z pre-activations (x W_i[rz]^T + b_i[rz]) + (h W_h[rz]^T +
 * b_h[rz]) into rz (rows of 2H), from g (rows of 3H) and gh (rows of ldgh). */
SKRNN_SIMD static void SKRNN_NAME(skrnn_gru_rz)(
    ptrdiff_t nt, ptrdiff_t H, const SKRNN_T *restrict g,
    const SKRNN_T *restrict gh, ptrdiff_t ldgh, const SKRNN_T *restrict b_ih,
    const SKRNN_T *restrict b_hh, SKRNN_T *restrict rz)
{
    const ptrdiff_t H2 = 2 * H, H3 = 3 * H;
    for (ptrdiff_t i = 0; i < nt; i++)
        for (ptrdiff_t j = 0; j < H2; j++)
            rz[i * H2 + j] = (g[i * H3 + j] + b_ih[j]) + (gh[i * ldgh + j] + b_hh[j]);
}

/* Reset after: hn = h W_hn^T + b_hn (kept unless NULL) and n's
 * pre-activation (x W_in^T + b_in) + r hn. */
SKRNN_SIMD static void SKRNN_NAME(skrnn_gru_after_n)(
    ptrdiff_t nt, ptrdiff_t H, const SKRNN_T *restrict g,
    const SKRNN_T *restrict gh, const SKRNN_T *restrict rz,
    const SKRNN_T *restrict b_ih, const SKRNN_T *restrict b_hh,
    SKRNN_T *restrict hn, SKRNN_T *restrict n)
{
    const ptrdiff_t H2 = 2 * H, H3 = 3 * H;
    for (ptrdiff_t i = 0; i < nt; i++)
        for (ptrdiff_t j = 0; j < H; j++) {
            const SKRNN_T hnj = gh[i * H3 + H2 + j] + b_hh[H2 + j];
            if (hn != NULL)
                hn[i * H + j] = hnj;
            n[i * H + j] = (g[i * H3 + H2 + j] + b_ih[H2 + j]) + rz[i * H2 + j] * hnj;
        }
}

/* Reset before: rh = r h. */
SKRNN_SIMD static void SKRNN_NAME(skrnn_gru_rh)(
    ptrdiff_t nt, ptrdiff_t H, const SKRNN_T *restrict rz,
    const SKRNN_T *restrict h, SKRNN_T *restrict rh)
{
    for (ptrdiff_t i = 0; i < nt; i++)
        for (ptrdiff_t j = 0; j < H; j++)
            rh[i * H + j] = rz[i * 2 * H + j] * h[i * H + j];
}

/* Reset before: n's pre-activation g_n + b_in + b_hn, where g_n holds
 * x W_in^T + (r h) W_hn^T. */
SKRNN_SIMD static void SKRNN_NAME(skrnn_gru_before_n)(
    ptrdiff_t nt, ptrdiff_t H, const SKRNN_T *restrict g,
    const SKRNN_T *restrict b_ih, const SKRNN_T *restrict b_hh, SKRNN_T *restrict n)
{
    const ptrdiff_t H2 = 2 * H, H3 = 3 * H;
    for (ptrdiff_t i = 0; i < nt; i++)
        for (ptrdiff_t j = 0; j < H; j++)
            n[i * H + j] = g[i * H3 + H2 + j] + b_ih[H2 + j] + b_hh[H2 + j];
}

/* h' = z h + (1 - z) n into h and out; the gates r, z, n into g (the cache). */
SKRNN_SIMD static void SKRNN_NAME(skrnn_gru_update)(
    ptrdiff_t nt, ptrdiff_t H, const SKRNN_T *restrict rz,
    const SKRNN_T *restrict n, SKRNN_T *restrict g, SKRNN_T *restrict h,
    SKRNN_T *restrict out)
{
    const ptrdiff_t H2 = 2 * H, H3 = 3 * H;
    for (ptrdiff_t i = 0; i < nt; i++) {
        for (ptrdiff_t j = 0; j < H2; j++)
            g[i * H3 + j] = rz[i * H2 + j];
        for (ptrdiff_t j = 0; j < H; j++) {
            const ptrdiff_t k = i * H + j;
            const SKRNN_T z = rz[i * H2 + H + j], hj = z * h[k] + (1 - z) * n[k];
            g[i * H3 + H2 + j] = n[k];
            h[k] = hj;
            out[k] = hj;
        }
    }
}

/* An RNN step once g holds x W_ih^T + h W_hh^T: h' = act(g + b_ih + b_hh)
 * into g, out (unless it is g) and h. */
static void SKRNN_NAME(skrnn_rnn_forward)(
    int act, ptrdiff_t nt, ptrdiff_t H, const SKRNN_T *b_ih, const SKRNN_T *b_hh,
    SKRNN_T *g, SKRNN_T *h, SKRNN_T *out)
{
    SKRNN_NAME(skrnn_rnn_pre)(nt, H, b_ih, b_hh, g);
    SKRNN_NAME(skrnn_activate)(act, g, nt * H);
    if (out != g)
        memcpy(out, g, nt * H * sizeof(SKRNN_T));
    memcpy(h, g, nt * H * sizeof(SKRNN_T));
}

/* A reset-after GRU step once gh holds h W_hh^T (rows of 3H):
 * n = act(x W_in^T + b_in + r (h W_hn^T + b_hn)), h' = z h + (1 - z) n into h
 * and out; r, z, n into g (which held x W_ih^T); h W_hn^T + b_hn into hn
 * unless NULL. pre: room for the gates of the nt rows in two runs, r and z
 * then n, so that each activation is one call over a long run. */
static void SKRNN_NAME(skrnn_gru_after_forward)(
    int act, ptrdiff_t nt, ptrdiff_t H, const SKRNN_T *b_ih, const SKRNN_T *b_hh,
    const SKRNN_T *gh, SKRNN_T *g, SKRNN_T *hn, SKRNN_T *pre, SKRNN_T *h,
    SKRNN_T *out)
{
    SKRNN_T *rz = pre, *n = pre + nt * 2 * H;
    SKRNN_NAME(skrnn_gru_rz)(nt, H, g, gh, 3 * H, b_ih, b_hh, rz);
    SKRNN_NAME(skrnn_sigmoid)(rz, nt * 2 * H);
    SKRNN_NAME(skrnn_gru_after_n)(nt, H, g, gh, rz, b_ih, b_hh, hn, n);
    SKRNN_NAME(skrnn_activate)(act, n, nt * H);
    SKRNN_NAME(skrnn_gru_update)(nt, H, rz, n, g, h, out);
}

/* A reset-before GRU step, first part, once grz holds h W_h[rz]^T (rows of
 * 2H): r and z into pre (laid out as for skrnn_gru_after_forward), r h into
 * rh. */
static void SKRNN_NAME(skrnn_gru_before_forward_r)(
    ptrdiff_t nt, ptrdiff_t H, const SKRNN_T *b_ih, const SKRNN_T *b_hh,
    const SKRNN_T *grz, const SKRNN_T *g, SKRNN_T *pre, const SKRNN_T *h, SKRNN_T *rh)
{
    SKRNN_NAME(skrnn_gru_rz)(nt, H, g, grz, 2 * H, b_ih, b_hh, pre);
    SKRNN_NAME(skrnn_sigmoid)(pre, nt * 2 * H);
    SKRNN_NAME(skrnn_gru_rh)(nt, H, pre, h, rh);
}

/* Second part, once g's n block holds x W_in^T + (r h) W_hn^T:
 * n = act(that + b_in + b_hn), h' = z h + (1 - z) n into h and out, r, z,
 * n into g. */
static void SKRNN_NAME(skrnn_gru_before_forward_n)(
    int act, ptrdiff_t nt, ptrdiff_t H, const SKRNN_T *b_ih, const SKRNN_T *b_hh,
    SKRNN_T *g, SKRNN_T *pre, SKRNN_T *h, SKRNN_T *out)
{
    SKRNN_T *rz = pre, *n = pre + nt * 2 * H;
    SKRNN_NAME(skrnn_gru_before_n)(nt, H, g, b_ih, b_hh, n);
    SKRNN_NAME(skrnn_activate)(act, n, nt * H);
    SKRNN_NAME(skrnn_gru_update)(nt, H, rz, n, g, h, out);
}

/* An LSTM step once g holds x W_ih^T + h W_hh^T (rows of 4H): the gates
 * i, f, o = logistic, g = tanh of (that + b_ih + b_hh) into g (the cache),
 * c' = f c + i g into c and c_new unless NULL, h' = o tanh(c') into h and
 * out. One pass, the activations inlined: the step's five activations in
 * long runs of their own would cost six more passes over its arrays. */
SKRNN_SIMD static void SKRNN_NAME(skrnn_lstm_forward)(
    ptrdiff_t nt, ptrdiff_t H, const SKRNN_T *restrict b_ih,
    const SKRNN_T *restrict b_hh, SKRNN_T *restrict g, SKRNN_T *restrict c,
    SKRNN_T *restrict c_new, SKRNN_T *restrict h, SKRNN_T *restrict out)
{
    const ptrdiff_t H2 = 2 * H, H3 = 3 * H, H4 = 4 * H;
    for (ptrdiff_t i = 0; i < nt; i++)
        SKRNN_INDEPENDENT
        for (ptrdiff_t j = 0; j < H; j++) {
            const ptrdiff_t k = i * H + j, q = i * H4 + j;
            const SKRNN_T ig = SKRNN_NAME(skrnn_sigmoid1)(g[q] + b_ih[j] + b_hh[j]);
            const SKRNN_T fg =
                SKRNN_NAME(skrnn_sigmoid1)(g[q + H] + b_ih[H + j] + b_hh[H + j]);
            const SKRNN_T gg =
                SKRNN_NAME(skrnn_tanh1)(g[q + H2] + b_ih[H2 + j] + b_hh[H2 + j]);
            const SKRNN_T og =
                SKRNN_NAME(skrnn_sigmoid1)(g[q + H3] + b_ih[H3 + j] + b_hh[H3 + j]);
            const SKRNN_T cn = fg * c[k] + ig * gg;
            const SKRNN_T hj = og * SKRNN_NAME(skrnn_tanh1)(cn);
            g[q] = ig;
            g[q + H] = fg;
            g[q + H2] = gg;
            g[q + H3] = og;
            c[k] = cn;
            if (c_new != NULL)
                c_new[k] = cn;
            h[k] = hj;
            out[k] = hj;
        }
}

/* --------------------------------------------------------------- backward */

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

/* GRU with reset after, n = act(a_n), a_n = W_in x + b_in + r (W_hn h + b_hn),
 * h' = z h + (1 - z) n. g holds r, z, n and receives in their place the
 * gradient with respect to h W_hh^T: (da_r, da_z, r da_n); hn holds
 * W_hn h + b_hn and receives da_n in its place; db_hh accumulates all three,
 * db_ih da_n; dh becomes dL/dh' z, the part of dL/dh that does not go
 * through the gates. */
SKRNN_SIMD static void SKRNN_NAME(skrnn_gru_after_back)(
    int act, ptrdiff_t nt, ptrdiff_t H, SKRNN_T *restrict g,
    const SKRNN_T *restrict h_prev, SKRNN_T *restrict hn,
    const SKRNN_T *restrict d_out, SKRNN_T *restrict dh,
    SKRNN_T *restrict db_ih, SKRNN_T *restrict db_hh)
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
            g[q] = da_r;
            g[q + H] = da_z;
            g[q + H2] = da_n * r;
            hn[k] = da_n;
            db_hh[j] += da_r;
            db_hh[H + j] += da_z;
            db_hh[H2 + j] += da_n * r;
            db_ih[H2 + j] += da_n;
            dh[k] = dhj * z;
        }
}

/* GRU with reset before, a_n = W_in x + b_in + W_hn (r h) + b_hn, first
 * part: da_z and da_n into g in place of z and n (and into db), dh becomes
 * dL/dh' z. */
SKRNN_SIMD static void SKRNN_NAME(skrnn_gru_before_back_zn)(
    int act, ptrdiff_t nt, ptrdiff_t H, SKRNN_T *restrict g,
    const SKRNN_T *restrict h_prev, const SKRNN_T *restrict d_out,
    SKRNN_T *restrict dh, SKRNN_T *restrict db)
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
            g[q + H] = da_z;
            g[q + H2] = da_n;
            db[H + j] += da_z;
            db[H2 + j] += da_n;
            dh[k] = dhj * z;
        }
}

/* Second part, given d_rh = dL/d(r h) = da_n W_hn: da_r into g in place of
 * r (and into db), and d_rh r added to dh. */
SKRNN_SIMD static void SKRNN_NAME(skrnn_gru_before_back_r)(
    ptrdiff_t nt, ptrdiff_t H, SKRNN_T *restrict g,
    const SKRNN_T *restrict h_prev, const SKRNN_T *restrict d_rh,
    SKRNN_T *restrict dh, SKRNN_T *restrict db)
{
    const ptrdiff_t H3 = 3 * H;
    for (ptrdiff_t i = 0; i < nt; i++)
        for (ptrdiff_t j = 0; j < H; j++) {
            const ptrdiff_t k = i * H + j, q = i * H3 + j;
            const SKRNN_T r = g[q];
            const SKRNN_T da_r = d_rh[k] * h_prev[k] * r * (1 - r);
            g[q] = da_r;
            db[j] += da_r;
            dh[k] += d_rh[k] * r;
        }
}

/* LSTM, c' = f c + i g, h' = o tanh(c'). g holds the gates i, f, g, o and
 * receives in their place the gradients of their pre-activations, the same
 * on the input and the recurrent side, summed into db; c_prev and c_new
 * are the cell state before and after the step (tanh(c') is computed again
 * rather than kept in the cache); dc, the cell state's gradient carried
 * from the step after, becomes dL/dc. dh is read only: the state reaches
 * h' only through the gates. */
SKRNN_SIMD static void SKRNN_NAME(skrnn_lstm_back)(
    ptrdiff_t nt, ptrdiff_t H, SKRNN_T *restrict g,
    const SKRNN_T *restrict c_prev, const SKRNN_T *restrict c_new,
    const SKRNN_T *restrict d_out, const SKRNN_T *restrict dh, SKRNN_T *restrict dc,
    SKRNN_T *restrict db)
{
    const ptrdiff_t H2 = 2 * H, H3 = 3 * H, H4 = 4 * H;
    for (ptrdiff_t i = 0; i < nt; i++)
        SKRNN_INDEPENDENT
        for (ptrdiff_t j = 0; j < H; j++) {
            const ptrdiff_t k = i * H + j, q = i * H4 + j;
            const SKRNN_T ig = g[q], fg = g[q + H], gg = g[q + H2], og = g[q + H3];
            const SKRNN_T dhj = dh[k] + d_out[k];
            const SKRNN_T t = SKRNN_NAME(skrnn_tanh1)(c_new[k]);
            const SKRNN_T dcell = dc[k] + dhj * og * (1 - t * t);
            const SKRNN_T da_i = dcell * gg * ig * (1 - ig);
            const SKRNN_T da_f = dcell * c_prev[k] * fg * (1 - fg);
            const SKRNN_T da_g = dcell * ig * (1 - gg * gg);
            const SKRNN_T da_o = dhj * t * og * (1 - og);
            g[q] = da_i;
            g[q + H] = da_f;
            g[q + H2] = da_g;
            g[q + H3] = da_o;
            db[j] += da_i;
            db[H + j] += da_f;
            db[H2 + j] += da_g;
            db[H3 + j] += da_o;
            dc[k] = dcell * fg;
        }
}

#undef SKRNN_T
#undef SKRNN_NAME
