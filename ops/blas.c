/*
 * ops/blas.c — finding a BLAS at run time, choosing its kernels from the CPU, and checking it.
 *
 * Why load OpenBLAS ourselves instead of linking it: OpenBLAS chooses its kernels once, in its
 * load-time constructor, by CPU model. Debian's 0.3.21 does not know newer models and falls
 * back to its slowest (Prescott) kernels on them — 4.7x below the machine on an AVX-512 Xeon.
 * It does honour OPENBLAS_CORETYPE, read in that constructor, so we decide the core type from
 * the CPU's features (CPUID, and XGETBV for what the OS saves), set the variable, dlopen the
 * library, and put the environment back. Nothing is chosen that the CPU cannot run.
 *
 * Who keeps control: a cblas_sgemm already in the process (a program that links its own BLAS)
 * is used as it is; an OPENBLAS_CORETYPE set by the user is left alone; TAPEGRAD_BLAS=portable
 * selects our own kernels, TAPEGRAD_BLAS=<path> another cblas library.
 *
 * Older OpenBLAS builds compute wrong results on some CPUs with some core types, so whatever
 * was found multiplies a few small matrices against the portable GEMM once; a disagreement
 * means the portable GEMM, and the description says why.
 *
 * A second backend for one shape class, on request (TAPEGRAD_BLAS=openblas+onednn): oneDNN's
 * dnnl_sgemm (Debian's libdnnl, loaded the same way, held to one OpenMP thread) takes the thin
 * products of small_class, where it was measured faster on Zen 3, and OpenBLAS the rest. The
 * class is a fixed test of the shapes, not a timing at start-up, so a product and piece always
 * take the same kernels: the same numbers every run (and on any thread count: tgi_gemm's pieces
 * do not depend on it). Not the default: dnnl_sgemm allocates its packing buffer from the heap
 * at every call (posix_memalign, counted: one per call), and a steady-state step allocates
 * nothing. `bench_blas_cores` measures the classes on another CPU.
 *
 * Then, unless the user chose (OPENBLAS_CORETYPE, TAPEGRAD_BLAS) or TAPEGRAD_BLAS_TUNE=0, the
 * kernels are chosen per shape class by measurement, once per machine (ops/blas_tune.c): the
 * table's, OpenBLAS's under a second core type (loaded with dlmopen into a namespace of its own,
 * as its core type is fixed at load), the portable GEMM, and (compiled with FMA) our kernels that
 * do not pack A (ops/gemm_thin.c: the products that fit L2; the rest go to the table's OpenBLAS).
 * Those are not in the table: on a Zen 3 they tied OpenBLAS's Haswell kernels at the thin
 * products when the operands were hot (0.93-1.07x its time, by round) and beat them by 1.05-1.4x
 * when cold, the MLP d20 step 1.08x [0.83-1.21] and the LSTM's 1.02x [0.90-1.16] (medians of 7
 * interleaved rounds [min-max] on a shared machine): not faster in every round, and in the
 * table they moved four of the README's seed-1 study figures past their tolerance. A decision
 * kept in the cache file is used as it is; a second OpenBLAS is loaded only when some class
 * takes it.
 */
#define _GNU_SOURCE /* dlmopen: a second OpenBLAS beside the first */
#include "ops/ops.h"

#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

/* cblas constants (cblas.h is not needed: the library is found at run time). */
enum { CBLAS_ROW_MAJOR = 101, CBLAS_NO_TRANS = 111, CBLAS_TRANS = 112 };

typedef tgi_sgemm_fn cblas_sgemm_fn;
typedef char *(*openblas_string_fn)(void);
typedef void (*openblas_threads_fn)(int n);
/* oneDNN's row-major sgemm (dim_t is int64_t; returns dnnl_status_t, 0 = success) */
typedef int (*dnnl_sgemm_fn)(char trans_a, char trans_b, int64_t m, int64_t n, int64_t k,
                             float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                             float beta, float *c, int64_t ldc);
typedef struct dnnl_version_t {
    int major, minor, patch;
    const char *hash;
    unsigned cpu_runtime, gpu_runtime;
} dnnl_version_t;
typedef const dnnl_version_t *(*dnnl_version_fn)(void);

static struct {
    cblas_sgemm_fn sgemm;          /* NULL: the portable GEMM */
    cblas_sgemm_fn by_class[TGI_GEMM_CLASSES]; /* what each shape class runs (NULL: portable) */
    const char *kernel[TGI_GEMM_CLASSES];      /* and its name */
    tg_gemm_how how;
    dnnl_sgemm_fn small;           /* NULL, or oneDNN for the products of small_class */
    openblas_threads_fn omp_threads; /* oneDNN's OpenMP runtime: omp_set_num_threads */
    char names[TGI_GEMM_KERNELS_MAX][32];
    char description[640];
} backend;

/* One kernel for every class. */
static void use_everywhere(cblas_sgemm_fn sgemm, const char *name, tg_gemm_how how) {
    for (int c = 0; c < TGI_GEMM_CLASSES; c++) {
        backend.by_class[c] = sgemm;
        backend.kernel[c] = name;
    }
    backend.how = how;
}

static pthread_once_t backend_once = PTHREAD_ONCE_INIT;

/* Our no-packing kernels for products that fit L2 (ops/gemm_thin.c) behind cblas_sgemm's
 * signature, the table's OpenBLAS for those that do not fit: a candidate like any other. */
static void thin_sgemm(int order, int trans_a, int trans_b, int m, int n, int k, float alpha,
                       const float *a, int lda, const float *b, int ldb, float beta, float *c,
                       int ldc) {
    if (!tgi_gemm_thin(trans_a == CBLAS_TRANS, trans_b == CBLAS_TRANS, m, n, k, alpha, a, lda, b,
                       ldb, beta, c, ldc))
        backend.sgemm(order, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/* ---- what the CPU can run ------------------------------------------------------------------ */

typedef struct cpu_features {
    bool amd, avx, avx2, fma, avx512; /* avx512: F, CD, BW, DQ and VL, with the OS saving ZMM */
    unsigned family;                  /* CPUID's family, the extended family added */
} cpu_features;

static cpu_features detect_cpu(void) {
    cpu_features f = {0};
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d)) return f;
    unsigned max_leaf = a;
    f.amd = b == 0x68747541; /* "Auth"enticAMD */
    if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
    f.family = (a >> 8) & 0xf;
    if (f.family == 0xf) f.family += (a >> 20) & 0xff;
    bool osxsave = c & (1u << 27), has_avx = c & (1u << 28), has_fma = c & (1u << 12);
    if (!osxsave) return f;
    unsigned xcr0_lo, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    bool ymm_saved = (xcr0_lo & 0x6) == 0x6;         /* SSE and AVX state */
    bool zmm_saved = (xcr0_lo & 0xe6) == 0xe6;       /* plus opmask and both ZMM halves */
    f.avx = has_avx && ymm_saved;
    f.fma = f.avx && has_fma;
    if (max_leaf < 7) return f;
    __cpuid_count(7, 0, a, b, c, d);
    f.avx2 = f.avx && (b & (1u << 5));
    const unsigned avx512_set = (1u << 16) | (1u << 17) | (1u << 28) | (1u << 30) | (1u << 31);
    f.avx512 = f.avx2 && zmm_saved && (b & avx512_set) == avx512_set; /* F DQ CD BW VL */
#endif
    return f;
}

/* AMD families whose AVX2 products run faster on OpenBLAS's Haswell kernels than on its Zen
 * ones, measured per CPU model and fixed here (a table, not a timing at start-up, so that the
 * numbers of a run do not depend on a measurement's luck). Family 19h without AVX-512 (Zen 3):
 * on an EPYC, one thread, OpenBLAS 0.3.21, Zen's time / Haswell's (bench_blas_cores: both in
 * one process, medians of 21 alternations) was 1.05 at the MLP's 64x256x256 NT and NN, 1.18 at
 * its 256x256x64 TN, 1.03-1.08 at the LSTM's 32x512x128 NT and 32x128x512 NN, 1.31 at its
 * 512x128x32 TN, 1.41 at 3200x512x16 NT, 1.00-1.02 at 1024-sized products: no shape class where
 * the Zen kernels won. Zen 1 and 2 (17h) are not measured and keep the Zen kernels. */
static bool haswell_beats_zen(const cpu_features *f) {
    return f->amd && f->family == 0x19;
}

/* The products that oneDNN's sgemm (2.6, its AVX2 kernels) computes faster than OpenBLAS 0.3.21's
 * Haswell kernels on AMD family 19h, one thread, time ratios oneDNN / OpenBLAS, medians of 21
 * alternations in one process: 0.88-0.90 at 64x{128,256}x256 NT and 32x{256,512}x128 NT (the
 * MLP's and the LSTM's forward pieces), 0.97-1.0 at 64x256x{128,256} NN, 0.91 at 32x128x512 NN;
 * but 1.17-1.34 at 128..256x256x64 TN (weight gradients) and 2.6 at 256x1024x1024 NN, so: A
 * not transposed, few rows, the rest at most 512. */
static bool small_class(bool trans_a, int64_t m, int64_t n, int64_t k) {
    return !trans_a && m <= 64 && n <= 512 && k <= 512;
}

/* The OpenBLAS core type for these features, or NULL to let OpenBLAS decide. */
static const char *core_type_for(const cpu_features *f, char *why, size_t size) {
    const char *core = NULL;
    bool measured = false;
    if (f->avx512) core = "SkylakeX";
    else if (f->avx2 && f->fma) {
        measured = haswell_beats_zen(f);
        core = f->amd && !measured ? "Zen" : "Haswell";
    } else if (f->avx) core = "Sandybridge";
    int n = snprintf(why, size, "%s%s%s%s", f->avx512 ? "AVX-512 " : "", f->avx2 ? "AVX2 " : "",
                     f->fma ? "FMA " : "", f->avx ? "AVX" : "SSE only");
    if (measured && n > 0 && (size_t)n < size)
        snprintf(why + n, size - (size_t)n, "; AMD family %xh: Haswell's measured faster than Zen's",
                 f->family);
    return core;
}

/* Whether a core type named by the user can run here (names OpenBLAS 0.3.21 knows that need
 * more than SSE; unknown names are left to OpenBLAS). */
static bool core_type_runs(const char *core, const cpu_features *f) {
    static const struct { const char *name; int level; } needs[] = {
        {"skylakex", 3}, {"cooperlake", 3}, {"sapphirerapids", 3},
        {"haswell", 2},  {"zen", 2},        {"sandybridge", 1}, {"bulldozer", 1},
        {"piledriver", 1}, {"steamroller", 1}, {"excavator", 1},
    };
    int level = f->avx512 ? 3 : f->avx2 && f->fma ? 2 : f->avx ? 1 : 0;
    for (size_t i = 0; i < sizeof needs / sizeof needs[0]; i++)
        if (strcasecmp(core, needs[i].name) == 0) return needs[i].level <= level;
    return true;
}

/* ---- the self-check ------------------------------------------------------------------------ */

static void call_blas(cblas_sgemm_fn sgemm, bool ta, bool tb, int m, int n, int k, const float *a,
                      const float *b, float *c) {
    sgemm(CBLAS_ROW_MAJOR, ta ? CBLAS_TRANS : CBLAS_NO_TRANS, tb ? CBLAS_TRANS : CBLAS_NO_TRANS, m,
          n, k, 0.75f, a, ta ? m : k, b, tb ? k : n, 0.5f, c, n);
}

/* Every transpose case on a small odd shape and one that reaches the main kernels. */
static bool blas_agrees(cblas_sgemm_fn sgemm) {
    enum { M = 67, N = 45, K = 129 };
    static float a[M * K], b[K * N], want[M * N], got[M * N];
    uint32_t x = 12345;
    for (int i = 0; i < M * K; i++) a[i] = (float)((x = x * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
    for (int i = 0; i < K * N; i++) b[i] = (float)((x = x * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
    const int shapes[][3] = {{M, N, K}, {5, 3, 7}, {1, 17, 2}};
    for (int s = 0; s < 3; s++)
        for (int t = 0; t < 4; t++) {
            int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
            bool ta = t & 1, tb = t & 2;
            for (int i = 0; i < m * n; i++) want[i] = got[i] = (float)(i % 7) - 3.0f;
            tgi_gemm_portable(ta, tb, m, n, k, 0.75f, a, ta ? m : k, b, tb ? k : n, 0.5f, want, n);
            call_blas(sgemm, ta, tb, m, n, k, a, b, got);
            for (int i = 0; i < m * n; i++)
                if (!(fabsf(got[i] - want[i]) <= 1e-4f * (float)k)) return false;
        }
    return true;
}

/* Measured here, not understood: Debian's OpenBLAS 0.3.21 (Zen kernels) runs small products
 * (64 x 128 x 256) at a third of its speed — 10 instead of 36 GFLOP/s — until the process has
 * made one product with m and n of 384 or more; k does not matter. bench/bench_models.c showed
 * it as a 20-layer MLP step of 41 ms or 20 ms depending on what ran before. One such product
 * (512 x 512 x 64, about 1 ms) at load time puts every later call on the fast path. */
static void warm_up(cblas_sgemm_fn sgemm) {
    enum { SIDE = 512, DEPTH = 64 };
    float *a = calloc((size_t)SIDE * DEPTH, sizeof(float)), *c = malloc((size_t)SIDE * SIDE * sizeof(float));
    if (a && c)
        sgemm(CBLAS_ROW_MAJOR, CBLAS_NO_TRANS, CBLAS_TRANS, SIDE, SIDE, DEPTH, 1.0f, a, DEPTH, a,
              DEPTH, 0.0f, c, SIDE);
    free(a);
    free(c);
}

/* ---- loading ------------------------------------------------------------------------------- */

/* Sets name=value unless the user set it; returns whether we did (to undo it). */
static bool set_env_default(const char *name, const char *value) {
    if (!value || getenv(name)) return false;
    return setenv(name, value, 0) == 0;
}

/* Puts the environment back as the user had it. */
static void restore_env(const char *name, bool we_set, const char *user_value) {
    if (user_value) setenv(name, user_value, 1);
    else if (we_set) unsetenv(name);
}

static char openblas_version[64] = "OpenBLAS"; /* "OpenBLAS 0.3.21": a part of the cache key */

static void describe_openblas(void *lib, const char *source, const char *chosen) {
    openblas_string_fn config = (openblas_string_fn)dlsym(lib, "openblas_get_config");
    openblas_string_fn corename = (openblas_string_fn)dlsym(lib, "openblas_get_corename");
    char *version = openblas_version;
    if (config) { /* "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Zen MAX_THREADS=64" */
        const char *s = config();
        size_t n = strcspn(s, " ");
        n += s[n] ? 1 + strcspn(s + n + 1, " ") : 0;
        snprintf(version, sizeof openblas_version, "%.*s", (int)n, s);
    }
    snprintf(backend.names[0], sizeof backend.names[0], "%s", corename ? corename() : "cblas");
    if (corename)
        snprintf(backend.description, sizeof backend.description, "%s, %s kernels (%s)", version,
                 corename(), chosen ? chosen : source);
    else
        snprintf(backend.description, sizeof backend.description, "%s (%s)", version, source);
}

static bool use_library(void *lib, const char *source, const char *chosen, tg_gemm_how how) {
    cblas_sgemm_fn sgemm = (cblas_sgemm_fn)dlsym(lib, "cblas_sgemm");
    if (!sgemm) return false;
    /* We cut products into pieces for our own threads; BLAS threads beside them would
     * oversubscribe the cores. */
    openblas_threads_fn threads = (openblas_threads_fn)dlsym(lib, "openblas_set_num_threads");
    if (threads) threads(1);
    describe_openblas(lib, source, chosen);
    if (!blas_agrees(sgemm)) {
        char found[sizeof backend.description];
        memcpy(found, backend.description, sizeof found);
        snprintf(backend.description, sizeof backend.description,
                 "portable (%.200s disagreed with the portable GEMM at start-up)", found);
        return true;
    }
    backend.sgemm = sgemm;
    use_everywhere(sgemm, backend.names[0], how);
    warm_up(sgemm);
    return true;
}

/* ---- oneDNN for the small class ------------------------------------------------------------ */

/* Each thread that calls oneDNN first gets its OpenMP team size set to one (an ICV of the
 * calling thread): our pieces are already spread over our threads. */
static _Thread_local bool omp_single;

static void dnnl_one_thread(void) {
    if (TGI_UNLIKELY(!omp_single)) {
        if (backend.omp_threads) backend.omp_threads(1);
        omp_single = true;
    }
}

static dnnl_sgemm_fn dnnl_checked; /* what dnnl_as_cblas calls (the self-check's candidate) */

/* oneDNN behind the cblas signature, row-major only, for the self-check */
static void dnnl_as_cblas(int order, int trans_a, int trans_b, int m, int n, int k, float alpha,
                          const float *a, int lda, const float *b, int ldb, float beta, float *c,
                          int ldc) {
    (void)order;
    dnnl_one_thread();
    dnnl_checked(trans_a == CBLAS_TRANS ? 'T' : 'N', trans_b == CBLAS_TRANS ? 'T' : 'N', m, n, k,
                 alpha, a, lda, b, ldb, beta, c, ldc);
}

/* Loads oneDNN for small_class beside OpenBLAS (when OpenBLAS is in use); OMP_NUM_THREADS=1 for
 * the load, unless the user set it. */
static void load_dnnl(void) {
    if (!backend.sgemm) return;
    bool set_threads = set_env_default("OMP_NUM_THREADS", "1");
    void *lib = dlopen("libdnnl.so.2", RTLD_NOW | RTLD_LOCAL);
    restore_env("OMP_NUM_THREADS", set_threads, NULL);
    if (!lib) return;
    dnnl_sgemm_fn sgemm = (dnnl_sgemm_fn)dlsym(lib, "dnnl_sgemm");
    dnnl_version_fn version = (dnnl_version_fn)dlsym(lib, "dnnl_version");
    backend.omp_threads = (openblas_threads_fn)dlsym(lib, "omp_set_num_threads");
    dnnl_checked = sgemm;
    if (!sgemm || !version || !blas_agrees(dnnl_as_cblas)) return; /* the handle stays open */
    const dnnl_version_t *v = version();
    size_t used = strlen(backend.description);
    snprintf(backend.description + used, sizeof backend.description - used,
             "; oneDNN %d.%d dnnl_sgemm for thin products (m <= 64, n and k <= 512, A not "
             "transposed: TAPEGRAD_BLAS=openblas+onednn)", v->major, v->minor);
    backend.small = sgemm;
}

/* ---- kernels per shape class, measured once per machine ------------------------------------ */

static const char *openblas_name = "libopenblas.so.0"; /* the name that loaded */

/* The other core type worth timing against the table's: AVX2 machines have Haswell's and Zen's,
 * AVX-512 ones SkylakeX's and Haswell's; NULL when there is none. */
static const char *other_core(const cpu_features *f, const char *core) {
    if (!core) return NULL;
    if (f->avx512) return strcmp(core, "Haswell") == 0 ? "SkylakeX" : "Haswell";
    if (f->avx2 && f->fma) return strcmp(core, "Haswell") == 0 ? "Zen" : "Haswell";
    return NULL;
}

/* What the cache is keyed by: the CPU's brand string, family, model and stepping, OpenBLAS's
 * version, ours, and the candidates. */
static void cache_key(const tgi_gemm_kernels *k, char *key, size_t size) {
    char brand[49] = "unknown CPU";
    unsigned signature = 0;
#if defined(__x86_64__) || defined(__i386__)
    unsigned r[12], a, b, c, d;
    if (__get_cpuid(0x80000000, &a, &b, &c, &d) && a >= 0x80000004) {
        for (unsigned i = 0; i < 3; i++)
            __get_cpuid(0x80000002 + i, &r[4 * i], &r[4 * i + 1], &r[4 * i + 2], &r[4 * i + 3]);
        memcpy(brand, r, 48);
        brand[48] = 0;
    }
    if (__get_cpuid(1, &a, &b, &c, &d)) signature = a;
#endif
    const char *start = brand;
    while (*start == ' ') start++;
    int n = snprintf(key, size, "%s|cpuid %08x|%s|tapegrad %d.%d.%d|", start, signature,
                     openblas_version, TG_VERSION_MAJOR, TG_VERSION_MINOR, TG_VERSION_PATCH);
    for (int e = 0; e < k->count && n > 0 && (size_t)n < size; e++)
        n += snprintf(key + n, size - (size_t)n, "%s%s", e ? " " : "", k->name[e]);
}

/* OpenBLAS under another core type, in a link namespace of its own (a second copy: its core
 * type is fixed when it loads); NULL when it cannot be had or disagrees with ours. */
static cblas_sgemm_fn load_core_apart(const char *core) {
#ifdef LM_ID_NEWLM
    /* the user's value (set, but one this CPU cannot run: tuning still applies) is put back */
    char user_core[64] = "";
    if (getenv("OPENBLAS_CORETYPE"))
        snprintf(user_core, sizeof user_core, "%s", getenv("OPENBLAS_CORETYPE"));
    setenv("OPENBLAS_CORETYPE", core, 1);
    bool set_threads = set_env_default("OPENBLAS_NUM_THREADS", "1");
    void *lib = dlmopen(LM_ID_NEWLM, openblas_name, RTLD_NOW | RTLD_LOCAL);
    restore_env("OPENBLAS_CORETYPE", true, user_core[0] ? user_core : NULL);
    restore_env("OPENBLAS_NUM_THREADS", set_threads, NULL);
    if (!lib) return NULL;
    cblas_sgemm_fn sgemm = (cblas_sgemm_fn)dlsym(lib, "cblas_sgemm");
    openblas_string_fn corename = (openblas_string_fn)dlsym(lib, "openblas_get_corename");
    openblas_threads_fn threads = (openblas_threads_fn)dlsym(lib, "openblas_set_num_threads");
    if (threads) threads(1);
    /* a library that ignored the core type would be timed against itself */
    if (!sgemm || !corename || strcasecmp(corename(), core) != 0 || !blas_agrees(sgemm)) {
        dlclose(lib);
        return NULL;
    }
    warm_up(sgemm);
    return sgemm; /* the handle stays open while its kernels are in use */
#else
    (void)core;
    return NULL;
#endif
}

/* Chooses the kernels of each shape class: from the cache file if it holds this machine's
 * decision, else by timing the candidates (and keeping the decision there). The table's
 * OpenBLAS (`core`) is loaded and in backend.sgemm. */
static void choose_per_class(const cpu_features *cpu, const char *core) {
    tgi_gemm_kernels k = {0};
    k.name[k.count] = backend.names[0];
    k.sgemm[k.count++] = backend.sgemm;
    const char *other = other_core(cpu, core);
    int other_index = -1;
    if (other) {
        snprintf(backend.names[1], sizeof backend.names[1], "%s", other);
        other_index = k.count;
        k.name[k.count++] = backend.names[1];
    }
    k.name[k.count++] = "portable"; /* sgemm NULL */
    if (tgi_gemm_thin_fused()) {
        k.name[k.count] = "thin";
        k.sgemm[k.count++] = thin_sgemm;
    }
    char key[400], path[512], where[600] = "", err[128];
    cache_key(&k, key, sizeof key);
    bool have_path = tgi_gemm_cache_path(key, path, sizeof path);
    tgi_gemm_decision d = {0};
    tg_gemm_how how;
    if (have_path && tgi_gemm_cache_read(path, key, &k, &d)) {
        how = TG_GEMM_CACHED;
        bool other_wanted = false;
        for (int c = 0; c < TGI_GEMM_CLASSES; c++) other_wanted |= d.kernel[c] == other_index;
        if (other_wanted && !(k.sgemm[other_index] = load_core_apart(other)))
            for (int c = 0; c < TGI_GEMM_CLASSES; c++) /* cannot be had now: the table's */
                if (d.kernel[c] == other_index) d.kernel[c] = 0;
        snprintf(where, sizeof where, "as measured before on this machine, kept in %s", path);
    } else {
        how = TG_GEMM_MEASURED;
        if (other_index >= 0 && !(k.sgemm[other_index] = load_core_apart(other))) {
            for (int e = other_index; e + 1 < k.count; e++) { /* the others move down */
                k.name[e] = k.name[e + 1];
                k.sgemm[e] = k.sgemm[e + 1];
            }
            k.count--;
        }
        if (!tgi_gemm_measure(&k, &d)) return; /* out of memory: the table's kernels */
        double took = d.seconds;
        if (!have_path)
            snprintf(where, sizeof where, "measured at first use (%.0f ms), not kept: %s", 1e3 * took,
                     getenv("TAPEGRAD_BLAS_CACHE") ? "TAPEGRAD_BLAS_CACHE is empty" : "no HOME");
        else if (!tgi_gemm_cache_write(path, key, &k, &d, err, sizeof err))
            snprintf(where, sizeof where, "measured at first use (%.0f ms), not kept: %.200s: %s",
                     1e3 * took, path, err);
        else
            snprintf(where, sizeof where, "measured at first use (%.0f ms), kept in %s", 1e3 * took, path);
    }
    for (int c = 0; c < TGI_GEMM_CLASSES; c++) {
        backend.by_class[c] = k.sgemm[d.kernel[c]];
        backend.kernel[c] = k.name[d.kernel[c]];
    }
    backend.how = how;
    size_t used = strlen(backend.description);
    int n = snprintf(backend.description + used, sizeof backend.description - used,
                     "; per shape class, %s:", where);
    for (int c = 0; c < TGI_GEMM_CLASSES && n > 0; c++) {
        used += (size_t)n;
        if (used >= sizeof backend.description) break;
        n = snprintf(backend.description + used, sizeof backend.description - used, " %s %s%s",
                     tgi_gemm_class_name(c), backend.kernel[c], c + 1 < TGI_GEMM_CLASSES ? "," : "");
    }
}

static void load_openblas(bool with_dnnl) {
    char why[128], chosen[256];
    cpu_features cpu = detect_cpu();
    const char *core = core_type_for(&cpu, why, sizeof why);
    char user_core[64] = "";
    const char *tune = getenv("TAPEGRAD_BLAS_TUNE");
    bool tune_off = tune && strcmp(tune, "0") == 0;
    if (getenv("OPENBLAS_CORETYPE"))
        snprintf(user_core, sizeof user_core, "%s", getenv("OPENBLAS_CORETYPE"));
    if (user_core[0] && !core_type_runs(user_core, &cpu)) {
        /* its kernels would die of an illegal instruction: ours for the time of the load */
        snprintf(chosen, sizeof chosen, "OPENBLAS_CORETYPE=%s needs what this CPU lacks; chosen "
                 "from the CPU instead: %s", user_core, why);
        if (core) setenv("OPENBLAS_CORETYPE", core, 1);
        else unsetenv("OPENBLAS_CORETYPE");
    } else if (user_core[0]) {
        snprintf(chosen, sizeof chosen, "OPENBLAS_CORETYPE=%s from the environment", user_core);
    } else if (core) {
        snprintf(chosen, sizeof chosen, "chosen from the CPU: %s%s", why, tune_off ? "; TAPEGRAD_BLAS_TUNE=0" : "");
    } else {
        snprintf(chosen, sizeof chosen, "OpenBLAS's own choice: %s%s", why, tune_off ? "; TAPEGRAD_BLAS_TUNE=0" : "");
    }
    bool set_core = set_env_default("OPENBLAS_CORETYPE", core);
    bool set_threads = set_env_default("OPENBLAS_NUM_THREADS", "1");
    void *lib = dlopen(openblas_name, RTLD_NOW | RTLD_LOCAL);
    if (!lib) lib = dlopen(openblas_name = "libopenblas.so", RTLD_NOW | RTLD_LOCAL);
    restore_env("OPENBLAS_CORETYPE", set_core, user_core[0] ? user_core : NULL);
    restore_env("OPENBLAS_NUM_THREADS", set_threads, NULL);
    tg_gemm_how how = user_core[0] && core_type_runs(user_core, &cpu) ? TG_GEMM_GIVEN : TG_GEMM_TABLE;
    if (!lib || !use_library(lib, "loaded", chosen, how))
        snprintf(backend.description, sizeof backend.description,
                 "portable (no OpenBLAS found: libopenblas.so.0 did not load)");
    /* The handle stays open for the life of the process: its kernels are in use. */
    else if (how == TG_GEMM_TABLE && backend.sgemm && !tune_off)
        choose_per_class(&cpu, core);
    if (with_dnnl) load_dnnl();
}

static void choose_backend(void) {
    use_everywhere(NULL, "portable", TG_GEMM_NO_BLAS);
#ifdef TG_USE_BLAS
    const char *request = getenv("TAPEGRAD_BLAS");
    if (request && strcmp(request, "portable") == 0) {
        snprintf(backend.description, sizeof backend.description, "portable (TAPEGRAD_BLAS=portable)");
        return;
    }
    bool with_dnnl = request && strcmp(request, "openblas+onednn") == 0;
    if (request && *request && !with_dnnl && strcmp(request, "openblas") != 0) {
        void *lib = dlopen(request, RTLD_NOW | RTLD_LOCAL);
        if (!lib || !use_library(lib, "TAPEGRAD_BLAS", NULL, TG_GEMM_GIVEN))
            snprintf(backend.description, sizeof backend.description,
                     "portable (TAPEGRAD_BLAS=%.160s has no cblas_sgemm or did not load)", request);
        return;
    }
    void *self = dlopen(NULL, RTLD_NOW);
    if (self && dlsym(self, "cblas_sgemm") && use_library(self, "linked by the program", NULL, TG_GEMM_GIVEN)) return;
    load_openblas(with_dnnl);
#else
    snprintf(backend.description, sizeof backend.description, "portable (built with -Dblas=false)");
#endif
}

/* The sgemm to use, or NULL for the portable GEMM. */
static cblas_sgemm_fn blas_sgemm(void) {
    pthread_once(&backend_once, choose_backend);
    return backend.sgemm;
}

const char *tg_gemm_backend(void) {
    pthread_once(&backend_once, choose_backend);
    return backend.description;
}

tg_gemm_how tg_gemm_choice(bool trans_a, int64_t m, int64_t n, int64_t k, const char **kernels) {
    pthread_once(&backend_once, choose_backend);
    if (kernels) {
        *kernels = backend.kernel[tgi_gemm_class(trans_a, m, n, k)];
        /* the thin kernels hand a product that does not fit L2 to the table's OpenBLAS */
        if (strcmp(*kernels, "thin") == 0 && !tgi_gemm_thin_fits(trans_a, false, m, n, k))
            *kernels = backend.names[0];
    }
    return backend.how;
}

bool tgi_blas_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                   const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                   int64_t ldc) {
    if (!blas_sgemm()) return false;
    cblas_sgemm_fn sgemm = backend.by_class[tgi_gemm_class(trans_a, m, n, k)];
    if (!sgemm) return false; /* the portable GEMM for this class */
    /* The usual BLAS builds take 32-bit ints: larger dims would be truncated. */
    if (m > INT32_MAX || n > INT32_MAX || k > INT32_MAX || lda > INT32_MAX || ldb > INT32_MAX ||
        ldc > INT32_MAX)
        return false;
    if (backend.small && small_class(trans_a, m, n, k)) {
        dnnl_one_thread();
        if (backend.small(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb,
                          beta, c, ldc) == 0)
            return true;
        /* a status other than success (it checks its arguments first): OpenBLAS instead */
    }
    sgemm(CBLAS_ROW_MAJOR, trans_a ? CBLAS_TRANS : CBLAS_NO_TRANS,
          trans_b ? CBLAS_TRANS : CBLAS_NO_TRANS, (int)m, (int)n, (int)k, alpha, a, (int)lda, b,
          (int)ldb, beta, c, (int)ldc);
    return true;
}
