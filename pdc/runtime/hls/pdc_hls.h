/* pdc's HLS layer templates (Vitis HLS C++): one dataflow process per layer, pixels on streams.
 *
 * A tensor [1, C, H, W] flows as its H * W pixels in row-major order, each pixel a pdc::pixel of its
 * C channels. Each layer takes a config struct (generated per layer) that names its types and sizes:
 * in_t, out_t (and w_t, b_t, acc_t where it has them), the geometry as enum constants, R (the reuse
 * factor: cycles per output pixel), and its activation as a static function. Every sum is exact in
 * acc_t; a layer rounds once, converting into out_t. pdc's NumPy reference (pdc/codegen/hls/reference.py)
 * computes the same bits. */
#ifndef PDC_HLS_H
#define PDC_HLS_H
#include <ap_fixed.h>
#include <hls_stream.h>

namespace pdc {

template <class T, int N> struct pixel {
    T v[N];
};

/* Reads one padded input row into slot `slot` of a line buffer of KHD rows (zeros outside the image). */
template <class Cfg, class T>
void fill_row(hls::stream<pixel<T, Cfg::C> > &in, T lines[Cfg::KHD][Cfg::PW][Cfg::C], int r, int slot) {
    const bool real = r >= Cfg::PT && r < Cfg::PT + Cfg::H;
    for (int x = 0; x < Cfg::PW; x++) {
#pragma HLS PIPELINE II=1
        if (real && x >= Cfg::PL && x < Cfg::PL + Cfg::WD) {
            const pixel<T, Cfg::C> p = in.read();
            for (int c = 0; c < Cfg::C; c++) {
#pragma HLS UNROLL
                lines[slot][x][c] = p.v[c];
            }
        } else {
            for (int c = 0; c < Cfg::C; c++) {
#pragma HLS UNROLL
                lines[slot][x][c] = 0;
            }
        }
    }
}

/* The first padded row of output row `r`'s windows once padded row r has arrived, or -1. */
template <class Cfg> int window_top(int r) {
    const int top = r - (Cfg::KHD - 1);
    return top >= 0 && top % Cfg::SH == 0 && top / Cfg::SH < Cfg::OH ? top : -1;
}

/* Streams an image through a line buffer of the last KHD = (KH - 1) * DH + 1 padded rows and calls
 * emit(lines, top, ox) for each output pixel in order (top: its windows' first padded row). */
template <class Cfg, class T, class Emit>
void for_each_window(hls::stream<pixel<T, Cfg::C> > &in, Emit emit) {
    T lines[Cfg::KHD][Cfg::PW][Cfg::C];
#pragma HLS ARRAY_PARTITION variable=lines complete dim=3
    for (int r = 0; r < Cfg::PT + Cfg::H + Cfg::PB; r++) {
        fill_row<Cfg, T>(in, lines, r, r % Cfg::KHD);
        const int top = window_top<Cfg>(r);
        if (top < 0) continue;
        for (int ox = 0; ox < Cfg::OW; ox++) {
#pragma HLS PIPELINE II=Cfg::R
            emit(lines, top, ox);
        }
    }
}

/* Convolution: per output pixel, F exact sums over its window (the group's channels). */
template <class Cfg>
void conv2d(hls::stream<pixel<typename Cfg::in_t, Cfg::C> > &in, hls::stream<pixel<typename Cfg::out_t, Cfg::F> > &out,
            const typename Cfg::w_t w[Cfg::F][Cfg::CG][Cfg::KH][Cfg::KW], const typename Cfg::b_t b[Cfg::F]) {
    typedef typename Cfg::in_t In;
    typedef typename Cfg::out_t Out;
    for_each_window<Cfg, In>(in, [&](const In lines[Cfg::KHD][Cfg::PW][Cfg::C], int top, int ox) {
        pixel<Out, Cfg::F> o;
        for (int f = 0; f < Cfg::F; f++) {
            const int c0 = f / (Cfg::F / Cfg::G) * Cfg::CG;
            typename Cfg::acc_t acc = b[f];
            for (int c = 0; c < Cfg::CG; c++)
                for (int i = 0; i < Cfg::KH; i++)
                    for (int j = 0; j < Cfg::KW; j++)
                        acc += lines[(top + i * Cfg::DH) % Cfg::KHD][ox * Cfg::SW + j * Cfg::DW][c0 + c] * w[f][c][i][j];
            o.v[f] = Cfg::activate(Out(acc));
        }
        out.write(o);
    });
}

/* Dense: gathers the input's P pixels (K = P * C values, the weights' rows in pixel order), then N sums. */
template <class Cfg>
void dense(hls::stream<pixel<typename Cfg::in_t, Cfg::C> > &in, hls::stream<pixel<typename Cfg::out_t, Cfg::N> > &out,
           const typename Cfg::w_t w[Cfg::K][Cfg::N], const typename Cfg::b_t b[Cfg::N]) {
    typedef typename Cfg::out_t Out;
    typename Cfg::in_t x[Cfg::K];
#pragma HLS ARRAY_PARTITION variable=x complete
    for (int p = 0; p < Cfg::K / Cfg::C; p++) {
#pragma HLS PIPELINE II=1
        const pixel<typename Cfg::in_t, Cfg::C> px = in.read();
        for (int c = 0; c < Cfg::C; c++) x[p * Cfg::C + c] = px.v[c];
    }
    pixel<Out, Cfg::N> o;
    for (int n = 0; n < Cfg::N; n++) {
#pragma HLS PIPELINE II=Cfg::R
        typename Cfg::acc_t acc = b[n];
        for (int k = 0; k < Cfg::K; k++) acc += x[k] * w[k][n];
        o.v[n] = Cfg::activate(Out(acc));
    }
    out.write(o);
}

/* Pooling; taps in the padding never count for max, and for the average only with count_include_pad
 * (Cfg::COUNT_PAD). The average is the exact sum times recip[count]. */
template <class Cfg, bool MAX>
void pool2d(hls::stream<pixel<typename Cfg::in_t, Cfg::C> > &in, hls::stream<pixel<typename Cfg::out_t, Cfg::C> > &out) {
    typedef typename Cfg::in_t In;
    typedef typename Cfg::out_t Out;
    for_each_window<Cfg, In>(in, [&](const In lines[Cfg::KHD][Cfg::PW][Cfg::C], int top, int ox) {
        pixel<Out, Cfg::C> o;
        for (int c = 0; c < Cfg::C; c++) {
            In best = Cfg::lowest();
            typename Cfg::acc_t sum = 0;
            int count = 0;
            for (int i = 0; i < Cfg::KH; i++)
                for (int j = 0; j < Cfg::KW; j++) {
                    const int y = top + i * Cfg::DH, x = ox * Cfg::SW + j * Cfg::DW;
                    const bool inside = y >= Cfg::PT && y < Cfg::PT + Cfg::H && x >= Cfg::PL && x < Cfg::PL + Cfg::WD;
                    const In v = lines[y % Cfg::KHD][x][c];
                    if (inside && v > best) best = v;
                    sum += v;
                    count += inside || Cfg::COUNT_PAD;
                }
            o.v[c] = MAX ? Out(best) : Out(sum * Cfg::recip(count));
        }
        out.write(o);
    });
}

/* A pointwise function of each value (Cfg::apply: computed, or a table). */
template <class Cfg>
void pointwise(hls::stream<pixel<typename Cfg::in_t, Cfg::C> > &in, hls::stream<pixel<typename Cfg::out_t, Cfg::C> > &out) {
    for (int p = 0; p < Cfg::P; p++) {
#pragma HLS PIPELINE II=1
        const pixel<typename Cfg::in_t, Cfg::C> x = in.read();
        pixel<typename Cfg::out_t, Cfg::C> y;
        for (int c = 0; c < Cfg::C; c++) {
#pragma HLS UNROLL
            y.v[c] = Cfg::apply(x.v[c]);
        }
        out.write(y);
    }
}

/* The table entry of a value: its top bits, offset so that the type's lowest value is entry 0. */
template <int W, bool SIGNED, class T> unsigned table_index(const T &x) {
    const unsigned long long raw = x.bits_to_uint64() & ((1ULL << W) - 1ULL);  /* the code's W bits */
    const unsigned long long offset = SIGNED ? raw ^ (1ULL << (W - 1)) : raw;
    return (unsigned)(offset >> (W > 10 ? W - 10 : 0));
}

/* Softmax over each pixel's channels: d = max - x (exact); its step k in units of 2^-STEP_BITS (at most
 * ENTRIES^2 - 1); e = exp(-d) = (e_t)(exp_high(k / ENTRIES) * exp_low(k % ENTRIES)); s = the exact sum;
 * q = floor(2^(E_FRAC + Q_FRAC) / s's code) = 1 / s; y = (out_t)(e * q). */
template <class Cfg>
void softmax(hls::stream<pixel<typename Cfg::in_t, Cfg::C> > &in, hls::stream<pixel<typename Cfg::out_t, Cfg::C> > &out) {
    for (int p = 0; p < Cfg::P; p++) {
        const pixel<typename Cfg::in_t, Cfg::C> x = in.read();
        typename Cfg::in_t m = x.v[0];
        for (int c = 1; c < Cfg::C; c++)
            if (x.v[c] > m) m = x.v[c];
        typename Cfg::e_t e[Cfg::C];
#pragma HLS ARRAY_PARTITION variable=e complete
        typename Cfg::s_t s = 0;
        for (int c = 0; c < Cfg::C; c++) {
#pragma HLS UNROLL
            const typename Cfg::d_t d = m - x.v[c];
            const unsigned long long code = d.bits_to_uint64();
            unsigned long long k = Cfg::D_FRAC >= Cfg::STEP_BITS ? code >> (Cfg::D_FRAC - Cfg::STEP_BITS)
                                                                 : code << (Cfg::STEP_BITS - Cfg::D_FRAC);
            if (k > Cfg::ENTRIES * Cfg::ENTRIES - 1) k = Cfg::ENTRIES * Cfg::ENTRIES - 1;
            e[c] = typename Cfg::e_t(Cfg::exp_high((unsigned)(k / Cfg::ENTRIES)) * Cfg::exp_low((unsigned)(k % Cfg::ENTRIES)));
            s += e[c];
        }
        typename Cfg::q_t q;
        q.range(Cfg::QW - 1, 0) = (1ULL << (Cfg::E_FRAC + Cfg::Q_FRAC)) / s.bits_to_uint64();
        pixel<typename Cfg::out_t, Cfg::C> y;
        for (int c = 0; c < Cfg::C; c++) {
#pragma HLS UNROLL
            y.v[c] = typename Cfg::out_t(e[c] * q);
        }
        out.write(y);
    }
}

template <class Cfg>
void add(hls::stream<pixel<typename Cfg::a_t, Cfg::C> > &a, hls::stream<pixel<typename Cfg::b_t, Cfg::C> > &b,
         hls::stream<pixel<typename Cfg::out_t, Cfg::C> > &out) {
    for (int p = 0; p < Cfg::P; p++) {
#pragma HLS PIPELINE II=1
        const pixel<typename Cfg::a_t, Cfg::C> x = a.read();
        const pixel<typename Cfg::b_t, Cfg::C> y = b.read();
        pixel<typename Cfg::out_t, Cfg::C> z;
        for (int c = 0; c < Cfg::C; c++) {
#pragma HLS UNROLL
            z.v[c] = typename Cfg::out_t(x.v[c] + y.v[c]);
        }
        out.write(z);
    }
}

/* Channel concatenation of two streams (more are chained by the generator). */
template <class Cfg>
void concat(hls::stream<pixel<typename Cfg::a_t, Cfg::CA> > &a, hls::stream<pixel<typename Cfg::b_t, Cfg::CB> > &b,
            hls::stream<pixel<typename Cfg::out_t, Cfg::CA + Cfg::CB> > &out) {
    for (int p = 0; p < Cfg::P; p++) {
#pragma HLS PIPELINE II=1
        const pixel<typename Cfg::a_t, Cfg::CA> x = a.read();
        const pixel<typename Cfg::b_t, Cfg::CB> y = b.read();
        pixel<typename Cfg::out_t, Cfg::CA + Cfg::CB> z;
        for (int c = 0; c < Cfg::CA; c++) z.v[c] = typename Cfg::out_t(x.v[c]);
        for (int c = 0; c < Cfg::CB; c++) z.v[Cfg::CA + c] = typename Cfg::out_t(y.v[c]);
        out.write(z);
    }
}

/* One stream to two readers (the generator chains them for more). */
template <class T, int C, int P>
void clone2(hls::stream<pixel<T, C> > &in, hls::stream<pixel<T, C> > &a, hls::stream<pixel<T, C> > &b) {
    for (int p = 0; p < P; p++) {
#pragma HLS PIPELINE II=1
        const pixel<T, C> x = in.read();
        a.write(x);
        b.write(x);
    }
}

}  // namespace pdc
#endif
