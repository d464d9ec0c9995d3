/*
 * libFuzzer harness of the multipart/form-data parser (gi2_multipart.c).
 *
 * The input's first line is a Content-Type given to gi2_mp_content_type();
 * its boundary is used when it has one, "gi2" otherwise.  The rest is the
 * body, parsed at once and again in chunks whose sizes come from the
 * input; both must agree exactly (error, fields, offsets, hashes), and the
 * offsets of every field must point inside the body at its value.  Any
 * disagreement aborts.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I ngx_gi2_module \
 *       -I /usr/include/yajl fuzz/multipart_fuzz.c ngx_gi2_module/gi2_*.c \
 *       -lpcre2-8 -lyajl -lutf8proc -lcrypto
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gi2_core.h"
#include "fuzz.h"
#include "gi2_multipart.h"


typedef struct {
    gi2_req_t            req;
    gi2_input_t          input[GI2_MP_INPUTS_MAX];
    int                  rc;
} fuzz_res_t;


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_parse(const unsigned char *b, size_t blen,
    const unsigned char *body, size_t len, const unsigned char *sizes,
    size_t nsizes, fz_arena_t *pool, fuzz_res_t *out);
static void fuzz_compare(const fuzz_res_t *a, const fuzz_res_t *b);
static void fuzz_offsets(const fuzz_res_t *r, const unsigned char *body,
    size_t len);



/* sizes: NULL feeds the body at once, else chunk sizes cycled */

static void
fuzz_parse(const unsigned char *b, size_t blen, const unsigned char *body,
    size_t len, const unsigned char *sizes, size_t nsizes,
    fz_arena_t *pool, fuzz_res_t *out)
{
    int           rc;
    size_t        off, n, k;
    gi2_mp_t     *m;
    gi2_alloc_t   a;

    a.alloc = fz_arena_alloc;
    a.data = pool;
    a.free = NULL;

    memset(out, 0, sizeof(fuzz_res_t));

    m = gi2_mp_create(&out->req, b, blen, &a);
    if (m == NULL) {
        out->rc = GI2_ENOMEM;
        return;
    }

    rc = GI2_OK;
    k = 0;

    for (off = 0; off < len && rc == GI2_OK; off += n) {
        n = len - off;

        if (sizes != NULL) {
            n = 1 + sizes[k++ % nsizes] % 16;
            n = (n > len - off) ? len - off : n;
        }

        rc = gi2_mp_feed(m, body + off, n);
    }

    if (rc == GI2_OK) {
        rc = gi2_mp_finish(m);
    }

    out->rc = rc;

    if (out->req.ninputs) {
        memcpy(out->input, out->req.input,
               out->req.ninputs * sizeof(gi2_input_t));
    }

    gi2_mp_destroy(m);
}


static void
fuzz_compare(const fuzz_res_t *a, const fuzz_res_t *b)
{
    unsigned            i;
    const gi2_field_t  *x, *y;

    /* the messages are static strings: the same one is the same pointer */

    if (a->rc != b->rc || a->req.error != b->req.error
        || a->req.param != b->req.param
        || a->req.ninputs != b->req.ninputs)
    {
        abort();
    }

    if (a->req.error == NULL && a->req.length != b->req.length) {
        abort();
    }

    for (i = 0; i < GI2_F_LAST; i++) {
        x = &a->req.field[i];
        y = &b->req.field[i];

        if (x->type != y->type || x->value.len != y->value.len
            || (x->value.len
                && memcmp(x->value.data, y->value.data, x->value.len) != 0)
            || x->key_end != y->key_end || x->value_start != y->value_start
            || x->value_end != y->value_end
            || x->part_start != y->part_start || x->part_end != y->part_end)
        {
            abort();
        }
    }

    for (i = 0; i < a->req.ninputs; i++) {
        if (memcmp(&a->input[i].sha256, &b->input[i].sha256, 32) != 0
            || a->input[i].bytes != b->input[i].bytes
            || a->input[i].mask != b->input[i].mask)
        {
            abort();
        }
    }
}


/* a field's offsets point at its value, between two delimiters */

static void
fuzz_offsets(const fuzz_res_t *r, const unsigned char *body, size_t len)
{
    unsigned            i;
    const gi2_field_t  *f;

    if (r->rc != GI2_OK) {
        return;
    }

    for (i = 0; i < GI2_F_LAST; i++) {
        f = &r->req.field[i];

        if (f->type == GI2_T_NONE) {
            continue;
        }

        if (f->value_end > len || f->value_start > f->value_end
            || f->value_end - f->value_start != f->value.len
            || memcmp(body + f->value_start, f->value.data, f->value.len)
               != 0
            || f->part_end != f->value_end + 2
            || f->part_start >= f->value_start
            || body[f->part_start] != '-' || body[f->part_end] != '-'
            || !gi2_utf8_valid(f->value.data, f->value.len))
        {
            abort();
        }
    }
}


/* kept across runs; their blocks are freed after each */
static fz_arena_t  pool1, pool2;


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                   rc;
    size_t                line, len;
    gi2_str_t             boundary;
    fuzz_res_t           *once, *split;
    const char           *err;
    const unsigned char  *body;

    /* the first line: a Content-Type */

    for (line = 0; line < size && line < 256 && data[line] != '\n'; line++) {
        /* void */
    }

    err = NULL;
    rc = gi2_mp_content_type(data, line, &boundary, &err);

    if ((rc == GI2_EINVAL) != (err != NULL)) {
        abort();
    }

    if (rc != 1) {
        boundary.data = (const unsigned char *) "gi2";
        boundary.len = 3;

    } else if (boundary.len < 1 || boundary.len > GI2_MP_BOUNDARY_MAX) {
        abort();
    }

    body = data + (line < size ? line + 1 : size);
    len = size - (body - data);

    once = malloc(sizeof(fuzz_res_t));
    split = malloc(sizeof(fuzz_res_t));
    if (once == NULL || split == NULL) {
        free(once);
        free(split);
        return 0;
    }

    fuzz_parse(boundary.data, boundary.len, body, len, NULL, 0, &pool1,
               once);
    fuzz_offsets(once, body, len);

    /* chunk sizes from the body itself: any chunking, the same result */

    fuzz_parse(boundary.data, boundary.len, body, len,
               len ? body : data, len ? len : size ? size : 1, &pool2,
               split);

    if (once->rc != GI2_ENOMEM && split->rc != GI2_ENOMEM) {
        fuzz_compare(once, split);
    }

    fz_arena_reset(&pool1);
    fz_arena_reset(&pool2);
    free(once);
    free(split);

    return 0;
}
