/* OpenBLAS's own cblas_sgemm on the bench's GEMM shapes (row-major, C = A·B, beta = 0), median of timed repeats
 * after warm-up, printed as GFLOP/s (2mnk / time): the reference for mixgrad's CPU matmul, which calls it.
 * Build: gcc -O2 apps/bench/peers/openblas_sgemm.c -I/usr/include/x86_64-linux-gnu/openblas-pthread \
 *          -L/usr/lib/x86_64-linux-gnu/openblas-pthread -lopenblas -o /tmp/sgemm
 * Run:   /tmp/sgemm [threads] [repeats] [warmup]      (defaults: OpenBLAS's thread count, 10, 2) */
#define _POSIX_C_SOURCE 199309L
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int cmp_double(const void* a, const void* b) {
  const double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

static float* random_matrix(long n) {
  float* p = malloc((size_t)n * sizeof(float));
  if (!p) {
    fprintf(stderr, "sgemm: out of memory\n");
    exit(1);
  }
  for (long i = 0; i < n; ++i) p[i] = (float)rand() / (float)RAND_MAX - 0.5f;
  return p;
}

int main(int argc, char** argv) {
  const int threads = argc > 1 ? atoi(argv[1]) : 0;
  const int repeats = argc > 2 ? atoi(argv[2]) : 10;
  const int warmup = argc > 3 ? atoi(argv[3]) : 2;
  if (repeats < 1 || warmup < 0 || threads < 0) {
    fprintf(stderr, "usage: %s [threads >= 0] [repeats >= 1] [warmup >= 0]\n", argv[0]);
    return 2;
  }
  if (threads > 0) openblas_set_num_threads(threads);
  /* m, k, n: the square sizes, then the fmnist-tiny ViT's [B·N, D] x [D, out] (B=128, N=50, D=64). */
  static const int shapes[][3] = {{256, 256, 256},  {512, 512, 512},  {1024, 1024, 1024}, {2048, 2048, 2048},
                                  {6400, 64, 192}, {6400, 64, 64}, {6400, 64, 256},     {6400, 256, 64}};
  printf("OpenBLAS cblas_sgemm, %d threads (%s), median of %d after %d warm-up\n", openblas_get_num_threads(),
         openblas_get_config(), repeats, warmup);
  printf("%-24s %10s %10s\n", "shape", "ms", "GFLOP/s");
  double* times = malloc((size_t)repeats * sizeof(double));
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; ++s) {
    const int m = shapes[s][0], k = shapes[s][1], n = shapes[s][2];
    float *a = random_matrix((long)m * k), *b = random_matrix((long)k * n), *c = random_matrix((long)m * n);
    for (int r = -warmup; r < repeats; ++r) {
      const double t0 = now_ms();
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a, k, b, n, 0.0f, c, n);
      const double t = now_ms() - t0;
      if (r >= 0) times[r] = t;
    }
    qsort(times, (size_t)repeats, sizeof(double), cmp_double);
    const double ms = repeats % 2 ? times[repeats / 2] : 0.5 * (times[repeats / 2 - 1] + times[repeats / 2]);
    char shape[64];
    snprintf(shape, sizeof shape, "[%d, %d] @ [%d, %d]", m, k, k, n);
    printf("%-24s %10.4f %10.1f\n", shape, ms, 2.0 * m * n * k / (ms * 1e6));
    free(a);
    free(b);
    free(c);
  }
  free(times);
  return 0;
}
