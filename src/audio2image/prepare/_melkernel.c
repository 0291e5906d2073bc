/* The mel front end's compiled passes (prepare/features.py, prepare/audio.py), used where this module was built
 * (it is optional: without a C compiler the numpy path does the same work).
 *
 * frames: a chunk of frames of the padded signal times the window (the FFT's input).
 * bands:  a chunk of spectra (complex64 [frames, bins], scipy's rfft of the windowed frames) -> |X|^2 -> sparse
 *         mel filterbank (CSR) -> dB (10 log10 max(x, amin)) or power, into columns of the mel array; returns the
 *         largest value. Frames go LANES at a time through a [bins][LANES] tile of powers that stays in L1, so
 *         the filterbank's few weights per band and the logarithm run across frames in vector registers.
 * finish: the whole mel array -> clamp to [floor, FP16_MAX] -> IEEE half (round to nearest even, the hardware's
 *         conversion: bit for bit numpy's astype(float16)) -> per-band sums and sums of squares of the stored
 *         values, in double, and the count of values at FP16_MAX.
 *
 * numpy's one-pass-per-operation version of the same reads and writes each clip's megabytes about a dozen times,
 * and takes several times as long (benchmarks/README.md: the compiled kernel). Each
 * vector path has a plain C one beside it (AVX-512 gathers; F16C conversions): the tests pass built for
 * x86-64-v4 (native here), x86-64-v3 and plain x86-64.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#if (defined(__AVX__) && defined(__F16C__)) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#define LANES 16
#define FP16_MAX 65504.0f
#define DB_PER_LN 4.342944819032518f /* 10 / ln(10): 10 log10(x) = DB_PER_LN ln(x) */

/* ln(x) for finite x > 0 in plain arithmetic, so that a loop of it vectorises (libm's logf is a call; glibc's
 * vector variants are declared only under -ffast-math, which would also drop the inf and NaN checks below).
 * x = 2^e m with m in [sqrt(1/2), sqrt(2)); ln m = 2 atanh(t), t = (m - 1) / (m + 1), |t| <= 0.172, by its series
 * to t^9: the next term is below 1e-9, and the error is float rounding (~1e-7 relative; 4e-5 dB at most). */
static inline float ln_positive(float x)
{
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    int32_t exponent = (int32_t)(bits >> 23) - 127;
    bits = (bits & 0x007fffffu) | 0x3f800000u; /* the mantissa as a number in [1, 2) */
    float m = 0.0f;
    memcpy(&m, &bits, sizeof m);
    if (m > 1.41421356f) {
        m *= 0.5f;
        exponent += 1;
    }
    const float t = (m - 1.0f) / (m + 1.0f), t2 = t * t;
    const float series = 2.0f + t2 * (2.0f / 3 + t2 * (2.0f / 5 + t2 * (2.0f / 7 + t2 * (2.0f / 9))));
    return t * series + (float)exponent * 0.693147181f;
}

/* The tile powers[bins][LANES]: |X|^2 of `lanes` frames' interleaved (re, im) spectra, frame after frame; a
 * short last tile repeats its last frame (computed, never stored). */
static void tile_powers(const float *spectrum, Py_ssize_t lanes, Py_ssize_t bins, float *power, float *powers)
{
#if defined(__AVX512F__) && LANES == 16
    /* AVX-512: each bin's 16 frames in one go, (re, im) pairs gathered as 64-bit values, then split */
    int32_t starts[16];
    for (int lane = 0; lane < 16; lane++)
        starts[lane] = (int32_t)(bins * (lane < lanes ? lane : lanes - 1)); /* in complex values */
    const __m256i first = _mm256_loadu_si256((const __m256i *)starts),
                  second = _mm256_loadu_si256((const __m256i *)(starts + 8));
    const __m512i evens = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0),
                  odds = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    (void)power;
    for (Py_ssize_t k = 0; k < bins; k++) {
        const double *base = (const double *)(spectrum + 2 * k);
        __m512 a = _mm512_castpd_ps(_mm512_i32gather_pd(first, base, 8)),
               b = _mm512_castpd_ps(_mm512_i32gather_pd(second, base, 8));
        a = _mm512_mul_ps(a, a);
        b = _mm512_mul_ps(b, b);
        _mm512_storeu_ps(powers + k * LANES,
                         _mm512_add_ps(_mm512_permutex2var_ps(a, evens, b), _mm512_permutex2var_ps(a, odds, b)));
    }
#else
    for (Py_ssize_t lane = 0; lane < LANES; lane++) {
        const float *z = spectrum + 2 * bins * (lane < lanes ? lane : lanes - 1);
        for (Py_ssize_t k = 0; k < bins; k++) /* along the frame, where it vectorises, then stored across */
            power[k] = z[2 * k] * z[2 * k] + z[2 * k + 1] * z[2 * k + 1];
        for (Py_ssize_t k = 0; k < bins; k++)
            powers[k * LANES + lane] = power[k];
    }
#endif
}

/* The tile's bands: each band's few weights (CSR) times the powers of LANES frames at once, into tile[mels][LANES].
 * The LANES sums are one vector (GCC/Clang vector extensions) that stays in a register along the band's weights. */
typedef float lanes_t __attribute__((vector_size(LANES * sizeof(float))));

static void tile_bands(const float *powers, const int32_t *indptr, const int32_t *indices, const float *weights,
                       Py_ssize_t mels, float *tile)
{
    for (Py_ssize_t m = 0; m < mels; m++) {
        lanes_t acc = {0}, p;
        for (int32_t j = indptr[m]; j < indptr[m + 1]; j++) {
            memcpy(&p, powers + (Py_ssize_t)indices[j] * LANES, sizeof p);
            acc += weights[j] * p;
        }
        memcpy(tile + m * LANES, &acc, sizeof acc);
    }
}

/* A tile of bands [mels][LANES] -> dB (where asked) -> the first `lanes` columns of out's rows; the largest value
 * stored, or +inf where one is NaN or inf (the caller's "features are not finite", without a pass of its own). */
static float store_tile(float *tile, Py_ssize_t mels, int log_scale, float amin, Py_ssize_t lanes, float *out,
                        Py_ssize_t stride)
{
    float peak = -INFINITY;
    int bad = 0;
    for (Py_ssize_t m = 0; m < mels; m++) {
        float *row = tile + m * LANES;
        if (log_scale) {
#pragma omp simd
            for (int lane = 0; lane < LANES; lane++) {
                const float x = row[lane], db = DB_PER_LN * ln_positive(x > amin ? x : amin);
                row[lane] = x <= 3.4028235e38f ? db : x; /* inf and NaN pass through: the caller skips the clip */
            }
        }
#pragma omp simd reduction(max : peak) reduction(| : bad)
        for (Py_ssize_t lane = 0; lane < lanes; lane++) {
            peak = row[lane] > peak ? row[lane] : peak;
            bad |= !(row[lane] <= 3.4028235e38f);
        }
        memcpy(out + m * stride, row, (size_t)lanes * sizeof(float));
    }
    return bad ? INFINITY : peak;
}

static PyObject *bands(PyObject *self, PyObject *args)
{
    Py_buffer spectrum, indptr, indices, weights, out;
    Py_ssize_t frames, bins, mels, stride, start;
    int log_scale;
    float amin;
    if (!PyArg_ParseTuple(args, "y*nny*y*y*w*nnpf", &spectrum, &frames, &bins, &indptr, &indices, &weights, &out,
                          &stride, &start, &log_scale, &amin))
        return NULL;
    mels = indptr.len / (Py_ssize_t)sizeof(int32_t) - 1;
    PyObject *result = NULL;
    if (spectrum.len < frames * bins * 2 * (Py_ssize_t)sizeof(float) || mels < 1
        || out.len < ((mels - 1) * stride + start + frames) * (Py_ssize_t)sizeof(float)) {
        PyErr_SetString(PyExc_ValueError, "bands: buffers smaller than the shapes given");
        goto done;
    }
    /* one frame's powers, the tile of LANES frames' powers, their bands: 25 KB for n_fft 512, all in L1 */
    float *power = PyMem_RawMalloc(((size_t)bins * (1 + LANES) + (size_t)mels * LANES) * sizeof(float));
    float *powers = power + bins, *tile = powers + bins * LANES;
    if (power == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    float peak = -INFINITY;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t first = 0; first < frames; first += LANES) {
        Py_ssize_t lanes = frames - first < LANES ? frames - first : LANES;
        tile_powers((const float *)spectrum.buf + 2 * bins * first, lanes, bins, power, powers);
        tile_bands(powers, indptr.buf, indices.buf, weights.buf, mels, tile);
        const float tile_peak = store_tile(tile, mels, log_scale, amin, lanes, (float *)out.buf + start + first,
                                           stride);
        peak = tile_peak > peak ? tile_peak : peak;
    }
    Py_END_ALLOW_THREADS
    PyMem_RawFree(power);
    result = PyFloat_FromDouble(peak);
done:
    PyBuffer_Release(&spectrum);
    PyBuffer_Release(&indptr);
    PyBuffer_Release(&indices);
    PyBuffer_Release(&weights);
    PyBuffer_Release(&out);
    return result;
}

/* One band's row: clamp to [floor, FP16_MAX], store as fp16 (round to nearest even); the sum and sum of squares
 * (in double) of the stored values and how many are FP16_MAX. */
static long long finish_row(const float *values, uint16_t *stored, Py_ssize_t n, float floor, double *sum,
                            double *squares)
{
    Py_ssize_t f = 0;
    long long at_max = 0;
    double s = 0.0, q = 0.0;
#if defined(__AVX__) && defined(__F16C__)
    __m256d s4 = _mm256_setzero_pd(), q4 = _mm256_setzero_pd();
    const __m256 low = _mm256_set1_ps(floor), high = _mm256_set1_ps(FP16_MAX);
    for (; f + 8 <= n; f += 8) {
        __m256 x = _mm256_min_ps(_mm256_max_ps(_mm256_loadu_ps(values + f), low), high);
        __m128i half = _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m256 rounded = _mm256_cvtph_ps(half);
        _mm_storeu_si128((__m128i *)(stored + f), half);
        __m256d a = _mm256_cvtps_pd(_mm256_castps256_ps128(rounded)),
                b = _mm256_cvtps_pd(_mm256_extractf128_ps(rounded, 1));
        s4 = _mm256_add_pd(s4, _mm256_add_pd(a, b));
        q4 = _mm256_add_pd(q4, _mm256_add_pd(_mm256_mul_pd(a, a), _mm256_mul_pd(b, b)));
        at_max += __builtin_popcount(_mm256_movemask_ps(_mm256_cmp_ps(rounded, high, _CMP_EQ_OQ)));
    }
    double lanes[4];
    _mm256_storeu_pd(lanes, s4);
    s = lanes[0] + lanes[1] + lanes[2] + lanes[3];
    _mm256_storeu_pd(lanes, q4);
    q = lanes[0] + lanes[1] + lanes[2] + lanes[3];
#endif
    for (; f < n; f++) { /* the rest (all of it without F16C): the compiler's own conversion, also round to even */
        float x = values[f] < floor ? floor : values[f];
        x = x > FP16_MAX ? FP16_MAX : x;
        _Float16 half = (_Float16)x;
        float rounded = (float)half;
        memcpy(stored + f, &half, sizeof half);
        s += rounded;
        q += (double)rounded * rounded;
        at_max += rounded == FP16_MAX;
    }
    *sum = s;
    *squares = q;
    return at_max;
}

static PyObject *finish(PyObject *self, PyObject *args)
{
    Py_buffer values, stored, sums, squares;
    Py_ssize_t mels, frames;
    float floor;
    if (!PyArg_ParseTuple(args, "w*w*w*w*nnf", &values, &stored, &sums, &squares, &mels, &frames, &floor))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = mels * frames;
    if (values.len < n * (Py_ssize_t)sizeof(float) || stored.len < n * (Py_ssize_t)sizeof(uint16_t)
        || sums.len < mels * (Py_ssize_t)sizeof(double) || squares.len < mels * (Py_ssize_t)sizeof(double)) {
        PyErr_SetString(PyExc_ValueError, "finish: buffers smaller than the shapes given");
        goto done;
    }
    long long saturated = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t m = 0; m < mels; m++)
        saturated += finish_row((float *)values.buf + m * frames, (uint16_t *)stored.buf + m * frames, frames, floor,
                                (double *)sums.buf + m, (double *)squares.buf + m);
    Py_END_ALLOW_THREADS
    result = PyLong_FromLongLong(saturated);
done:
    PyBuffer_Release(&values);
    PyBuffer_Release(&stored);
    PyBuffer_Release(&sums);
    PyBuffer_Release(&squares);
    return result;
}

static PyObject *frames(PyObject *self, PyObject *args)
{
    Py_buffer signal, window, out;
    Py_ssize_t hop, first, n;
    if (!PyArg_ParseTuple(args, "y*nny*nw*", &signal, &hop, &first, &window, &n, &out))
        return NULL;
    PyObject *result = NULL;
    const Py_ssize_t size = window.len / (Py_ssize_t)sizeof(float);
    if (signal.len < ((first + n - 1) * hop + size) * (Py_ssize_t)sizeof(float)
        || out.len < n * size * (Py_ssize_t)sizeof(float)) {
        PyErr_SetString(PyExc_ValueError, "frames: buffers smaller than the shapes given");
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t f = 0; f < n; f++) {
        const float *x = (const float *)signal.buf + (first + f) * hop, *w = window.buf;
        float *y = (float *)out.buf + f * size;
#pragma omp simd
        for (Py_ssize_t i = 0; i < size; i++)
            y[i] = x[i] * w[i];
    }
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&signal);
    PyBuffer_Release(&window);
    PyBuffer_Release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"frames", frames, METH_VARARGS,
     "frames(signal, hop, first, window, n, out): out[f] = signal[(first + f) * hop:][:len(window)] * window"},
    {"bands", bands, METH_VARARGS,
     "bands(spectrum, frames, bins, indptr, indices, weights, out, stride, start, log, amin) -> the largest value "
     "written (inf where one is not finite): |X|^2 -> CSR filterbank -> dB or power into "
     "out[m * stride + start + frame]"},
    {"finish", finish, METH_VARARGS,
     "finish(values, stored, sums, squares, mels, frames, floor) -> count at FP16_MAX: clamp, fp16 (RNE), sums "
     "(values unchanged)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_melkernel", NULL, -1, methods};

PyMODINIT_FUNC PyInit__melkernel(void) { return PyModule_Create(&module); }
