/*
 * Unit tests of the moderation service's core (gi2_modapi.c): the request
 * body (checked by parsing it back with yajl's tree parser), the answer's
 * parser fed whole, byte by byte and split at every position, the
 * answers it must refuse, the verdict under thresholds, and the cache's
 * packed form.  Emits TAP for prove (t/02-modapi-unit.t).
 */

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl_tree.h>

#include "gi2_core.h"
#include "gi2_modapi.h"
#include "unit_tap.h"


#define S(s)              (s), (sizeof(s) - 1)


typedef struct {
    long                 fail_after;  /* allocations granted, -1: all */
    size_t               live;
} unit_heap_t;


static void *unit_alloc(void *data, size_t size);
static void unit_free(void *data, void *p);
static int unit_parse(int format, const char *json, size_t len, size_t step,
    size_t split, gi2_modapi_result_t *res);
static int unit_same(const gi2_modapi_result_t *a,
    const gi2_modapi_result_t *b);
static const char *unit_str(yajl_val v, const char **path);
static const gi2_modapi_cat_t *unit_cat(const gi2_modapi_result_t *res,
    const char *name);
static char *unit_request(int format, const char *prompt, const char *model,
    const char *consumer, const char **images, size_t nimages,
    size_t *len);
static void test_escape(void);
static void test_request_openai(void);
static void test_request_generic(void);
static void test_parse_openai(void);
static void test_parse_generic(void);
static void test_refused(void);
static void test_limits(void);
static void test_verdict(void);
static void test_pack(void);
static void test_alloc_failure(void);
static void test_images(void);


static unit_heap_t  unit_heap = { -1, 0 };
static gi2_alloc_t  unit_a = { unit_alloc, &unit_heap, unit_free };


static const char  unit_openai_flagged[] =
    "{\"id\":\"modr-970d409ef3bef3b70c73d8232df86e7d\","
    "\"model\":\"omni-moderation-latest\",\"results\":[{\"flagged\":true,"
    "\"categories\":{\"sexual\":false,\"sexual/minors\":false,"
    "\"harassment\":false,\"harassment/threatening\":false,\"hate\":false,"
    "\"hate/threatening\":false,\"illicit\":false,\"illicit/violent\":false,"
    "\"self-harm\":false,\"self-harm/intent\":false,"
    "\"self-harm/instructions\":false,\"violence\":true,"
    "\"violence/graphic\":true},"
    "\"category_scores\":{\"sexual\":2.34135824776394e-7,"
    "\"sexual/minors\":1.6346470245419304e-7,"
    "\"harassment\":0.0011643905680426018,"
    "\"harassment/threatening\":0.0022121340080906377,"
    "\"hate\":3.1999824407395835e-7,"
    "\"hate/threatening\":2.4923252458203563e-7,"
    "\"illicit\":0.0005227032493135171,"
    "\"illicit/violent\":3.682979260160596e-7,"
    "\"self-harm\":0.0011175734280627694,"
    "\"self-harm/intent\":0.0006264858507989037,"
    "\"self-harm/instructions\":7.368592981140821e-8,"
    "\"violence\":0.8599265510337075,"
    "\"violence/graphic\":0.37701736389561064},"
    "\"category_applied_input_types\":{\"sexual\":[\"image\"],"
    "\"violence\":[\"text\",\"image\"],\"hate\":[]}}]}";


static void *
unit_alloc(void *data, size_t size)
{
    unit_heap_t  *h = data;

    if (h->fail_after == 0) {
        return NULL;
    }

    if (h->fail_after > 0) {
        h->fail_after--;
    }

    h->live++;

    return malloc(size);
}


static void
unit_free(void *data, void *p)
{
    unit_heap_t  *h = data;

    if (p) {
        h->live--;
        free(p);
    }
}


/*
 * Feeds the answer in pieces of step bytes (0: whole), or in two pieces
 * cut at split (when step is 0 and split is not).
 */

static int
unit_parse(int format, const char *json, size_t len, size_t step,
    size_t split, gi2_modapi_result_t *res)
{
    int                   rc;
    size_t                off, n;
    gi2_modapi_parser_t  *p;

    p = gi2_modapi_parser_create(format, res, &unit_a);
    if (p == NULL) {
        return GI2_ENOMEM;
    }

    rc = GI2_OK;

    if (step == 0 && split) {
        rc = gi2_modapi_parser_feed(p, (const unsigned char *) json, split);
        if (rc == GI2_OK) {
            rc = gi2_modapi_parser_feed(p,
                                        (const unsigned char *) json + split,
                                        len - split);
        }

    } else {
        for (off = 0; off < len && rc == GI2_OK; off += n) {
            n = step ? step : len;
            if (n > len - off) {
                n = len - off;
            }

            rc = gi2_modapi_parser_feed(p, (const unsigned char *) json + off,
                                        n);
        }
    }

    if (rc == GI2_OK) {
        rc = gi2_modapi_parser_finish(p);
    }

    gi2_modapi_parser_destroy(p);

    return rc;
}


static int
unit_same(const gi2_modapi_result_t *a, const gi2_modapi_result_t *b)
{
    size_t  i;

    if (a->flagged != b->flagged || a->ncats != b->ncats
        || (a->error == NULL) != (b->error == NULL))
    {
        return 0;
    }

    for (i = 0; i < a->ncats; i++) {
        if (strcmp(a->cat[i].name, b->cat[i].name) != 0
            || a->cat[i].flagged != b->cat[i].flagged
            || a->cat[i].score != b->cat[i].score)
        {
            return 0;
        }
    }

    return 1;
}


static const gi2_modapi_cat_t *
unit_cat(const gi2_modapi_result_t *res, const char *name)
{
    size_t  i;

    for (i = 0; i < res->ncats; i++) {
        if (strcmp(res->cat[i].name, name) == 0) {
            return &res->cat[i];
        }
    }

    return NULL;
}


/* the string at path, or "" */

static const char *
unit_str(yajl_val v, const char **path)
{
    yajl_val  s;

    s = v ? yajl_tree_get(v, path, yajl_t_string) : NULL;

    return (s && YAJL_IS_STRING(s)) ? s->u.string : "";
}


static char *
unit_request(int format, const char *prompt, const char *model,
    const char *consumer, const char **images, size_t nimages, size_t *len)
{
    size_t              i, n;
    char               *buf;
    gi2_str_t           p, m, c;
    gi2_modapi_image_t  img[8];

    p.data = (const unsigned char *) prompt;
    p.len = strlen(prompt);
    m.data = (const unsigned char *) model;
    m.len = strlen(model);
    c.data = (const unsigned char *) consumer;
    c.len = consumer ? strlen(consumer) : 0;

    for (i = 0; i < nimages; i++) {
        img[i].url.data = (const unsigned char *) images[i];
        img[i].url.len = strlen(images[i]);
    }

    n = gi2_modapi_request(format, &p, &m, consumer ? &c : NULL, img,
                           nimages, NULL);

    buf = malloc(n + 1);
    if (buf == NULL) {
        return NULL;
    }

    *len = gi2_modapi_request(format, &p, &m, consumer ? &c : NULL, img,
                              nimages, (unsigned char *) buf);
    buf[*len] = '\0';

    unit_ok(*len == n, "request: the length computed (%zu) is the length "
            "written (%zu)", n, *len);

    return buf;
}


static void
test_escape(void)
{
    size_t         n;
    unsigned char  out[64], *end;

    static const unsigned char  in[] = "a\"b\\c\nd\te\x01\x1f\x7f\xc3\xa9";
    static const char           want[] =
        "a\\\"b\\\\c\\nd\\te\\u0001\\u001f\\u007f\xc3\xa9";

    n = gi2_json_escape_len(in, sizeof(in) - 1);
    end = gi2_json_escape(out, in, sizeof(in) - 1);

    unit_ok(n == (size_t) (end - out), "escape: length %zu as computed", n);
    unit_ok((size_t) (end - out) == sizeof(want) - 1
            && memcmp(out, want, sizeof(want) - 1) == 0,
            "escape: quotes, backslashes, controls; UTF-8 kept");
}


static void
test_request_openai(void)
{
    char         err[256], *buf;
    size_t       len;
    yajl_val     root, v, part;
    const char  *path_model[] = { "model", NULL };
    const char  *path_input[] = { "input", NULL };
    const char  *path_type[] = { "type", NULL };
    const char  *path_text[] = { "text", NULL };
    const char  *path_url[] = { "image_url", "url", NULL };
    const char  *images[] = { "data:image/png;base64,iVBORw0KGgo=",
                              "https://example.test/a \"b\".png" };

    static const char  prompt[] =
        "a \"red\" square\nwith \\ and \x01 caf\xc3\xa9";

    buf = unit_request(GI2_MODAPI_OPENAI, prompt, "omni-moderation-latest",
                       "ignored", NULL, 0, &len);

    root = yajl_tree_parse(buf, err, sizeof(err));
    unit_ok(root != NULL && YAJL_IS_OBJECT(root),
            "openai request: a JSON object (%s)", buf);

    unit_ok(strcmp(unit_str(root, path_model), "omni-moderation-latest") == 0,
            "openai request: model");

    unit_ok(strcmp(unit_str(root, path_input), prompt) == 0,
            "openai request: input is the prompt, byte for byte");

    unit_ok(root && YAJL_IS_OBJECT(root) && root->u.object.len == 2,
            "openai request: model and input only (no consumer)");

    yajl_tree_free(root);
    free(buf);

    /* with images: text and image_url parts */

    buf = unit_request(GI2_MODAPI_OPENAI, "make it blue", "m1", NULL,
                       images, 2, &len);

    root = yajl_tree_parse(buf, err, sizeof(err));
    v = yajl_tree_get(root, path_input, yajl_t_array);

    unit_ok(v && v->u.array.len == 3, "openai request with images: input "
            "has three parts (%s)", buf);

    if (v && v->u.array.len == 3) {
        part = v->u.array.values[0];
        unit_ok(strcmp(unit_str(part, path_type),
                       "text") == 0
                && strcmp(unit_str(part, path_text),
                          "make it blue") == 0,
                "openai request with images: a text part first");

        part = v->u.array.values[1];
        unit_ok(strcmp(unit_str(part, path_type),
                       "image_url") == 0
                && strcmp(unit_str(part, path_url),
                          images[0]) == 0,
                "openai request with images: a data URL part");

        part = v->u.array.values[2];
        unit_ok(strcmp(unit_str(part, path_url), images[1]) == 0,
                "openai request with images: a URL with quotes is escaped");
    }

    yajl_tree_free(root);
    free(buf);
}


static void
test_request_generic(void)
{
    char         err[256], *buf;
    size_t       len;
    yajl_val     root;
    const char  *path_prompt[] = { "prompt", NULL };
    const char  *path_model[] = { "model", NULL };
    const char  *path_consumer[] = { "consumer", NULL };

    buf = unit_request(GI2_MODAPI_GENERIC, "a \"cat\"", "m", "hmac-sha256:ab",
                       NULL, 0, &len);

    root = yajl_tree_parse(buf, err, sizeof(err));
    unit_ok(root && YAJL_IS_OBJECT(root) && root->u.object.len == 3,
            "generic request: prompt, model, consumer (%s)", buf);

    unit_ok(strcmp(unit_str(root, path_prompt), "a \"cat\"") == 0,
            "generic request: prompt");
    unit_ok(strcmp(unit_str(root, path_model), "m") == 0,
            "generic request: model");
    unit_ok(strcmp(unit_str(root, path_consumer), "hmac-sha256:ab") == 0,
            "generic request: consumer");

    yajl_tree_free(root);
    free(buf);

    buf = unit_request(GI2_MODAPI_GENERIC, "x", "m", NULL, NULL, 0, &len);
    unit_ok(strcmp(buf, "{\"prompt\":\"x\",\"model\":\"m\",\"consumer\":"
                        "null}") == 0,
            "generic request: no consumer is null (%s)", buf);
    free(buf);
}


static void
test_parse_openai(void)
{
    int                       rc, same;
    size_t                    i, len;
    gi2_modapi_result_t       whole, res;
    const gi2_modapi_cat_t   *c;

    len = sizeof(unit_openai_flagged) - 1;

    rc = unit_parse(GI2_MODAPI_OPENAI, unit_openai_flagged, len, 0, 0,
                    &whole);
    unit_ok(rc == GI2_OK && whole.error == NULL,
            "openai answer: parsed (%s)", whole.error ? whole.error : "ok");
    unit_ok(whole.flagged == 1, "openai answer: flagged");
    unit_ok(whole.ncats == 13, "openai answer: 13 categories (%zu)",
            whole.ncats);

    c = unit_cat(&whole, "violence");
    unit_ok(c && c->flagged && c->score > 0.8599 && c->score < 0.86,
            "openai answer: violence flagged, its score");
    c = unit_cat(&whole, "violence/graphic");
    unit_ok(c && c->flagged, "openai answer: violence/graphic flagged");
    c = unit_cat(&whole, "sexual");
    unit_ok(c && !c->flagged && c->score > 2.3e-7 && c->score < 2.4e-7,
            "openai answer: sexual not flagged, a tiny score");
    unit_ok(unit_cat(&whole, "image") == NULL && unit_cat(&whole, "text")
            == NULL, "openai answer: category_applied_input_types ignored");

    same = 1;

    for (i = 1; i < len; i++) {
        rc = unit_parse(GI2_MODAPI_OPENAI, unit_openai_flagged, len, 0, i,
                        &res);
        if (rc != GI2_OK || !unit_same(&whole, &res)) {
            unit_diag("split at %zu differs", i);
            same = 0;
            break;
        }
    }

    unit_ok(same, "openai answer: split at every position, the same");

    rc = unit_parse(GI2_MODAPI_OPENAI, unit_openai_flagged, len, 1, 0, &res);
    unit_ok(rc == GI2_OK && unit_same(&whole, &res),
            "openai answer: byte by byte, the same");

    /* a clean one, other results ignored, keys in another order */

    rc = unit_parse(GI2_MODAPI_OPENAI, S("{\"results\":[{\"category_scores\":"
                    "{\"hate\":0.01},\"categories\":{\"hate\":false},"
                    "\"flagged\":false},{\"flagged\":true,\"categories\":"
                    "{\"hate\":true}}],\"id\":\"x\"}"), 0, 0, &res);
    unit_ok(rc == GI2_OK && res.flagged == 0 && res.ncats == 1
            && !res.cat[0].flagged && res.cat[0].score == 0.01,
            "openai answer: clean; only results[0] counts");

    rc = unit_parse(GI2_MODAPI_OPENAI, S("{\"results\":[{\"flagged\":true}]}"),
                    0, 0, &res);
    unit_ok(rc == GI2_OK && res.flagged == 1 && res.ncats == 0,
            "openai answer: flagged without categories");

    rc = unit_parse(GI2_MODAPI_OPENAI, S("  {\"results\" : [ { \"flagged\" :"
                    " false , \"categories\" : { } } ] }\r\n"), 0, 0, &res);
    unit_ok(rc == GI2_OK && res.flagged == 0,
            "openai answer: white space anywhere");
}


static void
test_parse_generic(void)
{
    int                       rc;
    gi2_modapi_result_t       res;
    const gi2_modapi_cat_t   *c;

    rc = unit_parse(GI2_MODAPI_GENERIC, S("{\"flagged\":true,\"categories\":"
                    "[\"violence\",\"hate\"],\"scores\":{\"violence\":0.91,"
                    "\"hate\":0.7,\"sexual\":0.01},\"extra\":{\"a\":[1,2]}}"),
                    0, 0, &res);
    unit_ok(rc == GI2_OK && res.flagged == 1,
            "generic answer: parsed, flagged (%s)",
            res.error ? res.error : "ok");

    c = unit_cat(&res, "violence");
    unit_ok(c && c->flagged && c->score == 0.91,
            "generic answer: violence listed, its score");
    c = unit_cat(&res, "sexual");
    unit_ok(c && !c->flagged && c->score == 0.01,
            "generic answer: a score without the flag");

    rc = unit_parse(GI2_MODAPI_GENERIC, S("{\"flagged\":false}"), 0, 0, &res);
    unit_ok(rc == GI2_OK && res.flagged == 0 && res.ncats == 0,
            "generic answer: only flagged");

    rc = unit_parse(GI2_MODAPI_GENERIC, S("{\"scores\":null,\"categories\":"
                    "null,\"flagged\":false}"), 0, 0, &res);
    unit_ok(rc == GI2_OK, "generic answer: null lists are none");

    rc = unit_parse(GI2_MODAPI_GENERIC, S("{\"flagged\":true,\"categories\":"
                    "[\"a b,c\\\"d\",1,null]}"), 0, 0, &res);
    unit_ok(rc == GI2_OK && res.ncats == 1
            && strcmp(res.cat[0].name, "a_b_c_d") == 0,
            "generic answer: names kept to a plain alphabet (%s)",
            res.ncats ? res.cat[0].name : "-");
}


static void
test_refused(void)
{
    size_t               i;
    gi2_modapi_result_t  res;

    static const struct {
        int          format;
        const char  *json;
        const char  *name;
    } bad[] = {
        { GI2_MODAPI_OPENAI, "", "empty" },
        { GI2_MODAPI_OPENAI, "   ", "white space only" },
        { GI2_MODAPI_OPENAI, "<html>502 Bad Gateway</html>", "HTML" },
        { GI2_MODAPI_OPENAI, "[{\"flagged\":false}]", "an array" },
        { GI2_MODAPI_OPENAI, "\"flagged\"", "a string" },
        { GI2_MODAPI_OPENAI, "{}", "no results" },
        { GI2_MODAPI_OPENAI, "{\"results\":[]}", "empty results" },
        { GI2_MODAPI_OPENAI, "{\"results\":{}}", "results an object" },
        { GI2_MODAPI_OPENAI, "{\"results\":null}", "results null" },
        { GI2_MODAPI_OPENAI, "{\"results\":[1]}", "results[0] a number" },
        { GI2_MODAPI_OPENAI, "{\"results\":[[]]}", "results[0] an array" },
        { GI2_MODAPI_OPENAI, "{\"results\":[{}]}", "no flagged" },
        { GI2_MODAPI_OPENAI, "{\"results\":[{\"flagged\":\"false\"}]}",
          "flagged a string" },
        { GI2_MODAPI_OPENAI, "{\"results\":[{\"flagged\":0}]}",
          "flagged a number" },
        { GI2_MODAPI_OPENAI, "{\"results\":[{\"flagged\":null}]}",
          "flagged null" },
        { GI2_MODAPI_OPENAI, "{\"results\":[{\"flagged\":{}}]}",
          "flagged an object" },
        { GI2_MODAPI_OPENAI, "{\"results\":[{\"flagged\":false,"
          "\"categories\":[]}]}", "categories an array" },
        { GI2_MODAPI_OPENAI, "{\"results\":[{\"flagged\":false,"
          "\"category_scores\":[]}]}", "category_scores an array" },
        { GI2_MODAPI_OPENAI, "{\"flagged\":false}", "the generic shape" },
        { GI2_MODAPI_OPENAI, "{\"results\":[{\"flagged\":false}]",
          "cut short" },
        { GI2_MODAPI_OPENAI, "{\"results\":[{\"flagged\":false}]}{}",
          "two values" },
        { GI2_MODAPI_OPENAI, "{\"results\":[{\"flagged\":false}]} x",
          "trailing garbage" },
        { GI2_MODAPI_OPENAI, "{\"results\":[{\"flagged\":false,}]}",
          "a trailing comma" },
        { GI2_MODAPI_OPENAI, "{\"results\":[{\"flagged\":false,\"x\":"
          "\"\xff\"}]}", "invalid UTF-8" },
        { GI2_MODAPI_GENERIC, "{}", "generic: no flagged" },
        { GI2_MODAPI_GENERIC, "{\"flagged\":\"true\"}",
          "generic: flagged a string" },
        { GI2_MODAPI_GENERIC, "{\"flagged\":[true]}",
          "generic: flagged an array" },
        { GI2_MODAPI_GENERIC, "{\"flagged\":true,\"categories\":\"a\"}",
          "generic: categories a string" },
        { GI2_MODAPI_GENERIC, "{\"flagged\":true,\"categories\":{}}",
          "generic: categories an object" },
        { GI2_MODAPI_GENERIC, "{\"flagged\":true,\"scores\":[]}",
          "generic: scores an array" },
        { GI2_MODAPI_GENERIC, "{\"flagged\":true,\"scores\":1}",
          "generic: scores a number" },
        { GI2_MODAPI_GENERIC, "{\"results\":[{\"flagged\":false}]}",
          "generic: the openai shape" },
    };

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        unit_ok(unit_parse(bad[i].format, bad[i].json, strlen(bad[i].json),
                           0, 0, &res)
                != GI2_OK && res.error != NULL,
                "refused: %s (%s)", bad[i].name,
                res.error ? res.error : "accepted");
    }
}


static void
test_limits(void)
{
    int                  rc;
    char                *buf, *p;
    size_t               i;
    gi2_modapi_result_t  res;

    /* nesting: deep inside ignored parts is refused past a bound */

    buf = malloc(1024);
    p = buf;
    p += sprintf(p, "{\"results\":[{\"flagged\":false,\"x\":");
    for (i = 0; i < 40; i++) {
        *p++ = '[';
    }
    for (i = 0; i < 40; i++) {
        *p++ = ']';
    }
    p += sprintf(p, "}]}");

    rc = unit_parse(GI2_MODAPI_OPENAI, buf, p - buf, 0, 0, &res);
    unit_ok(rc != GI2_OK && res.error
            && strcmp(res.error, "nested too deep") == 0,
            "limits: nesting past 32 refused");
    free(buf);

    /* more categories than kept, a name too long, odd scores */

    buf = malloc(8192);
    p = buf;
    p += sprintf(p, "{\"results\":[{\"flagged\":true,\"categories\":{");
    for (i = 0; i < 40; i++) {
        p += sprintf(p, "%s\"c%02zu\":true", i ? "," : "", i);
    }
    p += sprintf(p, "},\"category_scores\":{\"c00\":0.5,\"c01\":-1,"
                 "\"c02\":1e400,\"c03\":\"0.9\",\"c04\":7,");
    p += sprintf(p, "\"%0*d\":0.3}}]}", GI2_MODAPI_NAME_MAX + 1, 0);

    rc = unit_parse(GI2_MODAPI_OPENAI, buf, p - buf, 0, 0, &res);
    unit_ok(rc == GI2_OK && res.ncats == GI2_MODAPI_CATS_MAX,
            "limits: %d categories kept of 40 (%zu)", GI2_MODAPI_CATS_MAX,
            res.ncats);
    unit_ok(res.cat[0].score == 0.5 && res.cat[1].score < 0
            && res.cat[2].score < 0 && res.cat[3].score < 0
            && res.cat[4].score == 7,
            "limits: negative, infinite and string scores are none");
    unit_ok(unit_cat(&res, "c31") != NULL && unit_cat(&res, "c32") == NULL,
            "limits: the first 32 kept");
    free(buf);
}


static void
test_verdict(void)
{
    int                     v;
    char                    out[64], small[12];
    gi2_modapi_result_t     res;
    gi2_modapi_threshold_t  th[3];

    (void) unit_parse(GI2_MODAPI_OPENAI, S(unit_openai_flagged), 0, 0, &res);

    v = gi2_modapi_verdict(&res, NULL, 0, out, sizeof(out));
    unit_ok(v == 1 && strcmp(out, "violence,violence/graphic") == 0,
            "verdict: the service's flag and its categories (%s)", out);

    v = gi2_modapi_verdict(&res, NULL, 0, small, sizeof(small));
    unit_ok(v == 1 && strcmp(small, "violence") == 0,
            "verdict: the list is cut at a comma (%s)", small);

    th[0].name = "violence";
    th[0].score = 0.9;
    th[1].name = "harassment";
    th[1].score = 0.001;
    v = gi2_modapi_verdict(&res, th, 2, out, sizeof(out));
    unit_ok(v == 1 && strcmp(out, "harassment") == 0,
            "verdict: thresholds decide: violence below, harassment above "
            "(%s)", out);

    th[0].score = 0.8599265510337075;
    v = gi2_modapi_verdict(&res, th, 1, out, sizeof(out));
    unit_ok(v == 1 && strcmp(out, "violence") == 0,
            "verdict: a score equal to its threshold flags");

    th[0].name = "violence";
    th[0].score = 0.99;
    th[1].name = "no-such-category";
    th[1].score = 0;
    v = gi2_modapi_verdict(&res, th, 2, out, sizeof(out));
    unit_ok(v == 0 && out[0] == '\0',
            "verdict: thresholds not reached; an absent category never "
            "flags; the service's own flag is overruled");

    (void) unit_parse(GI2_MODAPI_OPENAI, S("{\"results\":[{\"flagged\":false,"
                      "\"categories\":{\"hate\":true}}]}"), 0, 0, &res);
    v = gi2_modapi_verdict(&res, NULL, 0, out, sizeof(out));
    unit_ok(v == 0 && out[0] == '\0',
            "verdict: not flagged, no categories listed");
}


static void
test_pack(void)
{
    size_t               n;
    unsigned char        buf[GI2_MODAPI_PACK_MAX];
    gi2_modapi_result_t  res, back;

    (void) unit_parse(GI2_MODAPI_OPENAI, S(unit_openai_flagged), 0, 0, &res);

    n = gi2_modapi_pack(&res, buf, sizeof(buf));
    unit_ok(n > 2 && gi2_modapi_unpack(buf, n, &back) == GI2_OK
            && unit_same(&res, &back),
            "pack: %zu bytes, unpacked the same", n);

    unit_ok(gi2_modapi_pack(&res, buf, n - 1) == 0,
            "pack: no room is 0");
    unit_ok(gi2_modapi_unpack(buf, n - 1, &back) != GI2_OK,
            "unpack: cut short refused");

    buf[n] = 0;
    unit_ok(gi2_modapi_unpack(buf, n + 1, &back) != GI2_OK,
            "unpack: trailing bytes refused");

    buf[1] = GI2_MODAPI_CATS_MAX + 1;
    unit_ok(gi2_modapi_unpack(buf, n, &back) != GI2_OK,
            "unpack: too many categories refused");

    memset(&res, 0, sizeof(res));
    n = gi2_modapi_pack(&res, buf, sizeof(buf));
    unit_ok(n == 2 && gi2_modapi_unpack(buf, n, &back) == GI2_OK
            && back.ncats == 0 && back.flagged == 0,
            "pack: an empty answer");
}


static int
unit_images(const char *json, size_t max, size_t step, gi2_str_t *first,
    size_t *count, size_t *big)
{
    int                   rc;
    size_t                off, n, len;
    gi2_modapi_images_t  *im;

    im = gi2_modapi_images_create(max, &unit_a);
    if (im == NULL) {
        return GI2_ENOMEM;
    }

    len = strlen(json);
    rc = GI2_OK;

    for (off = 0; off < len && rc == GI2_OK; off += n) {
        n = step ? step : len;
        if (n > len - off) {
            n = len - off;
        }

        rc = gi2_modapi_images_feed(im, (const unsigned char *) json + off,
                                    n);
    }

    gi2_modapi_images_result(im, first, count, big);

    /* the first is copied out before the parser goes */
    if (first->data) {
        first->data = (const unsigned char *) strndup(
                          (const char *) first->data, first->len);
    }

    gi2_modapi_images_destroy(im);

    return rc;
}


static void
test_images(void)
{
    int        rc;
    size_t     count, big;
    gi2_str_t  first;

    static const char  edit[] =
        "{\"model\":\"gpt-image-1\",\"prompt\":\"make it blue\","
        "\"image_url\":\"not-this\",\"x\":{\"images\":[{\"image_url\":"
        "\"nor-this\"}]},\"images\":[{\"file_id\":\"file-1\"},"
        "{\"image_url\":\"data:image/png;base64,iVBO\\/Rw0=\"},"
        "{\"image_url\":\"https://example.test/b.png\",\"n\":[1,{}]},"
        "{\"nested\":{\"image_url\":\"no\"}}],\"mask\":{\"image_url\":"
        "\"data:mask\"}}";

    rc = unit_images(edit, 1024, 0, &first, &count, &big);
    unit_ok(rc == GI2_OK && count == 2 && big == 0,
            "images: two image_url in images[] (%zu)", count);
    unit_ok(first.data && first.len == 31
            && memcmp(first.data, "data:image/png;base64,iVBO/Rw0=", 31) == 0,
            "images: the first, decoded");
    free((void *) first.data);

    rc = unit_images(edit, 1024, 1, &first, &count, &big);
    unit_ok(rc == GI2_OK && count == 2 && first.len == 31,
            "images: byte by byte, the same");
    free((void *) first.data);

    rc = unit_images(edit, 20, 0, &first, &count, &big);
    unit_ok(count == 2 && big == 2 && first.data == NULL,
            "images: over max, counted but not kept");

    rc = unit_images("{\"prompt\":\"x\"}", 1024, 0, &first, &count, &big);
    unit_ok(rc == GI2_OK && count == 0 && first.data == NULL,
            "images: none");

    rc = unit_images("{\"images\":\"data:x\",\"image_url\":\"y\"}", 1024,
                     0, &first, &count, &big);
    unit_ok(rc == GI2_OK && count == 0, "images: not an array, none");
}


static void
test_alloc_failure(void)
{
    gi2_modapi_result_t   res;
    gi2_modapi_parser_t  *p;

    unit_heap.fail_after = 0;
    p = gi2_modapi_parser_create(GI2_MODAPI_OPENAI, &res, &unit_a);
    unit_ok(p == NULL, "no memory: create fails");
    unit_heap.fail_after = -1;

    unit_ok(unit_heap.live == 0, "memory: everything allocated was freed "
            "(%zu live)", unit_heap.live);
}


int
main(void)
{
    test_escape();
    test_request_openai();
    test_request_generic();
    test_parse_openai();
    test_parse_generic();
    test_refused();
    test_limits();
    test_verdict();
    test_pack();
    test_images();
    test_alloc_failure();

    return unit_done();
}
