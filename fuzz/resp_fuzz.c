/*
 * libFuzzer harness: the response scanner (gi2_resp.c) on an arbitrary
 * upstream body, read both as JSON and as an SSE stream.
 *
 * Checks, each an abort when it fails:
 *
 *   - the body fed whole, byte by byte and in pseudo-random pieces (empty
 *     ones too) gives the same result, byte for byte: image hashes, sizes,
 *     formats and flags, URLs, usage, error fields;
 *   - feeding never calls the allocator (memory per scanner is fixed);
 *   - the result is sane: counts within their bounds, every string
 *     NUL-terminated inside its buffer, formats from the known set, a
 *     second feed after gi2_resp_finish() refused.
 *
 * fuzz/image_fuzz.c wraps arbitrary bytes as a base64 image instead, to
 * reach the image sniffers and to check the hashes against OpenSSL.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gi2_core.h"
#include "gi2_resp.h"
#include "fuzz.h"


#define FZ_WHOLE       0
#define FZ_BYTES       1
#define FZ_PIECES      2


static size_t                fz_allocs;


static void *fz_count_alloc(void *data, size_t size);
static void fz_scan(int sse, const uint8_t *data, size_t size, int how,
    gi2_resp_result_t *out);
static void fz_terminated(const char *s, size_t size, const char *what);
static void fz_sane(const gi2_resp_result_t *res);


static void *
fz_count_alloc(void *data, size_t size)
{
    (void) data;

    fz_allocs++;

    return malloc(size);
}


static void
fz_scan(int sse, const uint8_t *data, size_t size, int how,
    gi2_resp_result_t *out)
{
    size_t        i, n, before;
    uint64_t      st;
    gi2_resp_t   *r;
    gi2_alloc_t   a = { fz_count_alloc, NULL, fz_free };

    r = gi2_resp_create(sse, &a);
    FZ_CHECK(r != NULL, "create");

    before = fz_allocs;

    switch (how) {

    case FZ_WHOLE:
        FZ_CHECK(gi2_resp_feed(r, data, size) == GI2_OK, "feed");
        break;

    case FZ_BYTES:
        for (i = 0; i < size; i++) {
            FZ_CHECK(gi2_resp_feed(r, data + i, 1) == GI2_OK, "feed");
        }

        break;

    default:
        st = fz_hash(data, size) ^ (uint64_t) sse;

        for (i = 0; i < size; i += n) {
            if ((fz_next(&st) & 15) == 0) {
                FZ_CHECK(gi2_resp_feed(r, data + i, 0) == GI2_OK, "feed");
            }

            n = fz_piece(&st, size - i);
            FZ_CHECK(gi2_resp_feed(r, data + i, n) == GI2_OK, "feed");
        }
    }

    FZ_CHECK(fz_allocs == before, "feeding never allocates");

    FZ_CHECK(gi2_resp_finish(r) == GI2_OK, "finish");
    FZ_CHECK(gi2_resp_feed(r, (const unsigned char *) "x", 1) == GI2_EINVAL,
             "no feed after finish");

    memcpy(out, gi2_resp_result(r), sizeof(gi2_resp_result_t));
    gi2_resp_destroy(r);
}


static void
fz_terminated(const char *s, size_t size, const char *what)
{
    FZ_CHECK(memchr(s, '\0', size) != NULL, what);
}


static void
fz_sane(const gi2_resp_result_t *res)
{
    unsigned            i;
    const gi2_image_t  *img;

    FZ_CHECK(res->nimages <= GI2_RESP_MAX_IMAGES, "nimages");
    FZ_CHECK(res->nimages <= res->images_total, "images_total");
    FZ_CHECK(res->nurls <= GI2_RESP_MAX_IMAGES, "nurls");
    FZ_CHECK(res->nurls <= res->urls_total, "urls_total");
    FZ_CHECK(res->url_truncated >> res->nurls == 0, "url_truncated bits");

    for (i = 0; i < GI2_RESP_MAX_IMAGES; i++) {
        fz_terminated(res->url[i], GI2_RESP_URL_LEN, "url");
        img = &res->image[i];
        fz_terminated(img->format, sizeof(img->format), "format");

        if (i >= res->nimages) {
            continue;
        }

        FZ_CHECK(img->format[0] == '\0' || strcmp(img->format, "png") == 0
                 || strcmp(img->format, "jpeg") == 0
                 || strcmp(img->format, "webp") == 0, "format name");
        FZ_CHECK(img->index >= -1, "image index");
        FZ_CHECK(img->format[0] != '\0'
                 || (img->width == 0 && img->height == 0 && !img->c2pa),
                 "no dimensions without a format");
    }

    fz_terminated(res->error_type, sizeof(res->error_type), "error_type");
    fz_terminated(res->error_code, sizeof(res->error_code), "error_code");
    fz_terminated(res->error_param, sizeof(res->error_param),
                  "error_param");
    fz_terminated(res->error_message, sizeof(res->error_message),
                  "error_message");
    fz_terminated(res->moderation_stage, sizeof(res->moderation_stage),
                  "moderation_stage");
    fz_terminated(res->categories, sizeof(res->categories), "categories");
    fz_terminated(res->response_size, sizeof(res->response_size), "size");
    fz_terminated(res->response_quality, sizeof(res->response_quality),
                  "quality");
    fz_terminated(res->response_format, sizeof(res->response_format),
                  "output_format");
    fz_terminated(res->response_background,
                  sizeof(res->response_background), "background");
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                 sse;
    gi2_resp_result_t  *whole, *other;

    whole = malloc(sizeof(gi2_resp_result_t));
    other = malloc(sizeof(gi2_resp_result_t));
    FZ_CHECK(whole != NULL && other != NULL, "malloc");

    for (sse = 0; sse < 2; sse++) {
        fz_scan(sse, data, size, FZ_WHOLE, whole);
        fz_sane(whole);
        FZ_CHECK(whole->sse == (unsigned) sse, "mode");

        fz_scan(sse, data, size, FZ_BYTES, other);
        FZ_CHECK(memcmp(whole, other, sizeof(gi2_resp_result_t)) == 0,
                 "byte by byte == whole");

        fz_scan(sse, data, size, FZ_PIECES, other);
        FZ_CHECK(memcmp(whole, other, sizeof(gi2_resp_result_t)) == 0,
                 "pieces == whole");
    }

    free(whole);
    free(other);

    return 0;
}
