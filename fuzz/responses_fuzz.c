/*
 * libFuzzer harness of the JSON request parser in its Responses API mode
 * (gi2_req.c, GI2_REQ_RESPONSES).  The input is a request body, parsed at
 * once and again in chunks whose sizes come from the input; both must
 * agree exactly (error, the image tools counted, fields, offsets, the text
 * given to the model).  A tool's moderation string must end, in the body,
 * at a closing quote after its key.  Any disagreement aborts.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I ngx_gi2_module \
 *       -I /usr/include/yajl fuzz/responses_fuzz.c ngx_gi2_module/gi2_*.c \
 *       -lpcre2-8 -lyajl -lutf8proc -lcrypto
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gi2_core.h"
#include "fuzz.h"



int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fuzz_parse(const unsigned char *body, size_t len, int split,
    fz_arena_t *pool, gi2_req_t *req);



static int
fuzz_parse(const unsigned char *body, size_t len, int split,
    fz_arena_t *pool, gi2_req_t *req)
{
    int                rc;
    size_t             off, n;
    gi2_alloc_t        a;
    gi2_req_parser_t  *p;

    a.alloc = fz_arena_alloc;
    a.data = pool;
    a.free = NULL;

    p = gi2_req_parser_create_mode(req, &a, GI2_REQ_RESPONSES);
    if (p == NULL) {
        return GI2_ENOMEM;
    }

    rc = GI2_OK;

    for (off = 0; off < len && rc == GI2_OK; off += n) {
        n = len - off;

        if (split) {
            n = 1 + body[off] % 13;
            n = (n > len - off) ? len - off : n;
        }

        rc = gi2_req_parser_feed(p, body + off, n);
    }

    if (rc == GI2_OK) {
        rc = gi2_req_parser_finish(p);
    }

    gi2_req_parser_destroy(p);

    return rc;
}


/* kept across runs; their blocks are freed after each */
static fz_arena_t  pool1, pool2;


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                 rc1, rc2;
    unsigned            i;
    gi2_req_t          *a, *b;
    const gi2_field_t  *x, *y;

    a = malloc(sizeof(gi2_req_t));
    b = malloc(sizeof(gi2_req_t));
    if (a == NULL || b == NULL) {
        free(a);
        free(b);
        return 0;
    }

    rc1 = fuzz_parse(data, size, 0, &pool1, a);
    rc2 = fuzz_parse(data, size, 1, &pool2, b);

    if (rc1 == GI2_ENOMEM || rc2 == GI2_ENOMEM) {
        goto done;
    }

    if (rc1 != rc2 || a->error != b->error || a->param != b->param
        || a->image_tools != b->image_tools)
    {
        abort();
    }

    for (i = 0; i < GI2_F_LAST; i++) {
        x = &a->field[i];
        y = &b->field[i];

        if (x->type != y->type || x->value.len != y->value.len
            || (x->value.len
                && memcmp(x->value.data, y->value.data, x->value.len) != 0)
            || x->key_end != y->key_end || x->value_end != y->value_end)
        {
            abort();
        }
    }

    x = &a->field[GI2_F_MODERATION];

    if (rc1 == GI2_OK && x->type == GI2_T_STRING
        && (x->value_end > size || x->key_end >= x->value_end
            || data[x->value_end - 1] != '"'))
    {
        abort();
    }

    if (rc1 == GI2_OK && a->image_tools
        && (a->field[GI2_F_PROMPT].type != GI2_T_STRING
            || a->field[GI2_F_PROMPT].value.len > GI2_PROMPT_MAX))
    {
        abort();
    }

done:

    fz_arena_reset(&pool1);
    fz_arena_reset(&pool2);
    free(a);
    free(b);

    return 0;
}
