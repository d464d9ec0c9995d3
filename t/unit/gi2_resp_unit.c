/*
 * Unit tests of the response scanner (gi2_resp.c).  Real PNG, JPEG and
 * WebP bytes are built here, base64-encoded, wrapped in image API
 * responses and SSE transcripts, and fed whole, byte by byte, split at
 * every position and in random pieces: every way must give the same
 * result.  Hashes are checked against OpenSSL's one-shot SHA256().  Emits
 * TAP for prove (t/01-resp-unit.t).
 *
 * Random tests use a fixed seed so that a failure reproduces;
 * GI2_UNIT_SEED changes it.
 */

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/sha.h>

#include "gi2_core.h"
#include "gi2_resp.h"
#include "unit_tap.h"


#define S(s)              (s), (sizeof(s) - 1)

#define UNIT_SLASH        1     /* base64: write '/' as "\/" */

#define UNIT_C2PA         1     /* image builders */
#define UNIT_C2PA_LATE    2     /* PNG: caBX after IDAT */
#define UNIT_FILL         4     /* JPEG: fill bytes, DHT before SOF */
#define UNIT_SOF2         8     /* JPEG: progressive */
#define UNIT_APP11_OTHER  16    /* JPEG: an APP11 that is not JUMBF */
#define UNIT_VP8          32    /* WebP: simple lossy */
#define UNIT_VP8L         64    /* WebP: simple lossless */

#define UNIT_WHOLE        0
#define UNIT_BYTES        1
#define UNIT_RANDOM       2
#define UNIT_SPLIT        3


typedef struct {
    unsigned char       *p;
    size_t               len;
    size_t               cap;
} unit_buf_t;

typedef struct {
    size_t               allocs;
    size_t               live;
    long                 fail_after;  /* allocations granted, -1: all */
} unit_heap_t;


static void *unit_alloc(void *data, size_t size);
static void unit_free(void *data, void *p);
static void unit_srand(uint64_t seed);
static uint64_t unit_rand(void);
static size_t unit_rnd(size_t n);

static void buf_free(unit_buf_t *b);
static void buf_put(unit_buf_t *b, const void *data, size_t n);
static void buf_str(unit_buf_t *b, const char *s);
static void buf_fmt(unit_buf_t *b, const char *fmt, ...);
static void buf_u8(unit_buf_t *b, unsigned v);
static void buf_be16(unit_buf_t *b, uint32_t v);
static void buf_be32(unit_buf_t *b, uint32_t v);
static void buf_le16(unit_buf_t *b, uint32_t v);
static void buf_le24(unit_buf_t *b, uint32_t v);
static void buf_le32(unit_buf_t *b, uint32_t v);
static void buf_random(unit_buf_t *b, size_t n);
static void buf_b64(unit_buf_t *b, const unsigned char *data, size_t n,
    int flags);

static uint32_t unit_crc32(const unsigned char *p, size_t n, uint32_t crc);
static void png_chunk(unit_buf_t *b, const char *type,
    const unsigned char *data, size_t n);
static void build_png(unit_buf_t *b, uint32_t w, uint32_t h, int flags);
static void build_jpeg(unit_buf_t *b, uint32_t w, uint32_t h, int flags);
static void build_webp(unit_buf_t *b, uint32_t w, uint32_t h, int flags);

static int scan(int sse, const unit_buf_t *body, int how, size_t arg,
    gi2_resp_result_t *out);
static int result_diff(const gi2_resp_result_t *a,
    const gi2_resp_result_t *b, char *why, size_t len);
static void scan_all(const char *name, int sse, const unit_buf_t *body,
    gi2_resp_result_t *out);
static void image_is(const char *name, const gi2_image_t *img,
    const unit_buf_t *raw, const char *format, uint32_t w, uint32_t h,
    int c2pa, int index);
static void image_prefix_is(const char *name, const gi2_image_t *img,
    const unit_buf_t *raw, size_t bytes);
static void str_is(const char *name, const char *got, const char *want);
static void num_is(const char *name, int64_t got, int64_t want);

static void sse_event(unit_buf_t *b, const char *event, const char *type,
    const unit_buf_t *img, int type_last, const char *extra, const char *nl);
static void b64_case(const char *name, const char *b64, size_t bytes,
    int bad, const char *raw);

static void test_json_single(void);
static void test_json_three(void);
static void test_json_urls(void);
static void test_json_many(void);
static void test_errors(void);
static void test_error_strings(void);
static void test_sse(void);
static void test_sse_error(void);
static void test_sse_edges(void);
static void test_responses_api(void);
static void test_truncated(void);
static void test_malformed(void);
static void test_deep(void);
static void test_escapes(void);
static void test_base64(void);
static void test_sniff(void);
static void test_numbers(void);
static void test_splits(void);
static void test_fuzz(void);
static void test_api(void);
static void test_large(void);
static void test_simd(void);


static uint64_t      unit_state;
static uint64_t      unit_seed = 0x6769327265737073ULL;
static unit_heap_t   unit_heap = { 0, 0, -1 };
static gi2_alloc_t   unit_a = { unit_alloc, &unit_heap, unit_free };


/* harness */

static void *
unit_alloc(void *data, size_t size)
{
    unit_heap_t  *heap;
    void         *p;

    heap = data;

    if (heap->fail_after == 0) {
        return NULL;
    }

    if (heap->fail_after > 0) {
        heap->fail_after--;
    }

    p = malloc(size);
    if (p == NULL) {
        return NULL;
    }

    heap->allocs++;
    heap->live++;

    return p;
}


static void
unit_free(void *data, void *p)
{
    unit_heap_t  *heap;

    heap = data;
    heap->live--;

    free(p);
}




static void
unit_srand(uint64_t seed)
{
    unit_state = seed ? seed : 1;
}


/* xorshift64* */

static uint64_t
unit_rand(void)
{
    unit_state ^= unit_state >> 12;
    unit_state ^= unit_state << 25;
    unit_state ^= unit_state >> 27;

    return unit_state * 0x2545f4914f6cdd1dULL;
}


static size_t
unit_rnd(size_t n)
{
    return (size_t) ((unit_rand() >> 11) % n);
}


/* growable buffers */

static void
buf_free(unit_buf_t *b)
{
    free(b->p);
    b->p = NULL;
    b->len = 0;
    b->cap = 0;
}


static void
buf_put(unit_buf_t *b, const void *data, size_t n)
{
    size_t          cap;
    unsigned char  *p;

    if (b->len + n + 1 > b->cap) {
        cap = b->cap ? b->cap : 256;

        while (cap < b->len + n + 1) {
            cap *= 2;
        }

        p = realloc(b->p, cap);
        if (p == NULL) {
            unit_diag("out of memory");
            exit(2);
        }

        b->p = p;
        b->cap = cap;
    }

    if (n) {
        memcpy(b->p + b->len, data, n);
    }

    b->len += n;
    b->p[b->len] = '\0';
}


static void
buf_str(unit_buf_t *b, const char *s)
{
    buf_put(b, s, strlen(s));
}


static void
buf_fmt(unit_buf_t *b, const char *fmt, ...)
{
    char     tmp[4096];
    int      n;
    va_list  args;

    va_start(args, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, args);
    va_end(args);

    if (n < 0 || (size_t) n >= sizeof(tmp)) {
        unit_diag("buf_fmt: too long");
        exit(2);
    }

    buf_put(b, tmp, (size_t) n);
}


static void
buf_u8(unit_buf_t *b, unsigned v)
{
    unsigned char  c;

    c = (unsigned char) v;
    buf_put(b, &c, 1);
}


static void
buf_be16(unit_buf_t *b, uint32_t v)
{
    buf_u8(b, v >> 8);
    buf_u8(b, v);
}


static void
buf_be32(unit_buf_t *b, uint32_t v)
{
    buf_be16(b, v >> 16);
    buf_be16(b, v);
}


static void
buf_le16(unit_buf_t *b, uint32_t v)
{
    buf_u8(b, v);
    buf_u8(b, v >> 8);
}


static void
buf_le24(unit_buf_t *b, uint32_t v)
{
    buf_le16(b, v);
    buf_u8(b, v >> 16);
}


static void
buf_le32(unit_buf_t *b, uint32_t v)
{
    buf_le16(b, v);
    buf_le16(b, v >> 16);
}


static void
buf_random(unit_buf_t *b, size_t n)
{
    uint64_t  w;

    while (n >= 8) {
        w = unit_rand();
        buf_put(b, &w, 8);
        n -= 8;
    }

    while (n--) {
        buf_u8(b, (unsigned) unit_rand());
    }
}


static void
buf_b64(unit_buf_t *b, const unsigned char *data, size_t n, int flags)
{
    size_t          i, j, k;
    uint32_t        v;
    unsigned char   q[4], *chunk;
    static const char  digits[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    chunk = malloc(8192);
    if (chunk == NULL) {
        exit(2);
    }

    k = 0;

    for (i = 0; i < n; i += 3) {
        v = (uint32_t) data[i] << 16;

        if (i + 1 < n) {
            v |= (uint32_t) data[i + 1] << 8;
        }

        if (i + 2 < n) {
            v |= data[i + 2];
        }

        q[0] = (unsigned char) digits[(v >> 18) & 63];
        q[1] = (unsigned char) digits[(v >> 12) & 63];
        q[2] = (i + 1 < n) ? (unsigned char) digits[(v >> 6) & 63] : '=';
        q[3] = (i + 2 < n) ? (unsigned char) digits[v & 63] : '=';

        for (j = 0; j < 4; j++) {
            if ((flags & UNIT_SLASH) && q[j] == '/') {
                chunk[k++] = '\\';
            }

            chunk[k++] = q[j];
        }

        if (k > 8192 - 16) {
            buf_put(b, chunk, k);
            k = 0;
        }
    }

    buf_put(b, chunk, k);
    free(chunk);
}


/* image builders: small and real, decodable by ordinary viewers */

static uint32_t
unit_crc32(const unsigned char *p, size_t n, uint32_t crc)
{
    int  k;

    crc = ~crc;

    while (n--) {
        crc ^= *p++;

        for (k = 0; k < 8; k++) {
            crc = (crc >> 1) ^ (0xedb88320 & (0 - (crc & 1)));
        }
    }

    return ~crc;
}


static void
png_chunk(unit_buf_t *b, const char *type, const unsigned char *data,
    size_t n)
{
    uint32_t  crc;

    buf_be32(b, (uint32_t) n);
    buf_put(b, type, 4);
    buf_put(b, data, n);

    crc = unit_crc32((const unsigned char *) type, 4, 0);
    crc = unit_crc32(data, n, crc);
    buf_be32(b, crc);
}


/*
 * RGB, 8 bits, filter 0 rows of random pixels, in a zlib stream of stored
 * deflate blocks: a valid PNG with no compressor at hand.
 */

static void
build_png(unit_buf_t *b, uint32_t w, uint32_t h, int flags)
{
    size_t          i, n, row;
    uint32_t        s1, s2;
    unit_buf_t      raw = { NULL, 0, 0 }, z = { NULL, 0, 0 };
    unit_buf_t      ihdr = { NULL, 0, 0 }, cabx = { NULL, 0, 0 };

    static const unsigned char  sig[8] = {
        0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'
    };

    buf_put(b, sig, 8);

    buf_be32(&ihdr, w);
    buf_be32(&ihdr, h);
    buf_put(&ihdr, "\x08\x02\x00\x00\x00", 5);
    png_chunk(b, "IHDR", ihdr.p, ihdr.len);

    /* a JUMBF superbox as C2PA puts it: length, "jumb", a jumd box */

    buf_be32(&cabx, 8 + 8 + 21);
    buf_str(&cabx, "jumb");
    buf_be32(&cabx, 8 + 21);
    buf_str(&cabx, "jumd");
    buf_put(&cabx, "c2pa\x00\x11\x00\x10\x80\x00\xaa\x00\x38\x9b\x71\x03"
            "c2pa", 20);
    buf_u8(&cabx, 0);

    if (flags & UNIT_C2PA) {
        png_chunk(b, "caBX", cabx.p, cabx.len);
    }

    row = 1 + (size_t) w * 3;

    for (i = 0; i < h; i++) {
        buf_u8(&raw, 0);
        buf_random(&raw, row - 1);
    }

    buf_put(&z, "\x78\x01", 2);

    for (i = 0; i < raw.len || i == 0; i += n) {
        n = raw.len - i;

        if (n > 65535) {
            n = 65535;
        }

        buf_u8(&z, (i + n == raw.len) ? 1 : 0);
        buf_le16(&z, (uint32_t) n);
        buf_le16(&z, (uint32_t) ~n);
        buf_put(&z, raw.p + i, n);

        if (n == 0) {
            break;
        }
    }

    s1 = 1;
    s2 = 0;

    for (i = 0; i < raw.len; i++) {
        s1 = (s1 + raw.p[i]) % 65521;
        s2 = (s2 + s1) % 65521;
    }

    buf_be32(&z, (s2 << 16) | s1);

    /* IDAT in pieces of at most 64 KiB, as encoders write it */

    for (i = 0; i < z.len; i += n) {
        n = z.len - i;

        if (n > 65536) {
            n = 65536;
        }

        png_chunk(b, "IDAT", z.p + i, n);
    }

    if (flags & UNIT_C2PA_LATE) {
        png_chunk(b, "caBX", cabx.p, cabx.len);
    }

    png_chunk(b, "IEND", NULL, 0);

    buf_free(&raw);
    buf_free(&z);
    buf_free(&ihdr);
    buf_free(&cabx);
}


static void
build_jpeg(unit_buf_t *b, uint32_t w, uint32_t h, int flags)
{
    size_t          i;
    unsigned char   c;

    buf_put(b, "\xff\xd8", 2);

    /* APP0 JFIF */
    buf_put(b, "\xff\xe0", 2);
    buf_be16(b, 16);
    buf_put(b, "JFIF\0\x01\x01\x00\x00\x01\x00\x01\x00\x00", 14);

    if (flags & UNIT_C2PA) {

        /* APP11: "JP", instance 1, sequence 1, then the JUMBF box */

        buf_put(b, "\xff\xeb", 2);
        buf_be16(b, 2 + 8 + 8 + 8 + 17);
        buf_put(b, "JP\x00\x01\x00\x00\x00\x01", 8);
        buf_be32(b, 8 + 8 + 17);
        buf_str(b, "jumb");
        buf_be32(b, 8 + 17);
        buf_str(b, "jumd");
        buf_put(b, "c2pa\x00\x11\x00\x10\x80\x00\xaa\x00\x38\x9b\x71\x03\x00",
                17);
    }

    if (flags & UNIT_APP11_OTHER) {
        buf_put(b, "\xff\xeb", 2);
        buf_be16(b, 2 + 20);
        buf_put(b, "JP\x00\x01\x00\x00\x00\x01\x00\x00\x00\x10xmlx1234", 20);
    }

    /* DQT */
    buf_put(b, "\xff\xdb", 2);
    buf_be16(b, 67);
    buf_u8(b, 0);

    for (i = 0; i < 64; i++) {
        buf_u8(b, 1 + (unsigned) (i % 16));
    }

    if (flags & UNIT_FILL) {

        /* a DHT (0xc4) looks like a SOF but is not: its bytes are no size */

        buf_put(b, "\xff\xc4", 2);
        buf_be16(b, 2 + 17 + 2);
        buf_u8(b, 0x00);
        buf_put(b, "\x00\x02\x00\x00\x00\x00\x00\x00"
                "\x00\x00\x00\x00\x00\x00\x00\x00", 16);
        buf_put(b, "\x07\x07", 2);

        buf_put(b, "\xff\xff\xff", 3);      /* fill bytes, then the SOF */
        buf_u8(b, (flags & UNIT_SOF2) ? 0xc2 : 0xc0);

    } else {
        buf_u8(b, 0xff);
        buf_u8(b, (flags & UNIT_SOF2) ? 0xc2 : 0xc0);
    }

    buf_be16(b, 17);
    buf_u8(b, 8);
    buf_be16(b, h);
    buf_be16(b, w);
    buf_put(b, "\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01", 10);

    /* SOS, then entropy-coded bytes with 0xff stuffed */

    buf_put(b, "\xff\xda", 2);
    buf_be16(b, 12);
    buf_put(b, "\x03\x01\x00\x02\x11\x03\x11\x00\x3f\x00", 10);

    for (i = 0; i < 300; i++) {
        c = (unsigned char) unit_rand();
        buf_u8(b, c);

        if (c == 0xff) {
            buf_u8(b, 0);
        }
    }

    /* a marker-like APP11 after SOS must not count */
    buf_put(b, "\xff\x00\xeb", 3);

    buf_put(b, "\xff\xd9", 2);
}


static void
build_webp(unit_buf_t *b, uint32_t w, uint32_t h, int flags)
{
    size_t    start, n;
    uint32_t  bits;

    start = b->len;

    buf_str(b, "RIFF");
    buf_le32(b, 0);
    buf_str(b, "WEBP");

    if (flags & UNIT_VP8) {
        buf_str(b, "VP8 ");
        buf_le32(b, 10 + 41);
        buf_put(b, "\x50\x02\x00\x9d\x01\x2a", 6);  /* key frame */
        buf_le16(b, w);
        buf_le16(b, h);
        buf_random(b, 41);
        buf_u8(b, 0);                              /* odd size: pad */

    } else if (flags & UNIT_VP8L) {
        buf_str(b, "VP8L");
        buf_le32(b, 5 + 20);
        buf_u8(b, 0x2f);
        bits = ((w - 1) & 0x3fff) | ((h - 1) & 0x3fff) << 14;
        buf_le32(b, bits);
        buf_random(b, 20);

    } else {
        buf_str(b, "VP8X");
        buf_le32(b, 10);
        buf_u8(b, 0x10);                           /* alpha */
        buf_put(b, "\0\0\0", 3);
        buf_le24(b, w - 1);
        buf_le24(b, h - 1);

        if (flags & UNIT_C2PA) {
            buf_str(b, "C2PA");
            buf_le32(b, 33);
            buf_be32(b, 33);
            buf_str(b, "jumb");
            buf_random(b, 25);
            buf_u8(b, 0);                          /* odd size: pad */
        }

        buf_str(b, "VP8L");
        buf_le32(b, 5 + 20);
        buf_u8(b, 0x2f);
        bits = ((w - 1) & 0x3fff) | ((h - 1) & 0x3fff) << 14;
        buf_le32(b, bits);
        buf_random(b, 20);
    }

    n = b->len - start - 8;
    b->p[start + 4] = (unsigned char) n;
    b->p[start + 5] = (unsigned char) (n >> 8);
    b->p[start + 6] = (unsigned char) (n >> 16);
    b->p[start + 7] = (unsigned char) (n >> 24);
}


/* feeding */

static int
scan(int sse, const unit_buf_t *body, int how, size_t arg,
    gi2_resp_result_t *out)
{
    size_t       i, n;
    gi2_resp_t  *r;

    r = gi2_resp_create(sse, &unit_a);
    if (r == NULL) {
        return GI2_ENOMEM;
    }

    switch (how) {

    case UNIT_WHOLE:
        gi2_resp_feed(r, body->p, body->len);
        break;

    case UNIT_BYTES:
        for (i = 0; i < body->len; i++) {
            gi2_resp_feed(r, body->p + i, 1);
        }

        break;

    case UNIT_RANDOM:
        unit_srand(unit_seed ^ (arg * 0x9e3779b97f4a7c15ULL));

        for (i = 0; i < body->len; i += n) {
            n = 1 + unit_rnd((unit_rand() & 1) ? 7 : 300);

            if (n > body->len - i) {
                n = body->len - i;
            }

            gi2_resp_feed(r, body->p + i, n);
        }

        break;

    default: /* UNIT_SPLIT at arg */
        gi2_resp_feed(r, body->p, arg);
        gi2_resp_feed(r, body->p + arg, body->len - arg);
    }

    gi2_resp_finish(r);
    memcpy(out, gi2_resp_result(r), sizeof(gi2_resp_result_t));
    gi2_resp_destroy(r);

    return GI2_OK;
}


static int
result_diff(const gi2_resp_result_t *a, const gi2_resp_result_t *b,
    char *why, size_t len)
{
    unsigned  i;

    if (memcmp(a, b, sizeof(gi2_resp_result_t)) == 0) {
        return 0;
    }

    if (a->nimages != b->nimages || a->images_total != b->images_total
        || a->partial_images != b->partial_images)
    {
        snprintf(why, len, "images %u/%u/%u vs %u/%u/%u", a->nimages,
                 a->images_total, a->partial_images, b->nimages,
                 b->images_total, b->partial_images);
        return 1;
    }

    for (i = 0; i < GI2_RESP_MAX_IMAGES; i++) {
        if (memcmp(&a->image[i], &b->image[i], sizeof(gi2_image_t)) != 0) {
            snprintf(why, len, "image %u: bytes %llu vs %llu, bad %u vs %u",
                     i, (unsigned long long) a->image[i].bytes,
                     (unsigned long long) b->image[i].bytes,
                     a->image[i].bad_base64, b->image[i].bad_base64);
            return 1;
        }
    }

    snprintf(why, len, "flags m%u t%u e%u vs m%u t%u e%u, or strings",
             a->malformed, a->truncated, a->error_event, b->malformed,
             b->truncated, b->error_event);

    return 1;
}


/*
 * Whole, byte by byte, random pieces, and at every split point when the
 * body is small: one test that all agree; the whole-feed result in out.
 */

static void
scan_all(const char *name, int sse, const unit_buf_t *body,
    gi2_resp_result_t *out)
{
    int                 same;
    char                why[200];
    size_t              i, step;
    gi2_resp_result_t  *other;

    other = malloc(sizeof(gi2_resp_result_t));
    if (other == NULL) {
        exit(2);
    }

    scan(sse, body, UNIT_WHOLE, 0, out);
    same = 1;
    why[0] = '\0';

    scan(sse, body, UNIT_BYTES, 0, other);

    if (result_diff(out, other, why, sizeof(why))) {
        same = 0;
        unit_diag("%s: byte by byte differs: %s", name, why);
    }

    for (i = 0; same && i < 8; i++) {
        scan(sse, body, UNIT_RANDOM, i, other);

        if (result_diff(out, other, why, sizeof(why))) {
            same = 0;
            unit_diag("%s: random pieces %zu differ: %s", name, i, why);
        }
    }

    step = (body->len <= 4096) ? 1 : body->len / 997;

    for (i = 1; same && i < body->len; i += step) {
        scan(sse, body, UNIT_SPLIT, i, other);

        if (result_diff(out, other, why, sizeof(why))) {
            same = 0;
            unit_diag("%s: split at %zu differs: %s", name, i, why);
        }
    }

    unit_ok(same, "%s: any chunking, same result", name);

    free(other);
}


static void
image_is(const char *name, const gi2_image_t *img, const unit_buf_t *raw,
    const char *format, uint32_t w, uint32_t h, int c2pa, int index)
{
    unsigned char  md[32];

    SHA256(raw->p, raw->len, md);

    unit_ok(memcmp(img->sha256, md, 32) == 0, "%s: sha256", name);
    unit_ok(img->bytes == raw->len, "%s: %zu bytes", name, raw->len);

    if (img->bytes != raw->len) {
        unit_diag("got %llu", (unsigned long long) img->bytes);
    }

    str_is(name, img->format, format);
    unit_ok(img->width == w && img->height == h, "%s: %ux%u", name, w, h);

    if (img->width != w || img->height != h) {
        unit_diag("got %ux%u", img->width, img->height);
    }

    unit_ok(img->c2pa == (unsigned) c2pa, "%s: c2pa %d", name, c2pa);
    unit_ok(!img->bad_base64 && !img->truncated, "%s: clean", name);
    unit_ok(img->index == index, "%s: index %d (got %d)", name, index,
            img->index);
}


/* a cut image: the hash of what a client could decode */

static void
image_prefix_is(const char *name, const gi2_image_t *img,
    const unit_buf_t *raw, size_t bytes)
{
    unsigned char  md[32];

    SHA256(raw->p, bytes, md);

    unit_ok(img->truncated, "%s: truncated", name);
    unit_ok(img->bytes == bytes, "%s: %zu bytes (got %llu)", name, bytes,
            (unsigned long long) img->bytes);
    unit_ok(memcmp(img->sha256, md, 32) == 0, "%s: sha256 of the prefix",
            name);
}


static void
str_is(const char *name, const char *got, const char *want)
{
    if (!unit_ok(strcmp(got, want) == 0, "%s: \"%s\"", name, want)) {
        unit_diag("got \"%s\"", got);
    }
}


static void
num_is(const char *name, int64_t got, int64_t want)
{
    if (!unit_ok(got == want, "%s: %lld", name, (long long) want)) {
        unit_diag("got %lld", (long long) got);
    }
}


/* the tests */

static void
test_json_single(void)
{
    unit_buf_t          png = { NULL, 0, 0 }, body = { NULL, 0, 0 };
    gi2_resp_result_t   res;

    unit_srand(unit_seed);
    build_png(&png, 24, 16, 0);

    buf_str(&body, "{\n  \"created\": 1713833628,\n  \"data\": [\n    {\n"
            "      \"b64_json\": \"");
    buf_b64(&body, png.p, png.len, 0);
    buf_str(&body, "\",\n      \"revised_prompt\": \"A cat, \\\"quoted\\\""
            " [with] {brackets}\"\n    }\n  ],\n"
            "  \"background\": \"transparent\",\n"
            "  \"output_format\": \"png\",\n  \"quality\": \"high\",\n"
            "  \"size\": \"1024x1536\",\n  \"usage\": {\n"
            "    \"input_tokens\": 50,\n    \"input_tokens_details\": {\n"
            "      \"image_tokens\": 40,\n      \"text_tokens\": 10\n"
            "    },\n    \"output_tokens\": 4160,\n"
            "    \"output_tokens_details\": {\"image_tokens\": 4000, "
            "\"text_tokens\": 160},\n    \"total_tokens\": 4210\n  }\n}\n");

    scan_all("json single", 0, &body, &res);

    unit_ok(res.nimages == 1 && res.images_total == 1, "json single: "
            "one image");
    image_is("json single png", &res.image[0], &png, "png", 24, 16, 0, 0);
    num_is("json single created", res.created, 1713833628);
    num_is("json single input_tokens", res.input_tokens, 50);
    num_is("json single output_tokens", res.output_tokens, 4160);
    num_is("json single total_tokens", res.total_tokens, 4210);
    num_is("json single input text", res.input_text_tokens, 10);
    num_is("json single input image", res.input_image_tokens, 40);
    num_is("json single output text", res.output_text_tokens, 160);
    num_is("json single output image", res.output_image_tokens, 4000);
    str_is("json single size", res.response_size, "1024x1536");
    str_is("json single quality", res.response_quality, "high");
    str_is("json single format", res.response_format, "png");
    str_is("json single background", res.response_background,
           "transparent");
    unit_ok(!res.malformed && !res.truncated && !res.error_event
            && !res.too_deep && !res.sse && res.nurls == 0
            && res.partial_images == 0, "json single: no flags");

    buf_free(&png);
    buf_free(&body);
}


static void
test_json_three(void)
{
    unit_buf_t          png = { NULL, 0, 0 }, jpg = { NULL, 0, 0 };
    unit_buf_t          webp = { NULL, 0, 0 }, body = { NULL, 0, 0 };
    gi2_resp_result_t   res;

    unit_srand(unit_seed + 1);
    build_png(&png, 32, 8, UNIT_C2PA);
    build_jpeg(&jpg, 640, 480, UNIT_C2PA);
    build_webp(&webp, 1024, 1536, UNIT_C2PA);

    buf_str(&body, "{\"created\":1,\"data\":[{\"b64_json\":\"");
    buf_b64(&body, png.p, png.len, 0);
    buf_str(&body, "\"},{\"revised_prompt\":\"second\",\"b64_json\":\"");
    buf_b64(&body, jpg.p, jpg.len, 0);
    buf_str(&body, "\"},{\"b64_json\":\"");
    buf_b64(&body, webp.p, webp.len, 0);
    buf_str(&body, "\",\"revised_prompt\":null}],\"usage\":{\"input_tokens\""
            ":7,\"output_tokens\":3,\"total_tokens\":10}}");

    scan_all("json n=3", 0, &body, &res);

    unit_ok(res.nimages == 3 && res.images_total == 3, "json n=3: three");
    image_is("json n=3 png", &res.image[0], &png, "png", 32, 8, 1, 0);
    image_is("json n=3 jpeg", &res.image[1], &jpg, "jpeg", 640, 480, 1, 1);
    image_is("json n=3 webp", &res.image[2], &webp, "webp", 1024, 1536, 1,
             2);
    num_is("json n=3 total_tokens", res.total_tokens, 10);
    num_is("json n=3 no details", res.input_text_tokens, -1);

    buf_free(&png);
    buf_free(&jpg);
    buf_free(&webp);
    buf_free(&body);
}


static void
test_json_urls(void)
{
    size_t              i;
    unit_buf_t          body = { NULL, 0, 0 }, png = { NULL, 0, 0 };
    unit_buf_t          url = { NULL, 0, 0 };
    gi2_resp_result_t   res;

    buf_str(&url, "https://oaidalleapiprodscus.blob.core.windows.net/"
            "private/org/user/img-1.png?st=2025&sig=");

    while (url.len < 600) {
        buf_str(&url, "abcdefghij");
    }

    unit_srand(unit_seed + 2);
    build_png(&png, 4, 4, 0);

    buf_str(&body, "{\"created\":5,\"data\":[{\"url\":\"https:\\/\\/example"
            ".com\\/a.png\",\"revised_prompt\":\"x\"},{\"url\":\"");
    buf_put(&body, url.p, url.len);
    buf_str(&body, "\"},{\"b64_json\":\"");
    buf_b64(&body, png.p, png.len, 0);
    buf_str(&body, "\"}]}");

    scan_all("json urls", 0, &body, &res);

    unit_ok(res.nurls == 2 && res.urls_total == 2, "json urls: two");
    str_is("json urls first", res.url[0], "https://example.com/a.png");
    unit_ok(strlen(res.url[1]) == 511
            && memcmp(res.url[1], url.p, 511) == 0,
            "json urls: long one cut to 511 bytes");
    unit_ok(res.url_truncated == 2, "json urls: only the second flagged");
    unit_ok(res.nimages == 1, "json urls: and one image");
    image_is("json urls image", &res.image[0], &png, "png", 4, 4, 0, 2);

    /* more URLs than room */

    buf_free(&body);
    buf_str(&body, "{\"data\":[");

    for (i = 0; i < 20; i++) {
        buf_fmt(&body, "%s{\"url\":\"https://x/%zu\"}", i ? "," : "", i);
    }

    buf_str(&body, "]}");

    scan_all("json 20 urls", 0, &body, &res);

    unit_ok(res.nurls == GI2_RESP_MAX_IMAGES && res.urls_total == 20,
            "json 20 urls: 16 stored, 20 counted");
    str_is("json 20 urls last stored", res.url[15], "https://x/15");

    buf_free(&png);
    buf_free(&url);
    buf_free(&body);
}


static void
test_json_many(void)
{
    size_t              i;
    unit_buf_t          body = { NULL, 0, 0 }, one = { NULL, 0, 0 };
    gi2_resp_result_t   res;

    unit_srand(unit_seed + 3);
    build_jpeg(&one, 8, 8, 0);

    buf_str(&body, "{\"data\":[");

    for (i = 0; i < 20; i++) {
        buf_str(&body, i ? ",{\"b64_json\":\"" : "{\"b64_json\":\"");
        buf_b64(&body, one.p, one.len, 0);
        buf_str(&body, "\"}");
    }

    buf_str(&body, "]}");

    scan_all("json 20 images", 0, &body, &res);

    unit_ok(res.nimages == GI2_RESP_MAX_IMAGES && res.images_total == 20,
            "json 20 images: 16 stored, 20 counted");
    image_is("json 20 images last stored", &res.image[15], &one, "jpeg",
             8, 8, 0, 15);

    buf_free(&one);
    buf_free(&body);
}


static void
test_errors(void)
{
    unit_buf_t          body = { NULL, 0, 0 };
    gi2_resp_result_t   res;

    buf_str(&body, "{\n  \"error\": {\n    \"message\": \"Your request was "
            "rejected by the safety system. If you believe this is an error,"
            " contact us at help.openai.com and include the request ID "
            "req_123.\",\n    \"type\": \"image_generation_user_error\",\n"
            "    \"param\": null,\n    \"code\": \"moderation_blocked\",\n"
            "    \"moderation_details\": {\n"
            "      \"moderation_stage\": \"output\",\n"
            "      \"categories\": [\"sexual\", \"violence\"]\n    }\n"
            "  }\n}\n");

    scan_all("moderation_blocked", 0, &body, &res);

    unit_ok(res.error_event && !res.malformed && !res.truncated
            && res.nimages == 0, "moderation_blocked: an error");
    str_is("moderation_blocked code", res.error_code, "moderation_blocked");
    str_is("moderation_blocked type", res.error_type,
           "image_generation_user_error");
    str_is("moderation_blocked param", res.error_param, "");
    str_is("moderation_blocked stage", res.moderation_stage, "output");
    str_is("moderation_blocked categories", res.categories,
           "sexual,violence");
    unit_ok(strncmp(res.error_message, "Your request was rejected", 25) == 0
            && strlen(res.error_message) < 256,
            "moderation_blocked message");

    buf_free(&body);
    buf_str(&body, "{\"error\":{\"code\":\"content_policy_violation\","
            "\"message\":\"Your request was rejected as a result of our "
            "safety system.\",\"param\":null,\"type\":"
            "\"invalid_request_error\"}}");

    scan_all("content_policy_violation", 0, &body, &res);

    unit_ok(res.error_event, "content_policy_violation: an error");
    str_is("content_policy_violation code", res.error_code,
           "content_policy_violation");
    str_is("content_policy_violation type", res.error_type,
           "invalid_request_error");
    str_is("content_policy_violation categories", res.categories, "");

    buf_free(&body);
    buf_str(&body, "{\"error\":{\"message\":\"The server had an error while "
            "processing your request. Sorry about that!\",\"type\":"
            "\"server_error\",\"param\":null,\"code\":null}}");

    scan_all("server_error", 0, &body, &res);

    str_is("server_error type", res.error_type, "server_error");
    str_is("server_error code", res.error_code, "");
    unit_ok(res.error_event && !res.malformed, "server_error: an error");

    buf_free(&body);
    buf_str(&body, "{\"error\":{\"message\":\"Rate limit reached for "
            "gpt-image-1 in organization org-x on images per minute (IPM): "
            "Limit 5, Used 5, Requested 1.\",\"type\":\"requests\","
            "\"param\":\"n\",\"code\":\"rate_limit_exceeded\"}}");

    scan_all("rate limit", 0, &body, &res);

    str_is("rate limit code", res.error_code, "rate_limit_exceeded");
    str_is("rate limit param", res.error_param, "n");

    /* "error": null is no error (Responses API objects carry it) */

    buf_free(&body);
    buf_str(&body, "{\"error\":null,\"usage\":{\"input_tokens\":1}}");

    scan_all("error null", 0, &body, &res);

    unit_ok(!res.error_event && res.input_tokens == 1,
            "error null: no error");

    buf_free(&body);
}


static void
test_error_strings(void)
{
    size_t              i;
    unit_buf_t          body = { NULL, 0, 0 };
    gi2_resp_result_t   res;

    buf_str(&body, "{\"error\":{\"message\":\"\\u00e9t\\u00e9 \\ud83d\\ude00"
            " \\\"q\\\" \\/ \\ud800x \\udc00 \\t\\u0000end\",\"code\":"
            "\"c\\u006fde\"}}");

    scan_all("error escapes", 0, &body, &res);

    str_is("error escapes message", res.error_message,
           "\xc3\xa9t\xc3\xa9 \xf0\x9f\x98\x80 \"q\" / \xef\xbf\xbdx "
           "\xef\xbf\xbd \tend");
    str_is("error escapes code", res.error_code, "code");

    /* a character that does not fit is left out whole */

    buf_free(&body);
    buf_str(&body, "{\"error\":{\"message\":\"");

    for (i = 0; i < 254; i++) {
        buf_str(&body, "a");
    }

    buf_str(&body, "\\u00e9\",\"type\":\"");

    for (i = 0; i < 62; i++) {
        buf_str(&body, "b");
    }

    buf_str(&body, "\xe2\x82\xac\"}}");

    scan_all("error cut", 0, &body, &res);

    unit_ok(strlen(res.error_message) == 254, "error cut: escaped char "
            "left out (%zu)", strlen(res.error_message));
    unit_ok(strlen(res.error_type) == 62, "error cut: raw UTF-8 left out "
            "whole (%zu)", strlen(res.error_type));

    /* categories past the room: cut, no dangling comma */

    buf_free(&body);
    buf_str(&body, "{\"error\":{\"moderation_details\":{\"categories\":[");

    for (i = 0; i < 40; i++) {
        buf_fmt(&body, "%s\"category-%02zu\"", i ? "," : "", i);
    }

    buf_str(&body, "]}}}");

    scan_all("categories cut", 0, &body, &res);

    i = strlen(res.categories);
    unit_ok(i == 21 * 12 - 1
            && strncmp(res.categories, "category-00,category-01,", 24) == 0
            && strcmp(res.categories + i - 12, ",category-20") == 0,
            "categories cut: whole categories only (%zu bytes)", i);

    buf_free(&body);
}


/* one SSE image event */

static void
sse_event(unit_buf_t *b, const char *event, const char *type,
    const unit_buf_t *img, int type_last, const char *extra, const char *nl)
{
    if (event != NULL) {
        buf_fmt(b, "event: %s%s", event, nl);
    }

    buf_str(b, "data: {");

    if (!type_last) {
        buf_fmt(b, "\"type\":\"%s\",", type);
    }

    buf_str(b, "\"b64_json\":\"");
    buf_b64(b, img->p, img->len, 0);
    buf_str(b, "\"");

    if (type_last) {
        buf_fmt(b, ",\"type\":\"%s\"", type);
    }

    buf_fmt(b, "%s}%s%s", extra, nl, nl);
}


static void
test_sse(void)
{
    int                 crlf;
    const char         *nl, *name;
    unit_buf_t          p1 = { NULL, 0, 0 }, p2 = { NULL, 0, 0 };
    unit_buf_t          fin = { NULL, 0, 0 }, body = { NULL, 0, 0 };
    gi2_resp_result_t   res;

    unit_srand(unit_seed + 4);
    build_png(&p1, 16, 16, 0);
    build_png(&p2, 16, 16, 0);
    build_png(&fin, 16, 16, UNIT_C2PA);

    for (crlf = 0; crlf < 2; crlf++) {
        nl = crlf ? "\r\n" : "\n";
        name = crlf ? "sse crlf" : "sse lf";

        buf_free(&body);
        buf_fmt(&body, ": keep-alive%s%s", nl, nl);
        sse_event(&body, "image_generation.partial_image",
                  "image_generation.partial_image", &p1, 0,
                  ",\"partial_image_index\":0,\"created_at\":1,"
                  "\"size\":\"1024x1024\",\"quality\":\"low\","
                  "\"background\":\"opaque\",\"output_format\":\"png\"", nl);
        sse_event(&body, "image_generation.partial_image",
                  "image_generation.partial_image", &p2, 1,
                  ",\"partial_image_index\":1", nl);
        buf_fmt(&body, ":comment%s", nl);
        sse_event(&body, "image_generation.completed",
                  "image_generation.completed", &fin, 0,
                  ",\"created_at\":1713833628,\"usage\":{\"input_tokens\":"
                  "12,\"input_tokens_details\":{\"image_tokens\":0,"
                  "\"text_tokens\":12},\"output_tokens\":272,"
                  "\"total_tokens\":284}", nl);

        scan_all(name, 1, &body, &res);

        unit_ok(res.sse && res.nimages == 1 && res.images_total == 1
                && res.partial_images == 2, "%s: 2 partials, 1 image",
                name);
        image_is(name, &res.image[0], &fin, "png", 16, 16, 1, -1);
        num_is(name, res.total_tokens, 284);
        num_is(name, res.input_text_tokens, 12);
        num_is(name, res.created, 1713833628);
        str_is(name, res.response_quality, "low");
        unit_ok(!res.malformed && !res.truncated && !res.error_event,
                "%s: no flags", name);
    }

    /* type after b64_json, no event: lines, image_edit, multi-line data */

    buf_free(&body);
    sse_event(&body, NULL, "image_edit.partial_image", &p1, 1, "", "\n");
    buf_str(&body, "data: {\"b64_json\":\"");
    buf_b64(&body, fin.p, fin.len, 0);
    buf_str(&body, "\",\ndata:\"usage\":\n: a comment between data lines\n"
            "data:    {\"total_tokens\" : 9}\r\ndata: ,\"type\":"
            "\"image_edit.completed\"}\n\n");

    scan_all("sse edit", 1, &body, &res);

    unit_ok(res.nimages == 1 && res.partial_images == 1, "sse edit: "
            "1 partial, 1 image");
    image_is("sse edit", &res.image[0], &fin, "png", 16, 16, 1, -1);
    num_is("sse edit multi-line usage", res.total_tokens, 9);
    unit_ok(!res.malformed && !res.truncated, "sse edit: no flags");

    /* the event name decides when the JSON has no type, before or after */

    buf_free(&body);
    buf_str(&body, "event: image_generation.partial_image\ndata: "
            "{\"b64_json\":\"");
    buf_b64(&body, p1.p, p1.len, 0);
    buf_str(&body, "\"}\n\ndata: {\"b64_json\":\"");
    buf_b64(&body, p2.p, p2.len, 0);
    buf_str(&body, "\"}\nevent: image_generation.partial_image\n\n"
            "data: {\"b64_json\":\"");
    buf_b64(&body, fin.p, fin.len, 0);
    buf_str(&body, "\"}\n\n");

    scan_all("sse event names", 1, &body, &res);

    unit_ok(res.nimages == 1 && res.partial_images == 2,
            "sse event names: 2 partials, 1 image");
    image_is("sse event names", &res.image[0], &fin, "png", 16, 16, 1, -1);

    buf_free(&p1);
    buf_free(&p2);
    buf_free(&fin);
    buf_free(&body);
}


static void
test_sse_error(void)
{
    unit_buf_t          p1 = { NULL, 0, 0 }, body = { NULL, 0, 0 };
    gi2_resp_result_t   res;

    unit_srand(unit_seed + 5);
    build_jpeg(&p1, 100, 50, 0);

    sse_event(&body, "image_generation.partial_image",
              "image_generation.partial_image", &p1, 0, "", "\n");
    buf_str(&body, "event: error\ndata: {\"type\":\"error\",\"error\":"
            "{\"type\":\"image_generation_user_error\",\"code\":"
            "\"moderation_blocked\",\"message\":\"Your request was "
            "rejected by the safety system.\",\"param\":null,"
            "\"moderation_details\":{\"moderation_stage\":\"output\","
            "\"categories\":[\"sexual\"]}}}\n\n");

    scan_all("sse error", 1, &body, &res);

    unit_ok(res.error_event && res.nimages == 0 && res.partial_images == 1,
            "sse error: error after a partial, no image");
    str_is("sse error code", res.error_code, "moderation_blocked");
    str_is("sse error categories", res.categories, "sexual");
    str_is("sse error stage", res.moderation_stage, "output");
    unit_ok(!res.malformed && !res.truncated, "sse error: no flags");

    /* without a type, and without an event name */

    buf_free(&body);
    buf_str(&body, "data: {\"error\":{\"type\":\"server_error\","
            "\"message\":\"boom\"}}\n\n");

    scan_all("sse bare error", 1, &body, &res);

    unit_ok(res.error_event, "sse bare error: an error");
    str_is("sse bare error type", res.error_type, "server_error");

    /* an error event whose data is not even JSON */

    buf_free(&body);
    buf_str(&body, "event: error\ndata: upstream died\n\n");

    scan_all("sse text error", 1, &body, &res);

    unit_ok(res.error_event && res.malformed, "sse text error: an error, "
            "malformed");

    buf_free(&p1);
    buf_free(&body);
}


static void
test_sse_edges(void)
{
    size_t              i;
    unit_buf_t          img = { NULL, 0, 0 }, body = { NULL, 0, 0 };
    gi2_resp_result_t   res;

    unit_srand(unit_seed + 6);
    build_webp(&img, 300, 200, UNIT_VP8);

    /* a bad event does not spoil the next one */

    buf_str(&body, "event: image_generation.completed\ndata: {\"type\":"
            "\"image_generation.completed\",\"b64_json\":\"QUJD\" oops}\n\n");
    sse_event(&body, "image_generation.completed",
              "image_generation.completed", &img, 0, "", "\n");

    scan_all("sse bad then good", 1, &body, &res);

    unit_ok(res.malformed && res.nimages == 2 && !res.truncated,
            "sse bad then good: malformed, both images");
    image_is("sse bad then good", &res.image[1], &img, "webp", 300, 200, 0,
             -1);
    unit_ok(res.image[0].bytes == 3 && !res.image[0].truncated,
            "sse bad then good: the first image's string ended");

    /* an event ending inside its JSON, then a good one */

    buf_free(&body);
    buf_str(&body, "data: {\"type\":\"image_generation.completed\","
            "\"b64_json\":\"QUJDRE\n\n");
    sse_event(&body, NULL, "image_generation.completed", &img, 1, "",
              "\r\n");

    scan_all("sse event cut", 1, &body, &res);

    unit_ok(res.malformed && !res.truncated && res.nimages == 2
            && res.image[0].truncated && res.image[0].bytes == 3,
            "sse event cut: malformed, cut image kept");

    /* two JSON documents in one event, long names, odd fields */

    buf_free(&body);
    buf_str(&body, "id: 1\nretry: 10\ndata\nevent: ");

    for (i = 0; i < 100; i++) {
        buf_str(&body, "e");
    }

    buf_str(&body, "\nverylongfieldname: x\ndata: {}\ndata: {}\n\n"
            "data:{\"usage\":{\"total_tokens\":3}}\r\rdata: {}\r\n");

    scan_all("sse odd", 1, &body, &res);

    unit_ok(res.malformed && res.total_tokens == 3 && res.truncated,
            "sse odd: malformed, lone CR lines, truncated at the end");

    /* only comments and blank lines */

    buf_free(&body);
    buf_str(&body, ": hi\n\n\n: there\r\n");

    scan_all("sse comments", 1, &body, &res);

    unit_ok(!res.malformed && !res.truncated && res.nimages == 0,
            "sse comments: nothing");

    buf_free(&img);
    buf_free(&body);
}


static void
test_responses_api(void)
{
    unit_buf_t          part = { NULL, 0, 0 }, img = { NULL, 0, 0 };
    unit_buf_t          other = { NULL, 0, 0 }, body = { NULL, 0, 0 };
    gi2_resp_result_t   res;

    unit_srand(unit_seed + 7);
    build_png(&part, 10, 10, 0);
    build_png(&img, 20, 30, UNIT_C2PA_LATE);
    build_jpeg(&other, 9, 9, 0);

    buf_str(&body, "event: response.created\ndata: {\"type\":"
            "\"response.created\",\"response\":{\"id\":\"resp_1\","
            "\"output\":[],\"error\":null}}\n\n"
            "event: response.image_generation_call.partial_image\ndata: "
            "{\"type\":\"response.image_generation_call.partial_image\","
            "\"item_id\":\"ig_1\",\"partial_image_index\":0,"
            "\"partial_image_b64\":\"");
    buf_b64(&body, part.p, part.len, 0);
    buf_str(&body, "\"}\n\nevent: response.output_item.done\ndata: "
            "{\"type\":\"response.output_item.done\",\"output_index\":0,"
            "\"item\":{\"id\":\"ig_1\",\"status\":\"completed\",\"size\":"
            "\"1536x1024\",\"output_format\":\"png\",\"result\":"
            "\"");
    buf_b64(&body, img.p, img.len, 0);
    buf_str(&body, "\",\"type\":\"image_generation_call\"}}\n\n"
            "event: response.output_item.done\ndata: {\"type\":"
            "\"response.output_item.done\",\"item\":{\"type\":"
            "\"other_call\",\"result\":\"");
    buf_b64(&body, other.p, other.len, 0);
    buf_str(&body, "\"}}\n\nevent: response.completed\ndata: {\"type\":"
            "\"response.completed\",\"response\":{\"output\":[{\"type\":"
            "\"image_generation_call\",\"result\":\"");
    buf_b64(&body, img.p, img.len, 0);
    buf_str(&body, "\"}],\"usage\":{\"input_tokens\":5,"
            "\"input_tokens_details\":{\"cached_tokens\":0},"
            "\"output_tokens\":6,\"total_tokens\":11}}}\n\n");

    scan_all("responses sse", 1, &body, &res);

    unit_ok(res.nimages == 1 && res.images_total == 1
            && res.partial_images == 1, "responses sse: one image, one "
            "partial, not counted twice");
    image_is("responses sse", &res.image[0], &img, "png", 20, 30, 1, -1);
    num_is("responses sse usage", res.total_tokens, 11);
    str_is("responses sse item size", res.response_size, "1536x1024");

    /* non-stream */

    buf_free(&body);
    buf_str(&body, "{\"id\":\"resp_2\",\"object\":\"response\",\"output\":"
            "[{\"type\":\"reasoning\",\"summary\":[]},{\"result\":\"");
    buf_b64(&body, img.p, img.len, UNIT_SLASH);
    buf_str(&body, "\",\"type\":\"image_generation_call\"},{\"type\":"
            "\"web_search_call\",\"result\":\"");
    buf_b64(&body, other.p, other.len, 0);
    buf_str(&body, "\"},{\"type\":\"message\",\"content\":[{\"type\":"
            "\"output_text\",\"text\":\"here\"}]},{\"type\":"
            "\"image_generation_call\",\"result\":\"");
    buf_b64(&body, other.p, other.len, 0);
    buf_str(&body, "\"}],\"usage\":{\"input_tokens\":100,\"output_tokens\":"
            "200,\"total_tokens\":300},\"error\":null}");

    scan_all("responses json", 0, &body, &res);

    unit_ok(res.nimages == 2 && res.images_total == 2 && !res.error_event,
            "responses json: two images");
    image_is("responses json first", &res.image[0], &img, "png", 20, 30, 1,
             -1);
    image_is("responses json second", &res.image[1], &other, "jpeg", 9, 9,
             0, -1);
    num_is("responses json usage", res.total_tokens, 300);

    /* errors: flat, and response.failed */

    buf_free(&body);
    buf_str(&body, "event: error\ndata: {\"type\":\"error\",\"code\":"
            "\"ERR_SOMETHING\",\"message\":\"Something went wrong\","
            "\"param\":null,\"sequence_number\":1}\n\n");

    scan_all("responses flat error", 1, &body, &res);

    unit_ok(res.error_event, "responses flat error: an error");
    str_is("responses flat error code", res.error_code, "ERR_SOMETHING");
    str_is("responses flat error message", res.error_message,
           "Something went wrong");

    buf_free(&body);
    buf_str(&body, "data: {\"type\":\"response.failed\",\"response\":"
            "{\"status\":\"failed\",\"error\":{\"code\":\"server_error\","
            "\"message\":\"The model failed\"}}}\n\n");

    scan_all("responses failed", 1, &body, &res);

    unit_ok(res.error_event, "responses failed: an error");
    str_is("responses failed code", res.error_code, "server_error");

    /* root "message" of an event that is no error: not an error */

    buf_free(&body);
    buf_str(&body, "data: {\"type\":\"response.output_text.delta\","
            "\"message\":\"hi\",\"code\":\"x\"}\n\n");

    scan_all("responses not error", 1, &body, &res);

    unit_ok(!res.error_event && res.error_code[0] == '\0',
            "responses not error: nothing");

    buf_free(&part);
    buf_free(&img);
    buf_free(&other);
    buf_free(&body);
}


static void
test_truncated(void)
{
    size_t              cut, j, b64start;
    unit_buf_t          img = { NULL, 0, 0 }, body = { NULL, 0, 0 };
    unit_buf_t          part = { NULL, 0, 0 };
    gi2_resp_result_t   res;

    unit_srand(unit_seed + 8);
    build_png(&img, 40, 40, UNIT_C2PA);

    buf_str(&body, "{\"created\":1,\"data\":[{\"b64_json\":\"");
    b64start = body.len;
    buf_b64(&body, img.p, img.len, 0);
    buf_str(&body, "\"}],\"usage\":{\"total_tokens\":1}}");

    /* cut at a few places inside the base64 */

    for (j = 0; j < 4; j++) {
        cut = b64start + 1000 + j;
        part.len = 0;
        buf_put(&part, body.p, cut);

        scan_all("json cut mid-base64", 0, &part, &res);

        unit_ok(res.truncated && !res.malformed && res.nimages == 1
                && res.images_total == 1, "json cut mid-base64 +%zu: one "
                "cut image", j);
        image_prefix_is("json cut mid-base64", &res.image[0], &img,
                        (cut - b64start) / 4 * 3);
        str_is("json cut mid-base64 format", res.image[0].format, "png");
        unit_ok(res.image[0].width == 40 && res.image[0].c2pa,
                "json cut mid-base64: headers seen");
    }

    /* after the image, before the end */

    part.len = 0;
    buf_put(&part, body.p, body.len - 5);

    scan_all("json cut after image", 0, &part, &res);

    unit_ok(res.truncated && res.nimages == 1 && !res.image[0].truncated,
            "json cut after image: whole image, truncated body");
    image_is("json cut after image", &res.image[0], &img, "png", 40, 40, 1,
             0);

    /* every cut of a small response: never a crash, always flagged */

    buf_free(&body);
    buf_str(&body, "{\"created\":12,\"data\":[{\"b64_json\":\"QUJD\\/+Q==\","
            "\"revised_prompt\":\"p\\u00e9\"}],\"usage\":{\"input_tokens\":"
            "-1.5e+3,\"x\":[true,false,null]}}");

    for (cut = 1; cut < body.len; cut++) {
        part.len = 0;
        buf_put(&part, body.p, cut);
        scan(0, &part, UNIT_BYTES, 0, &res);

        if (!res.truncated || res.malformed) {
            break;
        }
    }

    unit_ok(cut == body.len, "json every cut: truncated, not malformed "
            "(stopped at %zu of %zu)", cut, body.len);

    /* SSE: cut inside a completed event, inside a partial one */

    buf_free(&body);
    sse_event(&body, "image_generation.partial_image",
              "image_generation.partial_image", &img, 0, "", "\n");
    buf_str(&body, "event: image_generation.completed\ndata: {\"type\":"
            "\"image_generation.completed\",\"b64_json\":\"");
    b64start = body.len;
    buf_b64(&body, img.p, img.len, 0);
    body.len = b64start + 2001;

    scan_all("sse cut", 1, &body, &res);

    unit_ok(res.truncated && !res.malformed && res.nimages == 1
            && res.partial_images == 1, "sse cut: one cut image");
    image_prefix_is("sse cut", &res.image[0], &img, 2000 / 4 * 3);

    buf_free(&body);
    buf_str(&body, "data: {\"type\":\"image_generation.partial_image\","
            "\"b64_json\":\"QUJD");

    scan_all("sse cut partial", 1, &body, &res);

    unit_ok(res.truncated && res.nimages == 0 && res.partial_images == 1,
            "sse cut partial: counted as a partial");

    /* the whole event arrived, but not its blank line */

    buf_free(&body);
    sse_event(&body, NULL, "image_generation.completed", &img, 0, "", "\n");
    body.len--;

    scan_all("sse no blank line", 1, &body, &res);

    unit_ok(res.truncated && res.nimages == 1 && !res.image[0].truncated,
            "sse no blank line: truncated stream, whole image");

    buf_free(&img);
    buf_free(&part);
    buf_free(&body);
}


static void
test_malformed(void)
{
    size_t              i;
    unit_buf_t          body = { NULL, 0, 0 };
    gi2_resp_result_t   res;

    static const char  *bad[] = {
        "{\"a\" 1}",
        "{\"a\":1,}",
        "{\"a\":tru}",
        "{\"a\":nul}",
        "{\"a\":01}",
        "{\"a\":-}",
        "{\"a\":1.}",
        "{\"a\":1.e5}",
        "{\"a\":1e}",
        "{\"a\":1e+}",
        "{\"a\":--1}",
        "{\"a\":\"x\\qy\"}",
        "{\"a\":\"\\u12g4\"}",
        "{\"a\":\"a\x01z\"}",
        "{\"a\":\"a\nz\"}",
        "[1,2]",
        "\"str\"",
        "42",
        "{\"a\":1}}",
        "{\"a\":1} x",
        "{\"a\":1}{}",
        "{\"a\":[1}",
        "{\"a\":{]}",
        "{,}",
        "{\"a\":1 \"b\":2}",
        "}",
        "{\"a\":[1,]}",
        "{\"a\":[,1]}",
        "{\"a\"::1}",
        "{1:2}",
        "{\"a\":'x'}",
        "{\"data\":[{\"b64_json\":\"QUJD\x01RA==\"}]}",
        "{\"data\":[{\"b64_json\":\"QUJD\\xRA==\"}]}",
        "{\"data\":[{\"b64_json\":\"QUJD\\u00zz\"}]}",
        "\xef\xbb\xbf{}",
        "{\"k\xff\":\"\xc0\x80\"} garbage",
    };

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        body.len = 0;
        buf_str(&body, bad[i]);

        scan_all("malformed", 0, &body, &res);

        if (!unit_ok(res.malformed, "malformed %zu: flagged", i)) {
            unit_diag("body: %s", bad[i]);
        }
    }

    /* a cut image at the bad byte is still kept */

    body.len = 0;
    buf_str(&body, bad[31]);
    scan(0, &body, UNIT_WHOLE, 0, &res);

    unit_ok(res.nimages == 1 && res.image[0].truncated
            && res.image[0].bytes == 3, "malformed inside base64: image "
            "kept, cut");

    /* after a whole image */

    body.len = 0;
    buf_str(&body, "{\"data\":[{\"b64_json\":\"QUJD\"}],\"x\":tru}");
    scan_all("malformed after image", 0, &body, &res);

    unit_ok(res.malformed && res.nimages == 1 && !res.image[0].truncated,
            "malformed after image: image kept");

    /* things that are fine */

    body.len = 0;
    buf_str(&body, " \r\n\t{ \"a\" : [ 0 , -0.5e-3 , 1E+2 , true , false , "
            "null , \"\" , { } , [ ] ] , \"\\u00E9\\ud83d\\ude00\": {} }"
            " \n ");
    scan_all("valid oddities", 0, &body, &res);

    unit_ok(!res.malformed && !res.truncated, "valid oddities: clean");

    /* an empty body is neither */

    body.len = 0;
    buf_str(&body, "  \n");
    scan_all("empty", 0, &body, &res);

    unit_ok(!res.malformed && !res.truncated && res.nimages == 0,
            "empty: nothing");

    /* garbage, with NULs */

    unit_srand(unit_seed + 9);
    body.len = 0;
    buf_random(&body, 5000);
    body.p[0] = '{';
    scan_all("garbage json", 0, &body, &res);
    unit_ok(res.malformed, "garbage json: malformed");
    scan_all("garbage sse", 1, &body, &res);
    unit_ok(1, "garbage sse: survived");

    buf_free(&body);
}


static void
test_deep(void)
{
    size_t              i, depth;
    unit_buf_t          body = { NULL, 0, 0 }, img = { NULL, 0, 0 };
    gi2_resp_result_t   res, *other;

    other = malloc(sizeof(gi2_resp_result_t));
    if (other == NULL) {
        exit(2);
    }

    unit_srand(unit_seed + 10);
    build_jpeg(&img, 33, 44, UNIT_C2PA | UNIT_FILL);

    depth = 200000;

    buf_str(&body, "{\"x\":");

    for (i = 0; i < depth; i++) {
        buf_str(&body, (i % 3 == 0) ? "{\"k]}\":" : "[\"[{\",");
    }

    buf_str(&body, "\"s\\\"}]\"");

    for (i = depth; i > 0; i--) {
        buf_str(&body, ((i - 1) % 3 == 0) ? "}" : "]");
    }

    buf_str(&body, ",\"data\":[{\"b64_json\":\"");
    buf_b64(&body, img.p, img.len, 0);
    buf_str(&body, "\"}],\"usage\":{\"input_tokens\":3}}");

    scan(0, &body, UNIT_WHOLE, 0, &res);

    unit_ok(res.too_deep && !res.malformed && !res.truncated,
            "200000 deep: too_deep, not malformed");
    unit_ok(res.nimages == 1 && res.input_tokens == 3,
            "200000 deep: what follows is still read");
    image_is("200000 deep", &res.image[0], &img, "jpeg", 33, 44, 1, 0);

    scan(0, &body, UNIT_RANDOM, 1, other);
    unit_ok(memcmp(&res, other, sizeof(res)) == 0,
            "200000 deep: random pieces, same result");

    /* never closed */

    body.len = 0;
    buf_str(&body, "{\"x\":");

    for (i = 0; i < depth; i++) {
        buf_str(&body, "[");
    }

    scan(0, &body, UNIT_WHOLE, 0, &res);

    unit_ok(res.too_deep && res.truncated && !res.malformed,
            "200000 deep unclosed: truncated");

    /* 32 levels are still followed, the 33rd is not */

    body.len = 0;
    buf_str(&body, "{\"data\":[{\"a\":");

    for (i = 0; i < 29; i++) {
        buf_str(&body, "[");
    }

    for (i = 0; i < 29; i++) {
        buf_str(&body, "]");
    }

    buf_str(&body, "}],\"usage\":{\"input_tokens\":1}}");
    scan_all("depth 32", 0, &body, &res);

    unit_ok(!res.too_deep && !res.malformed && res.input_tokens == 1,
            "depth 32: not too deep");

    body.len = 0;
    buf_str(&body, "{\"data\":[{\"a\":");

    for (i = 0; i < 30; i++) {
        buf_str(&body, "[");
    }

    for (i = 0; i < 30; i++) {
        buf_str(&body, "]");
    }

    buf_str(&body, "}],\"usage\":{\"input_tokens\":1}}");
    scan_all("depth 33", 0, &body, &res);

    unit_ok(res.too_deep && !res.malformed && res.input_tokens == 1,
            "depth 33: too deep, then read on");

    /* SSE: a deep event, then a normal one */

    body.len = 0;
    buf_str(&body, "data: {\"a\":");

    for (i = 0; i < 1000; i++) {
        buf_str(&body, "[");
    }

    buf_str(&body, "\n\ndata: {\"usage\":{\"total_tokens\":4}}\n\n");
    scan_all("sse deep", 1, &body, &res);

    unit_ok(res.too_deep && res.malformed && res.total_tokens == 4,
            "sse deep: too deep, cut event malformed, next one read");

    buf_free(&img);
    buf_free(&body);
    free(other);
}


static void
test_escapes(void)
{
    unit_buf_t          img = { NULL, 0, 0 }, body = { NULL, 0, 0 };
    gi2_resp_result_t   res;

    unit_srand(unit_seed + 11);
    build_png(&img, 64, 64, 0);

    buf_str(&body, "{\"data\":[{\"b64\\u005fjson\":\"");
    buf_b64(&body, img.p, img.len, UNIT_SLASH);
    buf_str(&body, "\"},{\"b64_json\":\"\\u0051\\u0055JD\"},"
            "{\"b64_json\\u0000\":\"QUJD\"},{\"");

    while (body.len < 2000) {
        buf_str(&body, "b64_json");
    }

    buf_str(&body, "\":\"QUJD\"},{\"\\ud800\":1,\"\\u00e9\":2}],"
            "\"\\u0075sage\":{\"total_tokens\":8}}");

    scan_all("escapes", 0, &body, &res);

    unit_ok(strstr((char *) body.p, "\\/") != NULL, "escapes: the body "
            "has \\/");
    unit_ok(res.nimages == 2, "escapes: b64\\u005fjson is b64_json, "
            "NUL and long keys are not (%u)", res.nimages);
    image_is("escapes \\/", &res.image[0], &img, "png", 64, 64, 0, 0);
    unit_ok(res.image[1].bytes == 3 && !res.image[1].bad_base64
            && res.image[1].index == 1, "escapes: \\u0051 is a digit");
    num_is("escapes \\u0075sage", res.total_tokens, 8);

    buf_free(&img);
    buf_free(&body);
}


static void
b64_case(const char *name, const char *b64, size_t bytes, int bad,
    const char *raw)
{
    unit_buf_t          body = { NULL, 0, 0 }, want = { NULL, 0, 0 };
    unsigned char       md[32];
    gi2_resp_result_t   res;

    buf_str(&body, "{\"data\":[{\"b64_json\":\"");
    buf_str(&body, b64);
    buf_str(&body, "\"}]}");

    scan_all(name, 0, &body, &res);

    unit_ok(res.nimages == 1 && res.image[0].bytes == bytes
            && res.image[0].bad_base64 == (unsigned) bad
            && !res.image[0].truncated && !res.malformed,
            "%s: %zu bytes, bad %d", name, bytes, bad);

    if (res.image[0].bytes != bytes
        || res.image[0].bad_base64 != (unsigned) bad)
    {
        unit_diag("got %llu bytes, bad %u",
                  (unsigned long long) res.image[0].bytes,
                  res.image[0].bad_base64);
    }

    if (raw != NULL) {
        buf_put(&want, raw, bytes);
        SHA256(want.p, want.len, md);
        unit_ok(memcmp(md, res.image[0].sha256, 32) == 0, "%s: sha256",
                name);
    }

    buf_free(&body);
    buf_free(&want);
}


static void
test_base64(void)
{
    b64_case("b64 empty", "", 0, 0, "");
    b64_case("b64 one", "QQ==", 1, 0, "A");
    b64_case("b64 two", "QUI=", 2, 0, "AB");
    b64_case("b64 three", "QUJD", 3, 0, "ABC");
    b64_case("b64 no padding", "QUJDRA", 4, 1, "ABCD");
    b64_case("b64 no padding 3", "QUJDREU", 5, 1, "ABCDE");
    b64_case("b64 lone digit", "QUJDR", 3, 1, "ABC");
    b64_case("b64 half padding", "QQ=", 1, 1, "A");
    b64_case("b64 noncanonical", "QR==", 1, 1, "A");
    b64_case("b64 noncanonical 2", "QUJ=", 2, 1, "AB");
    b64_case("b64 after padding", "QQ==QUJD", 1, 1, "A");
    b64_case("b64 early padding", "=QUJD", 3, 1, "ABC");
    b64_case("b64 triple padding", "QQ===", 1, 1, "A");
    b64_case("b64 bad char", "QU-JD", 3, 1, "ABC");
    b64_case("b64 urlsafe", "Pz_-", 1, 1, NULL);
    b64_case("b64 space", "QUJD RA==", 4, 1, "ABCD");
    b64_case("b64 escaped newline", "QUJD\\nRA==", 4, 1, "ABCD");
    b64_case("b64 escaped quote", "QUJD\\\"RA==", 4, 1, "ABCD");
    b64_case("b64 escaped non-ASCII", "QUJD\\u00e9RA==", 4, 1, "ABCD");
    b64_case("b64 raw UTF-8", "QUJD\xc3\xa9RA==", 4, 1, "ABCD");
    b64_case("b64 escaped slash", "\\/\\/\\/\\/", 3, 0, "\xff\xff\xff");
    b64_case("b64 escaped equals", "QQ\\u003d\\u003D", 1, 0, "A");
}


static void
test_sniff(void)
{
    size_t              i;
    unit_buf_t          img = { NULL, 0, 0 }, body = { NULL, 0, 0 };
    gi2_resp_result_t   res;

    static const struct {
        const char     *name;
        int             kind;       /* 0 png, 1 jpeg, 2 webp */
        int             flags;
        uint32_t        w, h;
        int             c2pa;
        const char     *format;
    } cases[] = {
        { "png plain", 0, 0, 7, 5, 0, "png" },
        { "png caBX after IDAT", 0, UNIT_C2PA_LATE, 300, 2, 1, "png" },
        { "png caBX before IDAT", 0, UNIT_C2PA, 1, 1, 1, "png" },
        { "jpeg plain", 1, 0, 4000, 3000, 0, "jpeg" },
        { "jpeg DHT, fill bytes, progressive", 1, UNIT_FILL | UNIT_SOF2,
          1536, 1024, 0, "jpeg" },
        { "jpeg APP11 not JUMBF", 1, UNIT_APP11_OTHER, 16, 16, 0, "jpeg" },
        { "jpeg APP11 JUMBF", 1, UNIT_C2PA | UNIT_APP11_OTHER, 16, 17, 1,
          "jpeg" },
        { "webp VP8X", 2, 0, 16383, 1, 0, "webp" },
        { "webp VP8X C2PA", 2, UNIT_C2PA, 70000, 16000000, 1, "webp" },
        { "webp VP8", 2, UNIT_VP8, 1024, 768, 0, "webp" },
        { "webp VP8L", 2, UNIT_VP8L, 16384, 3, 0, "webp" },
    };

    unit_srand(unit_seed + 12);

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        img.len = 0;

        switch (cases[i].kind) {
        case 0:
            build_png(&img, cases[i].w, cases[i].h, cases[i].flags);
            break;
        case 1:
            build_jpeg(&img, cases[i].w, cases[i].h, cases[i].flags);
            break;
        default:
            build_webp(&img, cases[i].w, cases[i].h, cases[i].flags);
        }

        body.len = 0;
        buf_str(&body, "{\"data\":[{\"b64_json\":\"");
        buf_b64(&body, img.p, img.len, 0);
        buf_str(&body, "\"}]}");

        scan_all(cases[i].name, 0, &body, &res);
        image_is(cases[i].name, &res.image[0], &img, cases[i].format,
                 cases[i].w, cases[i].h, cases[i].c2pa, 0);
    }

    /* not images, and images too short to tell */

    body.len = 0;
    buf_str(&body, "{\"data\":[{\"b64_json\":\"");
    img.len = 0;
    buf_str(&img, "GIF89a and more bytes");
    buf_b64(&body, img.p, img.len, 0);
    buf_str(&body, "\"},{\"b64_json\":\"iVBO\"},{\"b64_json\":\"/9g=\"},"
            "{\"b64_json\":\"UklGRgAAAABXRUJQ\"}]}");

    scan_all("not images", 0, &body, &res);

    str_is("gif", res.image[0].format, "");
    str_is("short png", res.image[1].format, "");
    str_is("bare jpeg SOI", res.image[2].format, "jpeg");
    str_is("bare webp header", res.image[3].format, "webp");
    unit_ok(res.image[3].width == 0, "bare webp header: no size");

    /* absurd chunk lengths stop the sniffer, not the hash */

    img.len = 0;
    buf_put(&img, "\x89PNG\r\n\x1a\n\xff\xff\xff\xff" "IHDR", 16);
    buf_random(&img, 100);
    body.len = 0;
    buf_str(&body, "{\"data\":[{\"b64_json\":\"");
    buf_b64(&body, img.p, img.len, 0);
    buf_str(&body, "\"}]}");

    scan_all("absurd png", 0, &body, &res);
    image_is("absurd png", &res.image[0], &img, "png", 0, 0, 0, 0);

    img.len = 0;
    buf_put(&img, "\xff\xd8\xff\xc0\x00\x01", 6);
    buf_random(&img, 100);
    body.len = 0;
    buf_str(&body, "{\"data\":[{\"b64_json\":\"");
    buf_b64(&body, img.p, img.len, 0);
    buf_str(&body, "\"}]}");

    scan_all("absurd jpeg", 0, &body, &res);
    image_is("absurd jpeg", &res.image[0], &img, "jpeg", 0, 0, 0, 0);

    buf_free(&img);
    buf_free(&body);
}


static void
test_numbers(void)
{
    unit_buf_t          body = { NULL, 0, 0 };
    gi2_resp_result_t   res;

    buf_str(&body, "{\"created\":-5,\"usage\":{\"input_tokens\":1.5,"
            "\"output_tokens\":99999999999999999999,\"total_tokens\":1e3,"
            "\"input_tokens_details\":{\"text_tokens\":9223372036854775807,"
            "\"image_tokens\":\"7\"},\"output_tokens_details\":"
            "{\"image_tokens\":0}}}");

    scan_all("numbers", 0, &body, &res);

    num_is("numbers negative", res.created, -5);
    num_is("numbers fraction", res.input_tokens, -1);
    num_is("numbers overflow", res.output_tokens, -1);
    num_is("numbers exponent", res.total_tokens, -1);
    num_is("numbers max", res.input_text_tokens, INT64_MAX);
    num_is("numbers string", res.input_image_tokens, -1);
    num_is("numbers zero", res.output_image_tokens, 0);

    buf_free(&body);
}


/* every split of small full responses, JSON and SSE */

static void
test_splits(void)
{
    unit_buf_t          a = { NULL, 0, 0 }, b = { NULL, 0, 0 };
    unit_buf_t          body = { NULL, 0, 0 };
    gi2_resp_result_t   res;

    unit_srand(unit_seed + 13);
    build_png(&a, 2, 2, UNIT_C2PA);
    build_webp(&b, 3, 3, UNIT_C2PA);

    buf_str(&body, "{\"created\":7,\"data\":[{\"b64_json\":\"");
    buf_b64(&body, a.p, a.len, UNIT_SLASH);
    buf_str(&body, "\",\"revised_prompt\":\"\\ud83d\\ude00\"},{\"url\":"
            "\"https:\\/\\/u\"},{\"b64_json\":\"");
    buf_b64(&body, b.p, b.len, 0);
    buf_str(&body, "\"}],\"size\":\"1024x1024\",\"usage\":{\"input_tokens\""
            ":1,\"output_tokens\":2,\"total_tokens\":3}}");

    scan_all("small json", 0, &body, &res);

    unit_ok(res.nimages == 2 && res.nurls == 1 && res.total_tokens == 3,
            "small json: two images, one url");
    image_is("small json webp", &res.image[1], &b, "webp", 3, 3, 1, 2);

    body.len = 0;
    buf_str(&body, ": c\r\nevent: image_generation.partial_image\r\n"
            "data: {\"type\":\"image_generation.partial_image\",\"b64_json\""
            ":\"QUJD\"}\r\n\r\nevent: image_generation.completed\r\ndata: "
            "{\"b64_json\":\"");
    buf_b64(&body, a.p, a.len, 0);
    buf_str(&body, "\",\r\ndata: \"type\":\"image_generation.completed\","
            "\"usage\":{\"total_tokens\":5}}\r\n\r\nevent: error\r\ndata: "
            "{\"type\":\"error\",\"error\":{\"code\":\"x\"}}\r\n\r\n");

    scan_all("small sse", 1, &body, &res);

    unit_ok(res.nimages == 1 && res.partial_images == 1
            && res.total_tokens == 5 && res.error_event
            && !res.malformed && !res.truncated, "small sse: all of it");
    image_is("small sse", &res.image[0], &a, "png", 2, 2, 1, -1);

    buf_free(&a);
    buf_free(&b);
    buf_free(&body);
}


/* mutated responses: no crash, no read out of bounds, still invariant */

static void
test_fuzz(void)
{
    int                 sse, same;
    size_t              i, j, n, pos;
    const char         *tok;
    unit_buf_t          img = { NULL, 0, 0 }, seed[2], body = { NULL, 0, 0 };
    unit_buf_t          tmp = { NULL, 0, 0 };
    gi2_resp_result_t   res, *other;

    static const char  *tokens[] = {
        "\"", "\\", "{", "}", "[", "]", ":", ",", "\n", "\r", "\\u",
        "\\ud800", "=", "data: ", "\n\n", "event: error\n", "b64_json",
        "\"type\":\"image_generation.completed\"", "\x00", "\xff", "9"
    };

    other = malloc(sizeof(gi2_resp_result_t));
    if (other == NULL) {
        exit(2);
    }

    memset(seed, 0, sizeof(seed));

    unit_srand(unit_seed + 14);
    build_png(&img, 3, 2, UNIT_C2PA);

    buf_str(&seed[0], "{\"created\":1,\"data\":[{\"b64_json\":\"");
    buf_b64(&seed[0], img.p, img.len, UNIT_SLASH);
    buf_str(&seed[0], "\"},{\"url\":\"u\"}],\"usage\":{\"input_tokens\":1,"
            "\"input_tokens_details\":{\"text_tokens\":1}},\"error\":{"
            "\"moderation_details\":{\"categories\":[\"a\",\"b\"]}}}");

    buf_str(&seed[1], "event: image_generation.partial_image\ndata: "
            "{\"type\":\"image_generation.partial_image\",\"b64_json\":"
            "\"QUJD\"}\n\ndata: {\"b64_json\":\"");
    buf_b64(&seed[1], img.p, img.len, 0);
    buf_str(&seed[1], "\",\ndata: \"type\":\"image_generation.completed\","
            "\"usage\":{\"total_tokens\":5}}\r\n\r\n");

    same = 1;

    for (i = 0; i < 3000 && same; i++) {
        sse = (int) (i & 1);
        body.len = 0;
        buf_put(&body, seed[sse].p, seed[sse].len);

        unit_srand(unit_seed + 1000 + i);
        n = 1 + unit_rnd(4);

        for (j = 0; j < n; j++) {
            pos = unit_rnd(body.len);

            switch (unit_rnd(3)) {

            case 0:
                body.p[pos] = (unsigned char) unit_rand();
                break;

            case 1:
                memmove(body.p + pos, body.p + pos + 1, body.len - pos - 1);
                body.len--;
                break;

            default:
                tok = tokens[unit_rnd(sizeof(tokens) / sizeof(tokens[0]))];
                tmp.len = 0;
                buf_put(&tmp, body.p, pos);
                buf_put(&tmp, tok, tok[0] ? strlen(tok) : 1);
                buf_put(&tmp, body.p + pos, body.len - pos);
                body.len = 0;
                buf_put(&body, tmp.p, tmp.len);
            }
        }

        scan(sse, &body, UNIT_WHOLE, 0, &res);
        scan(sse, &body, UNIT_RANDOM, i, other);

        if (memcmp(&res, other, sizeof(res)) != 0) {
            same = 0;
            unit_diag("fuzz case %zu differs", i);
        }
    }

    unit_ok(same, "fuzz: 3000 mutated responses, whole and in pieces "
            "agree");

    buf_free(&img);
    buf_free(&seed[0]);
    buf_free(&seed[1]);
    buf_free(&body);
    buf_free(&tmp);
    free(other);
}


static void
test_api(void)
{
    gi2_resp_t          *r;
    const gi2_resp_result_t  *res;

    unit_ok(gi2_resp_memory() <= 65536, "memory: %zu bytes per scanner",
            gi2_resp_memory());

    unit_heap.fail_after = 0;
    r = gi2_resp_create(0, &unit_a);
    unit_heap.fail_after = -1;

    unit_ok(r == NULL, "create: out of memory gives NULL");

    r = gi2_resp_create(1, &unit_a);
    unit_ok(r != NULL, "create");

    if (r == NULL) {
        return;
    }

    res = gi2_resp_result(r);
    unit_ok(res->sse && res->input_tokens == -1 && res->created == -1
            && res->nimages == 0, "create: initial result");

    unit_ok(gi2_resp_feed(r, (const unsigned char *) "", 0) == GI2_OK,
            "feed: empty");
    unit_ok(gi2_resp_finish(r) == GI2_OK, "finish");
    unit_ok(gi2_resp_finish(r) == GI2_OK, "finish again");
    unit_ok(gi2_resp_feed(r, (const unsigned char *) S("data: x"))
            == GI2_EINVAL, "feed after finish: EINVAL");

    gi2_resp_destroy(r);
    gi2_resp_destroy(NULL);

    /* destroy without finish, mid-image: OpenSSL's context is freed */

    r = gi2_resp_create(0, &unit_a);

    if (r != NULL) {
        gi2_resp_feed(r, (const unsigned char *)
                      S("{\"data\":[{\"b64_json\":\"QUJD"));
        gi2_resp_destroy(r);
    }

    unit_ok(unit_heap.live == 0, "no scanner left allocated");
}


/*
 * A gpt-image-2 sized response: a 15 MB PNG, 20 MB of base64, fed in
 * random pieces.  The scanner may allocate only when created, and its
 * speed is reported.
 */

static void
test_large(void)
{
    size_t              i, n, allocs;
    double              t, best;
    unit_buf_t          img = { NULL, 0, 0 }, body = { NULL, 0, 0 };
    gi2_resp_t         *r;
    struct timespec     t0, t1;
    gi2_resp_result_t   res;

    unit_srand(unit_seed + 15);
    build_png(&img, 2240, 2240, UNIT_C2PA_LATE);

    buf_str(&body, "{\"created\":1,\"data\":[{\"b64_json\":\"");
    buf_b64(&body, img.p, img.len, 0);
    buf_str(&body, "\",\"revised_prompt\":\"big\"}],\"usage\":"
            "{\"total_tokens\":6240}}");

    unit_ok(body.len > 20000000, "large: %zu bytes of response", body.len);

    allocs = unit_heap.allocs;
    r = gi2_resp_create(0, &unit_a);

    if (!unit_ok(r != NULL, "large: create")) {
        return;
    }

    unit_ok(unit_heap.allocs == allocs + 1, "large: one allocation");
    allocs = unit_heap.allocs;

    unit_srand(unit_seed + 16);
    clock_gettime(CLOCK_MONOTONIC, &t0);

    for (i = 0; i < body.len; i += n) {
        n = (unit_rand() & 1) ? 1 + unit_rnd(65536) : 1 + unit_rnd(16);

        if (n > body.len - i) {
            n = body.len - i;
        }

        gi2_resp_feed(r, body.p + i, n);
    }

    gi2_resp_finish(r);
    clock_gettime(CLOCK_MONOTONIC, &t1);

    unit_ok(unit_heap.allocs == allocs, "large: no allocation while fed");

    memcpy(&res, gi2_resp_result(r), sizeof(res));
    gi2_resp_destroy(r);

    unit_ok(res.nimages == 1 && res.total_tokens == 6240 && !res.malformed,
            "large: one image");
    image_is("large", &res.image[0], &img, "png", 2240, 2240, 1, 0);

    t = (double) (t1.tv_sec - t0.tv_sec)
        + (double) (t1.tv_nsec - t0.tv_nsec) / 1e9;

    unit_diag("large, random pieces: %.1f MB in %.3f s, %.0f MB/s",
              body.len / 1e6, t, body.len / 1e6 / t);

    /* whole 64 KiB buffers, as a body filter mostly sees them */

    best = 1e9;

    for (i = 0; i < 3; i++) {
        r = gi2_resp_create(0, &unit_a);

        if (r == NULL) {
            break;
        }

        clock_gettime(CLOCK_MONOTONIC, &t0);

        for (n = 0; n < body.len; n += 65536) {
            gi2_resp_feed(r, body.p + n,
                          (body.len - n < 65536) ? body.len - n : 65536);
        }

        gi2_resp_finish(r);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        gi2_resp_destroy(r);

        t = (double) (t1.tv_sec - t0.tv_sec)
            + (double) (t1.tv_nsec - t0.tv_nsec) / 1e9;

        if (t < best) {
            best = t;
        }
    }

    unit_diag("large, 64 KiB pieces: %.0f MB/s of base64 response",
              body.len / 1e6 / best);

    /* the same image as the completed event of a stream */

    body.len = 0;
    buf_str(&body, ": hi\r\n\r\nevent: image_generation.completed\r\n"
            "data: {\"type\":\"image_generation.completed\",\"b64_json\":\"");
    buf_b64(&body, img.p, img.len, 0);
    buf_str(&body, "\",\"usage\":{\"total_tokens\":6240}}\r\n\r\n");

    allocs = unit_heap.allocs;
    r = gi2_resp_create(1, &unit_a);

    if (!unit_ok(r != NULL, "large sse: create")) {
        return;
    }

    clock_gettime(CLOCK_MONOTONIC, &t0);

    for (n = 0; n < body.len; n += 65536) {
        gi2_resp_feed(r, body.p + n,
                      (body.len - n < 65536) ? body.len - n : 65536);
    }

    gi2_resp_finish(r);
    clock_gettime(CLOCK_MONOTONIC, &t1);

    unit_ok(unit_heap.allocs == allocs + 1, "large sse: one allocation");

    memcpy(&res, gi2_resp_result(r), sizeof(res));
    gi2_resp_destroy(r);

    unit_ok(res.nimages == 1 && res.total_tokens == 6240 && !res.malformed
            && !res.truncated, "large sse: one image");
    image_is("large sse", &res.image[0], &img, "png", 2240, 2240, 1, -1);

    t = (double) (t1.tv_sec - t0.tv_sec)
        + (double) (t1.tv_nsec - t0.tv_nsec) / 1e9;

    unit_diag("large sse, 64 KiB pieces: %.0f MB/s", body.len / 1e6 / t);

    buf_free(&img);
    buf_free(&body);
}

/*
 * The vector base64 path against the scalar one: random images in
 * base64 with, at random places, escaped slashes, \u escapes of digits,
 * stray characters, '=' and spaces, each scanned whole (the vector path
 * takes 32 characters a step) with the vector path on and off, and in
 * random pieces with it on.  Clean ones are also checked against SHA-256
 * of the raw bytes.
 */

static void
test_simd(void)
{
    int                 simd, diff, clean;
    char                why[200];
    size_t              i, j, n, at, bad_cases;
    unsigned char       md[32];
    unit_buf_t          raw = { NULL, 0, 0 }, b64 = { NULL, 0, 0 };
    unit_buf_t          body = { NULL, 0, 0 };
    gi2_resp_result_t  *vec, *sca, *pie;
    static const char  *noise[] = {
        "\\/", "\\u0041", "\\u002f", " ", "*", "-", "_", "=", "==", "A=",
        "\\n", "~", "\\\\", "\xc3\xa9"
    };

    simd = gi2_resp_simd(-1);

    if (!simd) {
        unit_ok(1, "simd: no vector path on this CPU; scalar only");
        return;
    }

    vec = malloc(sizeof(gi2_resp_result_t));
    sca = malloc(sizeof(gi2_resp_result_t));
    pie = malloc(sizeof(gi2_resp_result_t));

    if (vec == NULL || sca == NULL || pie == NULL) {
        exit(2);
    }

    diff = 0;
    bad_cases = 0;

    for (i = 0; i < 400; i++) {
        unit_srand(unit_seed + 1000 + i);

        raw.len = 0;
        b64.len = 0;
        body.len = 0;

        buf_random(&raw, unit_rnd(4000));
        buf_b64(&b64, raw.p, raw.len, (i & 1) ? UNIT_SLASH : 0);

        buf_str(&body, "{\"data\":[{\"b64_json\":\"");

        clean = (i % 4 == 0);
        at = 0;

        for (j = 0; !clean && j < 1 + unit_rnd(4); j++) {
            n = at + unit_rnd(b64.len - at + 1);

            /* never split an escape the encoder wrote */
            while (n > at && n < b64.len && b64.p[n - 1] == '\\') {
                n--;
            }

            buf_put(&body, b64.p + at, n - at);
            buf_str(&body, noise[unit_rnd(sizeof(noise) / sizeof(noise[0]))]);
            at = n;
        }

        buf_put(&body, b64.p + at, b64.len - at);
        buf_str(&body, "\"}]}");

        gi2_resp_simd(1);
        scan(0, &body, UNIT_WHOLE, 0, vec);
        scan(0, &body, UNIT_RANDOM, i, pie);
        gi2_resp_simd(0);
        scan(0, &body, UNIT_WHOLE, 0, sca);
        gi2_resp_simd(1);

        if (result_diff(vec, sca, why, sizeof(why))
            || result_diff(vec, pie, why, sizeof(why)))
        {
            if (diff++ < 3) {
                unit_diag("simd: case %zu differs: %s", i, why);
            }
        }

        if (vec->image[0].bad_base64) {
            bad_cases++;
        }

        if (clean) {
            SHA256(raw.p, raw.len, md);

            if (vec->nimages != 1 || vec->image[0].bad_base64
                || vec->image[0].bytes != raw.len
                || memcmp(md, vec->image[0].sha256, 32) != 0)
            {
                if (diff++ < 3) {
                    unit_diag("simd: clean case %zu: wrong hash or size", i);
                }
            }
        }
    }

    unit_ok(diff == 0, "simd: 400 cases, vector == scalar == pieces, "
            "clean ones == SHA-256 of the raw bytes");
    unit_ok(bad_cases > 200,
            "simd: the noise made %zu of 400 cases bad base64", bad_cases);

    free(vec);
    free(sca);
    free(pie);
    buf_free(&raw);
    buf_free(&b64);
    buf_free(&body);
}


int
main(void)
{
    char  *env;

    setvbuf(stdout, NULL, _IOLBF, 0);

    env = getenv("GI2_UNIT_SEED");
    if (env != NULL && *env != '\0') {
        unit_seed = strtoull(env, NULL, 0);
    }

    test_api();
    test_json_single();
    test_json_three();
    test_json_urls();
    test_json_many();
    test_errors();
    test_error_strings();
    test_sse();
    test_sse_error();
    test_sse_edges();
    test_responses_api();
    test_truncated();
    test_malformed();
    test_deep();
    test_escapes();
    test_base64();
    test_sniff();
    test_numbers();
    test_splits();
    test_fuzz();
    test_large();
    test_simd();

    unit_ok(unit_heap.live == 0, "every scanner freed");

    return unit_done();
}
