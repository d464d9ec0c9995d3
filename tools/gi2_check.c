/*
 * gi2-check: the prompt rules of an nginx configuration, applied outside
 * nginx by the module's own normalizer, request parser and matcher, so
 * that a decision here is the module's decision.
 *
 * The configuration is read as nginx reads it: the same tokenizer (quotes,
 * escapes, comments), "include" with globs, relative names resolved
 * against the directory of the main configuration file (nginx's conf
 * prefix, used by ngx_conf_full_name() for includes and gi2_keywords
 * files alike), gi2_rule and gi2_keywords checked as the module checks
 * them, and inherited level by level as the module inherits them.
 *
 * Prompts come as arguments, as lines of a file, or as JSON lines of
 * request bodies (parsed by gi2_req, so the prompt is the one the module
 * would see; the moderation policy and the user field check apply too).
 * Each one gets a line: its decision, the rules that matched, their
 * categories.  Exit status: 0 when nothing was rejected, 1 when some
 * prompt was, 2 on errors.
 */

#include <errno.h>
#include <glob.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gi2_core.h"


#define GI2C_TOKEN_MAX       4096      /* nginx's NGX_CONF_BUFFER */
#define GI2C_INCLUDE_DEPTH   64
#define GI2C_KEYWORDS_MAX    (64 * 1024 * 1024)
#define GI2C_ERRLEN          512
#define GI2C_ID_MAX          128
#define GI2C_BLOCK           65536

#define GI2C_EXIT_OK         0
#define GI2C_EXIT_REJECTED   1
#define GI2C_EXIT_ERROR      2

#define GI2C_MAIN            0
#define GI2C_HTTP            1
#define GI2C_SERVER          2
#define GI2C_LOCATION        3
#define GI2C_OTHER           4

#define GI2C_TOK_ERROR      -1
#define GI2C_TOK_DIRECTIVE   0
#define GI2C_TOK_BLOCK       1
#define GI2C_TOK_BLOCK_END   2
#define GI2C_TOK_EOF         3

#define GI2C_UNSET          -1
#define GI2C_LOW_REJECT      0
#define GI2C_LOW_REWRITE     1
#define GI2C_LOW_ALLOW       2
#define GI2C_USER_KEEP       0
#define GI2C_USER_HASH       1
#define GI2C_USER_DROP       2

#define GI2C_ALLOW           0
#define GI2C_FLAG            1
#define GI2C_REWRITE         2
#define GI2C_REJECT          3


typedef struct gi2c_block_s  gi2c_block_t;

struct gi2c_block_s {
    gi2c_block_t          *next;
    size_t                 size;
    size_t                 used;
};


/* memory that lives until a reset: the configuration, or one prompt */

typedef struct {
    gi2c_block_t          *head;
} gi2c_arena_t;


typedef struct gi2c_ctx_s  gi2c_ctx_t;

struct gi2c_ctx_s {
    int                    type;
    gi2c_ctx_t            *parent;
    char                  *name;         /* location arguments */
    char                  *servers;      /* server_name values */
    const char            *file;
    unsigned               line;
    int                    rules;        /* has gi2_rule of its own */
    int                    keywords;     /* has gi2_keywords */
    int                    low;          /* gi2_moderation_low */
    int                    user;         /* gi2_user_field */
    gi2c_ctx_t            *next;         /* in the order of the file */
};


typedef struct {
    gi2c_ctx_t            *ctx;
    int                    keywords;
    int                    action;
    char                  *id;
    char                  *category;
    unsigned char         *pattern;      /* regex, or the list's file */
    size_t                 len;
    unsigned char         *list;         /* the keyword file's bytes */
    size_t                 list_len;
    const char            *file;
    unsigned               line;
} gi2c_decl_t;


typedef struct {
    const char            *file;
    unsigned char         *buf;
    size_t                 len;
    size_t                 pos;
    unsigned               line;
} gi2c_src_t;


typedef struct {
    gi2c_arena_t           mem;
    char                  *prefix;       /* ends with '/' */
    gi2c_ctx_t            *ctxs;
    gi2c_ctx_t            *last;
    gi2c_decl_t           *decls;
    size_t                 ndecls;
    size_t                 cap;
    char                 **args;
    size_t                 nargs;
    size_t                 args_cap;
    int                    depth;
} gi2c_conf_t;


typedef struct {
    gi2_ruleset_t         *rs;
    unsigned              *hits;
    int                    low;
    int                    user;
    gi2c_arena_t           mem;          /* per prompt */
    gi2_alloc_t            alloc;
    int                    json;
    int                    quiet;
    unsigned long          count[4];
    unsigned long          prompts;
} gi2c_run_t;


typedef struct {
    int                    decision;
    const char            *code;
    const char            *error;
    int                    nhits;
} gi2c_result_t;


static void *gi2c_alloc(gi2c_arena_t *a, size_t size);
static void *gi2c_arena_alloc(void *data, size_t size);
static void gi2c_reset(gi2c_arena_t *a);
static void gi2c_free(gi2c_arena_t *a);
static char *gi2c_strndup(gi2c_arena_t *a, const void *s, size_t len);
static void gi2c_error(const char *file, unsigned line, const char *fmt,
    ...);
static int gi2c_read_file(gi2c_arena_t *a, const char *path, size_t max,
    unsigned char **buf, size_t *len);
static char *gi2c_full_name(gi2c_conf_t *cf, const char *name);
static int gi2c_parse_file(gi2c_conf_t *cf, const char *path,
    gi2c_ctx_t *ctx, gi2c_src_t *from);
static int gi2c_parse(gi2c_conf_t *cf, gi2c_src_t *s, gi2c_ctx_t *ctx,
    int block);
static int gi2c_token(gi2c_conf_t *cf, gi2c_src_t *s);
static int gi2c_push_arg(gi2c_conf_t *cf, gi2c_src_t *s, size_t start,
    size_t end);
static gi2c_ctx_t *gi2c_block(gi2c_conf_t *cf, gi2c_src_t *s,
    gi2c_ctx_t *parent);
static int gi2c_directive(gi2c_conf_t *cf, gi2c_src_t *s, gi2c_ctx_t *ctx);
static int gi2c_include(gi2c_conf_t *cf, gi2c_src_t *s, gi2c_ctx_t *ctx);
static int gi2c_rule(gi2c_conf_t *cf, gi2c_src_t *s, gi2c_ctx_t *ctx,
    int keywords);
static int gi2c_keyword_file(gi2c_conf_t *cf, gi2c_src_t *s,
    gi2c_decl_t *d);
static int gi2c_enum(gi2c_conf_t *cf, gi2c_src_t *s, int *value,
    const char **names);
static int gi2c_token_valid(const char *s);
static gi2c_ctx_t *gi2c_select(gi2c_conf_t *cf, const char *server,
    const char *location);
static int gi2c_has_server(gi2c_ctx_t *ctx, const char *name);
static void gi2c_list(gi2c_conf_t *cf);
static gi2c_ctx_t *gi2c_owner(gi2c_ctx_t *ctx, int keywords);
static gi2_ruleset_t *gi2c_build(gi2c_conf_t *cf, gi2c_ctx_t *ctx);
static void gi2c_prompt(gi2c_run_t *run, const unsigned char *p,
    size_t len, gi2_req_t *req, gi2c_result_t *res);
static int gi2c_body(gi2c_run_t *run, const unsigned char *p, size_t len,
    gi2c_result_t *res);
static int gi2c_lines(gi2c_run_t *run, const char *path, int json);
static void gi2c_print(gi2c_run_t *run, unsigned long n,
    gi2c_result_t *res);
static void gi2c_json_str(const char *s);
static void gi2c_usage(FILE *f);


static const char  *gi2c_decisions[] = {
    "allow", "flag", "rewrite", "reject"
};

static const char  *gi2c_low_names[] = { "reject", "rewrite", "allow", NULL };
static const char  *gi2c_user_names[] = { "keep", "hash", "drop", NULL };


/* memory */

static void *
gi2c_alloc(gi2c_arena_t *a, size_t size)
{
    size_t         n;
    unsigned char *p;
    gi2c_block_t  *b;

    size = (size + 15) & ~(size_t) 15;
    b = a->head;

    if (b == NULL || b->size - b->used < size) {
        n = size > GI2C_BLOCK ? size : GI2C_BLOCK;

        b = malloc(sizeof(gi2c_block_t) + 16 + n);
        if (b == NULL) {
            return NULL;
        }

        b->size = n;
        b->used = 0;
        b->next = a->head;
        a->head = b;
    }

    p = (unsigned char *) b + ((sizeof(gi2c_block_t) + 15) & ~(size_t) 15);
    p += b->used;
    b->used += size;

    return p;
}


static void *
gi2c_arena_alloc(void *data, size_t size)
{
    return gi2c_alloc(data, size);
}


/* keeps the newest block, which is the largest one needed so far */

static void
gi2c_reset(gi2c_arena_t *a)
{
    gi2c_block_t  *b, *next;

    if (a->head == NULL) {
        return;
    }

    for (b = a->head->next; b; b = next) {
        next = b->next;
        free(b);
    }

    a->head->next = NULL;
    a->head->used = 0;
}


static void
gi2c_free(gi2c_arena_t *a)
{
    gi2c_block_t  *b, *next;

    for (b = a->head; b; b = next) {
        next = b->next;
        free(b);
    }

    a->head = NULL;
}


static char *
gi2c_strndup(gi2c_arena_t *a, const void *s, size_t len)
{
    char  *p;

    p = gi2c_alloc(a, len + 1);
    if (p == NULL) {
        return NULL;
    }

    memcpy(p, s, len);
    p[len] = '\0';

    return p;
}


static void
gi2c_error(const char *file, unsigned line, const char *fmt, ...)
{
    va_list  ap;

    fputs("gi2-check: ", stderr);

    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);

    if (file != NULL) {
        fprintf(stderr, " in %s:%u", file, line);
    }

    fputc('\n', stderr);
}


static int
gi2c_read_file(gi2c_arena_t *a, const char *path, size_t max,
    unsigned char **buf, size_t *len)
{
    FILE         *f;
    size_t        n;
    struct stat   st;

    f = fopen(path, "rb");
    if (f == NULL) {
        return -1;
    }

    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        errno = EISDIR;
        return -1;
    }

    if ((size_t) st.st_size > max) {
        fclose(f);
        errno = EFBIG;
        return -1;
    }

    *buf = gi2c_alloc(a, (size_t) st.st_size + 1);
    if (*buf == NULL) {
        fclose(f);
        errno = ENOMEM;
        return -1;
    }

    n = fread(*buf, 1, (size_t) st.st_size, f);

    if (n != (size_t) st.st_size || ferror(f)) {
        fclose(f);
        errno = EIO;
        return -1;
    }

    fclose(f);

    (*buf)[n] = '\0';
    *len = n;

    return 0;
}


/* as ngx_conf_full_name(cycle, name, 1): relative to the conf prefix */

static char *
gi2c_full_name(gi2c_conf_t *cf, const char *name)
{
    char    *p;
    size_t   plen, nlen;

    if (name[0] == '/') {
        return gi2c_strndup(&cf->mem, name, strlen(name));
    }

    plen = strlen(cf->prefix);
    nlen = strlen(name);

    p = gi2c_alloc(&cf->mem, plen + nlen + 1);
    if (p == NULL) {
        return NULL;
    }

    memcpy(p, cf->prefix, plen);
    memcpy(p + plen, name, nlen + 1);

    return p;
}


/* the configuration */

/* from: the include that names the file, NULL for the main file */

static int
gi2c_parse_file(gi2c_conf_t *cf, const char *path, gi2c_ctx_t *ctx,
    gi2c_src_t *from)
{
    gi2c_src_t  s;

    if (cf->depth >= GI2C_INCLUDE_DEPTH) {
        gi2c_error(from->file, from->line, "includes nested deeper than %d",
                   GI2C_INCLUDE_DEPTH);
        return -1;
    }

    memset(&s, 0, sizeof(gi2c_src_t));
    s.file = path;
    s.line = 1;

    if (gi2c_read_file(&cf->mem, path, (size_t) -1 / 2, &s.buf, &s.len)
        != 0)
    {
        gi2c_error(from ? from->file : NULL, from ? from->line : 0,
                   "cannot read \"%s\": %s", path, strerror(errno));
        return -1;
    }

    cf->depth++;

    if (gi2c_parse(cf, &s, ctx, 0) != 0) {
        return -1;
    }

    cf->depth--;

    return 0;
}


static int
gi2c_parse(gi2c_conf_t *cf, gi2c_src_t *s, gi2c_ctx_t *ctx, int block)
{
    int          rc;
    gi2c_ctx_t  *child;

    for ( ;; ) {
        rc = gi2c_token(cf, s);

        switch (rc) {

        case GI2C_TOK_ERROR:
            return -1;

        case GI2C_TOK_EOF:
            if (block) {
                gi2c_error(s->file, s->line, "unexpected end of file, "
                           "expecting \"}\"");
                return -1;
            }

            return 0;

        case GI2C_TOK_BLOCK_END:
            if (!block) {
                gi2c_error(s->file, s->line, "unexpected \"}\"");
                return -1;
            }

            return 0;

        case GI2C_TOK_BLOCK:
            child = gi2c_block(cf, s, ctx);
            if (child == NULL) {
                return -1;
            }

            if (gi2c_parse(cf, s, child, 1) != 0) {
                return -1;
            }

            break;

        default: /* GI2C_TOK_DIRECTIVE */
            if (gi2c_directive(cf, s, ctx) != 0) {
                return -1;
            }
        }
    }
}


/*
 * One directive's words, as ngx_conf_read_token() reads them: the same
 * states, quotes, escapes, comments and "unexpected" errors.
 */

static int
gi2c_token(gi2c_conf_t *cf, gi2c_src_t *s)
{
    int            found, need_space, last_space, sharp_comment, variable;
    int            quoted, s_quoted, d_quoted;
    size_t         start;
    unsigned char  ch;

    found = 0;
    need_space = 0;
    last_space = 1;
    sharp_comment = 0;
    variable = 0;
    quoted = 0;
    s_quoted = 0;
    d_quoted = 0;

    cf->nargs = 0;
    start = s->pos;

    for ( ;; ) {

        if (s->pos >= s->len) {
            if (cf->nargs > 0 || !last_space) {
                gi2c_error(s->file, s->line, "unexpected end of file, "
                           "expecting \";\" or \"}\"");
                return GI2C_TOK_ERROR;
            }

            return GI2C_TOK_EOF;
        }

        if (!last_space && s->pos - start >= GI2C_TOKEN_MAX) {
            gi2c_error(s->file, s->line, "too long parameter \"%.10s...\" "
                       "started", s->buf + start);
            return GI2C_TOK_ERROR;
        }

        ch = s->buf[s->pos++];

        if (ch == '\n') {
            s->line++;

            if (sharp_comment) {
                sharp_comment = 0;
            }
        }

        if (sharp_comment) {
            continue;
        }

        if (quoted) {
            quoted = 0;
            continue;
        }

        if (need_space) {
            if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n') {
                last_space = 1;
                need_space = 0;
                continue;
            }

            if (ch == ';') {
                return GI2C_TOK_DIRECTIVE;
            }

            if (ch == '{') {
                return GI2C_TOK_BLOCK;
            }

            if (ch == ')') {
                last_space = 1;
                need_space = 0;

            } else {
                gi2c_error(s->file, s->line, "unexpected \"%c\"", ch);
                return GI2C_TOK_ERROR;
            }
        }

        if (last_space) {

            start = s->pos - 1;

            if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n') {
                continue;
            }

            switch (ch) {

            case ';':
            case '{':
                if (cf->nargs == 0) {
                    gi2c_error(s->file, s->line, "unexpected \"%c\"", ch);
                    return GI2C_TOK_ERROR;
                }

                return (ch == '{') ? GI2C_TOK_BLOCK : GI2C_TOK_DIRECTIVE;

            case '}':
                if (cf->nargs != 0) {
                    gi2c_error(s->file, s->line, "unexpected \"}\"");
                    return GI2C_TOK_ERROR;
                }

                return GI2C_TOK_BLOCK_END;

            case '#':
                sharp_comment = 1;
                continue;

            case '\\':
                quoted = 1;
                last_space = 0;
                continue;

            case '"':
                start++;
                d_quoted = 1;
                last_space = 0;
                continue;

            case '\'':
                start++;
                s_quoted = 1;
                last_space = 0;
                continue;

            case '$':
                variable = 1;
                last_space = 0;
                continue;

            default:
                last_space = 0;
            }

        } else {
            if (ch == '{' && variable) {
                continue;
            }

            variable = 0;

            if (ch == '\\') {
                quoted = 1;
                continue;
            }

            if (ch == '$') {
                variable = 1;
                continue;
            }

            if (d_quoted) {
                if (ch == '"') {
                    d_quoted = 0;
                    need_space = 1;
                    found = 1;
                }

            } else if (s_quoted) {
                if (ch == '\'') {
                    s_quoted = 0;
                    need_space = 1;
                    found = 1;
                }

            } else if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n'
                       || ch == ';' || ch == '{')
            {
                last_space = 1;
                found = 1;
            }

            if (found) {
                if (gi2c_push_arg(cf, s, start, s->pos - 1) != 0) {
                    return GI2C_TOK_ERROR;
                }

                if (ch == ';') {
                    return GI2C_TOK_DIRECTIVE;
                }

                if (ch == '{') {
                    return GI2C_TOK_BLOCK;
                }

                found = 0;
            }
        }
    }
}


/* a word, its escapes undone as nginx undoes them */

static int
gi2c_push_arg(gi2c_conf_t *cf, gi2c_src_t *s, size_t start, size_t end)
{
    char           *dst, *word, **args;
    size_t          cap;
    unsigned char  *src, *last;

    if (cf->nargs == cf->args_cap) {
        cap = cf->args_cap ? cf->args_cap * 2 : 16;

        args = realloc(cf->args, cap * sizeof(char *));
        if (args == NULL) {
            gi2c_error(NULL, 0, "out of memory");
            return -1;
        }

        cf->args = args;
        cf->args_cap = cap;
    }

    word = gi2c_alloc(&cf->mem, end - start + 1);
    if (word == NULL) {
        gi2c_error(NULL, 0, "out of memory");
        return -1;
    }

    dst = word;
    src = s->buf + start;
    last = s->buf + end;

    while (src < last) {
        if (*src == '\\' && src + 1 <= last) {
            switch (src[1]) {

            case '"':
            case '\'':
            case '\\':
                src++;
                break;

            case 't':
                *dst++ = '\t';
                src += 2;
                continue;

            case 'r':
                *dst++ = '\r';
                src += 2;
                continue;

            case 'n':
                *dst++ = '\n';
                src += 2;
                continue;
            }
        }

        *dst++ = (char) *src++;
    }

    *dst = '\0';
    cf->args[cf->nargs++] = word;

    return 0;
}


/*
 * A block: http at the top, server in http, location in a server or a
 * location; anything else (events, upstream, map, if, stream ...) is a
 * context whose contents gi2 rules are not read from: nginx -t refuses
 * them where they are directives, map and types take them as entries.
 */

static gi2c_ctx_t *
gi2c_block(gi2c_conf_t *cf, gi2c_src_t *s, gi2c_ctx_t *parent)
{
    int          type;
    char        *p;
    size_t       i, len;
    gi2c_ctx_t  *ctx;

    type = GI2C_OTHER;

    if (strcmp(cf->args[0], "http") == 0 && parent->type == GI2C_MAIN) {
        type = GI2C_HTTP;

    } else if (strcmp(cf->args[0], "server") == 0
               && parent->type == GI2C_HTTP)
    {
        type = GI2C_SERVER;

    } else if (strcmp(cf->args[0], "location") == 0
               && (parent->type == GI2C_SERVER
                   || parent->type == GI2C_LOCATION))
    {
        type = GI2C_LOCATION;
    }

    ctx = gi2c_alloc(&cf->mem, sizeof(gi2c_ctx_t));
    if (ctx == NULL) {
        gi2c_error(NULL, 0, "out of memory");
        return NULL;
    }

    memset(ctx, 0, sizeof(gi2c_ctx_t));
    ctx->type = type;
    ctx->parent = parent;
    ctx->file = s->file;
    ctx->line = s->line;
    ctx->low = GI2C_UNSET;
    ctx->user = GI2C_UNSET;
    ctx->servers = "";

    /* a location's name: its arguments as written, one space apart */

    len = 0;

    for (i = 1; i < cf->nargs; i++) {
        len += strlen(cf->args[i]) + 1;
    }

    ctx->name = gi2c_alloc(&cf->mem, len + 1);
    if (ctx->name == NULL) {
        gi2c_error(NULL, 0, "out of memory");
        return NULL;
    }

    p = ctx->name;

    for (i = 1; i < cf->nargs; i++) {
        if (i > 1) {
            *p++ = ' ';
        }

        len = strlen(cf->args[i]);
        memcpy(p, cf->args[i], len);
        p += len;
    }

    *p = '\0';

    if (cf->last) {
        cf->last->next = ctx;

    } else {
        cf->ctxs = ctx;
    }

    cf->last = ctx;

    return ctx;
}


static int
gi2c_directive(gi2c_conf_t *cf, gi2c_src_t *s, gi2c_ctx_t *ctx)
{
    char    *p;
    size_t   i, len, old;
    int      gi2, http;

    if (strcmp(cf->args[0], "include") == 0) {
        return gi2c_include(cf, s, ctx);
    }

    http = (ctx->type == GI2C_HTTP || ctx->type == GI2C_SERVER
            || ctx->type == GI2C_LOCATION);

    if (strcmp(cf->args[0], "server_name") == 0
        && ctx->type == GI2C_SERVER)
    {
        len = 0;

        for (i = 1; i < cf->nargs; i++) {
            len += strlen(cf->args[i]) + 1;
        }

        old = strlen(ctx->servers);

        p = gi2c_alloc(&cf->mem, old + len + 1);
        if (p == NULL) {
            gi2c_error(NULL, 0, "out of memory");
            return -1;
        }

        memcpy(p, ctx->servers, old);
        ctx->servers = p;
        p += old;

        for (i = 1; i < cf->nargs; i++) {
            if (p > ctx->servers) {
                *p++ = ' ';
            }

            len = strlen(cf->args[i]);
            memcpy(p, cf->args[i], len);
            p += len;
        }

        *p = '\0';

        return 0;
    }

    gi2 = (strcmp(cf->args[0], "gi2_rule") == 0
           || strcmp(cf->args[0], "gi2_keywords") == 0
           || strcmp(cf->args[0], "gi2_moderation_low") == 0
           || strcmp(cf->args[0], "gi2_user_field") == 0);

    /* blocks such as map and types hold entries, not directives */

    if (!gi2 || ctx->type == GI2C_OTHER) {
        return 0;
    }

    if (!http) {
        gi2c_error(s->file, s->line, "\"%s\" directive is not allowed here",
                   cf->args[0]);
        return -1;
    }

    if (strcmp(cf->args[0], "gi2_rule") == 0) {
        return gi2c_rule(cf, s, ctx, 0);
    }

    if (strcmp(cf->args[0], "gi2_keywords") == 0) {
        return gi2c_rule(cf, s, ctx, 1);
    }

    if (strcmp(cf->args[0], "gi2_moderation_low") == 0) {
        return gi2c_enum(cf, s, &ctx->low, gi2c_low_names);
    }

    return gi2c_enum(cf, s, &ctx->user, gi2c_user_names);
}


/* include FILE|GLOB: relative to the conf prefix, matches in order */

static int
gi2c_include(gi2c_conf_t *cf, gi2c_src_t *s, gi2c_ctx_t *ctx)
{
    int      rc;
    char    *name;
    size_t   i;
    glob_t   gl;

    if (cf->nargs != 2) {
        gi2c_error(s->file, s->line, "invalid number of arguments in "
                   "\"include\" directive");
        return -1;
    }

    name = gi2c_full_name(cf, cf->args[1]);
    if (name == NULL) {
        gi2c_error(NULL, 0, "out of memory");
        return -1;
    }

    if (strpbrk(name, "*?[") == NULL) {
        return gi2c_parse_file(cf, name, ctx, s);
    }

    memset(&gl, 0, sizeof(glob_t));

    rc = glob(name, 0, NULL, &gl);

    if (rc == GLOB_NOMATCH) {
        return 0;
    }

    if (rc != 0) {
        gi2c_error(s->file, s->line, "glob() \"%s\" failed", name);
        return -1;
    }

    rc = 0;

    for (i = 0; i < gl.gl_pathc; i++) {
        if (gi2c_parse_file(cf, gl.gl_pathv[i], ctx, s) != 0) {
            rc = -1;
            break;
        }
    }

    globfree(&gl);

    return rc;
}


/* gi2_rule ID ACTION CATEGORY REGEX, gi2_keywords ID ACTION CATEGORY FILE */

static int
gi2c_rule(gi2c_conf_t *cf, gi2c_src_t *s, gi2c_ctx_t *ctx, int keywords)
{
    int           action;
    char          err[GI2C_ERRLEN];
    size_t        i, cap;
    gi2c_decl_t  *d, *decls;

    if (cf->nargs != 5) {
        gi2c_error(s->file, s->line, "invalid number of arguments in "
                   "\"%s\" directive", cf->args[0]);
        return -1;
    }

    if (!gi2c_token_valid(cf->args[1])) {
        gi2c_error(s->file, s->line, "invalid rule id \"%s\": use 1 to 128 "
                   "of A-Z a-z 0-9 _ - . : /", cf->args[1]);
        return -1;
    }

    if (strcmp(cf->args[2], "deny") == 0) {
        action = GI2_ACTION_DENY;

    } else if (strcmp(cf->args[2], "flag") == 0) {
        action = GI2_ACTION_FLAG;

    } else {
        gi2c_error(s->file, s->line, "invalid action \"%s\" in rule \"%s\": "
                   "use \"deny\" or \"flag\"", cf->args[2], cf->args[1]);
        return -1;
    }

    if (!gi2c_token_valid(cf->args[3])) {
        gi2c_error(s->file, s->line, "invalid category \"%s\" in rule "
                   "\"%s\": use 1 to 128 of A-Z a-z 0-9 _ - . : /",
                   cf->args[3], cf->args[1]);
        return -1;
    }

    /* ids are unique across the whole configuration */

    for (i = 0; i < cf->ndecls; i++) {
        if (strcmp(cf->decls[i].id, cf->args[1]) == 0) {
            gi2c_error(s->file, s->line, "gi2: duplicate rule id \"%s\"",
                       cf->args[1]);
            return -1;
        }
    }

    if (cf->ndecls == cf->cap) {
        cap = cf->cap ? cf->cap * 2 : 16;

        decls = realloc(cf->decls, cap * sizeof(gi2c_decl_t));
        if (decls == NULL) {
            gi2c_error(NULL, 0, "out of memory");
            return -1;
        }

        cf->decls = decls;
        cf->cap = cap;
    }

    d = &cf->decls[cf->ndecls];
    memset(d, 0, sizeof(gi2c_decl_t));

    d->ctx = ctx;
    d->keywords = keywords;
    d->action = action;
    d->id = cf->args[1];
    d->category = cf->args[3];
    d->pattern = (unsigned char *) cf->args[4];
    d->len = strlen(cf->args[4]);
    d->file = s->file;
    d->line = s->line;

    if (keywords) {
        if (gi2c_keyword_file(cf, s, d) != 0) {
            return -1;
        }

        ctx->keywords = 1;
        cf->ndecls++;
        return 0;
    }

    if (d->len == 0) {
        gi2c_error(s->file, s->line, "empty pattern in gi2_rule \"%s\"",
                   d->id);
        return -1;
    }

    if (gi2_regex_check(d->pattern, d->len, err, sizeof(err)) != GI2_OK) {
        gi2c_error(s->file, s->line, "gi2_rule \"%s\": bad pattern: %s",
                   d->id, err);
        return -1;
    }

    if (gi2_pattern_folds(d->pattern, d->len)) {
        fprintf(stderr, "gi2-check: warning: gi2_rule \"%s\": the pattern "
                "has characters that normalization rewrites; prompts are "
                "matched normalized, so write it normalized in %s:%u\n",
                d->id, s->file, s->line);
    }

    ctx->rules = 1;
    cf->ndecls++;

    return 0;
}


/* the list, read and checked line by line as the module does */

static int
gi2c_keyword_file(gi2c_conf_t *cf, gi2c_src_t *s, gi2c_decl_t *d)
{
    int             rc;
    char           *name;
    size_t          n, len, nkw;
    unsigned        line;
    gi2_str_t       norm;
    gi2c_arena_t    tmp;
    gi2_alloc_t     a;
    unsigned char  *buf, *p, *end, *eol, *b, *e;

    name = gi2c_full_name(cf, (char *) d->pattern);
    if (name == NULL) {
        gi2c_error(NULL, 0, "out of memory");
        return -1;
    }

    if (gi2c_read_file(&cf->mem, name, GI2C_KEYWORDS_MAX, &buf, &len) != 0) {
        gi2c_error(s->file, s->line, (errno == EFBIG)
                   ? "gi2_keywords \"%s\": \"%s\" is over 64M"
                   : "gi2_keywords \"%s\": cannot open \"%s\"",
                   d->id, name);
        return -1;
    }

    memset(&tmp, 0, sizeof(gi2c_arena_t));
    a.alloc = gi2c_arena_alloc;
    a.data = &tmp;
    a.free = NULL;

    p = buf;
    end = buf + len;
    line = 0;
    nkw = 0;
    rc = 0;

    if (len >= 3 && p[0] == 0xef && p[1] == 0xbb && p[2] == 0xbf) {
        p += 3;
    }

    for ( /* void */ ; p < end; p = eol + 1) {
        line++;

        eol = memchr(p, '\n', end - p);
        if (eol == NULL) {
            eol = end;
        }

        for (b = p; b < eol && (*b == ' ' || *b == '\t'); b++) {
            /* void */
        }

        for (e = eol; e > b && (e[-1] == ' ' || e[-1] == '\t'
                                || e[-1] == '\r'); e--)
        {
            /* void */
        }

        if (b == e || *b == '#') {
            continue;
        }

        n = e - b;

        if (gi2_normalize(b, n, &norm, &a) != GI2_OK || norm.len == 0) {
            gi2c_error(s->file, s->line, "gi2_keywords \"%s\": %s:%u: not "
                       "valid UTF-8, or nothing left once normalized",
                       d->id, name, line);
            rc = -1;
            break;
        }

        gi2c_reset(&tmp);
        nkw++;
    }

    gi2c_free(&tmp);

    if (rc != 0) {
        return -1;
    }

    if (nkw == 0) {
        gi2c_error(s->file, s->line, "gi2_keywords \"%s\": no keywords in "
                   "\"%s\"", d->id, name);
        return -1;
    }

    d->list = buf;
    d->list_len = len;

    return 0;
}


static int
gi2c_enum(gi2c_conf_t *cf, gi2c_src_t *s, int *value, const char **names)
{
    int  i;

    if (cf->nargs != 2) {
        gi2c_error(s->file, s->line, "invalid number of arguments in "
                   "\"%s\" directive", cf->args[0]);
        return -1;
    }

    if (*value != GI2C_UNSET) {
        gi2c_error(s->file, s->line, "\"%s\" directive is duplicate",
                   cf->args[0]);
        return -1;
    }

    for (i = 0; names[i]; i++) {
        if (strcmp(cf->args[1], names[i]) == 0) {
            *value = i;
            return 0;
        }
    }

    gi2c_error(s->file, s->line, "invalid value \"%s\"", cf->args[1]);

    return -1;
}


static int
gi2c_token_valid(const char *s)
{
    size_t         i;
    unsigned char  c;

    for (i = 0; s[i]; i++) {
        c = (unsigned char) s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.'
              || c == ':' || c == '/'))
        {
            return 0;
        }
    }

    return i > 0 && i <= GI2C_ID_MAX;
}


/* which level's rules: a location, a server, or the http block */

static gi2c_ctx_t *
gi2c_select(gi2c_conf_t *cf, const char *server, const char *location)
{
    gi2c_ctx_t  *ctx, *up;

    for (ctx = cf->ctxs; ctx; ctx = ctx->next) {

        if (location != NULL) {
            if (ctx->type != GI2C_LOCATION || strcmp(ctx->name, location))
            {
                continue;
            }

        } else if (server != NULL) {
            if (ctx->type != GI2C_SERVER) {
                continue;
            }

        } else if (ctx->type != GI2C_HTTP) {
            continue;
        }

        if (server != NULL) {
            for (up = ctx; up && up->type != GI2C_SERVER; up = up->parent) {
                /* void */
            }

            if (up == NULL || !gi2c_has_server(up, server)) {
                continue;
            }
        }

        return ctx;
    }

    return NULL;
}


static int
gi2c_has_server(gi2c_ctx_t *ctx, const char *name)
{
    size_t       n;
    const char  *p, *e;

    n = strlen(name);

    for (p = ctx->servers; *p; p = *e ? e + 1 : e) {
        e = strchr(p, ' ');
        if (e == NULL) {
            e = p + strlen(p);
        }

        if ((size_t) (e - p) == n && strncmp(p, name, n) == 0) {
            return 1;
        }
    }

    return 0;
}


/* --list: the levels that have rules, and which */

static void
gi2c_list(gi2c_conf_t *cf)
{
    int           depth;
    size_t        i, k, n;
    gi2c_ctx_t   *ctx, *up, *own[2];

    for (ctx = cf->ctxs; ctx; ctx = ctx->next) {
        if (ctx->type == GI2C_OTHER || ctx->type == GI2C_MAIN) {
            continue;
        }

        depth = 0;

        for (up = ctx->parent; up; up = up->parent) {
            depth++;
        }

        printf("%*s%s%s%s", (depth - 1) * 2, "",
               ctx->type == GI2C_HTTP ? "http"
               : ctx->type == GI2C_SERVER ? "server" : "location ",
               ctx->type == GI2C_SERVER && ctx->servers[0] ? " " : "",
               ctx->type == GI2C_SERVER ? ctx->servers : ctx->name);

        /* in the order of the rule set: regexes, then keyword lists */

        own[0] = gi2c_owner(ctx, 0);
        own[1] = gi2c_owner(ctx, 1);
        n = 0;

        for (k = 0; k < 2; k++) {
            for (i = 0; i < cf->ndecls; i++) {
                if (cf->decls[i].keywords == (int) k
                    && cf->decls[i].ctx == own[k])
                {
                    printf("%s%s", n++ ? "," : "  rules: ", cf->decls[i].id);
                }
            }
        }

        printf("%s  (%s:%u)\n", n ? "" : "  no rules", ctx->file, ctx->line);
    }
}


/* the level whose gi2_rule (or gi2_keywords) list applies here */

static gi2c_ctx_t *
gi2c_owner(gi2c_ctx_t *ctx, int keywords)
{
    for ( /* void */ ; ctx; ctx = ctx->parent) {
        if (keywords ? ctx->keywords : ctx->rules) {
            return ctx;
        }
    }

    return NULL;
}


/* as the module builds it: that level's regexes, then its keyword lists */

static gi2_ruleset_t *
gi2c_build(gi2c_conf_t *cf, gi2c_ctx_t *ctx)
{
    int             rule, k;
    char            err[GI2C_ERRLEN];
    size_t          i;
    gi2c_ctx_t     *own;
    gi2c_decl_t    *d;
    gi2_ruleset_t  *rs;
    unsigned char  *p, *end, *eol, *b, *e;

    rs = gi2_ruleset_create();
    if (rs == NULL) {
        gi2c_error(NULL, 0, "out of memory");
        return NULL;
    }

    d = NULL;

    for (k = 0; k < 2; k++) {
        own = gi2c_owner(ctx, k);

        if (own == NULL) {
            continue;
        }

        for (i = 0; i < cf->ndecls; i++) {
            d = &cf->decls[i];

            if (d->ctx != own || d->keywords != k) {
                continue;
            }

            if (!k) {
                if (gi2_ruleset_add_regex(rs, d->id, d->action, d->category,
                                          d->pattern, d->len, err,
                                          sizeof(err))
                    < 0)
                {
                    goto failed;
                }

                continue;
            }

            rule = gi2_ruleset_add_keywords(rs, d->id, d->action,
                                            d->category, err, sizeof(err));
            if (rule < 0) {
                goto failed;
            }

            p = d->list;
            end = d->list + d->list_len;

            if (d->list_len >= 3 && p[0] == 0xef && p[1] == 0xbb
                && p[2] == 0xbf)
            {
                p += 3;
            }

            for ( /* void */ ; p < end; p = eol + 1) {
                eol = memchr(p, '\n', end - p);
                if (eol == NULL) {
                    eol = end;
                }

                for (b = p; b < eol && (*b == ' ' || *b == '\t'); b++) {
                    /* void */
                }

                for (e = eol; e > b && (e[-1] == ' ' || e[-1] == '\t'
                                        || e[-1] == '\r'); e--)
                {
                    /* void */
                }

                if (b == e || *b == '#') {
                    continue;
                }

                if (gi2_ruleset_add_keyword(rs, rule, b, e - b, err,
                                            sizeof(err))
                    != GI2_OK)
                {
                    goto failed;
                }
            }
        }
    }

    if (gi2_ruleset_compile(rs, err, sizeof(err)) != GI2_OK) {
        goto failed;
    }

    return rs;

failed:

    if (d != NULL) {
        gi2c_error(d->file, d->line, "gi2 rule \"%s\": %s", d->id, err);

    } else {
        gi2c_error(NULL, 0, "%s", err);
    }

    gi2_ruleset_free(rs);

    return NULL;
}


/* prompts: the module's decision, in its order */

static void
gi2c_prompt(gi2c_run_t *run, const unsigned char *p, size_t len,
    gi2_req_t *req, gi2c_result_t *res)
{
    int                i, n, low;
    gi2_field_t       *f;
    const gi2_rule_t  *rule;

    memset(res, 0, sizeof(gi2c_result_t));

    if (req != NULL && req->error != NULL) {
        res->decision = GI2C_REJECT;
        res->code = "gi2_invalid_request";
        res->error = req->error;
        return;
    }

    if (run->rs != NULL) {
        n = gi2_ruleset_screen(run->rs, p, len, run->hits, NULL,
                               &run->alloc);

        if (n == GI2_EINVAL) {
            res->decision = GI2C_REJECT;
            res->code = "gi2_invalid_request";
            res->error = "'prompt' is not valid UTF-8";
            return;
        }

        res->nhits = (n > 0) ? n : 0;

        for (i = 0; i < res->nhits; i++) {
            rule = gi2_ruleset_rule(run->rs, run->hits[i]);

            if (rule->action == GI2_ACTION_DENY) {
                res->decision = GI2C_REJECT;
                res->code = "gi2_prompt_rejected";
                return;
            }
        }
    }

    res->decision = res->nhits ? GI2C_FLAG : GI2C_ALLOW;

    if (req == NULL) {
        return;
    }

    /* the moderation policy: no exception can be presented here */

    f = &req->field[GI2_F_MODERATION];
    low = (f->type == GI2_T_STRING && f->value.len == 3);

    if (low) {
        if (run->low == GI2C_LOW_REJECT) {
            res->decision = GI2C_REJECT;
            res->code = "gi2_moderation_exception_required";
            return;
        }

        if (run->low == GI2C_LOW_REWRITE) {
            res->decision = GI2C_REWRITE;
        }
    }

    f = &req->field[GI2_F_USER];

    if (run->user != GI2C_USER_KEEP && f->type != GI2_T_NONE
        && f->type != GI2_T_STRING)
    {
        res->decision = GI2C_REJECT;
        res->code = "gi2_invalid_request";
        res->error = "'user' must be a string";
    }
}


static int
gi2c_body(gi2c_run_t *run, const unsigned char *p, size_t len,
    gi2c_result_t *res)
{
    gi2_req_t          req;
    gi2_req_parser_t  *parser;

    parser = gi2_req_parser_create(&req, &run->alloc);
    if (parser == NULL) {
        gi2c_error(NULL, 0, "out of memory");
        return -1;
    }

    (void) gi2_req_parser_feed(parser, p, len);
    (void) gi2_req_parser_finish(parser);

    gi2c_prompt(run, req.field[GI2_F_PROMPT].value.data,
                req.field[GI2_F_PROMPT].value.len, &req, res);

    gi2_req_parser_destroy(parser);

    return 0;
}


/* a file of prompts or of request bodies, one a line; "-": stdin */

static int
gi2c_lines(gi2c_run_t *run, const char *path, int json)
{
    int             rc;
    FILE           *f;
    char           *line;
    size_t          cap, len;
    ssize_t         n;
    unsigned long   lineno;
    gi2c_result_t   res;

    f = (strcmp(path, "-") == 0) ? stdin : fopen(path, "rb");
    if (f == NULL) {
        gi2c_error(NULL, 0, "cannot open \"%s\": %s", path, strerror(errno));
        return -1;
    }

    line = NULL;
    cap = 0;
    lineno = 0;
    rc = 0;

    while ((n = getline(&line, &cap, f)) != -1) {
        lineno++;
        len = (size_t) n;

        if (len && line[len - 1] == '\n') {
            len--;
        }

        if (len && line[len - 1] == '\r') {
            len--;
        }

        /* blank lines are not prompts */

        if (strspn(line, " \t") >= len) {
            continue;
        }

        if (json) {
            if (gi2c_body(run, (unsigned char *) line, len, &res) != 0) {
                rc = -1;
                break;
            }

        } else {
            gi2c_prompt(run, (unsigned char *) line, len, NULL, &res);
        }

        gi2c_print(run, lineno, &res);
        gi2c_reset(&run->mem);
    }

    if (rc == 0 && ferror(f)) {
        gi2c_error(NULL, 0, "cannot read \"%s\": %s", path, strerror(errno));
        rc = -1;
    }

    free(line);

    if (f != stdin) {
        fclose(f);
    }

    return rc;
}


static void
gi2c_print(gi2c_run_t *run, unsigned long n, gi2c_result_t *res)
{
    int                i;
    const gi2_rule_t  *rule;

    run->prompts++;
    run->count[res->decision]++;

    if (run->quiet) {
        return;
    }

    if (!run->json) {
        printf("%lu\t%s\t%s\t", n, gi2c_decisions[res->decision],
               res->code ? res->code : "-");

        for (i = 0; i < res->nhits; i++) {
            rule = gi2_ruleset_rule(run->rs, run->hits[i]);
            printf("%s%s", i ? "," : "", rule->id);
        }

        fputs(res->nhits ? "\t" : "-\t", stdout);

        for (i = 0; i < res->nhits; i++) {
            rule = gi2_ruleset_rule(run->rs, run->hits[i]);
            printf("%s%s", i ? "," : "", rule->category);
        }

        fputs(res->nhits ? "\n" : "-\n", stdout);
        return;
    }

    printf("{\"n\":%lu,\"decision\":\"%s\",\"code\":", n,
           gi2c_decisions[res->decision]);
    gi2c_json_str(res->code);

    if (res->error != NULL) {
        fputs(",\"error\":", stdout);
        gi2c_json_str(res->error);
    }

    fputs(",\"rule_id\":[", stdout);

    for (i = 0; i < res->nhits; i++) {
        rule = gi2_ruleset_rule(run->rs, run->hits[i]);
        fputs(i ? "," : "", stdout);
        gi2c_json_str(rule->id);
    }

    fputs("],\"rule_category\":[", stdout);

    for (i = 0; i < res->nhits; i++) {
        rule = gi2_ruleset_rule(run->rs, run->hits[i]);
        fputs(i ? "," : "", stdout);
        gi2c_json_str(rule->category);
    }

    fputs("],\"rule_action\":[", stdout);

    for (i = 0; i < res->nhits; i++) {
        rule = gi2_ruleset_rule(run->rs, run->hits[i]);
        printf("%s\"%s\"", i ? "," : "",
               rule->action == GI2_ACTION_DENY ? "deny" : "flag");
    }

    fputs("]}\n", stdout);
}


/* ids and categories are tokens; messages are ours: escape anyway */

static void
gi2c_json_str(const char *s)
{
    unsigned char  c;

    if (s == NULL) {
        fputs("null", stdout);
        return;
    }

    putchar('"');

    for ( /* void */ ; *s; s++) {
        c = (unsigned char) *s;

        if (c == '"' || c == '\\') {
            putchar('\\');
            putchar(c);

        } else if (c < 0x20) {
            printf("\\u%04x", c);

        } else {
            putchar(c);
        }
    }

    putchar('"');
}


static void
gi2c_usage(FILE *f)
{
    fputs("usage: gi2-check -c NGINX_CONF [options] [PROMPT ...]\n"
          "\n"
          "Applies the gi2_rule and gi2_keywords rules of an nginx\n"
          "configuration to prompts, as ngx_gi2_module would.\n"
          "\n"
          "  -c FILE          the nginx configuration (includes followed)\n"
          "  -l, --location L the rules of the location whose arguments\n"
          "                   are L, as written (\"/v1/images/\", \"= /x\")\n"
          "  -s, --server N   within (or at) the server with server_name N\n"
          "                   (default: the http block's rules)\n"
          "  -f FILE          prompts, one a line (\"-\": standard input)\n"
          "  -j FILE          JSON request bodies, one a line (\"-\": stdin)\n"
          "  --json           JSON lines out\n"
          "  -q               no output, the exit status only\n"
          "  --summary        counts on standard error at the end\n"
          "  --list           the levels of the configuration and their "
          "rules\n"
          "\n"
          "Each prompt gets a line: N, decision (allow, flag, rewrite,\n"
          "reject), rejection code, rule ids, categories.  Exit status 0:\n"
          "nothing rejected; 1: some prompt rejected; 2: an error.\n", f);
}


int
main(int argc, char **argv)
{
    int             i, rc, json, quiet, summary, list, opts;
    char           *conf, *p, *server, *location;
    size_t          len;
    unsigned long   n;
    gi2c_ctx_t      main_ctx, *ctx;
    gi2c_run_t      run;
    gi2c_conf_t     cf;
    gi2c_result_t   res;

    conf = NULL;
    server = NULL;
    location = NULL;
    json = 0;
    quiet = 0;
    summary = 0;
    list = 0;

    /* the options first: prompts and files are read in their order */

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            break;
        }

        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "-l") == 0
             || strcmp(argv[i], "--location") == 0
             || strcmp(argv[i], "-s") == 0
             || strcmp(argv[i], "--server") == 0
             || strcmp(argv[i], "-f") == 0 || strcmp(argv[i], "-j") == 0)
            && i + 1 == argc)
        {
            gi2c_error(NULL, 0, "%s needs a value", argv[i]);
            return GI2C_EXIT_ERROR;
        }

        if (strcmp(argv[i], "-c") == 0) {
            conf = argv[++i];

        } else if (strcmp(argv[i], "-l") == 0
                   || strcmp(argv[i], "--location") == 0)
        {
            location = argv[++i];

        } else if (strcmp(argv[i], "-s") == 0
                   || strcmp(argv[i], "--server") == 0)
        {
            server = argv[++i];

        } else if (strcmp(argv[i], "-f") == 0 || strcmp(argv[i], "-j") == 0)
        {
            i++;

        } else if (strcmp(argv[i], "--json") == 0) {
            json = 1;

        } else if (strcmp(argv[i], "-q") == 0) {
            quiet = 1;

        } else if (strcmp(argv[i], "--summary") == 0) {
            summary = 1;

        } else if (strcmp(argv[i], "--list") == 0) {
            list = 1;

        } else if (strcmp(argv[i], "-h") == 0
                   || strcmp(argv[i], "--help") == 0)
        {
            gi2c_usage(stdout);
            return GI2C_EXIT_OK;

        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            gi2c_error(NULL, 0, "unknown option \"%s\"", argv[i]);
            gi2c_usage(stderr);
            return GI2C_EXIT_ERROR;
        }
    }

    if (conf == NULL) {
        gi2c_usage(stderr);
        return GI2C_EXIT_ERROR;
    }

    memset(&cf, 0, sizeof(gi2c_conf_t));
    memset(&main_ctx, 0, sizeof(gi2c_ctx_t));
    memset(&run, 0, sizeof(gi2c_run_t));

    main_ctx.type = GI2C_MAIN;
    main_ctx.low = GI2C_UNSET;
    main_ctx.user = GI2C_UNSET;
    main_ctx.name = "";
    main_ctx.servers = "";
    main_ctx.file = conf;

    rc = GI2C_EXIT_ERROR;

    /* nginx's conf prefix: the directory of the main file */

    if (conf[0] == '/') {
        p = gi2c_strndup(&cf.mem, conf, strlen(conf));

    } else {
        p = gi2c_alloc(&cf.mem, 4096 + strlen(conf) + 2);

        if (p != NULL) {
            if (getcwd(p, 4096) == NULL) {
                gi2c_error(NULL, 0, "getcwd() failed: %s", strerror(errno));
                goto done;
            }

            len = strlen(p);
            p[len] = '/';
            strcpy(p + len + 1, conf);
        }
    }

    if (p == NULL) {
        gi2c_error(NULL, 0, "out of memory");
        goto done;
    }

    main_ctx.file = p;

    cf.prefix = gi2c_strndup(&cf.mem, p, strrchr(p, '/') - p + 1);
    if (cf.prefix == NULL) {
        gi2c_error(NULL, 0, "out of memory");
        goto done;
    }

    if (gi2c_parse_file(&cf, p, &main_ctx, NULL) != 0) {
        goto done;
    }

    if (list) {
        gi2c_list(&cf);
        rc = GI2C_EXIT_OK;
        goto done;
    }

    ctx = gi2c_select(&cf, server, location);

    if (ctx == NULL) {
        gi2c_error(NULL, 0, "no %s%s%s%s%s in \"%s\" (see --list)",
                   location ? "location \"" : server ? "server" : "http block",
                   location ? location : "", location ? "\"" : "",
                   server ? " with server_name " : "", server ? server : "",
                   conf);
        goto done;
    }

    if (gi2c_owner(ctx, 0) == NULL && gi2c_owner(ctx, 1) == NULL) {
        gi2c_error(ctx->file, ctx->line, "no gi2_rule or gi2_keywords apply "
                   "at the %s chosen (see --list, --location, --server)",
                   ctx->type == GI2C_HTTP ? "http block"
                   : ctx->type == GI2C_SERVER ? "server" : "location");
        goto done;
    }

    run.rs = gi2c_build(&cf, ctx);
    if (run.rs == NULL) {
        goto done;
    }

    run.hits = malloc((gi2_ruleset_count(run.rs) + 1) * sizeof(unsigned));
    if (run.hits == NULL) {
        gi2c_error(NULL, 0, "out of memory");
        goto done;
    }

    for (run.low = GI2C_LOW_REJECT; ctx; ctx = ctx->parent) {
        if (ctx->low != GI2C_UNSET) {
            run.low = ctx->low;
            break;
        }
    }

    ctx = gi2c_select(&cf, server, location);

    for (run.user = GI2C_USER_KEEP; ctx; ctx = ctx->parent) {
        if (ctx->user != GI2C_UNSET) {
            run.user = ctx->user;
            break;
        }
    }

    run.alloc.alloc = gi2c_arena_alloc;
    run.alloc.data = &run.mem;
    run.alloc.free = NULL;
    run.json = json;
    run.quiet = quiet;

    opts = 1;
    n = 0;

    for (i = 1; i < argc; i++) {
        if (opts && strcmp(argv[i], "--") == 0) {
            opts = 0;
            continue;
        }

        if (opts && (strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "-l") == 0
                     || strcmp(argv[i], "--location") == 0
                     || strcmp(argv[i], "-s") == 0
                     || strcmp(argv[i], "--server") == 0))
        {
            i++;
            continue;
        }

        if (opts && (strcmp(argv[i], "-f") == 0
                     || strcmp(argv[i], "-j") == 0))
        {
            if (gi2c_lines(&run, argv[i + 1], argv[i][1] == 'j') != 0) {
                goto done;
            }

            i++;
            continue;
        }

        if (opts && argv[i][0] == '-' && argv[i][1] != '\0') {
            continue;
        }

        gi2c_prompt(&run, (unsigned char *) argv[i], strlen(argv[i]), NULL,
                    &res);
        gi2c_print(&run, ++n, &res);
        gi2c_reset(&run.mem);
    }

    if (fflush(stdout) != 0) {
        gi2c_error(NULL, 0, "cannot write: %s", strerror(errno));
        goto done;
    }

    if (summary) {
        fprintf(stderr, "gi2-check: %lu prompts: %lu allow, %lu flag, "
                "%lu rewrite, %lu reject\n", run.prompts,
                run.count[GI2C_ALLOW], run.count[GI2C_FLAG],
                run.count[GI2C_REWRITE], run.count[GI2C_REJECT]);
    }

    rc = run.count[GI2C_REJECT] ? GI2C_EXIT_REJECTED : GI2C_EXIT_OK;

done:

    if (run.rs != NULL) {
        gi2_ruleset_free(run.rs);
    }

    free(run.hits);
    free(cf.decls);
    free(cf.args);
    gi2c_free(&run.mem);
    gi2c_free(&cf.mem);

    return rc;
}
