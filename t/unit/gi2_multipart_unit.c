/*
 * Unit tests of the multipart/form-data parser (gi2_multipart.c), called
 * directly: the Content-Type boundary, every field and offset, the image
 * hashes against OpenSSL's, each refusal, the limits at and past their
 * edge, and random bodies fed in random chunks against the same bodies fed
 * at once.  Emits TAP for prove (t/02-multipart-unit.t).
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>

#include "gi2_core.h"
#include "gi2_multipart.h"
#include "unit_tap.h"
#include "unit_pool.h"


#define B               "gi2-Boundary_0123"
#define CRLF            "\r\n"
#define UNIT_SPLITS     40
#define UNIT_RANDOM     300


typedef struct {
    unsigned char       *data;
    size_t               len;
    size_t               cap;
} unit_buf_t;

/* how a body is fed: at once, one byte at a time, random chunks */
enum {
    UNIT_ONCE = 0,
    UNIT_BYTES,
    UNIT_RANDOM_CHUNKS
};

typedef struct {
    gi2_req_t            req;
    gi2_input_t          input[GI2_MP_INPUTS_MAX];
    int                  rc;
    int                  created;
} unit_res_t;


static void buf_add(unit_buf_t *b, const void *p, size_t n);
static void buf_str(unit_buf_t *b, const char *s);
static void buf_free(unit_buf_t *b);
static void part_text(unit_buf_t *b, const char *name, const char *value);
static void part_file(unit_buf_t *b, const char *name, const char *filename,
    const unsigned char *data, size_t len);
static void body_close(unit_buf_t *b);
static int parse(const char *boundary, const unit_buf_t *body, int how,
    unit_res_t *out);
static int res_diff(const unit_res_t *a, const unit_res_t *b, char *why,
    size_t len);
static void sha256(const unsigned char *p, size_t len, unsigned char *md);
static void field_is(const char *name, const unit_buf_t *body,
    const gi2_field_t *f, gi2_type_e type, const char *value);
static void bad(const char *name, const unit_buf_t *body, const char *error,
    const char *param);
static void good(const char *name, const unit_buf_t *body, unit_res_t *out);

static void test_content_type(void);
static void test_fields(void);
static void test_images(void);
static void test_refusals(void);
static void test_limits(void);
static void test_lookalikes(void);
static void test_random(void);


static unit_pool_t   unit_pool;
static gi2_alloc_t   unit_a = { unit_alloc, &unit_pool, NULL };



static void
buf_add(unit_buf_t *b, const void *p, size_t n)
{
    size_t  cap;

    if (b->len + n > b->cap) {
        cap = b->cap ? b->cap : 1024;

        while (cap < b->len + n) {
            cap *= 2;
        }

        b->data = realloc(b->data, cap);
        if (b->data == NULL) {
            abort();
        }

        b->cap = cap;
    }

    if (n) {
        memcpy(b->data + b->len, p, n);
    }

    b->len += n;
}


static void
buf_str(unit_buf_t *b, const char *s)
{
    buf_add(b, s, strlen(s));
}


static void
buf_free(unit_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}


static void
part_text(unit_buf_t *b, const char *name, const char *value)
{
    buf_str(b, "--" B CRLF "Content-Disposition: form-data; name=\"");
    buf_str(b, name);
    buf_str(b, "\"" CRLF CRLF);
    buf_str(b, value);
    buf_str(b, CRLF);
}


static void
part_file(unit_buf_t *b, const char *name, const char *filename,
    const unsigned char *data, size_t len)
{
    buf_str(b, "--" B CRLF "Content-Disposition: form-data; name=\"");
    buf_str(b, name);
    buf_str(b, "\"; filename=\"");
    buf_str(b, filename);
    buf_str(b, "\"" CRLF "Content-Type: image/png" CRLF CRLF);
    buf_add(b, data, len);
    buf_str(b, CRLF);
}


static void
body_close(unit_buf_t *b)
{
    buf_str(b, "--" B "--" CRLF);
}


static void
sha256(const unsigned char *p, size_t len, unsigned char *md)
{
    unsigned int  n;

    if (EVP_Digest(p, len, md, &n, EVP_sha256(), NULL) != 1) {
        abort();
    }
}


/* parse a body; the result is copied out, the pool freed */

static int
parse(const char *boundary, const unit_buf_t *body, int how,
    unit_res_t *out)
{
    int             rc;
    size_t          off, n, i;
    gi2_mp_t       *m;
    gi2_field_t    *f;
    unsigned char  *copy;

    memset(out, 0, sizeof(unit_res_t));

    m = gi2_mp_create(&out->req, (const unsigned char *) boundary,
                      strlen(boundary), &unit_a);
    if (m == NULL) {
        out->rc = GI2_ENOMEM;
        unit_pool_free(&unit_pool);
        return out->rc;
    }

    out->created = 1;
    rc = GI2_OK;

    for (off = 0; off < body->len && rc == GI2_OK; off += n) {
        n = body->len - off;

        if (how == UNIT_BYTES) {
            n = 1;

        } else if (how == UNIT_RANDOM_CHUNKS) {
            n = 1 + unit_rnd(unit_rnd(4) ? 7 : 300);

            if (n > body->len - off) {
                n = body->len - off;
            }
        }

        rc = gi2_mp_feed(m, body->data + off, n);
    }

    if (rc == GI2_OK) {
        rc = gi2_mp_finish(m);
    }

    out->rc = rc;

    /* values outlive the pool: copied to the heap */

    for (i = 0; i < GI2_F_LAST; i++) {
        f = &out->req.field[i];

        if (f->value.data != NULL) {
            copy = malloc(f->value.len + 1);
            if (copy == NULL) {
                abort();
            }

            memcpy(copy, f->value.data, f->value.len + 1);
            f->value.data = copy;
        }
    }

    if (out->req.ninputs) {
        memcpy(out->input, out->req.input,
               out->req.ninputs * sizeof(gi2_input_t));
    }

    out->req.input = out->input;

    gi2_mp_destroy(m);
    gi2_mp_destroy(m);
    unit_pool_free(&unit_pool);

    return rc;
}


static void
res_free(unit_res_t *r)
{
    size_t  i;

    for (i = 0; i < GI2_F_LAST; i++) {
        free((void *) r->req.field[i].value.data);
        r->req.field[i].value.data = NULL;
    }
}


static int
res_diff(const unit_res_t *a, const unit_res_t *b, char *why, size_t len)
{
    size_t              i;
    const gi2_field_t  *x, *y;

    if (a->rc != b->rc) {
        snprintf(why, len, "rc %d vs %d", a->rc, b->rc);
        return 1;
    }

    if ((a->req.error == NULL) != (b->req.error == NULL)
        || (a->req.error && strcmp(a->req.error, b->req.error) != 0))
    {
        snprintf(why, len, "error \"%s\" vs \"%s\"",
                 a->req.error ? a->req.error : "(none)",
                 b->req.error ? b->req.error : "(none)");
        return 1;
    }

    if (a->req.param != b->req.param) {
        snprintf(why, len, "param %s vs %s",
                 a->req.param ? a->req.param : "(null)",
                 b->req.param ? b->req.param : "(null)");
        return 1;
    }

    /* after a refusal the bytes fed depend on the chunks */

    if ((a->req.error == NULL && a->req.length != b->req.length)
        || a->req.ninputs != b->req.ninputs)
    {
        snprintf(why, len, "length or inputs differ");
        return 1;
    }

    for (i = 0; i < GI2_F_LAST; i++) {
        x = &a->req.field[i];
        y = &b->req.field[i];

        if (x->type != y->type || x->value.len != y->value.len
            || (x->value.len
                && memcmp(x->value.data, y->value.data, x->value.len) != 0)
            || x->value_start != y->value_start
            || x->value_end != y->value_end
            || x->part_start != y->part_start || x->part_end != y->part_end
            || x->key_end != y->key_end)
        {
            snprintf(why, len, "field %s differs", gi2_field_name(i));
            return 1;
        }
    }

    for (i = 0; i < a->req.ninputs; i++) {
        if (memcmp(&a->input[i].sha256, &b->input[i].sha256, 32) != 0
            || a->input[i].bytes != b->input[i].bytes
            || a->input[i].mask != b->input[i].mask)
        {
            snprintf(why, len, "input %zu differs", i);
            return 1;
        }
    }

    return 0;
}


/* the field's value, and the body's bytes its offsets point at */

static void
field_is(const char *name, const unit_buf_t *body, const gi2_field_t *f,
    gi2_type_e type, const char *value)
{
    size_t  n;

    n = strlen(value);

    unit_ok(f->type == type, "%s: type %d", name, type);
    unit_ok(f->value.len == n && memcmp(f->value.data, value, n) == 0,
            "%s: value", name);
    unit_ok(f->value_end - f->value_start == n
            && f->value_end <= body->len
            && memcmp(body->data + f->value_start, value, n) == 0,
            "%s: value offsets", name);
    unit_ok(f->part_start + 2 + strlen(B) <= body->len
            && memcmp(body->data + f->part_start, "--" B, 2 + strlen(B))
               == 0
            && f->part_end + 2 + strlen(B) <= body->len
            && memcmp(body->data + f->part_end, "--" B, 2 + strlen(B)) == 0
            && f->part_end == f->value_end + 2
            && f->key_end == f->value_start,
            "%s: part offsets at delimiters", name);
}


/* fed at once, byte by byte and in random chunks: all refused alike */

static void
bad(const char *name, const unit_buf_t *body, const char *error,
    const char *param)
{
    int         k;
    char        why[256];
    unit_res_t  once, other;

    parse(B, body, UNIT_ONCE, &once);

    if (!unit_ok(once.rc == GI2_EINVAL && once.req.error != NULL
                 && strcmp(once.req.error, error) == 0,
                 "%s: refused", name))
    {
        unit_diag("got rc %d, error \"%s\"", once.rc,
                  once.req.error ? once.req.error : "(none)");
    }

    unit_ok((param == NULL && once.req.param == NULL)
            || (param && once.req.param && strcmp(param, once.req.param) == 0),
            "%s: param %s", name, param ? param : "null");

    for (k = 0; k < 2; k++) {
        parse(B, body, k ? UNIT_RANDOM_CHUNKS : UNIT_BYTES, &other);

        if (!unit_ok(!res_diff(&once, &other, why, sizeof(why)),
                     "%s: same %s", name,
                     k ? "in random chunks" : "byte by byte"))
        {
            unit_diag("%s", why);
        }

        res_free(&other);
    }

    res_free(&once);
}


static void
good(const char *name, const unit_buf_t *body, unit_res_t *out)
{
    char        why[256];
    unit_res_t  other;

    parse(B, body, UNIT_ONCE, out);

    if (!unit_ok(out->rc == GI2_OK, "%s: parsed", name)) {
        unit_diag("error \"%s\"", out->req.error ? out->req.error : "");
    }

    parse(B, body, UNIT_BYTES, &other);
    unit_ok(!res_diff(out, &other, why, sizeof(why)),
            "%s: same byte by byte", name);
    res_free(&other);
}


static void
test_content_type(void)
{
    size_t       i;
    gi2_str_t    b;
    const char  *err;
    char         ct[256];

    static const struct {
        const char  *ct;
        int          rc;
        const char  *boundary;
    } cases[] = {
        { "multipart/form-data; boundary=abc", 1, "abc" },
        { "Multipart/Form-Data;boundary=\"a b:c\"", 1, "a b:c" },
        { "  multipart/form-data ; charset=UTF-8; boundary=x", 1, "x" },
        { "multipart/form-data; BOUNDARY = \"----WebKitFormBoundary7MA4\"",
          1, "----WebKitFormBoundary7MA4" },
        { "multipart/form-data; boundary=abc; x=\"y;z\"", 1, "abc" },
        { "application/json", 0, NULL },
        { "multipart/form-datax; boundary=a", 0, NULL },
        { "multipart/mixed; boundary=a", 0, NULL },
        { "multipart/form-data", GI2_EINVAL, NULL },
        { "multipart/form-data;", GI2_EINVAL, NULL },
        { "multipart/form-data; boundary=", GI2_EINVAL, NULL },
        { "multipart/form-data; boundary=\"\"", GI2_EINVAL, NULL },
        { "multipart/form-data; boundary=a; boundary=a", GI2_EINVAL, NULL },
        { "multipart/form-data; boundary=\"ab \"", GI2_EINVAL, NULL },
        { "multipart/form-data; boundary=a\"b", GI2_EINVAL, NULL },
        { "multipart/form-data; boundary=\"a\\\"b\"", GI2_EINVAL, NULL },
        { "multipart/form-data; boundary=a*b", GI2_EINVAL, NULL },
        { "multipart/form-data; boundary=\"a;b\"", GI2_EINVAL, NULL },
        { "multipart/form-data; boundary=\"abc", GI2_EINVAL, NULL },
        { "multipart/form-data; boundary=abc x", GI2_EINVAL, NULL },
        { "multipart/form-data; charset=latin1; boundary=a", GI2_EINVAL,
          NULL },
        { "multipart/form-data; boundary", GI2_EINVAL, NULL }
    };

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        err = NULL;
        b.data = NULL;
        b.len = 0;

        unit_ok(gi2_mp_content_type((const unsigned char *) cases[i].ct,
                                    strlen(cases[i].ct), &b, &err)
                == cases[i].rc,
                "content type '%s': %d", cases[i].ct, cases[i].rc);

        if (cases[i].rc == 1) {
            unit_ok(b.len == strlen(cases[i].boundary)
                    && memcmp(b.data, cases[i].boundary, b.len) == 0,
                    "content type '%s': boundary '%s'", cases[i].ct,
                    cases[i].boundary);
        }

        if (cases[i].rc == GI2_EINVAL) {
            unit_ok(err != NULL, "content type '%s': a message",
                    cases[i].ct);
        }
    }

    /* 70 characters, the most RFC 2046 allows */

    memset(ct, 0, sizeof(ct));
    strcpy(ct, "multipart/form-data; boundary=");
    memset(ct + strlen(ct), 'b', 70);

    unit_ok(gi2_mp_content_type((unsigned char *) ct, strlen(ct), &b, &err)
            == 1 && b.len == 70, "content type: a 70-character boundary");

    strcat(ct, "b");

    unit_ok(gi2_mp_content_type((unsigned char *) ct, strlen(ct), &b, &err)
            == GI2_EINVAL, "content type: a 71-character boundary");
}


static void
test_fields(void)
{
    unit_buf_t   body;
    unit_res_t   r;
    gi2_field_t  *f;

    memset(&body, 0, sizeof(body));

    part_text(&body, "model", "gpt-image-1");
    part_text(&body, "prompt", "a cat\r\non a \xe7\x8c\xab mat -- with\r\n"
              "--dashes");
    part_text(&body, "n", "2");
    part_text(&body, "size", "1024x1024");
    part_text(&body, "quality", "high");
    part_text(&body, "moderation", "low");
    part_text(&body, "input_fidelity", "high");
    part_text(&body, "background", "transparent");
    part_text(&body, "output_format", "png");
    part_text(&body, "user", "user-1234");
    part_text(&body, "stream", "true");
    part_text(&body, "response_format", "b64_json");
    body_close(&body);

    good("all fields", &body, &r);
    unit_ok(r.req.multipart, "all fields: marked multipart");
    unit_ok(r.req.length == body.len, "all fields: length");
    field_is("prompt", &body, &r.req.field[GI2_F_PROMPT], GI2_T_STRING,
             "a cat\r\non a \xe7\x8c\xab mat -- with\r\n--dashes");
    field_is("model", &body, &r.req.field[GI2_F_MODEL], GI2_T_STRING,
             "gpt-image-1");
    field_is("n", &body, &r.req.field[GI2_F_N], GI2_T_NUMBER, "2");
    field_is("size", &body, &r.req.field[GI2_F_SIZE], GI2_T_STRING,
             "1024x1024");
    field_is("quality", &body, &r.req.field[GI2_F_QUALITY], GI2_T_STRING,
             "high");
    field_is("moderation", &body, &r.req.field[GI2_F_MODERATION],
             GI2_T_STRING, "low");
    field_is("user", &body, &r.req.field[GI2_F_USER], GI2_T_STRING,
             "user-1234");
    field_is("stream", &body, &r.req.field[GI2_F_STREAM], GI2_T_BOOL,
             "true");
    unit_ok(r.req.field[GI2_F_MODEL].part_start == 0,
            "first part starts at 0");
    unit_ok(r.req.ninputs == 0, "all fields: no inputs");
    res_free(&r);
    buf_free(&body);

    /* empty values, n and stream that are not numbers or booleans */

    part_text(&body, "prompt", "");
    part_text(&body, "n", "two");
    part_text(&body, "stream", "yes");
    part_text(&body, "moderation", "auto");
    body_close(&body);

    good("empty prompt", &body, &r);
    field_is("empty prompt", &body, &r.req.field[GI2_F_PROMPT],
             GI2_T_STRING, "");
    field_is("n as text", &body, &r.req.field[GI2_F_N], GI2_T_STRING, "two");
    field_is("stream as text", &body, &r.req.field[GI2_F_STREAM],
             GI2_T_STRING, "yes");
    unit_ok(r.req.field[GI2_F_MODEL].type == GI2_T_NONE,
            "empty prompt: no model");
    res_free(&r);
    buf_free(&body);

    /* header forms: unquoted name, case, padding, other headers, epilogue */

    buf_str(&body, "--" B "  \t" CRLF
            "content-disposition:form-data;name=PROMPT" CRLF
            "X-Other: whatever; name=\"moderation\"" CRLF
            "Content-Type: text/plain; charset=\"UTF-8\"" CRLF
            "Content-Transfer-Encoding: 8BIT" CRLF CRLF
            "a dog" CRLF
            "--" B CRLF
            "Content-Disposition: form-data; name=\"Moderation\"" CRLF
            "Content-Type: text/plain; charset=us-ascii" CRLF CRLF
            "auto" CRLF
            "--" B "--" CRLF CRLF " \t" CRLF);

    good("header forms", &body, &r);
    f = &r.req.field[GI2_F_PROMPT];
    unit_ok(f->type == GI2_T_STRING && f->value.len == 5
            && memcmp(f->value.data, "a dog", 5) == 0,
            "header forms: prompt");
    f = &r.req.field[GI2_F_MODERATION];
    unit_ok(f->type == GI2_T_STRING && f->value.len == 4,
            "header forms: moderation");
    res_free(&r);
    buf_free(&body);

    /* no CRLF after the close delimiter */

    part_text(&body, "prompt", "x");
    buf_str(&body, "--" B "--");

    good("close delimiter at the very end", &body, &r);
    res_free(&r);
    buf_free(&body);
}


static void
test_images(void)
{
    size_t          i;
    unit_buf_t      body, img[3];
    unit_res_t      r;
    unsigned char   md[32];
    char            name[16];

    memset(&body, 0, sizeof(body));
    memset(img, 0, sizeof(img));

    /* content with every near-delimiter: CRs, CRLF--, a boundary prefix */

    buf_str(&img[0], "\x89PNG\r\n\x1a\n\r\r\n\r\n-\r\n--\r\n--gi2-Bound"
            "\r\n--gi2-Boundary_012\r");
    for (i = 0; i < 5000; i++) {
        buf_add(&img[1], "\0\r\n-", 1 + unit_rnd(4));
    }
    buf_str(&img[2], "");

    part_text(&body, "prompt", "make it blue");
    part_file(&body, "image", "a.png", img[0].data, img[0].len);
    part_file(&body, "image[]", "b.png", img[1].data, img[1].len);
    part_file(&body, "mask", "m.png", img[2].data, img[2].len);
    part_file(&body, "other_file", "x.bin", img[1].data, img[1].len);
    body_close(&body);

    good("images", &body, &r);
    unit_ok(r.req.ninputs == 3, "images: three inputs");

    for (i = 0; i < 3 && i < r.req.ninputs; i++) {
        sha256(img[i].data, img[i].len, md);
        snprintf(name, sizeof(name), "input %zu", i);
        unit_ok(memcmp(md, r.input[i].sha256, 32) == 0, "%s: sha256", name);
        unit_ok(r.input[i].bytes == img[i].len, "%s: bytes", name);
        unit_ok(r.input[i].mask == (i == 2), "%s: mask flag", name);
    }

    res_free(&r);
    buf_free(&body);

    /* sixteen images, the mask first, filename*= marks a file */

    part_file(&body, "mask", "m.png", img[0].data, img[0].len);
    for (i = 0; i < 16; i++) {
        part_file(&body, (i % 2) ? "image" : "image[]", "i.png",
                  img[0].data, i);
    }
    buf_str(&body, "--" B CRLF "Content-Disposition: form-data; "
            "name=\"prompt\"" CRLF CRLF "p" CRLF);
    body_close(&body);

    good("sixteen images", &body, &r);
    unit_ok(r.req.ninputs == 17 && r.input[0].mask && !r.input[16].mask,
            "sixteen images: seventeen inputs, the mask first");

    for (i = 1; i < 17 && i < r.req.ninputs; i++) {
        sha256(img[0].data, i - 1, md);

        if (memcmp(md, r.input[i].sha256, 32) != 0) {
            break;
        }
    }

    unit_ok(i == 17, "sixteen images: hashes in order");
    res_free(&r);

    /* one more */

    body.len -= strlen("--" B "--" CRLF);
    part_file(&body, "image", "i.png", img[0].data, 1);
    body_close(&body);
    bad("seventeen images", &body, "more than 16 images in the request",
        "image");
    buf_free(&body);

    buf_str(&body, "--" B CRLF "Content-Disposition: form-data; "
            "name=image; filename*=UTF-8''%e7%8c%ab.png" CRLF CRLF);
    buf_add(&body, img[0].data, img[0].len);
    buf_str(&body, CRLF);
    part_text(&body, "prompt", "p");
    body_close(&body);

    good("filename*", &body, &r);
    unit_ok(r.req.ninputs == 1, "filename*: hashed");
    res_free(&r);
    buf_free(&body);

    for (i = 0; i < 3; i++) {
        buf_free(&img[i]);
    }
}


static void
test_refusals(void)
{
    size_t        i;
    unit_buf_t    body;

    static const struct {
        const char  *name;
        const char  *body;
        const char  *error;
        const char  *param;
    } cases[] = {
        { "empty body", "",
          "the multipart body ends before its closing boundary", NULL },
        { "preamble", "preamble" CRLF "--" B CRLF,
          "the multipart body does not begin with its boundary", NULL },
        { "leading CRLF", CRLF "--" B CRLF,
          "the multipart body does not begin with its boundary", NULL },
        { "other boundary", "--gi2-Boundary_0124" CRLF,
          "the multipart body does not begin with its boundary", NULL },
        { "boundary followed by data", "--" B "x" CRLF,
          "a multipart boundary is followed by other data", NULL },
        { "delimiter in content followed by data",
          "--" B CRLF "Content-Disposition: form-data; name=prompt"
          CRLF CRLF "a" CRLF "--" B "XX" CRLF,
          "a multipart boundary is followed by other data", NULL },
        { "boundary, CR, no LF", "--" B "\rx",
          "a multipart boundary is followed by other data", NULL },
        { "single dash close", "--" B "-x",
          "a multipart boundary is followed by other data", NULL },
        { "padding then dashes", "--" B " --",
          "a multipart boundary is followed by other data", NULL },
        { "unterminated part",
          "--" B CRLF "Content-Disposition: form-data; name=prompt"
          CRLF CRLF "a cat",
          "the multipart body ends before its closing boundary", NULL },
        { "unterminated headers",
          "--" B CRLF "Content-Disposition: form-data; name=prompt",
          "the multipart body ends before its closing boundary", NULL },
        { "no close delimiter",
          "--" B CRLF "Content-Disposition: form-data; name=prompt"
          CRLF CRLF "a cat" CRLF "--" B CRLF,
          "the multipart body ends before its closing boundary", NULL },
        { "data after the close delimiter",
          "--" B CRLF "Content-Disposition: form-data; name=prompt"
          CRLF CRLF "a" CRLF "--" B "--" CRLF "epilogue",
          "data after the closing multipart boundary", NULL },
        { "no prompt",
          "--" B CRLF "Content-Disposition: form-data; name=model"
          CRLF CRLF "m" CRLF "--" B "--",
          "the request has no 'prompt' field", "prompt" },
        { "only a close delimiter", "--" B "--",
          "the request has no 'prompt' field", "prompt" },
        { "moderation high",
          "--" B CRLF "Content-Disposition: form-data; name=prompt"
          CRLF CRLF "a" CRLF "--" B CRLF
          "Content-Disposition: form-data; name=moderation"
          CRLF CRLF "high" CRLF "--" B "--",
          "'moderation' must be \"auto\" or \"low\"", "moderation" },
        { "moderation Low",
          "--" B CRLF "Content-Disposition: form-data; name=moderation"
          CRLF CRLF "Low" CRLF "--" B CRLF
          "Content-Disposition: form-data; name=prompt"
          CRLF CRLF "a" CRLF "--" B "--",
          "'moderation' must be \"auto\" or \"low\"", "moderation" },
        { "duplicate prompt",
          "--" B CRLF "Content-Disposition: form-data; name=prompt"
          CRLF CRLF "a" CRLF "--" B CRLF
          "Content-Disposition: form-data; name=prompt" CRLF CRLF "b"
          CRLF "--" B "--",
          "duplicate field in the request body", "prompt" },
        { "duplicate prompt, other case",
          "--" B CRLF "Content-Disposition: form-data; name=prompt"
          CRLF CRLF "a" CRLF "--" B CRLF
          "Content-Disposition: form-data; name=PROMPT" CRLF CRLF "b"
          CRLF "--" B "--",
          "duplicate field in the request body", "prompt" },
        { "duplicate moderation",
          "--" B CRLF "Content-Disposition: form-data; name=moderation"
          CRLF CRLF "auto" CRLF "--" B CRLF
          "Content-Disposition: form-data; name=moderation" CRLF CRLF
          "low" CRLF "--" B "--",
          "duplicate field in the request body", "moderation" },
        { "duplicate mask",
          "--" B CRLF "Content-Disposition: form-data; name=mask; "
          "filename=a" CRLF CRLF "x" CRLF "--" B CRLF
          "Content-Disposition: form-data; name=mask; filename=b" CRLF
          CRLF "y" CRLF "--" B "--",
          "duplicate field in the request body", "mask" },
        { "prompt as a file",
          "--" B CRLF "Content-Disposition: form-data; name=prompt; "
          "filename=\"p.txt\"" CRLF CRLF "a" CRLF "--" B "--",
          "a text field is sent as a file", "prompt" },
        { "moderation as a file (filename*)",
          "--" B CRLF "Content-Disposition: form-data; name=moderation; "
          "filename*=UTF-8''m" CRLF CRLF "low" CRLF "--" B "--",
          "a text field is sent as a file", "moderation" },
        { "no name",
          "--" B CRLF "Content-Disposition: form-data" CRLF CRLF "a" CRLF
          "--" B "--",
          "a multipart part has no name", NULL },
        { "empty name",
          "--" B CRLF "Content-Disposition: form-data; name=\"\"" CRLF CRLF
          "a" CRLF "--" B "--",
          "a multipart part has no name", NULL },
        { "no Content-Disposition",
          "--" B CRLF "Content-Type: text/plain" CRLF CRLF "a" CRLF
          "--" B "--",
          "a multipart part has no Content-Disposition", NULL },
        { "no headers",
          "--" B CRLF CRLF "a" CRLF "--" B "--",
          "a multipart part has no Content-Disposition", NULL },
        { "attachment",
          "--" B CRLF "Content-Disposition: attachment; name=prompt" CRLF
          CRLF "a" CRLF "--" B "--",
          "a multipart part is not form-data", NULL },
        { "name*",
          "--" B CRLF "Content-Disposition: form-data; "
          "name*=UTF-8''prompt" CRLF CRLF "a" CRLF "--" B "--",
          "a multipart part has an RFC 2231 name*= parameter", NULL },
        { "two names",
          "--" B CRLF "Content-Disposition: form-data; name=a; name=prompt"
          CRLF CRLF "a" CRLF "--" B "--",
          "a multipart part has more than one name", NULL },
        { "two filenames",
          "--" B CRLF "Content-Disposition: form-data; name=image; "
          "filename=a; filename*=UTF-8''b" CRLF CRLF "a" CRLF "--" B "--",
          "a multipart part has more than one filename", NULL },
        { "backslash in a name",
          "--" B CRLF "Content-Disposition: form-data; name=\"pro\\mpt\""
          CRLF CRLF "a" CRLF "--" B "--",
          "a multipart part name has a backslash, '%' or a control "
          "character", NULL },
        { "percent in a name",
          "--" B CRLF "Content-Disposition: form-data; name=\"pr%6Fmpt\""
          CRLF CRLF "a" CRLF "--" B "--",
          "a multipart part name has a backslash, '%' or a control "
          "character", NULL },
        { "escaped quote in a filename",
          "--" B CRLF "Content-Disposition: form-data; name=image; "
          "filename=\"a\\\"; name=prompt\"" CRLF CRLF "a" CRLF "--" B "--",
          "a multipart part has a malformed Content-Disposition", NULL },
        { "unterminated quote",
          "--" B CRLF "Content-Disposition: form-data; name=\"prompt" CRLF
          CRLF "a" CRLF "--" B "--",
          "a multipart part has a malformed Content-Disposition", NULL },
        { "parameter without a value",
          "--" B CRLF "Content-Disposition: form-data; name" CRLF
          CRLF "a" CRLF "--" B "--",
          "a multipart part has a malformed Content-Disposition", NULL },
        { "junk after a quoted value",
          "--" B CRLF "Content-Disposition: form-data; name=\"a\"b" CRLF
          CRLF "a" CRLF "--" B "--",
          "a multipart part has a malformed Content-Disposition", NULL },
        { "two Content-Dispositions",
          "--" B CRLF "Content-Disposition: form-data; name=a" CRLF
          "Content-Disposition: form-data; name=prompt" CRLF CRLF "a" CRLF
          "--" B "--",
          "a multipart part has more than one Content-Disposition", NULL },
        { "two Content-Types",
          "--" B CRLF "Content-Disposition: form-data; name=prompt" CRLF
          "Content-Type: text/plain" CRLF "Content-Type: text/plain" CRLF
          CRLF "a" CRLF "--" B "--",
          "a multipart part has more than one Content-Type", NULL },
        { "base64 prompt",
          "--" B CRLF "Content-Disposition: form-data; name=prompt" CRLF
          "Content-Transfer-Encoding: base64" CRLF CRLF "bnVkZQ==" CRLF
          "--" B "--",
          "a multipart part has a Content-Transfer-Encoding the gateway "
          "cannot read; send parts unencoded", NULL },
        { "quoted-printable prompt",
          "--" B CRLF "Content-Disposition: form-data; name=prompt" CRLF
          "Content-Transfer-Encoding: quoted-printable" CRLF CRLF "n=75de"
          CRLF "--" B "--",
          "a multipart part has a Content-Transfer-Encoding the gateway "
          "cannot read; send parts unencoded", NULL },
        { "base64 image",
          "--" B CRLF "Content-Disposition: form-data; name=image; "
          "filename=a.png" CRLF "Content-Transfer-Encoding: base64" CRLF
          CRLF "AAAA" CRLF "--" B "--",
          "a multipart part has a Content-Transfer-Encoding the gateway "
          "cannot read; send parts unencoded", NULL },
        { "two Content-Transfer-Encodings",
          "--" B CRLF "Content-Disposition: form-data; name=prompt" CRLF
          "Content-Transfer-Encoding: 8bit" CRLF
          "Content-Transfer-Encoding: 8bit" CRLF CRLF "a" CRLF "--" B "--",
          "a multipart part has more than one Content-Transfer-Encoding",
          NULL },
        { "latin-1 prompt",
          "--" B CRLF "Content-Disposition: form-data; name=prompt" CRLF
          "Content-Type: text/plain; charset=iso-8859-1" CRLF CRLF "caf\xe9"
          CRLF "--" B "--",
          "a text field has a charset other than UTF-8", "prompt" },
        { "utf-16 moderation",
          "--" B CRLF "Content-Type: text/plain; charset=utf-16" CRLF
          "Content-Disposition: form-data; name=moderation" CRLF CRLF
          "l\0o\0w\0" CRLF "--" B "--",
          "a text field has a charset other than UTF-8", "moderation" },
        { "_charset_ latin-1",
          "--" B CRLF "Content-Disposition: form-data; name=_charset_" CRLF
          CRLF "iso-8859-1" CRLF "--" B "--",
          "the _charset_ field names a charset other than UTF-8",
          "_charset_" },
        { "invalid UTF-8 prompt",
          "--" B CRLF "Content-Disposition: form-data; name=prompt" CRLF
          CRLF "caf\xe9" CRLF "--" B "--",
          "a text field is not valid UTF-8", "prompt" },
        { "overlong UTF-8 model",
          "--" B CRLF "Content-Disposition: form-data; name=model" CRLF
          CRLF "\xc0\xaf" CRLF "--" B "--",
          "a text field is not valid UTF-8", "model" },
        { "folded header",
          "--" B CRLF "Content-Disposition: form-data;" CRLF
          " name=prompt" CRLF CRLF "a" CRLF "--" B "--",
          "a multipart part header is folded over lines", NULL },
        { "bare LF in headers",
          "--" B CRLF "Content-Disposition: form-data; name=prompt\n\n"
          "a" CRLF "--" B "--",
          "a multipart part header has a bare LF or another control "
          "character", NULL },
        { "bare CR in headers",
          "--" B CRLF "Content-Disposition: form-data; name=prompt\rx"
          CRLF CRLF "a" CRLF "--" B "--",
          "a multipart part header has a bare CR", NULL },
        { "NUL in headers",
          "--" B CRLF "Content-Disposition: form-data; name=\"a\0\"" CRLF
          CRLF "a" CRLF "--" B "--",
          "a multipart part header has a bare LF or another control "
          "character", NULL },
        { "header without a colon",
          "--" B CRLF "Content-Disposition form-data; name=prompt" CRLF
          CRLF "a" CRLF "--" B "--",
          "a multipart part header line has no name", NULL },
        { "space before the colon",
          "--" B CRLF "Content-Disposition : form-data; name=prompt" CRLF
          CRLF "a" CRLF "--" B "--",
          "a multipart part header name has white space", NULL },
        { "data after the end",
          "--" B CRLF "Content-Disposition: form-data; name=prompt" CRLF
          CRLF "a" CRLF "--" B "--" CRLF "--" B CRLF,
          "data after the closing multipart boundary", NULL }
    };

    memset(&body, 0, sizeof(body));

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        body.len = 0;

        /* the literals may hold NULs: their size, not strlen() */
        buf_add(&body, cases[i].body, strlen(cases[i].body));

        if (strcmp(cases[i].name, "utf-16 moderation") == 0) {
            body.len = 0;
            buf_add(&body, cases[i].body,
                    sizeof("--" B CRLF "Content-Type: text/plain; "
                           "charset=utf-16" CRLF "Content-Disposition: "
                           "form-data; name=moderation" CRLF CRLF
                           "l\0o\0w\0" CRLF "--" B "--") - 1);
        }

        if (strcmp(cases[i].name, "NUL in headers") == 0) {
            body.len = 0;
            buf_add(&body, cases[i].body,
                    sizeof("--" B CRLF "Content-Disposition: form-data; "
                           "name=\"a\0\"" CRLF CRLF "a" CRLF "--" B "--")
                    - 1);
        }

        bad(cases[i].name, &body, cases[i].error, cases[i].param);
    }

    buf_free(&body);
}


static void
test_limits(void)
{
    size_t          i;
    unit_buf_t      body, v;
    unit_res_t      r;
    unsigned char  *zero;
    gi2_mp_t       *m;
    int             rc;
    char            name[32];

    memset(&body, 0, sizeof(body));
    memset(&v, 0, sizeof(v));

    /* a prompt of GI2_PROMPT_MAX bytes, then one more */

    for (i = 0; i < GI2_PROMPT_MAX / 8; i++) {
        buf_str(&v, "abcdefg ");
    }
    buf_add(&v, "", 1);

    part_text(&body, "prompt", (char *) v.data);
    body_close(&body);
    good("prompt of 1 MiB", &body, &r);
    unit_ok(r.req.field[GI2_F_PROMPT].value.len == GI2_PROMPT_MAX,
            "prompt of 1 MiB: whole");
    res_free(&r);

    body.len = 0;
    v.data[v.len - 1] = 'x';
    buf_add(&v, "", 1);
    part_text(&body, "prompt", (char *) v.data);
    body_close(&body);
    bad("prompt of 1 MiB + 1", &body, "'prompt' is over 1 MiB", "prompt");

    /* another known field: 4 KiB */

    v.len = 0;
    for (i = 0; i < GI2_MP_FIELD_MAX; i++) {
        buf_add(&v, "m", 1);
    }
    buf_add(&v, "", 1);

    body.len = 0;
    part_text(&body, "prompt", "p");
    part_text(&body, "model", (char *) v.data);
    body_close(&body);
    good("model of 4 KiB", &body, &r);
    res_free(&r);

    v.data[v.len - 1] = 'm';
    buf_add(&v, "", 1);
    body.len = 0;
    part_text(&body, "prompt", "p");
    part_text(&body, "model", (char *) v.data);
    body_close(&body);
    bad("model of 4 KiB + 1", &body, "a text field is over 4 KiB", "model");

    /* an unknown field has no cap: it is not kept */

    body.len = 0;
    part_text(&body, "prompt", "p");
    part_text(&body, "metadata", (char *) v.data);
    body_close(&body);
    good("long unknown field", &body, &r);
    res_free(&r);

    /* a header line of 8 KiB, then one more byte */

    body.len = 0;
    buf_str(&body, "--" B CRLF "Content-Disposition: form-data; name=prompt"
            CRLF "X-Pad: ");
    for (i = strlen("X-Pad: "); i < GI2_MP_LINE_MAX; i++) {
        buf_add(&body, "p", 1);
    }
    buf_str(&body, CRLF CRLF "a" CRLF);
    body_close(&body);
    good("header line of 8 KiB", &body, &r);
    res_free(&r);

    body.len = 0;
    buf_str(&body, "--" B CRLF "Content-Disposition: form-data; name=prompt"
            CRLF "X-Pad: ");
    for (i = strlen("X-Pad: "); i <= GI2_MP_LINE_MAX; i++) {
        buf_add(&body, "p", 1);
    }
    buf_str(&body, CRLF CRLF "a" CRLF);
    body_close(&body);
    bad("header line of 8 KiB + 1", &body,
        "a multipart part header line is over 8 KiB", NULL);

    /* 16 header lines, then 17 */

    body.len = 0;
    buf_str(&body, "--" B CRLF "Content-Disposition: form-data; name=prompt"
            CRLF);
    for (i = 1; i < GI2_MP_HEADERS_MAX; i++) {
        buf_str(&body, "X-H: v" CRLF);
    }
    buf_str(&body, CRLF "a" CRLF);
    body_close(&body);
    good("16 header lines", &body, &r);
    res_free(&r);

    body.len = 0;
    buf_str(&body, "--" B CRLF "Content-Disposition: form-data; name=prompt"
            CRLF);
    for (i = 0; i < GI2_MP_HEADERS_MAX; i++) {
        buf_str(&body, "X-H: v" CRLF);
    }
    buf_str(&body, CRLF "a" CRLF);
    body_close(&body);
    bad("17 header lines", &body,
        "a multipart part has more than 16 header lines", NULL);

    /* 64 parts, then 65 */

    body.len = 0;
    part_text(&body, "prompt", "p");
    for (i = 1; i < GI2_MP_PARTS_MAX; i++) {
        snprintf(name, sizeof(name), "extra%zu", i);
        part_text(&body, name, "x");
    }
    body_close(&body);
    good("64 parts", &body, &r);
    res_free(&r);

    body.len -= strlen("--" B "--" CRLF);
    part_text(&body, "one_more", "x");
    body_close(&body);
    bad("65 parts", &body, "the multipart body has more than 64 parts",
        NULL);

    /* an image of 50 MB, then one byte more, fed in 1 MB pieces */

    zero = calloc(1, 1024 * 1024);
    if (zero == NULL) {
        abort();
    }

    for (i = 0; i < 2; i++) {
        memset(&r, 0, sizeof(r));
        m = gi2_mp_create(&r.req, (const unsigned char *) B, strlen(B),
                          &unit_a);
        body.len = 0;
        buf_str(&body, "--" B CRLF "Content-Disposition: form-data; "
                "name=image; filename=a" CRLF CRLF);
        rc = gi2_mp_feed(m, body.data, body.len);
        for (v.len = 0; v.len < 50 && rc == GI2_OK; v.len++) {
            rc = gi2_mp_feed(m, zero, 1024 * 1024);
        }
        if (i == 1 && rc == GI2_OK) {
            rc = gi2_mp_feed(m, zero, 1);
        }
        body.len = 0;
        buf_str(&body, CRLF "--" B CRLF "Content-Disposition: form-data; "
                "name=prompt" CRLF CRLF "p" CRLF "--" B "--");
        if (rc == GI2_OK) {
            rc = gi2_mp_feed(m, body.data, body.len);
        }
        if (rc == GI2_OK) {
            rc = gi2_mp_finish(m);
        }

        if (i == 0) {
            unit_ok(rc == GI2_OK && r.req.ninputs == 1
                    && r.req.input[0].bytes == 50 * 1024 * 1024,
                    "image of 50 MB");

        } else {
            unit_ok(rc == GI2_EINVAL && r.req.error
                    && strcmp(r.req.error, "an image or mask is over 50 MB")
                       == 0
                    && strcmp(r.req.param, "image") == 0,
                    "image of 50 MB + 1 byte");
        }

        gi2_mp_destroy(m);
        unit_pool_free(&unit_pool);
    }

    free(zero);

    /* fed after the end */

    memset(&r, 0, sizeof(r));
    m = gi2_mp_create(&r.req, (const unsigned char *) B, strlen(B), &unit_a);
    body.len = 0;
    part_text(&body, "prompt", "p");
    body_close(&body);
    rc = gi2_mp_feed(m, body.data, body.len);
    rc = (rc == GI2_OK) ? gi2_mp_finish(m) : rc;
    unit_ok(rc == GI2_OK, "fed after the end: parsed");
    unit_ok(gi2_mp_feed(m, (const unsigned char *) "x", 1) == GI2_EINVAL
            && r.req.error
            && strcmp(r.req.error, "data after the end of the body") == 0,
            "fed after the end: refused");
    gi2_mp_destroy(m);
    unit_pool_free(&unit_pool);

    /* an invalid boundary given to create() */

    memset(&r, 0, sizeof(r));
    m = gi2_mp_create(&r.req, (const unsigned char *) "a\"b", 3, &unit_a);
    unit_ok(m != NULL && r.req.error != NULL
            && gi2_mp_feed(m, (const unsigned char *) "x", 1) == GI2_EINVAL,
            "create with an invalid boundary: refused");
    gi2_mp_destroy(m);
    unit_pool_free(&unit_pool);

    buf_free(&body);
    buf_free(&v);
}


/* lookalikes of the delimiter inside values */

static void
test_lookalikes(void)
{
    unit_buf_t  body;
    unit_res_t  r;

    memset(&body, 0, sizeof(body));

    part_text(&body, "prompt", "\r\n-\r\n--\r\n--gi2-Boundary_012\r\r\n--"
              "gi2-Boundary_01");
    part_text(&body, "model", "--" B);
    body_close(&body);

    good("lookalikes", &body, &r);
    field_is("lookalikes: prompt", &body, &r.req.field[GI2_F_PROMPT],
             GI2_T_STRING, "\r\n-\r\n--\r\n--gi2-Boundary_012\r\r\n--"
             "gi2-Boundary_01");
    field_is("lookalikes: model", &body, &r.req.field[GI2_F_MODEL],
             GI2_T_STRING, "--" B);
    res_free(&r);
    buf_free(&body);
}


/* random bodies, valid or broken at a random byte: chunks change nothing */

static void
test_random(void)
{
    size_t          i, j, k, n, parts, cut;
    unsigned        fails, errs;
    unit_buf_t      body, data;
    unit_res_t      once, split;
    char            why[256];

    /* the first four may repeat */
    static const char  *names[] = {
        "x", "image", "image[]", "y", "model", "mask", "n", "size",
        "prompt", "moderation", "user"
    };

    /* the last two are refused */
    static const char  *values[] = {
        "a cat", "low", "auto", "2", "", "\xe7\x8c\xab", "\r\n--", "\r",
        "\r\n--" B "x", "\xff"
    };

    memset(&body, 0, sizeof(body));
    memset(&data, 0, sizeof(data));
    fails = 0;
    errs = 0;

    for (i = 0; i < UNIT_RANDOM; i++) {
        body.len = 0;
        parts = unit_rnd(6);

        for (j = 0; j < parts; j++) {
            k = unit_rnd(unit_rnd(6) ? 4 : 11);

            if (k == 1 || k == 2 || k == 5) {
                data.len = 0;
                n = unit_rnd(3000);

                while (data.len < n) {
                    if (unit_rnd(8) == 0) {
                        buf_add(&data, "\r\n--gi2-B", 1 + unit_rnd(9));

                    } else {
                        buf_add(&data, "\x89\r\nP\0", 1 + unit_rnd(5));
                    }
                }

                part_file(&body, names[k], "f", data.data, data.len);
                continue;
            }

            part_text(&body, names[k], values[unit_rnd(unit_rnd(10) ? 8 : 10)]);
        }

        if (unit_rnd(3)) {
            part_text(&body, "prompt", "p");
        }

        body_close(&body);

        /* some are cut, or have a byte changed */

        if (unit_rnd(8) == 0) {
            cut = unit_rnd(body.len);
            body.len = cut;

        } else if (unit_rnd(8) == 0) {
            body.data[unit_rnd(body.len)] = (unsigned char) unit_rand();
        }

        parse(B, &body, UNIT_ONCE, &once);
        errs += (once.rc != GI2_OK);

        for (k = 0; k < UNIT_SPLITS / 10; k++) {
            parse(B, &body, UNIT_RANDOM_CHUNKS, &split);

            if (res_diff(&once, &split, why, sizeof(why))) {
                if (fails++ < 5) {
                    unit_diag("random body %zu: %s", i, why);
                }
            }

            res_free(&split);
        }

        parse(B, &body, UNIT_BYTES, &split);

        if (res_diff(&once, &split, why, sizeof(why)) && fails++ < 5) {
            unit_diag("random body %zu byte by byte: %s", i, why);
        }

        res_free(&split);
        res_free(&once);
    }

    unit_ok(fails == 0, "random bodies: chunks give the same result "
            "(%u of %d bodies refused)", errs, UNIT_RANDOM);
    unit_ok(errs > 0 && errs < UNIT_RANDOM,
            "random bodies: some refused, some not");

    buf_free(&body);
    buf_free(&data);
}


int
main(void)
{
    unit_state = 0x6d756c7469706172ULL;

    test_content_type();
    test_fields();
    test_images();
    test_refusals();
    test_limits();
    test_lookalikes();
    test_random();

    return unit_done();
}
