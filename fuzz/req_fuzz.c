/*
 * libFuzzer harness: the JSON request parser (gi2_req.c), then the
 * normalizer (gi2_norm.c) and the rule matcher (gi2_match.c) on the
 * prompt it found, as the access phase runs them.
 *
 * The input is a request body.  Checks, each an abort when it fails:
 *
 *   - the body fed whole, byte by byte and in pseudo-random pieces (empty
 *     ones too) gives the same fields, offsets and error;
 *   - the offsets the rewrites use point at the key and at the string
 *     token of the value; rewriting "moderation" to "auto" and "user" to
 *     another string there gives a body that parses with exactly that
 *     change;
 *   - the normalized prompt is valid UTF-8, NUL-terminated, trimmed, has
 *     no control characters or double spaces, and normalizing it again
 *     changes nothing;
 *   - every regex rule the ruleset reports or leaves out agrees with the
 *     same pattern run directly by PCRE2 without the literal prefilter
 *     and without JIT; a keyword standing between spaces is always found;
 *     the prompt padded with spaces (which takes the two-scan path of the
 *     automaton) gives the same hits.
 *
 * The raw input is also normalized and matched as a prompt of its own,
 * so the normalizer sees arbitrary UTF-8 without JSON escaping.
 */

#define _GNU_SOURCE                  /* memmem */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "gi2_core.h"
#include "fuzz.h"


#define FZ_WHOLE       0
#define FZ_BYTES       1
#define FZ_PIECES      2

#define FZ_MAX_RULES   32


typedef struct {
    const char           *id;
    int                   action;
    const char           *pattern;
} fz_regex_t;


/* regexes with and without usable literals, ASCII and not */

static const fz_regex_t  fz_regexes[] = {
    { "re-nude", GI2_ACTION_DENY, "\\bnude\\b" },
    { "re-kill", GI2_ACTION_DENY, "\\bk[i1]ll(?:s|ing|ed)?\\b" },
    { "re-bomb", GI2_ACTION_DENY, "(?:pipe ?bomb|explosives?)" },
    { "re-gore", GI2_ACTION_FLAG, "\\bgore\\b|\\bblood(?:y|bath)\\b" },
    { "re-drug", GI2_ACTION_DENY, "d.{0,3}rugs?\\b" },
    { "re-digits", GI2_ACTION_FLAG, "\\d{3}-\\d{4}" },
    { "re-cafe", GI2_ACTION_FLAG, "caf\\x{e9}\\s+noir" },
    { "re-cjk", GI2_ACTION_DENY, "\\x{66b4}\\x{529b}" },
    { "re-alt", GI2_ACTION_DENY, "(?i)(?:weapon|gun|rifle)s?" },
    { "re-class", GI2_ACTION_FLAG, "[a-c]{2}x[yz]" },
    { NULL, 0, NULL }
};


/* keyword lists: a list ends with NULL, the lists with an empty list */

static const char  *fz_kw_violence[] = {
    "shoot", "stab", "blood bath", "behead", "x", NULL
};

static const char  *fz_kw_unicode[] = {
    "na\xc3\xafve",                 /* naive with a diaeresis */
    "stra\xc3\x9f" "e",             /* strasse with a sharp s */
    "\xef\xac\x81re",               /* "fire" with the fi ligature */
    "\xe7\x8c\xab",                 /* a CJK cat: no boundaries */
    "\xd0\xb2\xd0\xbe\xd0\xb9\xd0\xbd\xd0\xb0",   /* Cyrillic "war" */
    "a.b", "--", NULL
};

static const struct {
    const char           *id;
    int                   action;
    const char          **words;
} fz_keywords[] = {
    { "kw-violence", GI2_ACTION_DENY, fz_kw_violence },
    { "kw-unicode", GI2_ACTION_FLAG, fz_kw_unicode },
    { NULL, 0, NULL }
};


static gi2_ruleset_t       *fz_rs;
static pcre2_code          *fz_ref[FZ_MAX_RULES];      /* by rule index */
static gi2_str_t            fz_kw[FZ_MAX_RULES * 8];  /* normalized */
static int                  fz_kw_rule[FZ_MAX_RULES * 8];
static size_t               fz_nkw;
static pcre2_match_data    *fz_md;
static fz_arena_t           fz_arena;
static gi2_alloc_t          fz_pool = { fz_arena_alloc, &fz_arena, NULL };


static void fz_init(void);
static void fz_parse(const uint8_t *data, size_t size, int how,
    gi2_req_t *req);
static void fz_same(const gi2_req_t *a, const gi2_req_t *b,
    const char *what);
static int fz_str_eq(const char *a, const char *b);
static void fz_offsets(const uint8_t *data, size_t size,
    const gi2_req_t *req);
static long fz_value_start(const uint8_t *data, size_t size,
    const gi2_field_t *f);
static void fz_rewrite(const uint8_t *data, size_t size,
    const gi2_req_t *req, gi2_field_e field, const char *text);
static void fz_prompt(const unsigned char *text, size_t len);
static void fz_norm_ok(const gi2_str_t *s);
static int fz_match(const unsigned char *text, size_t len, unsigned *hits,
    unsigned char *hit);


static void
fz_init(void)
{
    int          idx, ec;
    char         err[256];
    size_t       i, j;
    gi2_str_t    norm;
    PCRE2_SIZE   off;
    gi2_alloc_t  a = { fz_malloc, NULL, fz_free };

    fz_rs = gi2_ruleset_create();
    FZ_CHECK(fz_rs != NULL, "ruleset");

    for (i = 0; fz_regexes[i].id; i++) {
        idx = gi2_ruleset_add_regex(fz_rs, fz_regexes[i].id,
                  fz_regexes[i].action, "cat",
                  (const unsigned char *) fz_regexes[i].pattern,
                  strlen(fz_regexes[i].pattern), err, sizeof(err));
        FZ_CHECK(idx >= 0 && idx < FZ_MAX_RULES, err);

        /* the reference: the same options, no JIT, no prefilter */

        fz_ref[idx] = pcre2_compile((PCRE2_SPTR) fz_regexes[i].pattern,
                                    PCRE2_ZERO_TERMINATED,
                                    PCRE2_UTF | PCRE2_UCP | PCRE2_CASELESS
                                    | PCRE2_NEVER_BACKSLASH_C, &ec, &off,
                                    NULL);
        FZ_CHECK(fz_ref[idx] != NULL, "reference regex");
    }

    for (i = 0; fz_keywords[i].id; i++) {
        idx = gi2_ruleset_add_keywords(fz_rs, fz_keywords[i].id,
                  fz_keywords[i].action, "kw", err, sizeof(err));
        FZ_CHECK(idx >= 0 && idx < FZ_MAX_RULES, err);

        for (j = 0; fz_keywords[i].words[j]; j++) {
            FZ_CHECK(gi2_ruleset_add_keyword(fz_rs, idx,
                         (const unsigned char *) fz_keywords[i].words[j],
                         strlen(fz_keywords[i].words[j]), err, sizeof(err))
                     == GI2_OK, err);

            FZ_CHECK(gi2_normalize((const unsigned char *)
                                   fz_keywords[i].words[j],
                                   strlen(fz_keywords[i].words[j]), &norm,
                                   &a) == GI2_OK, "keyword");
            fz_kw[fz_nkw] = norm;
            fz_kw_rule[fz_nkw] = idx;
            fz_nkw++;
        }
    }

    FZ_CHECK(gi2_ruleset_compile(fz_rs, err, sizeof(err)) == GI2_OK, err);

    for (i = 0; i < gi2_ruleset_count(fz_rs); i++) {
        FZ_CHECK(gi2_ruleset_rule(fz_rs, i)->keywords || fz_ref[i] != NULL,
                 "reference regex");
    }

    fz_md = pcre2_match_data_create(1, NULL);
    FZ_CHECK(fz_md != NULL, "match data");
}


/* parse into req; its strings live in the arena until the input ends */

static void
fz_parse(const uint8_t *data, size_t size, int how, gi2_req_t *req)
{
    size_t             i, n;
    uint64_t           st;
    gi2_req_parser_t  *p;

    p = gi2_req_parser_create(req, &fz_pool);
    FZ_CHECK(p != NULL, "parser");

    switch (how) {

    case FZ_WHOLE:
        (void) gi2_req_parser_feed(p, data, size);
        break;

    case FZ_BYTES:
        for (i = 0; i < size; i++) {
            (void) gi2_req_parser_feed(p, data + i, 1);
        }

        break;

    default:
        st = fz_hash(data, size);

        for (i = 0; i < size; i += n) {
            if ((fz_next(&st) & 15) == 0) {
                (void) gi2_req_parser_feed(p, data + i, 0);
            }

            n = fz_piece(&st, size - i);
            (void) gi2_req_parser_feed(p, data + i, n);
        }
    }

    (void) gi2_req_parser_finish(p);
    gi2_req_parser_destroy(p);
}


static int
fz_str_eq(const char *a, const char *b)
{
    if (a == NULL || b == NULL) {
        return a == b;
    }

    return strcmp(a, b) == 0;
}


static void
fz_same(const gi2_req_t *a, const gi2_req_t *b, const char *what)
{
    int                 i;
    const gi2_field_t  *x, *y;

    FZ_CHECK(fz_str_eq(a->error, b->error), what);
    FZ_CHECK(fz_str_eq(a->param, b->param), what);

    /* after an error the parser stops counting: nothing more is used */

    if (a->error) {
        return;
    }

    FZ_CHECK(a->length == b->length, what);

    for (i = 0; i < GI2_F_LAST; i++) {
        x = &a->field[i];
        y = &b->field[i];

        FZ_CHECK(x->type == y->type, what);
        FZ_CHECK(x->key_end == y->key_end, what);
        FZ_CHECK(x->value_end == y->value_end, what);
        FZ_CHECK(x->value.len == y->value.len, what);
        FZ_CHECK((x->value.data == NULL) == (y->value.data == NULL), what);
        FZ_CHECK(x->value.len == 0
                 || memcmp(x->value.data, y->value.data, x->value.len) == 0,
                 what);
    }
}


/* the forward scan of ngx_http_gi2_value_start() */

static long
fz_value_start(const uint8_t *data, size_t size, const gi2_field_t *f)
{
    uint64_t  i;

    for (i = f->key_end; i < f->value_end && i < size; i++) {
        if (data[i] == ' ' || data[i] == '\t' || data[i] == '\r'
            || data[i] == '\n' || data[i] == ':')
        {
            continue;
        }

        return (data[i] == '"') ? (long) i : -1;
    }

    return -1;
}


static void
fz_offsets(const uint8_t *data, size_t size, const gi2_req_t *req)
{
    int                 i;
    long                k;
    const gi2_field_t  *f;

    for (i = 0; i < GI2_F_LAST; i++) {
        f = &req->field[i];

        if (f->type == GI2_T_NONE) {
            continue;
        }

        /* the key: a string token ending at key_end */

        FZ_CHECK(f->key_end >= 2 && f->key_end <= size, "key offset");
        FZ_CHECK(data[f->key_end - 1] == '"', "key ends with a quote");

        k = gi2_json_string_start(data, (size_t) f->key_end);
        FZ_CHECK(k >= 0, "key start");
        FZ_CHECK((size_t) (f->key_end - k - 2)
                 == strlen(gi2_field_name((gi2_field_e) i))
                 || memchr(data + k + 1, '\\', f->key_end - k - 2) != NULL,
                 "key bytes");

        if (f->type == GI2_T_COMPOUND) {
            continue;
        }

        FZ_CHECK(f->value_end > f->key_end && f->value_end <= size,
                 "value offset");

        if (f->type != GI2_T_STRING) {
            continue;
        }

        FZ_CHECK(data[f->value_end - 1] == '"', "string value end");

        k = fz_value_start(data, size, f);
        FZ_CHECK(k > 0 && (uint64_t) k < f->value_end - 1, "value start");
        FZ_CHECK(gi2_json_string_start(data, (size_t) f->value_end) == k,
                 "value start from its end");
    }
}


/* splice text over a string value where the module would, and reparse */

static void
fz_rewrite(const uint8_t *data, size_t size, const gi2_req_t *req,
    gi2_field_e field, const char *text)
{
    int                 i;
    long                from;
    size_t              tlen, n;
    uint8_t            *body;
    gi2_req_t           out;
    const gi2_field_t  *f, *x, *y;

    f = &req->field[field];
    from = fz_value_start(data, size, f);
    FZ_CHECK(from > 0, "rewrite start");

    tlen = strlen(text);
    n = (size_t) from + tlen + (size - (size_t) f->value_end);

    body = malloc(n + 1);
    FZ_CHECK(body != NULL, "malloc");

    memcpy(body, data, (size_t) from);
    memcpy(body + from, text, tlen);
    memcpy(body + from + tlen, data + f->value_end,
           size - (size_t) f->value_end);

    fz_parse(body, n, FZ_WHOLE, &out);

    FZ_CHECK(out.error == NULL, "rewritten body parses");
    FZ_CHECK(out.field[field].type == GI2_T_STRING, "rewritten type");
    FZ_CHECK(out.field[field].value.len == tlen - 2
             && memcmp(out.field[field].value.data, text + 1, tlen - 2) == 0,
             "rewritten value");

    for (i = 0; i < GI2_F_LAST; i++) {
        if (i == (int) field) {
            continue;
        }

        x = &req->field[i];
        y = &out.field[i];

        FZ_CHECK(x->type == y->type, "other fields kept");
        FZ_CHECK(x->value.len == y->value.len
                 && (x->value.len == 0
                     || memcmp(x->value.data, y->value.data, x->value.len)
                        == 0), "other values kept");
    }

    free(body);
}


static void
fz_norm_ok(const gi2_str_t *s)
{
    size_t  i;

    FZ_CHECK(s->data != NULL && s->data[s->len] == '\0', "NUL-terminated");
    FZ_CHECK(gi2_utf8_valid(s->data, s->len), "normalized UTF-8");

    if (s->len == 0) {
        return;
    }

    FZ_CHECK(s->data[0] != ' ' && s->data[s->len - 1] != ' ', "trimmed");

    for (i = 0; i < s->len; i++) {
        FZ_CHECK(s->data[i] >= 0x20 && s->data[i] != 0x7f, "no controls");
        FZ_CHECK(!(s->data[i] == ' ' && s->data[i + 1] == ' '),
                 "no double spaces");
    }
}


/* hit[i]: rule i matched; returns how many */

static int
fz_match(const unsigned char *text, size_t len, unsigned *hits,
    unsigned char *hit)
{
    int     n, i;
    size_t  count;

    count = gi2_ruleset_count(fz_rs);
    memset(hit, 0, count);

    n = gi2_ruleset_match(fz_rs, text, len, hits);
    FZ_CHECK(n >= 0 && (size_t) n <= count, "hit count");

    for (i = 0; i < n; i++) {
        FZ_CHECK(hits[i] < count, "hit index");
        FZ_CHECK(i == 0 || hits[i] > hits[i - 1], "hits in rule order");
        hit[hits[i]] = 1;
    }

    return n;
}


static void
fz_prompt(const unsigned char *text, size_t len)
{
    int              rc, errors;
    size_t           i, count, left, right, k;
    unsigned        *hits;
    gi2_str_t        norm, again, skel;
    unsigned char   *hit, *hit2, *padded;
    const uint8_t   *at;

    rc = gi2_normalize(text, len, &norm, &fz_pool);

    if (rc == GI2_EINVAL) {
        FZ_CHECK(!gi2_utf8_valid(text, len), "EINVAL only for bad UTF-8");
        return;
    }

    FZ_CHECK(rc == GI2_OK, "normalize");
    fz_norm_ok(&norm);

    rc = gi2_normalize(norm.data, norm.len, &again, &fz_pool);
    FZ_CHECK(rc == GI2_OK && again.len == norm.len
             && memcmp(again.data, norm.data, norm.len) == 0,
             "normalization is idempotent");

    /* the skeleton: valid UTF-8, and a fixed point */

    rc = gi2_skeleton(norm.data, norm.len, &skel, &fz_pool);
    FZ_CHECK(rc == GI2_OK, "skeleton");

    if (skel.len > 0) {
        FZ_CHECK(gi2_utf8_valid(skel.data, skel.len)
                 && skel.data[skel.len] == '\0', "skeleton is UTF-8");
        rc = gi2_skeleton(skel.data, skel.len, &again, &fz_pool);
        FZ_CHECK(rc == GI2_OK && again.len == 0,
                 "the skeleton of a skeleton is itself");
    }

    count = gi2_ruleset_count(fz_rs);
    hits = fz_arena_alloc(&fz_arena, (count + 1) * sizeof(unsigned));
    hit = fz_arena_alloc(&fz_arena, count + 1);
    hit2 = fz_arena_alloc(&fz_arena, count + 1);

    (void) fz_match(norm.data, norm.len, hits, hit);
    errors = gi2_ruleset_errors(fz_rs);

    /* regexes: the prefilter must never hide a match */

    for (i = 0; i < count; i++) {
        if (fz_ref[i] == NULL) {
            continue;
        }

        rc = pcre2_match(fz_ref[i], norm.data, norm.len, 0,
                         PCRE2_NO_UTF_CHECK, fz_md, NULL);

        if (rc >= 0) {
            FZ_CHECK(hit[i], "a regex match is reported");

        } else if (rc == PCRE2_ERROR_NOMATCH && errors == 0) {
            FZ_CHECK(!hit[i], "no regex match, no hit");
        }
    }

    /* a keyword between spaces (or the ends) is always found */

    for (k = 0; k < fz_nkw; k++) {
        at = norm.data;

        while (norm.len
               && (at = memmem(at, norm.len - (at - norm.data),
                               fz_kw[k].data, fz_kw[k].len)) != NULL)
        {
            if ((at == norm.data || at[-1] == ' ')
                && (at + fz_kw[k].len == norm.data + norm.len
                    || at[fz_kw[k].len] == ' '))
            {
                FZ_CHECK(hit[fz_kw_rule[k]], "a spaced keyword is found");
            }

            at++;
        }
    }

    /*
     * Padding with spaces, 1100 bytes at least, takes the automaton's
     * two-scan path; the middle lands in the text when it is long.
     */

    left = 64 + (size_t) (fz_hash(norm.data, norm.len) % 512);
    right = (left + norm.len < 1036) ? 1100 - left - norm.len : 64;

    padded = fz_arena_alloc(&fz_arena, left + norm.len + right);
    memset(padded, ' ', left);
    memcpy(padded + left, norm.data, norm.len);
    memset(padded + left + norm.len, ' ', right);

    (void) fz_match(padded, left + norm.len + right, hits, hit2);

    if (errors == 0 && gi2_ruleset_errors(fz_rs) == 0) {
        FZ_CHECK(memcmp(hit, hit2, count) == 0, "padding changes no hit");
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gi2_req_t  whole, other;

    if (fz_rs == NULL) {
        fz_init();
    }

    fz_parse(data, size, FZ_WHOLE, &whole);

    fz_parse(data, size, FZ_BYTES, &other);
    fz_same(&whole, &other, "byte by byte == whole");

    fz_parse(data, size, FZ_PIECES, &other);
    fz_same(&whole, &other, "pieces == whole");

    if (whole.error == NULL) {
        fz_offsets(data, size, &whole);

        if (whole.field[GI2_F_MODERATION].type == GI2_T_STRING) {
            fz_rewrite(data, size, &whole, GI2_F_MODERATION, "\"auto\"");
        }

        if (whole.field[GI2_F_USER].type == GI2_T_STRING) {
            fz_rewrite(data, size, &whole, GI2_F_USER,
                       "\"hmac-sha256:0123456789abcdef\"");
        }

        fz_prompt(whole.field[GI2_F_PROMPT].value.data,
                  whole.field[GI2_F_PROMPT].value.len);
    }

    fz_prompt(data, size);

    fz_arena_reset(&fz_arena);

    return 0;
}
