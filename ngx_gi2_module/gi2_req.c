/*
 * ngx_gi2_module: streaming JSON request parser (yajl).
 *
 * Fed the body chunk by chunk as it arrives.  Keeps the top-level fields
 * the policy and the audit need, with the byte offsets a rewrite needs,
 * and refuses anything ambiguous: duplicate keys, wrong types, invalid
 * UTF-8, a root that is not an object, absurd nesting.
 *
 * For the Responses API (GI2_REQ_RESPONSES) it also tracks what each open
 * container is (the tools array, a tool, the input, the prompt template's
 * variables), so that the image_generation tool's fields and the text the
 * caller gives the model are found whatever the order of keys.
 */

#include <stdlib.h>
#include <string.h>
#include <yajl_parse.h>

#include "gi2_core.h"


/* what an open container is (responses mode); GI2_CX_ARRAY is a flag */

enum {
    GI2_CX_OTHER = 0,
    GI2_CX_ROOT,
    GI2_CX_TOOLS,
    GI2_CX_TOOL,
    GI2_CX_INPUT,
    GI2_CX_PROMPT,
    GI2_CX_VARS
};

#define GI2_CX_ARRAY  0x80


/* what the pending key's value is to the policy (responses mode) */

enum {
    GI2_R_NONE = 0,
    GI2_R_INPUT,          /* root "input" */
    GI2_R_INSTRUCTIONS,   /* root "instructions" */
    GI2_R_TOOLS,          /* root "tools" */
    GI2_R_PROMPT,         /* root "prompt": a template reference */
    GI2_R_TEXT,           /* text the model reads */
    GI2_R_VARS,           /* "prompt"."variables" */
    GI2_R_TYPE,           /* a tool's "type" */
    GI2_R_MODERATION,     /* a tool's fields */
    GI2_R_SIZE,
    GI2_R_QUALITY
};


typedef struct {
    const char           *name;
    unsigned              role;
} gi2_req_role_t;


struct gi2_req_parser_s {
    yajl_handle           yajl;
    gi2_req_t            *req;
    gi2_alloc_t          *alloc;
    uint64_t              base;       /* bytes given to yajl */
    uint64_t              fed;        /* bytes fed */
    uint64_t              token;      /* where the last token may start */
    unsigned char        *stage;      /* bytes held back from yajl */
    size_t                staged;
    size_t                cap;
    int                   depth;
    int                   key;        /* field of the pending top key */
    uint32_t              cp;         /* the \u escape being read */
    unsigned              hex:3;      /* its hex digits still to come */
    unsigned              root:1;
    unsigned              done:1;
    unsigned              string:1;   /* the raw scan is in a string */
    unsigned              escape:1;   /* after a backslash */
    unsigned              high:1;     /* a high surrogate wants a low one */
    unsigned              space:1;    /* the raw scan stopped at \v or \f */

    /* responses mode */
    gi2_req_mode_e        mode;
    unsigned              role;       /* GI2_R_* of the pending key */
    uint32_t              top_seen;   /* root keys of gi2_req_top met */
    uint32_t              tool_seen;  /* keys of gi2_req_tool met */
    unsigned              tool_image:1;
    gi2_field_t           tool[3];    /* moderation, size, quality */
    unsigned char        *text;       /* malloc()ed, up to the cap */
    size_t                text_len;
    size_t                text_cap;
    unsigned              ntext;
    unsigned char         cx[GI2_MAX_DEPTH + 2];
};


/* root keys of a Responses API request the policy reads */

static const gi2_req_role_t  gi2_req_top[] = {
    { "input", GI2_R_INPUT },
    { "instructions", GI2_R_INSTRUCTIONS },
    { "tools", GI2_R_TOOLS },
    { "prompt", GI2_R_PROMPT }
};

/* keys of a tool; the last three are kept in tool[] */

static const gi2_req_role_t  gi2_req_tool[] = {
    { "type", GI2_R_TYPE },
    { "moderation", GI2_R_MODERATION },
    { "size", GI2_R_SIZE },
    { "quality", GI2_R_QUALITY }
};

/* the tool's fields as request fields */

static const gi2_field_e  gi2_req_tool_field[3] = {
    GI2_F_MODERATION, GI2_F_SIZE, GI2_F_QUALITY
};


static const char  *gi2_field_names[GI2_F_LAST] = {
    "prompt", "moderation", "model", "n", "size", "quality", "user",
    "stream"
};


static int gi2_req_value(gi2_req_parser_t *p, gi2_type_e type,
    const unsigned char *s, size_t len);
static int gi2_req_keep(gi2_req_parser_t *p, gi2_field_t *f,
    gi2_type_e type, const unsigned char *s, size_t len);
static int gi2_req_null(void *ctx);
static int gi2_req_boolean(void *ctx, int b);
static int gi2_req_number(void *ctx, const char *s, size_t len);
static int gi2_req_string(void *ctx, const unsigned char *s, size_t len);
static int gi2_req_start(void *ctx);
static int gi2_req_start_array(void *ctx);
static int gi2_req_open(gi2_req_parser_t *p, unsigned array);
static int gi2_req_key(void *ctx, const unsigned char *s, size_t len);
static int gi2_req_end(void *ctx);
static unsigned gi2_req_context(gi2_req_parser_t *p, unsigned array);
static int gi2_req_rkey(gi2_req_parser_t *p, const unsigned char *s,
    size_t len);
static int gi2_req_rvalue(gi2_req_parser_t *p, gi2_type_e type,
    const unsigned char *s, size_t len);
static int gi2_req_role(const gi2_req_role_t *t, size_t n,
    const unsigned char *s, size_t len);
static int gi2_req_text(gi2_req_parser_t *p, const unsigned char *s,
    size_t len);
static int gi2_req_tool_end(gi2_req_parser_t *p);
static int gi2_req_responses_finish(gi2_req_parser_t *p);
static int gi2_req_fail(gi2_req_parser_t *p, const char *error,
    const char *param);
static size_t gi2_req_scan(gi2_req_parser_t *p, const unsigned char *buf,
    size_t len);
static size_t gi2_skip_plain(const unsigned char *b, size_t i, size_t len);
static int gi2_req_stage(gi2_req_parser_t *p, const unsigned char *buf,
    size_t len);
static int gi2_req_parse(gi2_req_parser_t *p, const unsigned char *buf,
    size_t len);


static yajl_callbacks  gi2_req_callbacks = {
    gi2_req_null,
    gi2_req_boolean,
    NULL,
    NULL,
    gi2_req_number,
    gi2_req_string,
    gi2_req_start,
    gi2_req_key,
    gi2_req_end,
    gi2_req_start_array,
    gi2_req_end
};


long
gi2_json_string_start(const unsigned char *win, size_t len)
{
    size_t  j, k;

    if (len < 2 || win[len - 1] != '"') {
        return -1;
    }

    /* inside a string a quote is always escaped: odd backslashes */

    for (j = len - 1; j > 0; j--) {
        if (win[j - 1] != '"') {
            continue;
        }

        for (k = j - 1; k > 0 && win[k - 1] == '\\'; k--) {
            /* void */
        }

        if (((j - 1) - k) % 2 == 0) {
            return (long) (j - 1);
        }
    }

    return -1;
}


const char *
gi2_field_name(gi2_field_e f)
{
    return (f < GI2_F_LAST) ? gi2_field_names[f] : NULL;
}


gi2_req_parser_t *
gi2_req_parser_create(gi2_req_t *req, gi2_alloc_t *a)
{
    return gi2_req_parser_create_mode(req, a, GI2_REQ_IMAGES);
}


gi2_req_parser_t *
gi2_req_parser_create_mode(gi2_req_t *req, gi2_alloc_t *a,
    gi2_req_mode_e mode)
{
    gi2_req_parser_t  *p;

    p = a->alloc(a->data, sizeof(gi2_req_parser_t));
    if (p == NULL) {
        return NULL;
    }

    memset(p, 0, sizeof(gi2_req_parser_t));
    memset(req, 0, sizeof(gi2_req_t));

    p->req = req;
    p->alloc = a;
    p->key = -1;
    p->mode = mode;

    p->yajl = yajl_alloc(&gi2_req_callbacks, NULL, p);
    if (p->yajl == NULL) {
        return NULL;
    }

    return p;
}


void
gi2_req_parser_destroy(gi2_req_parser_t *p)
{
    if (p == NULL) {
        return;
    }

    if (p->yajl != NULL) {
        yajl_free(p->yajl);
        p->yajl = NULL;
    }

    free(p->stage);
    p->stage = NULL;
    p->staged = 0;
    p->cap = 0;

    free(p->text);
    p->text = NULL;
    p->text_len = 0;
    p->text_cap = 0;
}


int
gi2_req_parser_feed(gi2_req_parser_t *p, const unsigned char *buf,
    size_t len)
{
    int     bad;
    size_t  n, held;

    if (p->req->error) {
        return GI2_EINVAL;
    }

    if (p->done) {
        return gi2_req_fail(p, "data after the end of the body", NULL);
    }

    held = (p->base > p->token) ? (size_t) (p->base - p->token) : 0;

    n = gi2_req_scan(p, buf, len);
    bad = (n < len);

    p->fed += len;
    p->req->length = p->fed;

    /*
     * yajl lexes a token cut by a chunk's end again from its first byte on
     * the next call: a long string fed a few bytes at a time would cost
     * quadratic time.  Bytes are held back until they are as many as the
     * part of the token yajl holds, which keeps the cost linear.
     */

    if (!bad && p->staged + len < held) {
        return gi2_req_stage(p, buf, len);
    }

    if (p->staged) {
        if (gi2_req_stage(p, buf, n) != GI2_OK) {
            return GI2_EINVAL;
        }

        buf = p->stage;
        n = p->staged;
        p->staged = 0;
    }

    /* yajl sees the bytes before a bad escape: errors keep body order */

    if (gi2_req_parse(p, buf, n) != GI2_OK) {
        return GI2_EINVAL;
    }

    if (bad) {
        return gi2_req_fail(p, p->space ? "the request body is not valid JSON"
                               : "the request body has an unpaired UTF-16 "
                                 "surrogate escape", NULL);
    }

    return GI2_OK;
}


static int
gi2_req_stage(gi2_req_parser_t *p, const unsigned char *buf, size_t len)
{
    size_t          cap;
    unsigned char  *stage;

    /* an empty chunk: nothing to hold, and no stage may exist yet */

    if (len == 0) {
        return GI2_OK;
    }

    if (p->staged + len > p->cap) {
        cap = p->cap ? p->cap * 2 : 4096;

        if (cap < p->staged + len) {
            cap = p->staged + len;
        }

        stage = realloc(p->stage, cap);
        if (stage == NULL) {
            return gi2_req_fail(p, "out of memory", NULL);
        }

        p->stage = stage;
        p->cap = cap;
    }

    memcpy(p->stage + p->staged, buf, len);
    p->staged += len;

    return GI2_OK;
}


static int
gi2_req_parse(gi2_req_parser_t *p, const unsigned char *buf, size_t len)
{
    yajl_status  rc;

    rc = yajl_parse(p->yajl, buf, len);

    p->base += len;

    if (rc == yajl_status_ok) {
        return GI2_OK;
    }

    if (p->req->error == NULL) {
        gi2_req_fail(p, "the request body is not valid JSON", NULL);
    }

    return GI2_EINVAL;
}


int
gi2_req_parser_finish(gi2_req_parser_t *p)
{
    size_t        n;
    gi2_field_t  *f;

    if (p->req->error) {
        return GI2_EINVAL;
    }

    if (p->staged) {
        n = p->staged;
        p->staged = 0;

        if (gi2_req_parse(p, p->stage, n) != GI2_OK) {
            return GI2_EINVAL;
        }
    }

    p->done = 1;

    if (yajl_complete_parse(p->yajl) != yajl_status_ok) {
        if (p->req->error == NULL) {
            gi2_req_fail(p, "the request body is not valid JSON", NULL);
        }

        return GI2_EINVAL;
    }

    if (!p->root) {
        return gi2_req_fail(p, "the request body must be a JSON object",
                            NULL);
    }

    if (p->mode == GI2_REQ_RESPONSES) {
        if (gi2_req_responses_finish(p) != GI2_OK) {
            return GI2_EINVAL;
        }

    } else if (p->req->field[GI2_F_PROMPT].type != GI2_T_STRING) {
        return gi2_req_fail(p, "'prompt' must be a string", "prompt");
    }

    f = &p->req->field[GI2_F_MODERATION];

    if (f->type != GI2_T_NONE) {
        if (f->type != GI2_T_STRING
            || !((f->value.len == 4
                  && memcmp(f->value.data, "auto", 4) == 0)
                 || (f->value.len == 3
                     && memcmp(f->value.data, "low", 3) == 0)))
        {
            return gi2_req_fail(p, "'moderation' must be \"auto\" or \"low\"",
                                "moderation");
        }
    }

    return GI2_OK;
}


static int
gi2_req_fail(gi2_req_parser_t *p, const char *error, const char *param)
{
    if (p->req->error == NULL) {
        p->req->error = error;
        p->req->param = param;
    }

    return GI2_EINVAL;
}


/*
 * yajl decodes a lone high surrogate escape to '?' and pairs a high one
 * with whatever escape follows ("\ud800\u006e" becomes U+1006E), so the
 * prompt matched here would not be the one upstream decodes.  A raw scan
 * of the strings finds the first escape that is not half of a proper pair
 * and returns how many bytes come before it (len when all are fine).
 *
 * yajl also takes \v and \f for white space between tokens, which JSON
 * does not: the offsets the rewrites read forwards from would then cross
 * bytes they do not expect.  The scan stops at those too.
 */

static size_t
gi2_req_scan(gi2_req_parser_t *p, const unsigned char *buf, size_t len)
{
    size_t         i;
    unsigned char  c, x;

    for (i = 0; i < len; i++) {

        if (p->string && !p->hex && !p->escape && !p->high) {
            i = gi2_skip_plain(buf, i, len);

            if (i == len) {
                break;
            }
        }

        c = buf[i];

        if (p->hex) {
            x = c | 0x20;

            if (c >= '0' && c <= '9') {
                p->cp = (p->cp << 4) | (uint32_t) (c - '0');

            } else if (x >= 'a' && x <= 'f') {
                p->cp = (p->cp << 4) | (uint32_t) (x - 'a' + 10);

            } else {
                p->hex = 0;    /* yajl refuses the escape itself */
                continue;
            }

            if (--p->hex) {
                continue;
            }

            if (p->cp >= 0xdc00 && p->cp <= 0xdfff) {
                if (!p->high) {
                    return i;
                }

                p->high = 0;

            } else if (p->high) {
                return i;

            } else if (p->cp >= 0xd800 && p->cp <= 0xdbff) {
                p->high = 1;
            }

            continue;
        }

        if (p->escape) {
            p->escape = 0;

            if (c == 'u') {
                p->hex = 4;
                p->cp = 0;
                continue;
            }

            if (p->high) {
                return i;
            }

            continue;
        }

        if (!p->string) {
            switch (c) {
            case '"':
                p->string = 1;
                p->token = p->fed + i;
                break;
            case '{': case '}': case '[': case ']': case ',': case ':':
            case ' ': case '\t': case '\r': case '\n':
                p->token = p->fed + i + 1;
                break;
            case '\v': case '\f':
                p->space = 1;
                return i;
            }

            continue;
        }

        if (c == '\\') {
            p->escape = 1;
            continue;
        }

        if (p->high) {
            return i;
        }

        if (c == '"') {
            p->string = 0;
            p->token = p->fed + i + 1;
        }
    }

    return len;
}


/* the first '"' or '\\' at or after i: eight bytes a step */

static size_t
gi2_skip_plain(const unsigned char *b, size_t i, size_t len)
{
    uint64_t  w, q, e;

    while (len - i >= 8) {
        memcpy(&w, b + i, 8);

        q = w ^ (GI2_ONES * '"');
        e = w ^ (GI2_ONES * '\\');

        if ((((q - GI2_ONES) & ~q) | ((e - GI2_ONES) & ~e)) & GI2_HIGHS) {
            break;
        }

        i += 8;
    }

    while (i < len && b[i] != '"' && b[i] != '\\') {
        i++;
    }

    return i;
}


/* yajl callbacks: return 0 to stop the parse */

static int
gi2_req_value(gi2_req_parser_t *p, gi2_type_e type, const unsigned char *s,
    size_t len)
{
    gi2_field_t  *f;

    if (p->depth == 0) {
        gi2_req_fail(p, "the request body must be a JSON object", NULL);
        return 0;
    }

    if (p->mode == GI2_REQ_RESPONSES && !gi2_req_rvalue(p, type, s, len)) {
        return 0;
    }

    if (p->depth != 1 || p->key < 0) {
        return 1;
    }

    f = &p->req->field[p->key];

    if (p->key == GI2_F_PROMPT && type == GI2_T_STRING
        && len > GI2_PROMPT_MAX)
    {
        gi2_req_fail(p, "'prompt' is over 1 MiB", "prompt");
        return 0;
    }

    p->key = -1;

    return gi2_req_keep(p, f, type, s, len);
}


/* a field's value as it ends: its type, its end offset, and a copy */

static int
gi2_req_keep(gi2_req_parser_t *p, gi2_field_t *f, gi2_type_e type,
    const unsigned char *s, size_t len)
{
    unsigned char  *copy;

    f->type = type;
    f->value_end = p->base + yajl_get_bytes_consumed(p->yajl);

    if (s == NULL) {
        return 1;
    }

    copy = p->alloc->alloc(p->alloc->data, len + 1);
    if (copy == NULL) {
        gi2_req_fail(p, "out of memory", NULL);
        return 0;
    }

    memcpy(copy, s, len);
    copy[len] = '\0';

    f->value.data = copy;
    f->value.len = len;

    return 1;
}


static int
gi2_req_null(void *ctx)
{
    return gi2_req_value(ctx, GI2_T_NULL, NULL, 0);
}


static int
gi2_req_boolean(void *ctx, int b)
{
    return gi2_req_value(ctx, GI2_T_BOOL,
                         (const unsigned char *) (b ? "true" : "false"),
                         b ? 4 : 5);
}


static int
gi2_req_number(void *ctx, const char *s, size_t len)
{
    gi2_req_parser_t  *p = ctx;

    /* a number's text is only kept for the fields the audit records */

    if (p->depth == 1 && p->key >= 0 && len > 32) {
        return gi2_req_value(p, GI2_T_NUMBER, (const unsigned char *) s, 32);
    }

    return gi2_req_value(p, GI2_T_NUMBER, (const unsigned char *) s, len);
}


static int
gi2_req_string(void *ctx, const unsigned char *s, size_t len)
{
    gi2_req_parser_t  *p = ctx;

    if (!gi2_utf8_valid(s, len)) {
        gi2_req_fail(p, "the request body is not valid UTF-8", NULL);
        return 0;
    }

    return gi2_req_value(p, GI2_T_STRING, s, len);
}


static int
gi2_req_start(void *ctx)
{
    return gi2_req_open(ctx, 0);
}


static int
gi2_req_start_array(void *ctx)
{
    gi2_req_parser_t  *p = ctx;

    if (p->depth == 0) {
        gi2_req_fail(p, "the request body must be a JSON object", NULL);
        return 0;
    }

    return gi2_req_open(p, 1);
}


static int
gi2_req_open(gi2_req_parser_t *p, unsigned array)
{
    unsigned  cx;

    if (p->depth == 0) {
        if (p->root) {
            gi2_req_fail(p, "data after the end of the body", NULL);
            return 0;
        }

        p->root = 1;
        p->depth = 1;
        p->cx[1] = GI2_CX_ROOT;

        return 1;
    }

    if (p->depth == 1 && p->key >= 0) {
        p->req->field[p->key].type = GI2_T_COMPOUND;
        p->key = -1;
    }

    cx = (p->mode == GI2_REQ_RESPONSES) ? gi2_req_context(p, array)
                                        : GI2_CX_OTHER;

    if (++p->depth > GI2_MAX_DEPTH) {
        gi2_req_fail(p, "the request body is nested too deeply", NULL);
        return 0;
    }

    p->cx[p->depth] = (unsigned char) (cx | (array ? GI2_CX_ARRAY : 0));

    return 1;
}


static int
gi2_req_key(void *ctx, const unsigned char *s, size_t len)
{
    gi2_req_parser_t  *p = ctx;
    int                i;

    if (!gi2_utf8_valid(s, len)) {
        gi2_req_fail(p, "the request body is not valid UTF-8", NULL);
        return 0;
    }

    if (p->mode == GI2_REQ_RESPONSES) {
        p->role = GI2_R_NONE;

        if (!gi2_req_rkey(p, s, len)) {
            return 0;
        }

        if (p->role != GI2_R_NONE) {
            return 1;
        }
    }

    if (p->depth != 1) {
        return 1;
    }

    p->key = -1;

    for (i = 0; i < GI2_F_LAST; i++) {
        if (strlen(gi2_field_names[i]) == len
            && memcmp(gi2_field_names[i], s, len) == 0)
        {
            break;
        }
    }

    if (i == GI2_F_LAST) {
        return 1;
    }

    /* a Responses API request has its own prompt, moderation, size... */

    if (p->mode == GI2_REQ_RESPONSES
        && i != GI2_F_MODEL && i != GI2_F_USER && i != GI2_F_STREAM)
    {
        return 1;
    }

    if (p->req->field[i].type != GI2_T_NONE) {
        gi2_req_fail(p, "duplicate key in the request body",
                     gi2_field_names[i]);
        return 0;
    }

    p->key = i;
    p->req->field[i].key_end = p->base + yajl_get_bytes_consumed(p->yajl);

    /* mark it seen now: a compound value sets its own type */
    p->req->field[i].type = GI2_T_COMPOUND;

    return 1;
}


static int
gi2_req_end(void *ctx)
{
    gi2_req_parser_t  *p = ctx;

    if (p->mode == GI2_REQ_RESPONSES && p->cx[p->depth] == GI2_CX_TOOL
        && !gi2_req_tool_end(p))
    {
        return 0;
    }

    p->depth--;
    p->role = GI2_R_NONE;

    return 1;
}


/* responses mode */

static int
gi2_req_role(const gi2_req_role_t *t, size_t n, const unsigned char *s,
    size_t len)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        if (strlen(t[i].name) == len && memcmp(t[i].name, s, len) == 0) {
            return (int) i;
        }
    }

    return -1;
}


/* what the container being opened at depth + 1 is */

static unsigned
gi2_req_context(gi2_req_parser_t *p, unsigned array)
{
    unsigned  parent, role;

    parent = p->cx[p->depth];
    role = p->role;
    p->role = GI2_R_NONE;

    if (parent & GI2_CX_ARRAY) {
        parent &= ~GI2_CX_ARRAY;

        if (parent == GI2_CX_TOOLS && !array) {
            /* a tool: its fields are kept until it ends */
            p->tool_seen = 0;
            p->tool_image = 0;
            memset(p->tool, 0, sizeof(p->tool));
            return GI2_CX_TOOL;
        }

        return (parent == GI2_CX_INPUT || parent == GI2_CX_VARS)
               ? GI2_CX_INPUT : GI2_CX_OTHER;
    }

    switch (parent) {

    case GI2_CX_ROOT:
        if (role == GI2_R_TOOLS && array) {
            return GI2_CX_TOOLS;
        }

        if (role == GI2_R_INPUT || role == GI2_R_INSTRUCTIONS) {
            return GI2_CX_INPUT;
        }

        if (role == GI2_R_PROMPT && !array) {
            return GI2_CX_PROMPT;
        }

        return GI2_CX_OTHER;

    case GI2_CX_TOOL:
        if (role >= GI2_R_MODERATION) {
            p->tool[role - GI2_R_MODERATION].type = GI2_T_COMPOUND;
        }

        return GI2_CX_OTHER;

    case GI2_CX_INPUT:
        return GI2_CX_INPUT;

    case GI2_CX_PROMPT:
        return (role == GI2_R_VARS && !array) ? GI2_CX_VARS : GI2_CX_OTHER;

    case GI2_CX_VARS:
        return GI2_CX_INPUT;
    }

    return GI2_CX_OTHER;
}


static int
gi2_req_rkey(gi2_req_parser_t *p, const unsigned char *s, size_t len)
{
    int           i;
    gi2_field_t  *f;

    switch (p->cx[p->depth]) {

    case GI2_CX_ROOT:
        i = gi2_req_role(gi2_req_top, sizeof(gi2_req_top)
                                      / sizeof(gi2_req_top[0]), s, len);
        if (i < 0) {
            return 1;
        }

        if (p->top_seen & (1u << i)) {
            gi2_req_fail(p, "duplicate key in the request body",
                         gi2_req_top[i].name);
            return 0;
        }

        p->top_seen |= 1u << i;
        p->role = gi2_req_top[i].role;
        return 1;

    case GI2_CX_TOOL:
        i = gi2_req_role(gi2_req_tool, sizeof(gi2_req_tool)
                                       / sizeof(gi2_req_tool[0]), s, len);
        if (i < 0) {
            return 1;
        }

        if (p->tool_seen & (1u << i)) {
            gi2_req_fail(p, "duplicate key in the request body",
                         gi2_req_tool[i].name);
            return 0;
        }

        p->tool_seen |= 1u << i;
        p->role = gi2_req_tool[i].role;

        if (p->role >= GI2_R_MODERATION) {
            f = &p->tool[p->role - GI2_R_MODERATION];
            f->key_end = p->base + yajl_get_bytes_consumed(p->yajl);
            f->type = GI2_T_COMPOUND;
        }

        return 1;

    case GI2_CX_INPUT:
        if ((len == 4 && memcmp(s, "text", 4) == 0)
            || (len == 7 && memcmp(s, "content", 7) == 0))
        {
            p->role = GI2_R_TEXT;
        }

        return 1;

    case GI2_CX_PROMPT:
        if (len == 9 && memcmp(s, "variables", 9) == 0) {
            p->role = GI2_R_VARS;
        }

        return 1;

    case GI2_CX_VARS:
        p->role = GI2_R_TEXT;
        return 1;
    }

    return 1;
}


static int
gi2_req_rvalue(gi2_req_parser_t *p, gi2_type_e type, const unsigned char *s,
    size_t len)
{
    unsigned        cx, role;
    gi2_field_t    *f;

    cx = p->cx[p->depth];

    if (cx & GI2_CX_ARRAY) {
        /* a bare string in the input's arrays is read too */
        role = ((cx & ~GI2_CX_ARRAY) == GI2_CX_INPUT) ? GI2_R_TEXT
                                                       : GI2_R_NONE;

    } else {
        role = p->role;
        p->role = GI2_R_NONE;
    }

    switch (role) {

    case GI2_R_INPUT:
    case GI2_R_INSTRUCTIONS:
    case GI2_R_TEXT:
        return (type == GI2_T_STRING) ? gi2_req_text(p, s, len) : 1;

    case GI2_R_TYPE:
        p->tool_image = (type == GI2_T_STRING && len == 16
                         && memcmp(s, "image_generation", 16) == 0);
        return 1;

    case GI2_R_MODERATION:
    case GI2_R_SIZE:
    case GI2_R_QUALITY:
        f = &p->tool[role - GI2_R_MODERATION];

        /* longer values are no value the policy knows: kept uncopied */
        return gi2_req_keep(p, f, type, (len > 32) ? NULL : s, len);
    }

    return 1;
}


/* text the model reads: joined by newlines, up to GI2_PROMPT_MAX */

static int
gi2_req_text(gi2_req_parser_t *p, const unsigned char *s, size_t len)
{
    size_t          need, cap;
    unsigned char  *t;

    need = p->text_len + (p->ntext ? 1 : 0) + len;

    if (need > GI2_PROMPT_MAX) {
        gi2_req_fail(p, "the text given to the model is over 1 MiB",
                     "input");
        return 0;
    }

    if (need > p->text_cap) {
        cap = p->text_cap ? p->text_cap : 1024;

        while (cap < need) {
            cap *= 2;
        }

        t = realloc(p->text, cap);
        if (t == NULL) {
            gi2_req_fail(p, "out of memory", NULL);
            return 0;
        }

        p->text = t;
        p->text_cap = cap;
    }

    if (p->ntext++) {
        p->text[p->text_len++] = '\n';
    }

    if (len) {
        memcpy(p->text + p->text_len, s, len);
        p->text_len += len;
    }

    return 1;
}


/* a tool ended: an image_generation tool's fields become the request's */

static int
gi2_req_tool_end(gi2_req_parser_t *p)
{
    int  i;

    if (!p->tool_image) {
        return 1;
    }

    if (++p->req->image_tools > 1) {
        gi2_req_fail(p, "more than one image_generation tool in the "
                     "request", "tools");
        return 0;
    }

    for (i = 0; i < 3; i++) {
        if (p->tool[i].type != GI2_T_NONE) {
            p->req->field[gi2_req_tool_field[i]] = p->tool[i];
        }
    }

    return 1;
}


static int
gi2_req_responses_finish(gi2_req_parser_t *p)
{
    gi2_field_t    *f;
    unsigned char  *copy;

    if (p->req->image_tools == 0) {
        return GI2_OK;
    }

    f = &p->req->field[GI2_F_PROMPT];

    copy = p->alloc->alloc(p->alloc->data, p->text_len + 1);
    if (copy == NULL) {
        return gi2_req_fail(p, "out of memory", NULL);
    }

    if (p->text_len) {
        memcpy(copy, p->text, p->text_len);
    }

    copy[p->text_len] = '\0';

    f->type = GI2_T_STRING;
    f->value.data = copy;
    f->value.len = p->text_len;

    return GI2_OK;
}
