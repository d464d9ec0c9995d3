/*
 * resp_speed: the response scanner alone, as the body filter drives it.
 *
 *   resp_speed FILE SHA256 [SECONDS] [CHUNK]
 *
 * Reads FILE (an images API JSON answer with one base64 PNG), then for at
 * least SECONDS (default 1.5) of CPU time: gi2_resp_create(), feed the
 * whole file in CHUNK-byte pieces (default 16384, nginx's buffer size on
 * the proxy path), gi2_resp_finish(), gi2_resp_destroy() -- one
 * response per pass.  Every pass must find exactly one complete PNG whose
 * SHA-256 is SHA256 (hex); anything else is a failure (exit 1).
 *
 * Prints one line:
 *
 *   MBPS PASSES BYTES SHA_US
 *
 * MBPS is the median over the passes of the file's size (10^6 bytes) per
 * second of this thread's CPU time.  SHA_US is what SHA-256 alone (one
 * OpenSSL EVP call over as many bytes as the PNG has) takes, in
 * microseconds, median of as many passes: the part of the scanner's work
 * that no decoding trick removes.
 *
 * Built by bench/response.sh against the module's core sources; a bench
 * helper, not part of the module.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/evp.h>

#include "gi2_resp.h"


static void *
speed_alloc(void *data, size_t size)
{
    return malloc(size);
}


static void
speed_free(void *data, void *p)
{
    free(p);
}


static double
cpu_now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}


static int
cmp_double(const void *a, const void *b)
{
    double  x = *(const double *) a, y = *(const double *) b;

    return (x > y) - (x < y);
}


static int
check(const gi2_resp_result_t *res, const char *want, size_t pass)
{
    int                 i;
    char                hex[65];
    const gi2_image_t  *im;

    if (res->nimages != 1 || res->images_total != 1 || res->malformed
        || res->truncated)
    {
        fprintf(stderr, "resp_speed: pass %zu: %u image(s), malformed %u,"
                " truncated %u\n", pass, res->nimages, res->malformed,
                res->truncated);
        return -1;
    }

    im = &res->image[0];

    for (i = 0; i < 32; i++) {
        snprintf(hex + 2 * i, 3, "%02x", im->sha256[i]);
    }

    if (strcmp(hex, want) != 0 || im->truncated || im->bad_base64
        || strcmp(im->format, "png") != 0)
    {
        fprintf(stderr, "resp_speed: pass %zu: sha256 %s (want %s), format"
                " \"%s\", truncated %u, bad_base64 %u\n", pass, hex, want,
                im->format, im->truncated, im->bad_base64);
        return -1;
    }

    return 0;
}


int
main(int argc, char **argv)
{
    FILE           *f;
    long            size;
    size_t          chunk, off, n, pass, cap, i, img;
    double          seconds, t0, t1, start, *rate, *sha;
    unsigned char   md[EVP_MAX_MD_SIZE];
    gi2_resp_t     *r;
    unsigned char  *buf;
    gi2_alloc_t     a = { speed_alloc, NULL, speed_free };

    if (argc < 3) {
        fprintf(stderr, "usage: resp_speed FILE SHA256 [SECONDS] [CHUNK]\n");
        return 2;
    }

    seconds = (argc > 3) ? atof(argv[3]) : 1.5;
    chunk = (argc > 4) ? (size_t) atol(argv[4]) : 16384;

    if (seconds <= 0 || chunk == 0) {
        fprintf(stderr, "resp_speed: bad SECONDS or CHUNK\n");
        return 2;
    }

    f = fopen(argv[1], "rb");
    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) <= 0) {
        perror(argv[1]);
        return 1;
    }

    rewind(f);
    buf = malloc(size);
    if (buf == NULL || fread(buf, 1, size, f) != (size_t) size) {
        perror(argv[1]);
        return 1;
    }
    fclose(f);

    cap = 1024;
    rate = malloc(cap * sizeof(double));
    if (rate == NULL) {
        return 1;
    }

    start = cpu_now();

    for (pass = 0; pass == 0 || cpu_now() - start < seconds; pass++) {
        t0 = cpu_now();

        r = gi2_resp_create(0, &a);
        if (r == NULL) {
            fprintf(stderr, "resp_speed: gi2_resp_create failed\n");
            return 1;
        }

        for (off = 0; off < (size_t) size; off += n) {
            n = (size_t) size - off < chunk ? (size_t) size - off : chunk;
            if (gi2_resp_feed(r, buf + off, n) != GI2_OK) {
                fprintf(stderr, "resp_speed: gi2_resp_feed failed\n");
                return 1;
            }
        }

        (void) gi2_resp_finish(r);
        t1 = cpu_now();

        if (check(gi2_resp_result(r), argv[2], pass) != 0) {
            return 1;
        }

        img = gi2_resp_result(r)->image[0].bytes;

        gi2_resp_destroy(r);

        if (pass == cap) {
            cap *= 2;
            rate = realloc(rate, cap * sizeof(double));
            if (rate == NULL) {
                return 1;
            }
        }

        rate[pass] = (t1 > t0) ? size / 1e6 / (t1 - t0) : 0;
    }

    qsort(rate, pass, sizeof(double), cmp_double);

    /* SHA-256 alone, over as many bytes as the image has */

    sha = malloc(pass * sizeof(double));
    if (sha == NULL || img > (size_t) size) {
        return 1;
    }

    for (i = 0; i < pass; i++) {
        t0 = cpu_now();

        if (EVP_Digest(buf, img, md, NULL, EVP_sha256(), NULL) != 1) {
            fprintf(stderr, "resp_speed: EVP_Digest failed\n");
            return 1;
        }

        sha[i] = cpu_now() - t0;
    }

    qsort(sha, pass, sizeof(double), cmp_double);

    printf("%.0f %zu %ld %.0f\n",
           (pass % 2) ? rate[pass / 2]
                      : (rate[pass / 2 - 1] + rate[pass / 2]) / 2,
           pass, size, sha[pass / 2] * 1e6);

    free(sha);
    free(rate);
    free(buf);

    return 0;
}
