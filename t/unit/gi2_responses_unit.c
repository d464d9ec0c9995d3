/*
 * Unit tests of the JSON request parser's Responses API mode (gi2_req.c,
 * GI2_REQ_RESPONSES): the image_generation tool's fields and offsets
 * whatever the order of keys, the text given to the model, duplicates and
 * wrong types refused, the 1 MiB text cap (and the images mode's prompt
 * cap), and bodies fed in random chunks against the same bodies fed at
 * once.  Emits TAP for prove (t/03-responses-unit.t).
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gi2_core.h"
#include "unit_tap.h"
#include "unit_pool.h"


#define UNIT_SPLITS     30


typedef struct {
    gi2_req_t            req;
    int                  rc;
    char                 text[512];   /* the prompt, when short */
} unit_res_t;


static int parse(gi2_req_mode_e mode, const char *body, size_t len,
    int split, unit_res_t *out);
static int res_same(const unit_res_t *a, const unit_res_t *b);
static void check(const char *name, const char *body, const char *error,
    const char *param, unit_res_t *out);
static void splits_same(const char *name, const char *body,
    const unit_res_t *once);
static void str_is(const char *name, const gi2_field_t *f, const char *want);
static void span_is(const char *name, const char *body, const gi2_field_t *f,
    const char *want);

static void test_no_tool(void);
static void test_tool(void);
static void test_text(void);
static void test_refusals(void);
static void test_caps(void);


static unit_pool_t   unit_pool;
static gi2_alloc_t   unit_a = { unit_alloc, &unit_pool, NULL };



/*
 * Parse a body (split: 0 at once, else random chunks); field values do
 * not outlive the pool, so the caller looks at them before the next
 * parse.  The prompt is copied to out->text when it fits.
 */

static int
parse(gi2_req_mode_e mode, const char *body, size_t len, int split,
    unit_res_t *out)
{
    int                rc;
    size_t             off, n;
    gi2_req_parser_t  *p;
    gi2_field_t       *f;

    unit_pool_free(&unit_pool);
    memset(out, 0, sizeof(unit_res_t));

    p = gi2_req_parser_create_mode(&out->req, &unit_a, mode);
    if (p == NULL) {
        out->rc = GI2_ENOMEM;
        return out->rc;
    }

    rc = GI2_OK;

    for (off = 0; off < len && rc == GI2_OK; off += n) {
        n = len - off;

        if (split) {
            n = 1 + unit_rnd(unit_rnd(3) ? 5 : 64);
            n = (n > len - off) ? len - off : n;
        }

        rc = gi2_req_parser_feed(p, (const unsigned char *) body + off, n);
    }

    if (rc == GI2_OK) {
        rc = gi2_req_parser_finish(p);
    }

    gi2_req_parser_destroy(p);
    gi2_req_parser_destroy(p);

    out->rc = rc;
    f = &out->req.field[GI2_F_PROMPT];

    if (f->type == GI2_T_STRING && f->value.len < sizeof(out->text)) {
        memcpy(out->text, f->value.data, f->value.len);
    }

    return rc;
}


static int
res_same(const unit_res_t *a, const unit_res_t *b)
{
    int                 i;
    const gi2_field_t  *x, *y;

    if (a->rc != b->rc || a->req.image_tools != b->req.image_tools
        || (a->req.error == NULL) != (b->req.error == NULL)
        || (a->req.error && strcmp(a->req.error, b->req.error) != 0)
        || a->req.param != b->req.param
        || strcmp(a->text, b->text) != 0)
    {
        return 0;
    }

    for (i = 0; i < GI2_F_LAST; i++) {
        x = &a->req.field[i];
        y = &b->req.field[i];

        if (x->type != y->type || x->value.len != y->value.len
            || x->key_end != y->key_end || x->value_end != y->value_end)
        {
            return 0;
        }
    }

    return 1;
}


/*
 * Responses mode, at once and in random chunks: the same result, and the
 * error (or none) expected.  out keeps the result fed at once; its field
 * values point into the pool, so they are compared before the splits.
 */

static void
check(const char *name, const char *body, const char *error,
    const char *param, unit_res_t *out)
{
    parse(GI2_REQ_RESPONSES, body, strlen(body), 0, out);

    if (error == NULL) {
        if (!unit_ok(out->rc == GI2_OK, "%s: parsed", name)) {
            unit_diag("error \"%s\"", out->req.error ? out->req.error : "");
        }

    } else {
        if (!unit_ok(out->rc == GI2_EINVAL && out->req.error
                     && strcmp(out->req.error, error) == 0
                     && ((param == NULL && out->req.param == NULL)
                         || (param && out->req.param
                             && strcmp(param, out->req.param) == 0)),
                     "%s: refused (%s)", name, error))
        {
            unit_diag("got \"%s\" param %s",
                      out->req.error ? out->req.error : "(none)",
                      out->req.param ? out->req.param : "(null)");
        }
    }
}


static void
splits_same(const char *name, const char *body, const unit_res_t *once)
{
    int         k, same;
    unit_res_t  split;

    same = 1;

    for (k = 0; k < UNIT_SPLITS; k++) {
        parse(GI2_REQ_RESPONSES, body, strlen(body), 1, &split);
        same &= res_same(once, &split);
    }

    unit_ok(same, "%s: same in random chunks", name);
}


static void
str_is(const char *name, const gi2_field_t *f, const char *want)
{
    if (want == NULL) {
        unit_ok(f->type == GI2_T_NONE, "%s: absent", name);
        return;
    }

    unit_ok(f->type == GI2_T_STRING && f->value.len == strlen(want)
            && memcmp(f->value.data, want, f->value.len) == 0,
            "%s: \"%s\"", name, want);
}


/* a tool field's offsets: from the key's end to the value's end */

static void
span_is(const char *name, const char *body, const gi2_field_t *f,
    const char *want)
{
    size_t  n;

    n = strlen(want);

    unit_ok(f->value_end >= n && f->key_end < f->value_end
            && memcmp(body + f->value_end - n, want, n) == 0
            && body[f->key_end - 1] == '"',
            "%s: offsets end at %s", name, want);
}


static void
test_no_tool(void)
{
    unit_res_t   r;
    const char  *b;

    b = "{\"model\":\"gpt-5\",\"input\":\"a nude\",\"moderation\":\"low\","
        "\"prompt\":{\"id\":\"pmpt_1\"},\"size\":\"1x1\",\"tools\":"
        "[{\"type\":\"web_search\",\"moderation\":\"low\"}]}";

    check("no image tool", b, NULL, NULL, &r);
    unit_ok(r.req.image_tools == 0, "no image tool: none counted");
    str_is("no image tool: prompt", &r.req.field[GI2_F_PROMPT], NULL);
    str_is("no image tool: moderation", &r.req.field[GI2_F_MODERATION],
           NULL);
    str_is("no image tool: size", &r.req.field[GI2_F_SIZE], NULL);
    str_is("no image tool: model", &r.req.field[GI2_F_MODEL], "gpt-5");
    splits_same("no image tool", b, &r);

    check("no tools", "{\"input\":[{\"role\":\"user\",\"content\":\"x\"}]}",
          NULL, NULL, &r);
    unit_ok(r.req.image_tools == 0, "no tools: none counted");

    check("tools not an array",
          "{\"input\":\"x\",\"tools\":{\"type\":\"image_generation\"}}",
          NULL, NULL, &r);
    unit_ok(r.req.image_tools == 0, "tools not an array: not a tool");

    check("tool nested too deep",
          "{\"tools\":[[{\"type\":\"image_generation\"}]]}", NULL, NULL, &r);
    unit_ok(r.req.image_tools == 0, "tool in an array in tools: not a tool");

    check("type not a string",
          "{\"tools\":[{\"type\":[\"image_generation\"]}]}", NULL, NULL, &r);
    unit_ok(r.req.image_tools == 0, "type not a string: not a tool");
}


static void
test_tool(void)
{
    unit_res_t   r;
    const char  *b;

    b = "{\"model\":\"gpt-5\",\"user\":\"u1\",\"stream\":true,"
        "\"input\":\"a cat\",\"tools\":[{\"type\":\"web_search\"},"
        "{\"type\":\"image_generation\",\"size\":\"1024x1024\","
        "\"quality\":\"high\",\"moderation\" : \"low\","
        "\"partial_images\":2}]}";

    check("image tool", b, NULL, NULL, &r);
    unit_ok(r.req.image_tools == 1, "image tool: counted");
    str_is("image tool: prompt", &r.req.field[GI2_F_PROMPT], "a cat");
    str_is("image tool: moderation", &r.req.field[GI2_F_MODERATION], "low");
    span_is("image tool: moderation", b, &r.req.field[GI2_F_MODERATION],
            "\"low\"");
    str_is("image tool: size", &r.req.field[GI2_F_SIZE], "1024x1024");
    str_is("image tool: quality", &r.req.field[GI2_F_QUALITY], "high");
    str_is("image tool: model", &r.req.field[GI2_F_MODEL], "gpt-5");
    str_is("image tool: user", &r.req.field[GI2_F_USER], "u1");
    unit_ok(r.req.field[GI2_F_STREAM].type == GI2_T_BOOL,
            "image tool: stream");
    splits_same("image tool", b, &r);

    /* moderation before type, escapes in keys and values */

    b = "{\"tools\":[{\"moder\\u0061tion\":\"l\\u006fw\","
        "\"type\":\"image\\u005fgeneration\"}],\"input\":\"\"}";

    check("moderation first, escapes", b, NULL, NULL, &r);
    unit_ok(r.req.image_tools == 1, "moderation first: counted");
    str_is("moderation first: moderation", &r.req.field[GI2_F_MODERATION],
           "low");
    span_is("moderation first", b, &r.req.field[GI2_F_MODERATION],
            "\"l\\u006fw\"");
    str_is("moderation first: empty prompt", &r.req.field[GI2_F_PROMPT], "");
    splits_same("moderation first", b, &r);

    b = "{\"tools\":[{\"type\":\"image_generation\"}]}";
    check("no moderation", b, NULL, NULL, &r);
    str_is("no moderation: moderation", &r.req.field[GI2_F_MODERATION],
           NULL);
    str_is("no moderation: prompt", &r.req.field[GI2_F_PROMPT], "");

    /* a top-level size is not the tool's */

    b = "{\"size\":\"9x9\",\"quality\":\"low\",\"n\":3,\"tools\":"
        "[{\"type\":\"image_generation\",\"moderation\":\"auto\"}]}";
    check("top-level size", b, NULL, NULL, &r);
    str_is("top-level size: size", &r.req.field[GI2_F_SIZE], NULL);
    str_is("top-level size: n", &r.req.field[GI2_F_N], NULL);
    str_is("top-level size: moderation", &r.req.field[GI2_F_MODERATION],
           "auto");
}


static void
test_text(void)
{
    unit_res_t   r;
    const char  *b;

    b = "{\"instructions\":\"be brief\",\"input\":["
        "{\"role\":\"developer\",\"content\":\"dev text\"},"
        "{\"type\":\"message\",\"role\":\"user\",\"content\":["
        "{\"type\":\"input_text\",\"text\":\"first\"},"
        "{\"type\":\"input_image\",\"image_url\":\"data:image/png;base64,"
        "bnVkZQ==\"},"
        "{\"text\":\"second\",\"type\":\"input_text\"}]},"
        "{\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\","
        "\"text\":\"third\",\"annotations\":[]}]},"
        "{\"type\":\"function_call_output\",\"call_id\":\"c\","
        "\"output\":\"not read\"},\"bare\"],"
        "\"prompt\":{\"id\":\"pmpt_1\",\"variables\":{\"city\":\"paris\","
        "\"pic\":{\"type\":\"input_text\",\"text\":\"var text\"}}},"
        "\"text\":{\"format\":{\"type\":\"text\"}},"
        "\"metadata\":{\"content\":\"not read\"},"
        "\"tools\":[{\"type\":\"image_generation\"}]}";

    check("texts", b, NULL, NULL, &r);
    unit_ok(strcmp(r.text, "be brief\ndev text\nfirst\nsecond\nthird\n"
                   "bare\nparis\nvar text") == 0,
            "texts: every text the model reads, in order");
    splits_same("texts", b, &r);

    /* the same text after the tools: order of keys does not matter */

    b = "{\"tools\":[{\"type\":\"image_generation\"}],"
        "\"input\":[{\"content\":[{\"text\":\"a\"}]}]}";
    check("text after the tools", b, NULL, NULL, &r);
    unit_ok(strcmp(r.text, "a") == 0, "text after the tools: read");
}


static void
test_refusals(void)
{
    unit_res_t   r;
    size_t       i;

    static const struct {
        const char  *name;
        const char  *body;
        const char  *error;
        const char  *param;
    } cases[] = {
        { "two image tools",
          "{\"tools\":[{\"type\":\"image_generation\"},"
          "{\"type\":\"image_generation\"}]}",
          "more than one image_generation tool in the request", "tools" },
        { "duplicate moderation in the tool",
          "{\"tools\":[{\"type\":\"image_generation\",\"moderation\":\"auto\","
          "\"moderation\":\"low\"}]}",
          "duplicate key in the request body", "moderation" },
        { "duplicate type in a tool",
          "{\"tools\":[{\"type\":\"web_search\","
          "\"type\":\"image_generation\"}]}",
          "duplicate key in the request body", "type" },
        { "duplicate tools",
          "{\"tools\":[],\"tools\":[{\"type\":\"image_generation\"}]}",
          "duplicate key in the request body", "tools" },
        { "duplicate input",
          "{\"input\":\"a\",\"input\":\"b\"}",
          "duplicate key in the request body", "input" },
        { "duplicate instructions",
          "{\"instructions\":\"a\",\"instructions\":\"b\"}",
          "duplicate key in the request body", "instructions" },
        { "duplicate model",
          "{\"model\":\"a\",\"model\":\"b\"}",
          "duplicate key in the request body", "model" },
        { "moderation high",
          "{\"tools\":[{\"type\":\"image_generation\",\"moderation\":"
          "\"high\"}]}",
          "'moderation' must be \"auto\" or \"low\"", "moderation" },
        { "moderation null",
          "{\"tools\":[{\"moderation\":null,\"type\":\"image_generation\"}]}",
          "'moderation' must be \"auto\" or \"low\"", "moderation" },
        { "moderation an object",
          "{\"tools\":[{\"type\":\"image_generation\",\"moderation\":"
          "{\"a\":1}}]}",
          "'moderation' must be \"auto\" or \"low\"", "moderation" },
        { "moderation a long string",
          "{\"tools\":[{\"type\":\"image_generation\",\"moderation\":"
          "\"lowlowlowlowlowlowlowlowlowlowlowlow\"}]}",
          "'moderation' must be \"auto\" or \"low\"", "moderation" },
        { "not JSON", "{\"tools\":[", "the request body is not valid JSON",
          NULL },
        { "an array", "[]", "the request body must be a JSON object", NULL },
        { "invalid UTF-8 in the input",
          "{\"input\":\"\xed\xa0\x80\"}", "the request body is not valid UTF-8",
          NULL }
    };

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        check(cases[i].name, cases[i].body, cases[i].error, cases[i].param,
              &r);
        splits_same(cases[i].name, cases[i].body, &r);
    }
}


static void
test_caps(void)
{
    char        *b;
    size_t       n, i;
    unit_res_t   r;

    n = GI2_PROMPT_MAX;
    b = malloc(n + 256);
    if (b == NULL) {
        abort();
    }

    /* the text given to the model: 1 MiB with its newline, then more */

    strcpy(b, "{\"tools\":[{\"type\":\"image_generation\"}],\"instructions\":"
           "\"i\",\"input\":\"");
    i = strlen(b);
    memset(b + i, 'x', n - 2);
    strcpy(b + i + n - 2, "\"}");

    parse(GI2_REQ_RESPONSES, b, strlen(b), 0, &r);
    unit_ok(r.rc == GI2_OK && r.req.field[GI2_F_PROMPT].value.len == n,
            "responses text of 1 MiB: parsed");

    memset(b + i, 'x', n - 1);
    strcpy(b + i + n - 1, "\"}");

    parse(GI2_REQ_RESPONSES, b, strlen(b), 0, &r);
    unit_ok(r.rc == GI2_EINVAL && r.req.error
            && strcmp(r.req.error, "the text given to the model is over "
                      "1 MiB") == 0
            && strcmp(r.req.param, "input") == 0,
            "responses text of 1 MiB + 1: refused");

    /* the images mode's prompt: the same cap */

    strcpy(b, "{\"prompt\":\"");
    i = strlen(b);
    memset(b + i, 'p', n);
    strcpy(b + i + n, "\"}");

    parse(GI2_REQ_IMAGES, b, strlen(b), 0, &r);
    unit_ok(r.rc == GI2_OK && r.req.field[GI2_F_PROMPT].value.len == n,
            "images prompt of 1 MiB: parsed");

    memset(b + i, 'p', n + 1);
    strcpy(b + i + n + 1, "\"}");

    parse(GI2_REQ_IMAGES, b, strlen(b), 1, &r);
    unit_ok(r.rc == GI2_EINVAL && r.req.error
            && strcmp(r.req.error, "'prompt' is over 1 MiB") == 0
            && strcmp(r.req.param, "prompt") == 0,
            "images prompt of 1 MiB + 1: refused");

    /* images mode reads no tools */

    strcpy(b, "{\"prompt\":\"a\",\"tools\":[{\"type\":"
           "\"image_generation\",\"moderation\":\"x\"}]}");
    parse(GI2_REQ_IMAGES, b, strlen(b), 0, &r);
    unit_ok(r.rc == GI2_OK && r.req.image_tools == 0
            && r.req.field[GI2_F_MODERATION].type == GI2_T_NONE,
            "images mode: tools not read");

    free(b);
}


int
main(void)
{
    unit_state = 0x726573706f6e7365ULL;

    test_no_tool();
    test_tool();
    test_text();
    test_refusals();
    test_caps();

    unit_pool_free(&unit_pool);

    return unit_done();
}
