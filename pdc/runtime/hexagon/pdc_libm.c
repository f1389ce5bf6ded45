/* pdc Hexagon: the float functions the kernels may call that the compiler runtime (compiler_rt) lacks,
 * for a freestanding build: tanh and erf, float and double. Computed in double from exp, to well within
 * the float tolerance of the reference (erf's series loses at most 3 of double's 16 digits). */
#include <math.h>

double tanh(double x) {
    const double a = fabs(x);
    if (!(a == a)) return x;
    if (a < 0x1p-27) return x;  /* tanh x = x - x^3 / 3 ...: x to double precision */
    if (a > 22.0) return x > 0 ? 1.0 : -1.0;
    double t;
    if (a < 0.5) {  /* exp(2a) - 1 cancels: the odd series, 1e-17 after 28 terms at a = 0.5 */
        static const double c[] = {1.0, -1.0 / 3, 2.0 / 15, -17.0 / 315, 62.0 / 2835, -1382.0 / 155925,
                                   21844.0 / 6081075, -929569.0 / 638512875, 6404582.0 / 10854718875.0,
                                   -443861162.0 / 1856156927625.0, 18888466084.0 / 194896477400625.0,
                                   -113927491862.0 / 2900518163668125.0};
        const double a2 = a * a;
        if (a < 0.125) {
            double s = 0, p = a;
            for (int k = 0; k < 12; k++, p *= a2) s += c[k] * p;
            t = s;
        } else {  /* tanh a = 2 tanh(a/2) / (1 + tanh(a/2)^2), halving until the series holds */
            const double h = tanh(a * 0.5);
            t = 2 * h / (1 + h * h);
        }
    } else {
        const double e = exp(2 * a);
        t = (e - 1) / (e + 1);
    }
    return x < 0 ? -t : t;
}

float tanhf(float x) { return (float)tanh((double)x); }

double erf(double x) {
    const double a = fabs(x);
    if (!(a == a)) return x;
    if (a > 6.0) return x > 0 ? 1.0 : -1.0;
    double r;
    if (a < 2.5) {  /* 2 / sqrt(pi) * sum (-1)^n a^(2n+1) / (n! (2n+1)) */
        const double a2 = a * a;
        double term = a, sum = a;
        for (int n = 1; n < 200; n++) {
            term *= -a2 / n;
            const double add = term / (2 * n + 1);
            sum += add;
            if (fabs(add) < 1e-17 * fabs(sum)) break;
        }
        r = sum * 1.12837916709551257390;
    } else {  /* 1 - erfc, erfc = exp(-a^2) / sqrt(pi) / (a + (1/2) / (a + 1 / (a + (3/2) / (a + ...)))) */
        double t = a;
        for (int k = 120; k >= 1; k--) t = a + (k * 0.5) / t;
        r = 1.0 - exp(-a * a) * 0.56418958354775628695 / t;
    }
    return x < 0 ? -r : r;
}

float erff(float x) { return (float)erf((double)x); }
