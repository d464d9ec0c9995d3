/*
 * ngx_gi2_module: streaming multipart/form-data parser (image edits).
 *
 * A byte state machine over the body as it arrives: the boundary is
 * matched with a count of delimiter bytes held back (a CR starts the only
 * possible match, as boundaries have none), so a delimiter cut by a
 * chunk's end costs nothing and the bytes of a part are never copied but
 * for the text fields.  See gi2_multipart.h for what is refused.
 */

#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>

#include "gi2_multipart.h"


enum {
    GI2_MP_S_START = 0,   /* the body's first bytes: "--" boundary */
    GI2_MP_S_AFTER,       /* just after a delimiter */
    GI2_MP_S_PAD,         /* transport padding after a delimiter */
    GI2_MP_S_LF,          /* the LF ending a delimiter line */
    GI2_MP_S_DASH,        /* the second '-' of a close delimiter */
    GI2_MP_S_HEADERS,
    GI2_MP_S_BODY,
    GI2_MP_S_EPILOGUE
};


enum {
    GI2_MP_K_OTHER = 0,   /* passed unread */
    GI2_MP_K_TEXT,
    GI2_MP_K_IMAGE,
    GI2_MP_K_MASK
};


typedef struct {
    const char           *name;
    int                   field;      /* gi2_field_e, -1: checked only */
    unsigned              kind;
    size_t                max;        /* text fields */
} gi2_mp_name_t;


static const gi2_mp_name_t  gi2_mp_names[] = {
    { "prompt", GI2_F_PROMPT, GI2_MP_K_TEXT, GI2_PROMPT_MAX },
    { "model", GI2_F_MODEL, GI2_MP_K_TEXT, GI2_MP_FIELD_MAX },
    { "n", GI2_F_N, GI2_MP_K_TEXT, GI2_MP_FIELD_MAX },
    { "size", GI2_F_SIZE, GI2_MP_K_TEXT, GI2_MP_FIELD_MAX },
    { "quality", GI2_F_QUALITY, GI2_MP_K_TEXT, GI2_MP_FIELD_MAX },
    { "moderation", GI2_F_MODERATION, GI2_MP_K_TEXT, GI2_MP_FIELD_MAX },
    { "input_fidelity", -1, GI2_MP_K_TEXT, GI2_MP_FIELD_MAX },
    { "background", -1, GI2_MP_K_TEXT, GI2_MP_FIELD_MAX },
    { "output_format", -1, GI2_MP_K_TEXT, GI2_MP_FIELD_MAX },
    { "user", GI2_F_USER, GI2_MP_K_TEXT, GI2_MP_FIELD_MAX },
    { "stream", GI2_F_STREAM, GI2_MP_K_TEXT, GI2_MP_FIELD_MAX },
    { "_charset_", -1, GI2_MP_K_TEXT, GI2_MP_FIELD_MAX },
    { "image", -1, GI2_MP_K_IMAGE, 0 },
    { "image[]", -1, GI2_MP_K_IMAGE, 0 },
    { "mask", -1, GI2_MP_K_MASK, 0 }
};

#define GI2_MP_NAMES  (sizeof(gi2_mp_names) / sizeof(gi2_mp_names[0]))


struct gi2_mp_s {
    gi2_req_t            *req;
    gi2_alloc_t          *alloc;
    EVP_MD_CTX           *md;

    uint64_t              pos;        /* body offset of the next byte */
    uint64_t              dstart;     /* the CR of the delimiter matched */
    uint64_t              dash;       /* the "--" of the last delimiter */
    size_t                dlen;
    size_t                matched;    /* delimiter bytes held back */
    unsigned              state;

    unsigned              nparts;
    unsigned              nheaders;
    unsigned              nimages;
    uint32_t              seen;       /* bit i: gi2_mp_names[i] met */

    /* the part being read */
    const gi2_mp_name_t  *known;      /* NULL: a name not known */
    unsigned              kind;
    uint64_t              part_start;
    uint64_t              value_start;
    uint64_t              bytes;
    gi2_str_t             name;       /* its first bytes in name_buf */

    unsigned char        *text;       /* malloc()ed, grows to the cap */
    size_t                text_len;
    size_t                text_cap;

    unsigned              has_cd:1;
    unsigned              has_ct:1;
    unsigned              has_cte:1;
    unsigned              has_name:1;
    unsigned              file:1;     /* filename= or filename*= */
    unsigned              charset_bad:1;
    unsigned              cr:1;
    unsigned              done:1;

    size_t                line_len;
    unsigned char         line[GI2_MP_LINE_MAX];
    unsigned char         delim[4 + GI2_MP_BOUNDARY_MAX];
    unsigned char         name_buf[32];  /* longer names are not known */
};


static const EVP_MD *gi2_mp_sha256(void);
static int gi2_mp_fail(gi2_mp_t *m, const char *error, const char *param);
static int gi2_mp_ieq(const unsigned char *a, size_t len, const char *b);
static int gi2_mp_boundary_ok(const unsigned char *b, size_t len);
static int gi2_mp_param(const unsigned char **pp, const unsigned char *end,
    gi2_str_t *name, gi2_str_t *value);
static int gi2_mp_charset_ok(gi2_str_t *v);
static void gi2_mp_trim(const unsigned char **start,
    const unsigned char **end);
static int gi2_mp_part_begin(gi2_mp_t *m);
static int gi2_mp_header(gi2_mp_t *m);
static int gi2_mp_disposition(gi2_mp_t *m, const unsigned char *p,
    const unsigned char *end);
static int gi2_mp_content_type_header(gi2_mp_t *m, const unsigned char *p,
    const unsigned char *end);
static int gi2_mp_headers_end(gi2_mp_t *m);
static int gi2_mp_content(gi2_mp_t *m, const unsigned char *p, size_t n);
static int gi2_mp_part_end(gi2_mp_t *m);
static int gi2_mp_text_end(gi2_mp_t *m);


/* SHA-256 fetched once a process, as for the response scanner */

static const EVP_MD *
gi2_mp_sha256(void)
{
    static EVP_MD  *md;

    if (md == NULL) {
        md = EVP_MD_fetch(NULL, "SHA256", NULL);
    }

    return (md != NULL) ? md : EVP_sha256();
}


static int
gi2_mp_fail(gi2_mp_t *m, const char *error, const char *param)
{
    if (m->req->error == NULL) {
        m->req->error = error;
        m->req->param = param;
    }

    return GI2_EINVAL;
}


/* ASCII case-insensitive: a (len bytes) is the C string b */

static int
gi2_mp_ieq(const unsigned char *a, size_t len, const char *b)
{
    size_t         i;
    unsigned char  c;

    for (i = 0; i < len; i++) {
        c = a[i];

        if (c >= 'A' && c <= 'Z') {
            c |= 0x20;
        }

        if (b[i] == '\0' || c != (unsigned char) b[i]) {
            return 0;
        }
    }

    return b[len] == '\0';
}


/* RFC 2046: 1 to 70 bchars, the last not a space */

static int
gi2_mp_boundary_ok(const unsigned char *b, size_t len)
{
    size_t         i;
    unsigned char  c;

    if (len < 1 || len > GI2_MP_BOUNDARY_MAX || b[len - 1] == ' ') {
        return 0;
    }

    for (i = 0; i < len; i++) {
        c = b[i];

        if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z')
            || (c >= 'A' && c <= 'Z'))
        {
            continue;
        }

        if (strchr("'()+_,-./:=? ", c) == NULL || c == '\0') {
            return 0;
        }
    }

    return 1;
}


static void
gi2_mp_trim(const unsigned char **start, const unsigned char **end)
{
    while (*start < *end && (**start == ' ' || **start == '\t')) {
        (*start)++;
    }

    while (*end > *start && ((*end)[-1] == ' ' || (*end)[-1] == '\t')) {
        (*end)--;
    }
}


/*
 * The next "; name=value" of a header value: 1, 0 at its end, -1 when
 * malformed.  A quoted value with a backslash before a quote is
 * malformed: parsers that honour escapes and parsers that do not would
 * end it at different quotes.
 */

static int
gi2_mp_param(const unsigned char **pp, const unsigned char *end,
    gi2_str_t *name, gi2_str_t *value)
{
    const unsigned char  *p, *s;

    p = *pp;

    while (p < end && (*p == ' ' || *p == '\t')) {
        p++;
    }

    if (p == end) {
        *pp = p;
        return 0;
    }

    if (*p++ != ';') {
        return -1;
    }

    while (p < end && (*p == ' ' || *p == '\t')) {
        p++;
    }

    if (p == end) {
        *pp = p;
        return 0;
    }

    s = p;

    while (p < end && *p != '=' && *p != ';' && *p != ' ' && *p != '\t'
           && *p != '"')
    {
        p++;
    }

    if (p == s) {
        return -1;
    }

    name->data = s;
    name->len = p - s;

    while (p < end && (*p == ' ' || *p == '\t')) {
        p++;
    }

    if (p == end || *p++ != '=') {
        return -1;
    }

    while (p < end && (*p == ' ' || *p == '\t')) {
        p++;
    }

    if (p < end && *p == '"') {
        s = ++p;

        while (p < end && *p != '"') {
            if (*p == '\\' && p + 1 < end && p[1] == '"') {
                return -1;
            }

            p++;
        }

        if (p == end) {
            return -1;
        }

        value->data = s;
        value->len = p - s;
        *pp = p + 1;

        return 1;
    }

    s = p;

    while (p < end && *p != ';' && *p != ' ' && *p != '\t') {
        if (*p == '"') {
            return -1;
        }

        p++;
    }

    value->data = s;
    value->len = p - s;
    *pp = p;

    return 1;
}


static int
gi2_mp_charset_ok(gi2_str_t *v)
{
    return gi2_mp_ieq(v->data, v->len, "utf-8")
           || gi2_mp_ieq(v->data, v->len, "utf8")
           || gi2_mp_ieq(v->data, v->len, "us-ascii");
}


int
gi2_mp_content_type(const unsigned char *ct, size_t len,
    gi2_str_t *boundary, const char **error)
{
    int                   rc, found;
    gi2_str_t             name, value;
    const unsigned char  *p, *end;

    p = ct;
    end = ct + len;

    while (p < end && (*p == ' ' || *p == '\t')) {
        p++;
    }

    if (end - p < 19 || !gi2_mp_ieq(p, 19, "multipart/form-data")) {
        return 0;
    }

    p += 19;

    if (p < end && *p != ';' && *p != ' ' && *p != '\t') {
        return 0;
    }

    found = 0;
    boundary->data = NULL;
    boundary->len = 0;

    for ( ;; ) {
        rc = gi2_mp_param(&p, end, &name, &value);

        if (rc == 0) {
            break;
        }

        if (rc < 0) {
            *error = "the multipart/form-data Content-Type has a malformed "
                     "parameter";
            return GI2_EINVAL;
        }

        if (gi2_mp_ieq(name.data, name.len, "boundary")) {
            if (found) {
                *error = "the multipart/form-data Content-Type has more "
                         "than one boundary";
                return GI2_EINVAL;
            }

            found = 1;
            *boundary = value;
            continue;
        }

        if (gi2_mp_ieq(name.data, name.len, "charset")
            && !gi2_mp_charset_ok(&value))
        {
            *error = "the multipart/form-data Content-Type names a charset "
                     "other than UTF-8";
            return GI2_EINVAL;
        }
    }

    if (!found) {
        *error = "multipart/form-data needs a boundary parameter";
        return GI2_EINVAL;
    }

    if (!gi2_mp_boundary_ok(boundary->data, boundary->len)) {
        *error = "the multipart boundary must be 1 to 70 characters allowed "
                 "by RFC 2046";
        return GI2_EINVAL;
    }

    return 1;
}


gi2_mp_t *
gi2_mp_create(gi2_req_t *req, const unsigned char *boundary, size_t len,
    gi2_alloc_t *a)
{
    gi2_mp_t  *m;

    memset(req, 0, sizeof(gi2_req_t));
    req->multipart = 1;

    m = a->alloc(a->data, sizeof(gi2_mp_t));
    if (m == NULL) {
        return NULL;
    }

    memset(m, 0, offsetof(gi2_mp_t, line));

    m->req = req;
    m->alloc = a;
    m->state = GI2_MP_S_START;

    req->input = a->alloc(a->data, GI2_MP_INPUTS_MAX * sizeof(gi2_input_t));
    if (req->input == NULL) {
        return NULL;
    }

    m->md = EVP_MD_CTX_new();
    if (m->md == NULL) {
        return NULL;
    }

    if (!gi2_mp_boundary_ok(boundary, len)) {
        (void) gi2_mp_fail(m, "the multipart boundary must be 1 to 70 "
                           "characters allowed by RFC 2046", NULL);
        return m;
    }

    m->delim[0] = '\r';
    m->delim[1] = '\n';
    m->delim[2] = '-';
    m->delim[3] = '-';
    memcpy(m->delim + 4, boundary, len);
    m->dlen = len + 4;

    /* the first delimiter has no CRLF before it */
    m->matched = 2;

    return m;
}


void
gi2_mp_destroy(gi2_mp_t *m)
{
    if (m == NULL) {
        return;
    }

    EVP_MD_CTX_free(m->md);
    m->md = NULL;

    free(m->text);
    m->text = NULL;
    m->text_cap = 0;
}


int
gi2_mp_feed(gi2_mp_t *m, const unsigned char *buf, size_t len)
{
    unsigned char         c;
    const unsigned char  *p, *end, *q;

    if (m->req->error) {
        return GI2_EINVAL;
    }

    if (m->done) {
        return gi2_mp_fail(m, "data after the end of the body", NULL);
    }

    m->req->length += len;

    p = buf;
    end = buf + len;

    while (p < end) {

        switch (m->state) {

        case GI2_MP_S_BODY:

            if (m->matched == 0) {
                q = memchr(p, '\r', end - p);

                if (q == NULL) {
                    q = end;
                }

                if (q > p && gi2_mp_content(m, p, q - p) != GI2_OK) {
                    return GI2_EINVAL;
                }

                m->pos += q - p;
                p = q;

                if (p == end) {
                    break;
                }

                m->dstart = m->pos;
                m->matched = 1;
                m->pos++;
                p++;
                break;
            }

            if (*p != m->delim[m->matched]) {
                /* the bytes held back were content; this one is read
                 * again: it may begin a delimiter */

                if (gi2_mp_content(m, m->delim, m->matched) != GI2_OK) {
                    return GI2_EINVAL;
                }

                m->matched = 0;
                break;
            }

            m->pos++;
            p++;

            if (++m->matched < m->dlen) {
                break;
            }

            m->matched = 0;

            if (gi2_mp_part_end(m) != GI2_OK) {
                return GI2_EINVAL;
            }

            m->dash = m->dstart + 2;
            m->state = GI2_MP_S_AFTER;
            break;

        case GI2_MP_S_START:

            if (*p != m->delim[m->matched]) {
                return gi2_mp_fail(m, "the multipart body does not begin "
                                   "with its boundary", NULL);
            }

            m->pos++;
            p++;

            if (++m->matched == m->dlen) {
                m->matched = 0;
                m->dash = 0;
                m->state = GI2_MP_S_AFTER;
            }

            break;

        case GI2_MP_S_AFTER:
        case GI2_MP_S_PAD:
            c = *p;

            if (c == '-' && m->state == GI2_MP_S_AFTER) {
                m->state = GI2_MP_S_DASH;

            } else if (c == ' ' || c == '\t') {
                m->state = GI2_MP_S_PAD;

            } else if (c == '\r') {
                m->state = GI2_MP_S_LF;

            } else {
                return gi2_mp_fail(m, "a multipart boundary is followed by "
                                   "other data", NULL);
            }

            m->pos++;
            p++;
            break;

        case GI2_MP_S_LF:

            if (*p != '\n') {
                return gi2_mp_fail(m, "a multipart boundary is followed by "
                                   "other data", NULL);
            }

            m->pos++;
            p++;

            if (gi2_mp_part_begin(m) != GI2_OK) {
                return GI2_EINVAL;
            }

            m->state = GI2_MP_S_HEADERS;
            break;

        case GI2_MP_S_DASH:

            if (*p != '-') {
                return gi2_mp_fail(m, "a multipart boundary is followed by "
                                   "other data", NULL);
            }

            m->pos++;
            p++;
            m->state = GI2_MP_S_EPILOGUE;
            break;

        case GI2_MP_S_HEADERS:
            c = *p;

            if (m->cr) {
                if (c != '\n') {
                    return gi2_mp_fail(m, "a multipart part header has a "
                                       "bare CR", NULL);
                }

                m->cr = 0;
                m->pos++;
                p++;

                if (m->line_len == 0) {
                    if (gi2_mp_headers_end(m) != GI2_OK) {
                        return GI2_EINVAL;
                    }

                    m->state = GI2_MP_S_BODY;
                    break;
                }

                if (gi2_mp_header(m) != GI2_OK) {
                    return GI2_EINVAL;
                }

                m->line_len = 0;
                break;
            }

            if (c == '\r') {
                m->cr = 1;
                m->pos++;
                p++;
                break;
            }

            if ((c < 0x20 && c != '\t') || c == 0x7f) {
                return gi2_mp_fail(m, "a multipart part header has a bare LF "
                                   "or another control character", NULL);
            }

            if (m->line_len == GI2_MP_LINE_MAX) {
                return gi2_mp_fail(m, "a multipart part header line is over "
                                   "8 KiB", NULL);
            }

            m->line[m->line_len++] = c;
            m->pos++;
            p++;
            break;

        default: /* GI2_MP_S_EPILOGUE */
            c = *p;

            if (c != '\r' && c != '\n' && c != ' ' && c != '\t') {
                return gi2_mp_fail(m, "data after the closing multipart "
                                   "boundary", NULL);
            }

            m->pos++;
            p++;
            break;
        }
    }

    return GI2_OK;
}


int
gi2_mp_finish(gi2_mp_t *m)
{
    gi2_field_t  *f;

    if (m->req->error) {
        return GI2_EINVAL;
    }

    m->done = 1;

    if (m->state != GI2_MP_S_EPILOGUE) {
        return gi2_mp_fail(m, "the multipart body ends before its closing "
                           "boundary", NULL);
    }

    if (m->req->field[GI2_F_PROMPT].type == GI2_T_NONE) {
        return gi2_mp_fail(m, "the request has no 'prompt' field",
                           "prompt");
    }

    f = &m->req->field[GI2_F_MODERATION];

    if (f->type != GI2_T_NONE
        && !((f->value.len == 4 && memcmp(f->value.data, "auto", 4) == 0)
             || (f->value.len == 3 && memcmp(f->value.data, "low", 3) == 0)))
    {
        return gi2_mp_fail(m, "'moderation' must be \"auto\" or \"low\"",
                           "moderation");
    }

    return GI2_OK;
}


static int
gi2_mp_part_begin(gi2_mp_t *m)
{
    if (++m->nparts > GI2_MP_PARTS_MAX) {
        return gi2_mp_fail(m, "the multipart body has more than 64 parts",
                           NULL);
    }

    m->nheaders = 0;
    m->line_len = 0;
    m->part_start = m->dash;
    m->known = NULL;
    m->kind = GI2_MP_K_OTHER;
    m->bytes = 0;
    m->text_len = 0;
    m->name.data = NULL;
    m->name.len = 0;
    m->has_cd = 0;
    m->has_ct = 0;
    m->has_cte = 0;
    m->has_name = 0;
    m->file = 0;
    m->charset_bad = 0;

    return GI2_OK;
}


static int
gi2_mp_header(gi2_mp_t *m)
{
    const unsigned char  *p, *end, *colon, *v;

    if (++m->nheaders > GI2_MP_HEADERS_MAX) {
        return gi2_mp_fail(m, "a multipart part has more than 16 header "
                           "lines", NULL);
    }

    p = m->line;
    end = m->line + m->line_len;

    if (*p == ' ' || *p == '\t') {
        return gi2_mp_fail(m, "a multipart part header is folded over "
                           "lines", NULL);
    }

    colon = memchr(p, ':', end - p);

    if (colon == NULL || colon == p) {
        return gi2_mp_fail(m, "a multipart part header line has no name",
                           NULL);
    }

    if (memchr(p, ' ', colon - p) || memchr(p, '\t', colon - p)) {
        return gi2_mp_fail(m, "a multipart part header name has white "
                           "space", NULL);
    }

    v = colon + 1;
    gi2_mp_trim(&v, &end);

    if (gi2_mp_ieq(p, colon - p, "content-disposition")) {
        if (m->has_cd) {
            return gi2_mp_fail(m, "a multipart part has more than one "
                               "Content-Disposition", NULL);
        }

        m->has_cd = 1;
        return gi2_mp_disposition(m, v, end);
    }

    if (gi2_mp_ieq(p, colon - p, "content-type")) {
        if (m->has_ct) {
            return gi2_mp_fail(m, "a multipart part has more than one "
                               "Content-Type", NULL);
        }

        m->has_ct = 1;
        return gi2_mp_content_type_header(m, v, end);
    }

    if (gi2_mp_ieq(p, colon - p, "content-transfer-encoding")) {
        if (m->has_cte) {
            return gi2_mp_fail(m, "a multipart part has more than one "
                               "Content-Transfer-Encoding", NULL);
        }

        m->has_cte = 1;

        if (!gi2_mp_ieq(v, end - v, "7bit")
            && !gi2_mp_ieq(v, end - v, "8bit")
            && !gi2_mp_ieq(v, end - v, "binary"))
        {
            return gi2_mp_fail(m, "a multipart part has a "
                               "Content-Transfer-Encoding the gateway "
                               "cannot read; send parts unencoded", NULL);
        }

        return GI2_OK;
    }

    return GI2_OK;
}


/* form-data; name="..." [; filename="..."] */

static int
gi2_mp_disposition(gi2_mp_t *m, const unsigned char *p,
    const unsigned char *end)
{
    int                   rc;
    size_t                i;
    gi2_str_t             name, value;
    const unsigned char  *t;

    for (t = p; t < end && *t != ';' && *t != ' ' && *t != '\t'; t++) {
        /* void */
    }

    if (!gi2_mp_ieq(p, t - p, "form-data")) {
        return gi2_mp_fail(m, "a multipart part is not form-data", NULL);
    }

    p = t;

    for ( ;; ) {
        rc = gi2_mp_param(&p, end, &name, &value);

        if (rc == 0) {
            return GI2_OK;
        }

        if (rc < 0) {
            return gi2_mp_fail(m, "a multipart part has a malformed "
                               "Content-Disposition", NULL);
        }

        if (gi2_mp_ieq(name.data, name.len, "name")) {
            if (m->has_name) {
                return gi2_mp_fail(m, "a multipart part has more than one "
                                   "name", NULL);
            }

            m->has_name = 1;

            for (i = 0; i < value.len; i++) {
                if (value.data[i] == '\\' || value.data[i] == '%'
                    || value.data[i] < 0x20 || value.data[i] == 0x7f)
                {
                    return gi2_mp_fail(m, "a multipart part name has a "
                                       "backslash, '%' or a control "
                                       "character", NULL);
                }
            }

            /* the line buffer is reused by the next header */

            memcpy(m->name_buf, value.data,
                   (value.len < sizeof(m->name_buf)) ? value.len
                                                     : sizeof(m->name_buf));
            m->name.data = m->name_buf;
            m->name.len = value.len;
            continue;
        }

        if (gi2_mp_ieq(name.data, name.len, "name*")) {
            return gi2_mp_fail(m, "a multipart part has an RFC 2231 "
                               "name*= parameter", NULL);
        }

        if (gi2_mp_ieq(name.data, name.len, "filename")
            || gi2_mp_ieq(name.data, name.len, "filename*"))
        {
            if (m->file) {
                return gi2_mp_fail(m, "a multipart part has more than one "
                                   "filename", NULL);
            }

            m->file = 1;
        }
    }
}


static int
gi2_mp_content_type_header(gi2_mp_t *m, const unsigned char *p,
    const unsigned char *end)
{
    int        rc;
    gi2_str_t  name, value;

    while (p < end && *p != ';') {
        p++;
    }

    for ( ;; ) {
        rc = gi2_mp_param(&p, end, &name, &value);

        if (rc == 0) {
            return GI2_OK;
        }

        if (rc < 0) {
            return gi2_mp_fail(m, "a multipart part has a malformed "
                               "Content-Type", NULL);
        }

        if (gi2_mp_ieq(name.data, name.len, "charset")
            && !gi2_mp_charset_ok(&value))
        {
            m->charset_bad = 1;
        }
    }
}


static int
gi2_mp_headers_end(gi2_mp_t *m)
{
    size_t                i;
    gi2_input_t          *in;
    const gi2_mp_name_t  *k;

    if (!m->has_cd) {
        return gi2_mp_fail(m, "a multipart part has no Content-Disposition",
                           NULL);
    }

    if (!m->has_name || m->name.len == 0) {
        return gi2_mp_fail(m, "a multipart part has no name", NULL);
    }

    m->value_start = m->pos;

    if (m->name.len > sizeof(m->name_buf)) {
        return GI2_OK;
    }

    for (i = 0; i < GI2_MP_NAMES; i++) {
        if (gi2_mp_ieq(m->name.data, m->name.len, gi2_mp_names[i].name)) {
            break;
        }
    }

    if (i == GI2_MP_NAMES) {
        return GI2_OK;
    }

    k = &gi2_mp_names[i];
    m->known = k;
    m->kind = k->kind;

    if (k->kind != GI2_MP_K_IMAGE) {
        if (m->seen & (1u << i)) {
            return gi2_mp_fail(m, "duplicate field in the request body",
                               k->name);
        }

        m->seen |= 1u << i;
    }

    if (k->kind == GI2_MP_K_TEXT) {
        if (m->file) {
            return gi2_mp_fail(m, "a text field is sent as a file",
                               k->name);
        }

        if (m->charset_bad) {
            return gi2_mp_fail(m, "a text field has a charset other than "
                               "UTF-8", k->name);
        }

        return GI2_OK;
    }

    if (k->kind == GI2_MP_K_IMAGE
        && ++m->nimages > GI2_MP_IMAGES_MAX)
    {
        return gi2_mp_fail(m, "more than 16 images in the request", "image");
    }

    in = &m->req->input[m->req->ninputs];
    memset(in, 0, sizeof(gi2_input_t));
    in->mask = (k->kind == GI2_MP_K_MASK);

    if (EVP_DigestInit_ex(m->md, gi2_mp_sha256(), NULL) != 1) {
        return gi2_mp_fail(m, "out of memory", NULL);
    }

    return GI2_OK;
}


static int
gi2_mp_content(gi2_mp_t *m, const unsigned char *p, size_t n)
{
    size_t          cap;
    unsigned char  *t;

    m->bytes += n;

    switch (m->kind) {

    case GI2_MP_K_TEXT:

        if (m->bytes > m->known->max) {
            return gi2_mp_fail(m, (m->known->field == GI2_F_PROMPT)
                                  ? "'prompt' is over 1 MiB"
                                  : "a text field is over 4 KiB",
                               m->known->name);
        }

        if (m->text_len + n > m->text_cap) {
            cap = m->text_cap ? m->text_cap * 2 : 256;

            while (cap < m->text_len + n) {
                cap *= 2;
            }

            t = realloc(m->text, cap);
            if (t == NULL) {
                return gi2_mp_fail(m, "out of memory", NULL);
            }

            m->text = t;
            m->text_cap = cap;
        }

        memcpy(m->text + m->text_len, p, n);
        m->text_len += n;

        return GI2_OK;

    case GI2_MP_K_IMAGE:
    case GI2_MP_K_MASK:

        if (m->bytes > GI2_MP_FILE_MAX) {
            return gi2_mp_fail(m, "an image or mask is over 50 MB",
                               m->known->name);
        }

        if (EVP_DigestUpdate(m->md, p, n) != 1) {
            return gi2_mp_fail(m, "out of memory", NULL);
        }

        return GI2_OK;
    }

    return GI2_OK;
}


static int
gi2_mp_part_end(gi2_mp_t *m)
{
    gi2_input_t  *in;

    switch (m->kind) {

    case GI2_MP_K_TEXT:
        return gi2_mp_text_end(m);

    case GI2_MP_K_IMAGE:
    case GI2_MP_K_MASK:
        in = &m->req->input[m->req->ninputs];

        if (EVP_DigestFinal_ex(m->md, in->sha256, NULL) != 1) {
            return gi2_mp_fail(m, "out of memory", NULL);
        }

        in->bytes = m->bytes;
        m->req->ninputs++;
        break;
    }

    return GI2_OK;
}


static int
gi2_mp_text_end(gi2_mp_t *m)
{
    size_t          i;
    gi2_str_t       v;
    gi2_field_t    *f;
    unsigned char  *copy;

    v.data = m->text;
    v.len = m->text_len;

    if (!gi2_utf8_valid(v.data, v.len)) {
        return gi2_mp_fail(m, "a text field is not valid UTF-8",
                           m->known->name);
    }

    if (strcmp(m->known->name, "_charset_") == 0 && !gi2_mp_charset_ok(&v)) {
        return gi2_mp_fail(m, "the _charset_ field names a charset other "
                           "than UTF-8", "_charset_");
    }

    if (m->known->field < 0) {
        return GI2_OK;
    }

    copy = m->alloc->alloc(m->alloc->data, v.len + 1);
    if (copy == NULL) {
        return gi2_mp_fail(m, "out of memory", NULL);
    }

    if (v.len) {
        memcpy(copy, v.data, v.len);
    }

    copy[v.len] = '\0';

    f = &m->req->field[m->known->field];

    f->type = GI2_T_STRING;
    f->value.data = copy;
    f->value.len = v.len;
    f->key_end = m->value_start;
    f->value_start = m->value_start;
    f->value_end = m->dstart;
    f->part_start = m->part_start;
    f->part_end = m->dstart + 2;

    /* the types the JSON form would have, for the log */

    if (m->known->field == GI2_F_N && v.len && v.len <= 18) {
        for (i = 0; i < v.len && copy[i] >= '0' && copy[i] <= '9'; i++) {
            /* void */
        }

        if (i == v.len) {
            f->type = GI2_T_NUMBER;
        }
    }

    if (m->known->field == GI2_F_STREAM
        && ((v.len == 4 && memcmp(copy, "true", 4) == 0)
            || (v.len == 5 && memcmp(copy, "false", 5) == 0)))
    {
        f->type = GI2_T_BOOL;
    }

    return GI2_OK;
}
