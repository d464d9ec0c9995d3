/*
 * libFuzzer harness: arbitrary bytes as the image of an image API answer,
 * to reach the incremental base64 decoder, SHA-256 and the PNG, JPEG and
 * WebP sniffers of gi2_resp.c with any image content.
 *
 * The input is base64-encoded (with "\/" escapes or not, by a bit of its
 * hash) and wrapped in a JSON answer and in an SSE completed event.
 * Checks, each an abort when it fails:
 *
 *   - fed whole, byte by byte and in pseudo-random pieces: the same
 *     result, byte for byte;
 *   - one image, index 0 (none in the event), not truncated, good
 *     base64, its size the input's and its hash OpenSSL's SHA-256 of the
 *     input;
 *   - a format is only claimed when the bytes start with its signature,
 *     and dimensions only with a format.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "gi2_core.h"
#include "gi2_resp.h"
#include "fuzz.h"


#define FZ_WHOLE       0
#define FZ_BYTES       1
#define FZ_PIECES      2


static void fz_scan(int sse, const uint8_t *data, size_t size, int how,
    gi2_resp_result_t *out);
static size_t fz_wrap(int sse, int slash, const uint8_t *img, size_t len,
    uint8_t *out);
static void fz_check(const gi2_resp_result_t *res, int sse,
    const uint8_t *img, size_t len);


static void
fz_scan(int sse, const uint8_t *data, size_t size, int how,
    gi2_resp_result_t *out)
{
    size_t        i, n;
    uint64_t      st;
    gi2_resp_t   *r;
    gi2_alloc_t   a = { fz_malloc, NULL, fz_free };

    r = gi2_resp_create(sse, &a);
    FZ_CHECK(r != NULL, "create");

    switch (how) {

    case FZ_WHOLE:
        (void) gi2_resp_feed(r, data, size);
        break;

    case FZ_BYTES:
        for (i = 0; i < size; i++) {
            (void) gi2_resp_feed(r, data + i, 1);
        }

        break;

    default:
        st = fz_hash(data, size);

        for (i = 0; i < size; i += n) {
            n = fz_piece(&st, size - i);
            (void) gi2_resp_feed(r, data + i, n);
        }
    }

    (void) gi2_resp_finish(r);
    memcpy(out, gi2_resp_result(r), sizeof(gi2_resp_result_t));
    gi2_resp_destroy(r);
}


/* out has room for 2 * (4 * len / 3 + 4) + 256 bytes */

static size_t
fz_wrap(int sse, int slash, const uint8_t *img, size_t len, uint8_t *out)
{
    size_t          n, i, m;
    unsigned char  *b64;
    const char     *head, *tail;

    if (sse) {
        head = "event: image_generation.completed\n"
               "data: {\"type\":\"image_generation.completed\","
               "\"b64_json\":\"";
        tail = "\",\"usage\":{\"total_tokens\":1}}\n\n";

    } else {
        head = "{\"created\":1,\"data\":[{\"b64_json\":\"";
        tail = "\"}],\"usage\":{\"total_tokens\":1}}";
    }

    b64 = malloc(4 * (len / 3 + 1) + 1);
    FZ_CHECK(b64 != NULL, "malloc");

    n = (size_t) EVP_EncodeBlock(b64, img, (int) len);

    m = strlen(head);
    memcpy(out, head, m);

    for (i = 0; i < n; i++) {
        if (slash && b64[i] == '/') {
            out[m++] = '\\';
        }

        out[m++] = b64[i];
    }

    memcpy(out + m, tail, strlen(tail));
    m += strlen(tail);

    free(b64);

    return m;
}


static void
fz_check(const gi2_resp_result_t *res, int sse, const uint8_t *img,
    size_t len)
{
    unsigned char       md[32];
    const gi2_image_t  *im;

    FZ_CHECK(res->nimages == 1 && res->images_total == 1, "one image");
    FZ_CHECK(res->partial_images == 0, "no partial image");
    FZ_CHECK(!res->malformed && !res->truncated, "well formed");

    im = &res->image[0];

    /* an event's image is in no data[] array */
    FZ_CHECK(im->index == (sse ? -1 : 0), "index");
    FZ_CHECK(!im->truncated && !im->bad_base64, "good base64");
    FZ_CHECK(im->bytes == len, "size");

    SHA256(img, len, md);
    FZ_CHECK(memcmp(md, im->sha256, 32) == 0, "SHA-256");

    if (strcmp(im->format, "png") == 0) {
        FZ_CHECK(len >= 8 && memcmp(img, "\x89PNG\r\n\x1a\n", 8) == 0,
                 "png signature");

    } else if (strcmp(im->format, "jpeg") == 0) {
        FZ_CHECK(len >= 2 && img[0] == 0xff && img[1] == 0xd8,
                 "jpeg signature");

    } else if (strcmp(im->format, "webp") == 0) {
        FZ_CHECK(len >= 12 && memcmp(img, "RIFF", 4) == 0
                 && memcmp(img + 8, "WEBP", 4) == 0, "webp signature");

    } else {
        FZ_CHECK(im->format[0] == '\0', "format name");
        FZ_CHECK(im->width == 0 && im->height == 0 && !im->c2pa,
                 "no dimensions without a format");
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                 sse, slash;
    size_t              n;
    uint8_t            *body;
    gi2_resp_result_t  *whole, *other;

    if (size == 0 || size > 1024 * 1024) {
        return 0;
    }

    body = malloc(2 * (4 * size / 3 + 4) + 256);
    whole = malloc(sizeof(gi2_resp_result_t));
    other = malloc(sizeof(gi2_resp_result_t));
    FZ_CHECK(body != NULL && whole != NULL && other != NULL, "malloc");

    slash = (int) (fz_hash(data, size) & 1);

    for (sse = 0; sse < 2; sse++) {
        n = fz_wrap(sse, slash, data, size, body);

        fz_scan(sse, body, n, FZ_WHOLE, whole);
        fz_check(whole, sse, data, size);

        fz_scan(sse, body, n, FZ_BYTES, other);
        FZ_CHECK(memcmp(whole, other, sizeof(gi2_resp_result_t)) == 0,
                 "byte by byte == whole");

        fz_scan(sse, body, n, FZ_PIECES, other);
        FZ_CHECK(memcmp(whole, other, sizeof(gi2_resp_result_t)) == 0,
                 "pieces == whole");
    }

    free(body);
    free(whole);
    free(other);

    return 0;
}
