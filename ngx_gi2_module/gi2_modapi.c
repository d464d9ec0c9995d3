/*
 * ngx_gi2_module: the external moderation service, the nginx-free part.
 *
 * The answer is parsed as it arrives (yajl), keeping only what the
 * verdict needs: the service's "flagged", and each category's flag and
 * score.  Anything that is not the expected shape is refused, so that a
 * service that answers garbage is an error, never a clean verdict.
 */

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <yajl_parse.h>

#include "gi2_core.h"
#include "gi2_modapi.h"


#define GI2_MODAPI_DEPTH_MAX   32

/* what the container at a depth is */
enum {
    GI2_S_ROOT = 0,
    GI2_S_RESULTS,      /* openai: results[] */
    GI2_S_RESULT0,      /* openai: results[0] */
    GI2_S_CATS,         /* openai: categories {name: bool} */
    GI2_S_SCORES,       /* category_scores / scores {name: number} */
    GI2_S_CATLIST,      /* generic: categories [name] */
    GI2_S_IGNORE
};

/* the pending key of an object that is not a category map */
enum {
    GI2_K_OTHER = 0,
    GI2_K_RESULTS,
    GI2_K_FLAGGED,
    GI2_K_CATEGORIES,
    GI2_K_SCORES
};


struct gi2_modapi_parser_s {
    yajl_handle            yajl;
    gi2_modapi_result_t   *res;
    gi2_alloc_t           *alloc;
    int                    format;
    int                    depth;      /* open containers */
    int                    sect[GI2_MODAPI_DEPTH_MAX + 1];
    int                    key;
    int                    elem;       /* results[] elements begun */
    char                   name[GI2_MODAPI_NAME_MAX + 1];
    unsigned               name_ok:1;  /* the pending name is kept */
    unsigned               root:1;     /* the root value began */
    unsigned               flagged:1;  /* "flagged" was read */
    unsigned               result0:1;  /* results[0] was an object */
    unsigned               scores:1;   /* some score was read */
};


static int gi2_modapi_value(gi2_modapi_parser_t *p, int type,
    const unsigned char *s, size_t len);
static int gi2_modapi_open(gi2_modapi_parser_t *p, int map);
static int gi2_modapi_null(void *ctx);
static int gi2_modapi_boolean(void *ctx, int b);
static int gi2_modapi_number(void *ctx, const char *s, size_t len);
static int gi2_modapi_string(void *ctx, const unsigned char *s, size_t len);
static int gi2_modapi_start_map(void *ctx);
static int gi2_modapi_start_array(void *ctx);
static int gi2_modapi_map_key(void *ctx, const unsigned char *s,
    size_t len);
static int gi2_modapi_end(void *ctx);
static int gi2_modapi_fail(gi2_modapi_parser_t *p, const char *error);
static gi2_modapi_cat_t *gi2_modapi_cat(gi2_modapi_result_t *res,
    const char *name);
static int gi2_modapi_name(char *dst, const unsigned char *s, size_t len);
static unsigned char *gi2_modapi_cpy(unsigned char *p, const char *s);


/* the JSON type of a scalar, for gi2_modapi_value() */
#define GI2_J_NULL     0
#define GI2_J_BOOL     1
#define GI2_J_NUMBER   2
#define GI2_J_STRING   3


static yajl_callbacks  gi2_modapi_callbacks = {
    gi2_modapi_null,
    gi2_modapi_boolean,
    NULL,
    NULL,
    gi2_modapi_number,
    gi2_modapi_string,
    gi2_modapi_start_map,
    gi2_modapi_map_key,
    gi2_modapi_end,
    gi2_modapi_start_array,
    gi2_modapi_end
};


/* the request */

size_t
gi2_json_escape_len(const unsigned char *s, size_t len)
{
    size_t  i, n;

    n = len;

    for (i = 0; i < len; i++) {
        if (s[i] == '"' || s[i] == '\\' || s[i] == '\n' || s[i] == '\r'
            || s[i] == '\t' || s[i] == '\b' || s[i] == '\f')
        {
            n++;

        } else if (s[i] < 0x20 || s[i] == 0x7f) {
            n += 5;
        }
    }

    return n;
}


unsigned char *
gi2_json_escape(unsigned char *dst, const unsigned char *s, size_t len)
{
    size_t                i;
    unsigned char         c;
    static const char     hex[] = "0123456789abcdef";

    for (i = 0; i < len; i++) {
        c = s[i];

        switch (c) {

        case '"':
        case '\\':
            *dst++ = '\\';
            *dst++ = c;
            break;

        case '\n':
            *dst++ = '\\';
            *dst++ = 'n';
            break;

        case '\r':
            *dst++ = '\\';
            *dst++ = 'r';
            break;

        case '\t':
            *dst++ = '\\';
            *dst++ = 't';
            break;

        case '\b':
            *dst++ = '\\';
            *dst++ = 'b';
            break;

        case '\f':
            *dst++ = '\\';
            *dst++ = 'f';
            break;

        default:
            if (c < 0x20 || c == 0x7f) {
                *dst++ = '\\';
                *dst++ = 'u';
                *dst++ = '0';
                *dst++ = '0';
                *dst++ = hex[c >> 4];
                *dst++ = hex[c & 0xf];

            } else {
                *dst++ = c;
            }
        }
    }

    return dst;
}


static unsigned char *
gi2_modapi_cpy(unsigned char *p, const char *s)
{
    size_t  n;

    n = strlen(s);
    memcpy(p, s, n);

    return p + n;
}


/* a JSON string: quoted and escaped */

#define gi2_modapi_str_len(s)                                                \
    (2 + gi2_json_escape_len((s)->data, (s)->len))


size_t
gi2_modapi_request(int format, const gi2_str_t *prompt,
    const gi2_str_t *model, const gi2_str_t *consumer,
    const gi2_modapi_image_t *images, size_t nimages, unsigned char *buf)
{
    size_t          i, n;
    unsigned char  *p;

    if (format == GI2_MODAPI_GENERIC) {
        n = sizeof("{\"prompt\":,\"model\":,\"consumer\":}") - 1
            + gi2_modapi_str_len(prompt) + gi2_modapi_str_len(model)
            + (consumer ? gi2_modapi_str_len(consumer)
                        : sizeof("null") - 1);

        if (buf == NULL) {
            return n;
        }

        p = gi2_modapi_cpy(buf, "{\"prompt\":\"");
        p = gi2_json_escape(p, prompt->data, prompt->len);
        p = gi2_modapi_cpy(p, "\",\"model\":\"");
        p = gi2_json_escape(p, model->data, model->len);
        p = gi2_modapi_cpy(p, "\",\"consumer\":");

        if (consumer) {
            *p++ = '"';
            p = gi2_json_escape(p, consumer->data, consumer->len);
            *p++ = '"';

        } else {
            p = gi2_modapi_cpy(p, "null");
        }

        *p++ = '}';

        return p - buf;
    }

    /* openai: a plain string input, or text and image parts */

    n = sizeof("{\"model\":,\"input\":}") - 1 + gi2_modapi_str_len(model)
        + gi2_modapi_str_len(prompt);

    if (nimages) {
        n += sizeof("[{\"type\":\"text\",\"text\":}]") - 1;

        for (i = 0; i < nimages; i++) {
            n += sizeof(",{\"type\":\"image_url\",\"image_url\":{\"url\":"
                        "\"\"}}") - 1
                 + gi2_json_escape_len(images[i].url.data, images[i].url.len);
        }
    }

    if (buf == NULL) {
        return n;
    }

    p = gi2_modapi_cpy(buf, "{\"model\":\"");
    p = gi2_json_escape(p, model->data, model->len);
    p = gi2_modapi_cpy(p, "\",\"input\":");

    if (nimages) {
        p = gi2_modapi_cpy(p, "[{\"type\":\"text\",\"text\":");
    }

    *p++ = '"';
    p = gi2_json_escape(p, prompt->data, prompt->len);
    *p++ = '"';

    if (nimages) {
        *p++ = '}';

        for (i = 0; i < nimages; i++) {
            p = gi2_modapi_cpy(p, ",{\"type\":\"image_url\",\"image_url\":"
                                  "{\"url\":\"");
            p = gi2_json_escape(p, images[i].url.data, images[i].url.len);
            p = gi2_modapi_cpy(p, "\"}}");
        }

        *p++ = ']';
    }

    *p++ = '}';

    return p - buf;
}


/* the answer */

gi2_modapi_parser_t *
gi2_modapi_parser_create(int format, gi2_modapi_result_t *res,
    gi2_alloc_t *a)
{
    gi2_modapi_parser_t  *p;

    p = a->alloc(a->data, sizeof(gi2_modapi_parser_t));
    if (p == NULL) {
        return NULL;
    }

    memset(p, 0, sizeof(gi2_modapi_parser_t));
    memset(res, 0, sizeof(gi2_modapi_result_t));

    p->res = res;
    p->alloc = a;
    p->format = format;

    p->yajl = yajl_alloc(&gi2_modapi_callbacks, NULL, p);
    if (p->yajl == NULL) {
        if (a->free) {
            a->free(a->data, p);
        }

        return NULL;
    }

    return p;
}


void
gi2_modapi_parser_destroy(gi2_modapi_parser_t *p)
{
    gi2_alloc_t  *a;

    if (p == NULL) {
        return;
    }

    if (p->yajl != NULL) {
        yajl_free(p->yajl);
        p->yajl = NULL;
    }

    a = p->alloc;

    if (a->free) {
        a->free(a->data, p);
    }
}


int
gi2_modapi_parser_feed(gi2_modapi_parser_t *p, const unsigned char *buf,
    size_t len)
{
    if (p->res->error) {
        return GI2_EINVAL;
    }

    if (yajl_parse(p->yajl, buf, len) != yajl_status_ok) {
        if (p->res->error == NULL) {
            p->res->error = "not valid JSON";
        }

        return GI2_EINVAL;
    }

    return GI2_OK;
}


int
gi2_modapi_parser_finish(gi2_modapi_parser_t *p)
{
    gi2_modapi_result_t  *res;

    res = p->res;

    if (res->error) {
        return GI2_EINVAL;
    }

    if (yajl_complete_parse(p->yajl) != yajl_status_ok) {
        if (res->error == NULL) {
            res->error = p->root ? "not valid JSON (cut short?)"
                                 : "an empty answer";
        }

        return GI2_EINVAL;
    }

    if (p->format == GI2_MODAPI_OPENAI && !p->result0) {
        res->error = "no results[0] object";
        return GI2_EINVAL;
    }

    if (!p->flagged) {
        res->error = (p->format == GI2_MODAPI_OPENAI)
                     ? "no boolean results[0].flagged"
                     : "no boolean \"flagged\"";
        return GI2_EINVAL;
    }

    return GI2_OK;
}


static int
gi2_modapi_fail(gi2_modapi_parser_t *p, const char *error)
{
    if (p->res->error == NULL) {
        p->res->error = error;
    }

    return 0;
}


/*
 * Category names go into variables, comma-separated lists and the audit
 * record: they are kept to a plain alphabet, anything else becoming '_'.
 * Returns 0 when the name is too long to keep.
 */

static int
gi2_modapi_name(char *dst, const unsigned char *s, size_t len)
{
    size_t         i;
    unsigned char  c;

    if (len == 0 || len > GI2_MODAPI_NAME_MAX) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        c = s[i];

        dst[i] = ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
                  || (c >= '0' && c <= '9') || c == '_' || c == '-'
                  || c == '.' || c == '/' || c == ':')
                 ? (char) c : '_';
    }

    dst[len] = '\0';

    return 1;
}


static gi2_modapi_cat_t *
gi2_modapi_cat(gi2_modapi_result_t *res, const char *name)
{
    size_t             i;
    gi2_modapi_cat_t  *c;

    for (i = 0; i < res->ncats; i++) {
        if (strcmp(res->cat[i].name, name) == 0) {
            return &res->cat[i];
        }
    }

    if (res->ncats == GI2_MODAPI_CATS_MAX) {
        return NULL;
    }

    c = &res->cat[res->ncats++];
    strcpy(c->name, name);
    c->score = -1;
    c->flagged = 0;

    return c;
}


/* where a value opens a container, what that container is */

static int
gi2_modapi_open(gi2_modapi_parser_t *p, int map)
{
    int  parent, sect, idx;

    if (!p->root) {
        p->root = 1;

        if (!map) {
            return gi2_modapi_fail(p, "the answer is not a JSON object");
        }

        p->sect[0] = GI2_S_ROOT;
        p->depth = 1;
        p->key = GI2_K_OTHER;
        return 1;
    }

    if (p->depth >= GI2_MODAPI_DEPTH_MAX) {
        return gi2_modapi_fail(p, "nested too deep");
    }

    parent = p->sect[p->depth - 1];
    sect = GI2_S_IGNORE;

    switch (parent) {

    case GI2_S_ROOT:
        if (p->format == GI2_MODAPI_OPENAI) {
            if (p->key == GI2_K_RESULTS) {
                if (map) {
                    return gi2_modapi_fail(p, "\"results\" is not an array");
                }

                sect = GI2_S_RESULTS;
            }

            break;
        }

        if (p->key == GI2_K_CATEGORIES) {
            if (map) {
                return gi2_modapi_fail(p, "\"categories\" is not an array");
            }

            sect = GI2_S_CATLIST;

        } else if (p->key == GI2_K_SCORES) {
            if (!map) {
                return gi2_modapi_fail(p, "\"scores\" is not an object");
            }

            sect = GI2_S_SCORES;

        } else if (p->key == GI2_K_FLAGGED) {
            return gi2_modapi_fail(p, "\"flagged\" is not a boolean");
        }

        break;

    case GI2_S_RESULTS:
        idx = p->elem++;

        if (idx == 0) {
            if (!map) {
                return gi2_modapi_fail(p, "results[0] is not an object");
            }

            sect = GI2_S_RESULT0;
            p->result0 = 1;
        }

        break;

    case GI2_S_RESULT0:
        if (p->key == GI2_K_CATEGORIES) {
            if (!map) {
                return gi2_modapi_fail(p, "\"categories\" is not an "
                                          "object");
            }

            sect = GI2_S_CATS;

        } else if (p->key == GI2_K_SCORES) {
            if (!map) {
                return gi2_modapi_fail(p, "\"category_scores\" is not an "
                                          "object");
            }

            sect = GI2_S_SCORES;

        } else if (p->key == GI2_K_FLAGGED) {
            return gi2_modapi_fail(p, "\"flagged\" is not a boolean");
        }

        break;

    default:
        break;
    }

    p->sect[p->depth++] = sect;
    p->key = GI2_K_OTHER;
    p->name_ok = 0;

    return 1;
}


static int
gi2_modapi_value(gi2_modapi_parser_t *p, int type, const unsigned char *s,
    size_t len)
{
    int                sect;
    char               num[64];
    char              *end;
    double             d;
    gi2_modapi_cat_t  *c;

    if (!p->root) {
        p->root = 1;
        return gi2_modapi_fail(p, "the answer is not a JSON object");
    }

    sect = p->sect[p->depth - 1];

    switch (sect) {

    case GI2_S_ROOT:
        if (p->format == GI2_MODAPI_OPENAI) {
            if (p->key == GI2_K_RESULTS) {
                return gi2_modapi_fail(p, "\"results\" is not an array");
            }

            break;
        }

        if (p->key == GI2_K_FLAGGED) {
            if (type != GI2_J_BOOL) {
                return gi2_modapi_fail(p, "\"flagged\" is not a boolean");
            }

            p->res->flagged = (len == 1);
            p->flagged = 1;

        } else if (p->key == GI2_K_CATEGORIES && type != GI2_J_NULL) {
            return gi2_modapi_fail(p, "\"categories\" is not an array");

        } else if (p->key == GI2_K_SCORES && type != GI2_J_NULL) {
            return gi2_modapi_fail(p, "\"scores\" is not an object");
        }

        break;

    case GI2_S_RESULTS:
        if (p->elem++ == 0) {
            return gi2_modapi_fail(p, "results[0] is not an object");
        }

        break;

    case GI2_S_RESULT0:
        if (p->key == GI2_K_FLAGGED) {
            if (type != GI2_J_BOOL) {
                return gi2_modapi_fail(p, "\"flagged\" is not a boolean");
            }

            p->res->flagged = (len == 1);
            p->flagged = 1;
        }

        break;

    case GI2_S_CATS:
        if (type == GI2_J_BOOL && p->name_ok && len == 1) {
            c = gi2_modapi_cat(p->res, p->name);
            if (c) {
                c->flagged = 1;
            }
        }

        break;

    case GI2_S_SCORES:
        if (type != GI2_J_NUMBER || !p->name_ok || len >= sizeof(num)) {
            break;
        }

        memcpy(num, s, len);
        num[len] = '\0';

        d = strtod(num, &end);

        if (*end != '\0' || !isfinite(d) || d < 0) {
            break;
        }

        c = gi2_modapi_cat(p->res, p->name);
        if (c) {
            c->score = d;
            p->scores = 1;
        }

        break;

    case GI2_S_CATLIST:
        if (type == GI2_J_STRING) {
            if (gi2_modapi_name(p->name, s, len)) {
                c = gi2_modapi_cat(p->res, p->name);
                if (c) {
                    c->flagged = 1;
                }
            }
        }

        break;

    default:
        break;
    }

    p->key = GI2_K_OTHER;
    p->name_ok = 0;

    return 1;
}


static int
gi2_modapi_null(void *ctx)
{
    return gi2_modapi_value(ctx, GI2_J_NULL, NULL, 0);
}


static int
gi2_modapi_boolean(void *ctx, int b)
{
    /* the length carries the value */
    return gi2_modapi_value(ctx, GI2_J_BOOL, NULL, b ? 1 : 0);
}


static int
gi2_modapi_number(void *ctx, const char *s, size_t len)
{
    return gi2_modapi_value(ctx, GI2_J_NUMBER, (const unsigned char *) s,
                            len);
}


static int
gi2_modapi_string(void *ctx, const unsigned char *s, size_t len)
{
    return gi2_modapi_value(ctx, GI2_J_STRING, s, len);
}


static int
gi2_modapi_start_map(void *ctx)
{
    return gi2_modapi_open(ctx, 1);
}


static int
gi2_modapi_start_array(void *ctx)
{
    return gi2_modapi_open(ctx, 0);
}


static int
gi2_modapi_end(void *ctx)
{
    gi2_modapi_parser_t *p = ctx;

    p->depth--;
    p->key = GI2_K_OTHER;
    p->name_ok = 0;

    return 1;
}


#define gi2_modapi_is(s, len, lit)                                           \
    ((len) == sizeof(lit) - 1 && memcmp(s, lit, sizeof(lit) - 1) == 0)


static int
gi2_modapi_map_key(void *ctx, const unsigned char *s, size_t len)
{
    gi2_modapi_parser_t *p = ctx;

    int  sect;

    sect = p->sect[p->depth - 1];
    p->key = GI2_K_OTHER;
    p->name_ok = 0;

    switch (sect) {

    case GI2_S_ROOT:
        if (p->format == GI2_MODAPI_OPENAI) {
            if (gi2_modapi_is(s, len, "results")) {
                p->key = GI2_K_RESULTS;
            }

            break;
        }

        if (gi2_modapi_is(s, len, "flagged")) {
            p->key = GI2_K_FLAGGED;

        } else if (gi2_modapi_is(s, len, "categories")) {
            p->key = GI2_K_CATEGORIES;

        } else if (gi2_modapi_is(s, len, "scores")) {
            p->key = GI2_K_SCORES;
        }

        break;

    case GI2_S_RESULT0:
        if (gi2_modapi_is(s, len, "flagged")) {
            p->key = GI2_K_FLAGGED;

        } else if (gi2_modapi_is(s, len, "categories")) {
            p->key = GI2_K_CATEGORIES;

        } else if (gi2_modapi_is(s, len, "category_scores")) {
            p->key = GI2_K_SCORES;
        }

        break;

    case GI2_S_CATS:
    case GI2_S_SCORES:
        p->name_ok = gi2_modapi_name(p->name, s, len);
        break;

    default:
        break;
    }

    return 1;
}


/*
 * The images of an edit: a second, small pass over a body the request
 * parser already accepted.  Only images[i].image_url strings matter.
 */

struct gi2_modapi_images_s {
    yajl_handle            yajl;
    gi2_alloc_t           *alloc;
    size_t                 max;
    size_t                 count;
    size_t                 too_big;
    gi2_str_t              first;
    int                    depth;
    unsigned               key_images:1;  /* depth 1: "images" pending */
    unsigned               in_images:1;   /* depth 2 is images[] */
    unsigned               key_url:1;     /* depth 3: "image_url" pending */
    unsigned               failed:1;
};


static int gi2_modapi_im_value(void *ctx);
static int gi2_modapi_im_number(void *ctx, const char *s, size_t len);
static int gi2_modapi_im_boolean(void *ctx, int b);
static int gi2_modapi_im_string(void *ctx, const unsigned char *s,
    size_t len);
static int gi2_modapi_im_start_map(void *ctx);
static int gi2_modapi_im_start_array(void *ctx);
static int gi2_modapi_im_key(void *ctx, const unsigned char *s, size_t len);
static int gi2_modapi_im_end(void *ctx);


static yajl_callbacks  gi2_modapi_im_callbacks = {
    gi2_modapi_im_value,
    gi2_modapi_im_boolean,
    NULL,
    NULL,
    gi2_modapi_im_number,
    gi2_modapi_im_string,
    gi2_modapi_im_start_map,
    gi2_modapi_im_key,
    gi2_modapi_im_end,
    gi2_modapi_im_start_array,
    gi2_modapi_im_end
};


gi2_modapi_images_t *
gi2_modapi_images_create(size_t max, gi2_alloc_t *a)
{
    gi2_modapi_images_t  *im;

    im = a->alloc(a->data, sizeof(gi2_modapi_images_t));
    if (im == NULL) {
        return NULL;
    }

    memset(im, 0, sizeof(gi2_modapi_images_t));
    im->alloc = a;
    im->max = max;

    im->yajl = yajl_alloc(&gi2_modapi_im_callbacks, NULL, im);
    if (im->yajl == NULL) {
        if (a->free) {
            a->free(a->data, im);
        }

        return NULL;
    }

    return im;
}


int
gi2_modapi_images_feed(gi2_modapi_images_t *im, const unsigned char *buf,
    size_t len)
{
    if (im->failed) {
        return GI2_EINVAL;
    }

    if (yajl_parse(im->yajl, buf, len) != yajl_status_ok) {
        im->failed = 1;
        return GI2_EINVAL;
    }

    return GI2_OK;
}


void
gi2_modapi_images_result(gi2_modapi_images_t *im, gi2_str_t *first,
    size_t *count, size_t *too_big)
{
    *first = im->first;
    *count = im->count;
    *too_big = im->too_big;
}


void
gi2_modapi_images_destroy(gi2_modapi_images_t *im)
{
    if (im == NULL) {
        return;
    }

    if (im->yajl) {
        yajl_free(im->yajl);
        im->yajl = NULL;
    }

    if (im->alloc->free) {
        if (im->first.data) {
            im->alloc->free(im->alloc->data, (void *) im->first.data);
        }

        im->alloc->free(im->alloc->data, im);
    }
}


static int
gi2_modapi_im_value(void *ctx)
{
    gi2_modapi_images_t *im = ctx;

    im->key_images = 0;
    im->key_url = 0;

    return 1;
}


static int
gi2_modapi_im_number(void *ctx, const char *s, size_t len)
{
    (void) s;
    (void) len;

    return gi2_modapi_im_value(ctx);
}


static int
gi2_modapi_im_boolean(void *ctx, int b)
{
    (void) b;

    return gi2_modapi_im_value(ctx);
}


static int
gi2_modapi_im_string(void *ctx, const unsigned char *s, size_t len)
{
    gi2_modapi_images_t *im = ctx;

    unsigned char  *copy;

    if (im->key_url && im->depth == 3 && im->in_images) {
        im->count++;

        if (len > im->max) {
            im->too_big++;

        } else if (im->first.data == NULL && len) {
            copy = im->alloc->alloc(im->alloc->data, len);
            if (copy == NULL) {
                im->failed = 1;
                return 0;
            }

            memcpy(copy, s, len);
            im->first.data = copy;
            im->first.len = len;
        }
    }

    return gi2_modapi_im_value(ctx);
}


static int
gi2_modapi_im_start_map(void *ctx)
{
    gi2_modapi_images_t *im = ctx;

    im->depth++;
    im->key_images = 0;
    im->key_url = 0;

    return 1;
}


static int
gi2_modapi_im_start_array(void *ctx)
{
    gi2_modapi_images_t *im = ctx;

    if (im->depth == 1 && im->key_images) {
        im->in_images = 1;
    }

    im->depth++;
    im->key_images = 0;
    im->key_url = 0;

    return 1;
}


static int
gi2_modapi_im_key(void *ctx, const unsigned char *s, size_t len)
{
    gi2_modapi_images_t *im = ctx;

    im->key_images = (im->depth == 1 && len == 6
                      && memcmp(s, "images", 6) == 0);
    im->key_url = (im->depth == 3 && im->in_images && len == 9
                   && memcmp(s, "image_url", 9) == 0);

    return 1;
}


static int
gi2_modapi_im_end(void *ctx)
{
    gi2_modapi_images_t *im = ctx;

    im->depth--;

    if (im->depth == 1) {
        im->in_images = 0;
    }

    im->key_images = 0;
    im->key_url = 0;

    return 1;
}


/* the verdict */

int
gi2_modapi_verdict(const gi2_modapi_result_t *res,
    const gi2_modapi_threshold_t *th, size_t nth, char *out, size_t outlen)
{
    int                      flagged;
    size_t                   i, j, n, len;
    const char              *name;
    const gi2_modapi_cat_t  *c;

    flagged = 0;
    len = 0;

    if (outlen) {
        out[0] = '\0';
    }

    if (nth == 0 && !res->flagged) {
        return 0;
    }

    n = nth ? nth : res->ncats;

    for (i = 0; i < n; i++) {

        if (nth) {
            c = NULL;

            for (j = 0; j < res->ncats; j++) {
                if (strcmp(res->cat[j].name, th[i].name) == 0) {
                    c = &res->cat[j];
                    break;
                }
            }

            if (c == NULL || c->score < 0 || c->score < th[i].score) {
                continue;
            }

            name = th[i].name;

        } else {
            if (!res->cat[i].flagged) {
                continue;
            }

            name = res->cat[i].name;
        }

        flagged = 1;

        /* the list, as much of it as fits */

        j = strlen(name);

        if (outlen && len + (len ? 1 : 0) + j < outlen) {
            if (len) {
                out[len++] = ',';
            }

            memcpy(out + len, name, j);
            len += j;
            out[len] = '\0';
        }
    }

    return nth ? flagged : 1;
}


/*
 * The cache's form: flagged, count, then a category each: flags (1 its
 * flag, 2 a score follows), the name's length, the name, the score's
 * eight bytes as this machine keeps a double.
 */

size_t
gi2_modapi_pack(const gi2_modapi_result_t *res, unsigned char *buf,
    size_t len)
{
    size_t                   i, n;
    unsigned char           *p;
    const gi2_modapi_cat_t  *c;

    if (len < 2) {
        return 0;
    }

    p = buf;
    *p++ = res->flagged ? 1 : 0;
    *p++ = (unsigned char) res->ncats;

    for (i = 0; i < res->ncats; i++) {
        c = &res->cat[i];
        n = strlen(c->name);

        if ((size_t) (buf + len - p) < 2 + n + (c->score >= 0 ? 8 : 0)) {
            return 0;
        }

        *p++ = (c->flagged ? 1 : 0) | (c->score >= 0 ? 2 : 0);
        *p++ = (unsigned char) n;
        memcpy(p, c->name, n);
        p += n;

        if (c->score >= 0) {
            memcpy(p, &c->score, 8);
            p += 8;
        }
    }

    return p - buf;
}


int
gi2_modapi_unpack(const unsigned char *buf, size_t len,
    gi2_modapi_result_t *res)
{
    size_t                i, n, ncats;
    unsigned              flags;
    const unsigned char  *p, *end;
    gi2_modapi_cat_t     *c;

    memset(res, 0, sizeof(gi2_modapi_result_t));

    if (len < 2 || buf[1] > GI2_MODAPI_CATS_MAX) {
        return GI2_EINVAL;
    }

    p = buf;
    end = buf + len;

    res->flagged = *p++;
    ncats = *p++;

    for (i = 0; i < ncats; i++) {
        if (end - p < 2) {
            return GI2_EINVAL;
        }

        flags = *p++;
        n = *p++;

        if (n == 0 || n > GI2_MODAPI_NAME_MAX
            || (size_t) (end - p) < n + ((flags & 2) ? 8 : 0))
        {
            return GI2_EINVAL;
        }

        c = &res->cat[i];
        memcpy(c->name, p, n);
        c->name[n] = '\0';
        p += n;

        c->flagged = (flags & 1) ? 1 : 0;
        c->score = -1;

        if (flags & 2) {
            memcpy(&c->score, p, 8);
            p += 8;
        }
    }

    res->ncats = ncats;

    return (p == end) ? GI2_OK : GI2_EINVAL;
}
