/*
 * ngx_gi2_module: the access phase.
 *
 * The request body is parsed as it arrives, by a request body filter, so a
 * body spooled to a temporary file is never read back: JSON (the images
 * API, or the Responses API) or a multipart/form-data image edit.  Once
 * the body is complete the decision is made: reject with an OpenAI-shaped
 * error, rewrite "moderation":"low" to "auto" by splicing the buffer
 * chain, or resume the phases.
 */

#include "ngx_http_gi2_module.h"


#define NGX_HTTP_GI2_READ_CHUNK  16384

/* "low" spelled with escapes is at most 20 bytes: room to spare */
#define NGX_HTTP_GI2_TOKEN_MAX   64


static ngx_uint_t ngx_http_gi2_endpoint(ngx_http_request_t *r);
static ngx_uint_t ngx_http_gi2_take_exception(ngx_http_request_t *r,
    ngx_http_gi2_loc_conf_t *glcf, ngx_str_t *exception);
static ngx_int_t ngx_http_gi2_list_remove(ngx_http_request_t *r,
    ngx_list_part_t *prev, ngx_list_part_t *part, ngx_uint_t i);
static const char *ngx_http_gi2_check_headers(ngx_http_request_t *r,
    ngx_http_gi2_ctx_t *ctx);
static ngx_int_t ngx_http_gi2_parser_create(ngx_http_gi2_ctx_t *ctx,
    gi2_alloc_t *alloc);
static void ngx_http_gi2_feed(ngx_http_gi2_ctx_t *ctx, u_char *p,
    size_t len);
static void ngx_http_gi2_finish(ngx_http_gi2_ctx_t *ctx);
static void ngx_http_gi2_parser_destroy(ngx_http_gi2_ctx_t *ctx);
static ngx_int_t ngx_http_gi2_media_type_ok(ngx_str_t *ct);
static void ngx_http_gi2_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_gi2_parse_chain(ngx_http_request_t *r,
    ngx_http_gi2_ctx_t *ctx);
static ngx_int_t ngx_http_gi2_decide(ngx_http_request_t *r,
    ngx_http_gi2_ctx_t *ctx);
static ngx_int_t ngx_http_gi2_exception_check(ngx_http_request_t *r,
    ngx_http_gi2_loc_conf_t *glcf, ngx_str_t *id);
static ngx_int_t ngx_http_gi2_value_start(ngx_http_request_t *r,
    ngx_http_gi2_ctx_t *ctx, gi2_field_t *f, off_t *start);
static ngx_int_t ngx_http_gi2_member_span(ngx_http_request_t *r,
    ngx_http_gi2_ctx_t *ctx, gi2_field_t *f, off_t *from, off_t *to);
static ngx_int_t ngx_http_gi2_apply_edits(ngx_http_request_t *r,
    ngx_http_gi2_ctx_t *ctx);
static ngx_int_t ngx_http_gi2_user_field(ngx_http_request_t *r,
    ngx_http_gi2_ctx_t *ctx, ngx_http_gi2_loc_conf_t *glcf);
static ngx_int_t ngx_http_gi2_chain_read(ngx_http_request_t *r,
    off_t from, off_t to, u_char *dst);
static ngx_int_t ngx_http_gi2_slice(ngx_http_request_t *r,
    ngx_chain_t ***last, off_t from, off_t to);
static void ngx_http_gi2_cleanup(void *data);


static ngx_str_t  ngx_http_gi2_auto = ngx_string("auto");
static ngx_str_t  ngx_http_gi2_low = ngx_string("low");


ngx_int_t
ngx_http_gi2_handler(ngx_http_request_t *r)
{
    ngx_int_t                 rc;
    ngx_uint_t                endpoint, n;
    ngx_str_t                 msg, exc;
    const char               *bad;
    ngx_pool_cleanup_t       *cln;
    gi2_alloc_t              *alloc;
    ngx_http_gi2_ctx_t       *ctx;
    ngx_http_gi2_loc_conf_t  *glcf;

    if (r != r->main) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_gi2_get_ctx(r);

    if (ctx != NULL) {
        /*
         * Re-entry: the body handler resumed the phases, or an internal
         * redirect came after the decision.  It is made once a request.
         */
        return ctx->status;
    }

    glcf = ngx_http_get_module_loc_conf(r, ngx_http_gi2_module);

    if (!glcf->enable) {
        return NGX_DECLINED;
    }

    endpoint = (r->method != NGX_HTTP_POST) ? 0
               : (glcf->endpoint != NGX_HTTP_GI2_ENDPOINT_AUTO)
                 ? glcf->endpoint : ngx_http_gi2_endpoint(r);

    if (endpoint == 0) {
        /* not inspected, but the exception header still stays here */
        (void) ngx_http_gi2_take_exception(r, glcf, &exc);
        return NGX_DECLINED;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_gi2_ctx_t));
    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (ctx == NULL || cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->endpoint = endpoint;
    ctx->ruleset = glcf->ruleset;
    ctx->status = NGX_DONE;

    /* the cleanup also finds the context again after a redirect */
    cln->handler = ngx_http_gi2_cleanup;
    cln->data = ctx;

    ngx_http_set_ctx(r, ctx, ngx_http_gi2_module);

    n = ngx_http_gi2_take_exception(r, glcf, &exc);

    /* kept for the log, bounded: it is whatever the client sent */
    exc.len = ngx_min(exc.len, 128);
    ctx->exception_presented = exc;
    ctx->exception_count = n;

    bad = ngx_http_gi2_check_headers(r, ctx);

    if (bad != NULL) {
        msg.data = (u_char *) bad;
        msg.len = ngx_strlen(bad);

        rc = ngx_http_gi2_reject(r, ctx, NGX_HTTP_BAD_REQUEST,
                                 "gi2_invalid_request", NULL, &msg);
        ngx_http_finalize_request(r, rc);
        return NGX_DONE;
    }

    alloc = ngx_palloc(r->pool, sizeof(gi2_alloc_t));
    if (alloc == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    alloc->alloc = ngx_http_gi2_pool_alloc;
    alloc->data = r->pool;
    alloc->free = NULL;

    if (ngx_http_gi2_parser_create(ctx, alloc) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the body must be whole before anything is forwarded */
    r->request_body_no_buffering = 0;

    rc = ngx_http_read_client_request_body(r, ngx_http_gi2_body_handler);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    ngx_http_finalize_request(r, NGX_DONE);

    return NGX_DONE;
}


static void
ngx_http_gi2_cleanup(void *data)
{
    ngx_http_gi2_ctx_t  *ctx = data;

    ngx_http_gi2_parser_destroy(ctx);
}


/* the parser the body needs: multipart, or JSON of the entry point */

static ngx_int_t
ngx_http_gi2_parser_create(ngx_http_gi2_ctx_t *ctx, gi2_alloc_t *alloc)
{
    if (ctx->boundary.len) {
        ctx->mp = gi2_mp_create(&ctx->req, ctx->boundary.data,
                                ctx->boundary.len, alloc);

        return (ctx->mp != NULL) ? NGX_OK : NGX_ERROR;
    }

    ctx->parser = gi2_req_parser_create_mode(&ctx->req, alloc,
                                       (ctx->endpoint == NGX_HTTP_GI2_RESPONSES)
                                       ? GI2_REQ_RESPONSES : GI2_REQ_IMAGES);

    return (ctx->parser != NULL) ? NGX_OK : NGX_ERROR;
}


static void
ngx_http_gi2_feed(ngx_http_gi2_ctx_t *ctx, u_char *p, size_t len)
{
    if (ctx->mp != NULL) {
        (void) gi2_mp_feed(ctx->mp, p, len);

    } else {
        (void) gi2_req_parser_feed(ctx->parser, p, len);
    }
}


static void
ngx_http_gi2_finish(ngx_http_gi2_ctx_t *ctx)
{
    if (ctx->mp != NULL) {
        (void) gi2_mp_finish(ctx->mp);

    } else {
        (void) gi2_req_parser_finish(ctx->parser);
    }
}


static void
ngx_http_gi2_parser_destroy(ngx_http_gi2_ctx_t *ctx)
{
    gi2_req_parser_destroy(ctx->parser);
    ctx->parser = NULL;

    gi2_mp_destroy(ctx->mp);
    ctx->mp = NULL;
}


/* an internal redirect clears module contexts; the pool keeps ours */

ngx_http_gi2_ctx_t *
ngx_http_gi2_get_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t  *cln;
    ngx_http_gi2_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_gi2_module);

    if (ctx != NULL || !r->internal) {
        return ctx;
    }

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_gi2_cleanup) {
            ctx = cln->data;
            ngx_http_set_ctx(r, ctx, ngx_http_gi2_module);
            return ctx;
        }
    }

    return NULL;
}


/*
 * POST .../images/generations or .../images/edits: the last two path
 * segments, case-insensitive; POST .../responses: the last one.  Empty
 * segments (trailing or doubled slashes under "merge_slashes off") do not
 * count.
 */

static ngx_uint_t
ngx_http_gi2_endpoint(ngx_http_request_t *r)
{
    u_char      *p, *end, *seg;
    ngx_uint_t   endpoint;

    p = r->uri.data;
    end = p + r->uri.len;

    while (end > p && end[-1] == '/') {
        end--;
    }

    for (seg = end; seg > p && seg[-1] != '/'; seg--) { /* void */ }

    if (end - seg == 11
        && ngx_strncasecmp(seg, (u_char *) "generations", 11) == 0)
    {
        endpoint = NGX_HTTP_GI2_GENERATIONS;

    } else if (end - seg == 5
               && ngx_strncasecmp(seg, (u_char *) "edits", 5) == 0)
    {
        endpoint = NGX_HTTP_GI2_EDITS;

    } else if (end - seg == 9
               && ngx_strncasecmp(seg, (u_char *) "responses", 9) == 0)
    {
        return NGX_HTTP_GI2_RESPONSES;

    } else {
        return 0;
    }

    end = seg;

    while (end > p && end[-1] == '/') {
        end--;
    }

    for (seg = end; seg > p && seg[-1] != '/'; seg--) { /* void */ }

    if (end - seg == 6 && ngx_strncasecmp(seg, (u_char *) "images", 6) == 0) {
        return endpoint;
    }

    return 0;
}


/*
 * The exception header is taken out of the request so that it never
 * reaches upstream.  Elements are never moved: nginx keeps pointers to
 * them (r->headers_in.authorization, .host, ...), so the list is re-cut
 * around the removed element instead.
 */

static ngx_uint_t
ngx_http_gi2_take_exception(ngx_http_request_t *r,
    ngx_http_gi2_loc_conf_t *glcf, ngx_str_t *exception)
{
    ngx_uint_t        i, count;
    ngx_list_part_t  *part, *prev;
    ngx_table_elt_t  *h;

    ngx_str_null(exception);
    count = 0;

again:

    prev = NULL;
    part = &r->headers_in.headers.part;

    for ( /* void */ ; part; prev = part, part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (h[i].key.len != glcf->exception_header.len
                || ngx_strncasecmp(h[i].key.data, glcf->exception_header.data,
                                   h[i].key.len) != 0)
            {
                continue;
            }

            if (count++ == 0) {
                *exception = h[i].value;
            }

            if (ngx_http_gi2_list_remove(r, prev, part, i) != NGX_OK) {
                /* cannot cut the list: hide the value at least */
                h[i].value.len = 0;
                continue;
            }

            goto again;
        }
    }

    return count;
}


static ngx_int_t
ngx_http_gi2_list_remove(ngx_http_request_t *r, ngx_list_part_t *prev,
    ngx_list_part_t *part, ngx_uint_t i)
{
    ngx_list_t       *l;
    ngx_list_part_t  *next, *np;
    ngx_table_elt_t  *h;

    l = &r->headers_in.headers;
    h = part->elts;

    if (part->nelts == 1) {
        next = part->next;

        if (prev != NULL) {
            prev->next = next;

            if (l->last == part) {
                l->last = prev;
            }

        } else if (next != NULL) {
            /* the first part lives inside the list: take the next one in */
            l->part = *next;

            if (l->last == next) {
                l->last = &l->part;
            }

        } else {
            /* the list is empty now */
            l->part.elts = ngx_palloc(r->pool, l->size);
            if (l->part.elts == NULL) {
                return NGX_ERROR;
            }

            l->part.nelts = 0;
            l->nalloc = 1;
            return NGX_OK;
        }

    } else if (i == 0) {
        part->elts = &h[1];
        part->nelts--;

    } else if (i == part->nelts - 1) {
        part->nelts--;

    } else {
        np = ngx_palloc(r->pool, sizeof(ngx_list_part_t));
        if (np == NULL) {
            return NGX_ERROR;
        }

        np->elts = &h[i + 1];
        np->nelts = part->nelts - i - 1;
        np->next = part->next;

        part->nelts = i;
        part->next = np;

        if (l->last == part) {
            l->last = np;
        }
    }

    /* a later ngx_list_push() must start a new part, not write past one */
    l->nalloc = l->last->nelts;

    return NGX_OK;
}


/* the body must be JSON, or multipart for an edit, the module can read */

static const char *
ngx_http_gi2_check_headers(ngx_http_request_t *r, ngx_http_gi2_ctx_t *ctx)
{
    int               rc;
    ngx_uint_t        i, ntype;
    ngx_str_t         ct;
    gi2_str_t         boundary;
    const char       *err;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    static ngx_str_t  ctype = ngx_string("Content-Type");
    static ngx_str_t  cenc = ngx_string("Content-Encoding");

    ngx_str_null(&ct);
    ntype = 0;

    for (part = &r->headers_in.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {

            if (h[i].key.len == ctype.len
                && ngx_strncasecmp(h[i].key.data, ctype.data, ctype.len)
                   == 0)
            {
                ct = h[i].value;
                ntype++;
                continue;
            }

            if (h[i].key.len == cenc.len
                && ngx_strncasecmp(h[i].key.data, cenc.data, cenc.len) == 0
                && !(h[i].value.len == 8
                     && ngx_strncasecmp(h[i].value.data,
                                        (u_char *) "identity", 8) == 0))
            {
                return "gi2 cannot inspect an encoded request body; send it "
                       "without Content-Encoding";
            }
        }
    }

    if (ntype == 0) {
        return "the request needs Content-Type: application/json";
    }

    if (ntype > 1) {
        return "the request has more than one Content-Type header";
    }

    err = NULL;
    rc = gi2_mp_content_type(ct.data, ct.len, &boundary, &err);

    if (rc == GI2_EINVAL) {
        return err;
    }

    if (rc == 1) {
        if (ctx->endpoint != NGX_HTTP_GI2_EDITS) {
            return "multipart/form-data is only accepted for image edits; "
                   "send this request as application/json";
        }

        ctx->boundary.data = (u_char *) boundary.data;
        ctx->boundary.len = boundary.len;

        return NULL;
    }

    if (ngx_http_gi2_media_type_ok(&ct) != NGX_OK) {
        return "the request needs Content-Type: application/json "
               "(UTF-8)";
    }

    return NULL;
}


/* application/json, parameters allowed, a charset only if UTF-8 */

static ngx_int_t
ngx_http_gi2_media_type_ok(ngx_str_t *ct)
{
    u_char  *p, *end, *name, *val, *q;
    size_t   nlen, vlen;

    p = ct->data;
    end = p + ct->len;

    while (p < end && (*p == ' ' || *p == '\t')) {
        p++;
    }

    if (end - p < 16
        || ngx_strncasecmp(p, (u_char *) "application/json", 16) != 0)
    {
        return NGX_ERROR;
    }

    p += 16;

    for ( ;; ) {
        while (p < end && (*p == ' ' || *p == '\t')) {
            p++;
        }

        if (p == end) {
            return NGX_OK;
        }

        if (*p++ != ';') {
            return NGX_ERROR;
        }

        while (p < end && (*p == ' ' || *p == '\t')) {
            p++;
        }

        name = p;

        while (p < end && *p != '=' && *p != ';') {
            p++;
        }

        nlen = p - name;

        while (nlen && (name[nlen - 1] == ' ' || name[nlen - 1] == '\t')) {
            nlen--;
        }

        if (p == end || *p == ';') {
            continue;
        }

        val = ++p;

        while (p < end && *p != ';') {
            p++;
        }

        q = p;

        while (q > val && (q[-1] == ' ' || q[-1] == '\t')) {
            q--;
        }

        vlen = q - val;

        if (vlen >= 2 && val[0] == '"' && val[vlen - 1] == '"') {
            val++;
            vlen -= 2;
        }

        if (nlen == 7 && ngx_strncasecmp(name, (u_char *) "charset", 7) == 0
            && !((vlen == 5
                  && ngx_strncasecmp(val, (u_char *) "utf-8", 5) == 0)
                 || (vlen == 4
                     && ngx_strncasecmp(val, (u_char *) "utf8", 4) == 0)))
        {
            return NGX_ERROR;
        }
    }
}


ngx_int_t
ngx_http_gi2_request_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_buf_t           *b;
    ngx_chain_t         *cl;
    ngx_http_gi2_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_gi2_module);

    if (ctx == NULL || (ctx->parser == NULL && ctx->mp == NULL)
        || ctx->filtered)
    {
        return ngx_http_gi2_next_request_body_filter(r, in);
    }

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        if (ngx_buf_in_memory(b) && b->last > b->pos) {
            ngx_http_gi2_feed(ctx, b->pos, b->last - b->pos);

        } else if (b->in_file && b->file_last > b->file_pos) {
            /* not expected before the save filter: parse it later */
            ctx->filtered = 1;
            ctx->req.length = 0;
            break;
        }

        if (b->last_buf) {
            ngx_http_gi2_finish(ctx);
            ctx->filtered = 1;
        }
    }

    return ngx_http_gi2_next_request_body_filter(r, in);
}


static void
ngx_http_gi2_body_handler(ngx_http_request_t *r)
{
    ngx_int_t            rc;
    ngx_http_gi2_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_gi2_module);

    if (!ctx->filtered || ctx->req.length == 0) {
        /*
         * The body was read before we asked (an internal redirect, another
         * module) or came in a form the filter did not see: parse the
         * buffers nginx kept.
         */

        if (ngx_http_gi2_parse_chain(r, ctx) != NGX_OK) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }
    }

    ngx_http_gi2_parser_destroy(ctx);

    rc = ngx_http_gi2_decide(r, ctx);

    ctx->done = 1;

    /* what passed the local checks may go to the moderation service */

    rc = ngx_http_gi2_modapi_check(r, ctx, rc);

    if (rc == NGX_AGAIN) {
        /* its answer resumes the request */
        return;
    }

    ngx_http_gi2_resume(r, ctx, rc);
}


/* the decision is made: forward (NGX_DECLINED) or end the request */

void
ngx_http_gi2_resume(ngx_http_request_t *r, ngx_http_gi2_ctx_t *ctx,
    ngx_int_t rc)
{
    if (rc == NGX_DECLINED) {
        ctx->status = NGX_DECLINED;
        r->preserve_body = 1;
        r->write_event_handler = ngx_http_core_run_phases;
        ngx_http_core_run_phases(r);
        return;
    }

    ngx_http_finalize_request(r, rc);
}


static ngx_int_t
ngx_http_gi2_parse_chain(ngx_http_request_t *r, ngx_http_gi2_ctx_t *ctx)
{
    off_t         off;
    ssize_t       n;
    u_char       *buf;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;
    gi2_alloc_t   alloc;

    alloc.alloc = ngx_http_gi2_pool_alloc;
    alloc.data = r->pool;
    alloc.free = NULL;

    ngx_http_gi2_parser_destroy(ctx);

    if (ngx_http_gi2_parser_create(ctx, &alloc) != NGX_OK) {
        return NGX_ERROR;
    }

    buf = NULL;

    for (cl = r->request_body ? r->request_body->bufs : NULL;
         cl;
         cl = cl->next)
    {
        b = cl->buf;

        if (ngx_buf_in_memory(b)) {
            if (b->last > b->pos) {
                ngx_http_gi2_feed(ctx, b->pos, b->last - b->pos);
            }

            continue;
        }

        /* bounded by client_max_body_size, read in small steps */

        if (buf == NULL) {
            buf = ngx_palloc(r->pool, NGX_HTTP_GI2_READ_CHUNK);
            if (buf == NULL) {
                return NGX_ERROR;
            }
        }

        for (off = b->file_pos; off < b->file_last; off += n) {
            n = ngx_read_file(b->file, buf,
                              ngx_min(NGX_HTTP_GI2_READ_CHUNK,
                                      b->file_last - off),
                              off);
            if (n <= 0) {
                ngx_http_gi2_parser_destroy(ctx);
                return NGX_ERROR;
            }

            ngx_http_gi2_feed(ctx, buf, n);
        }
    }

    ngx_http_gi2_finish(ctx);

    ctx->filtered = 1;

    return NGX_OK;
}


static ngx_int_t
ngx_http_gi2_decide(ngx_http_request_t *r, ngx_http_gi2_ctx_t *ctx)
{
    int                       rc;
    ngx_int_t                 low, has_deny, urc;
    ngx_uint_t                i;
    ngx_str_t                 exc, msg;
    gi2_alloc_t               alloc;
    gi2_field_t              *prompt, *f;
    ngx_http_gi2_edit_t      *ed;
    const gi2_rule_t         *rule, *deny;
    ngx_http_gi2_loc_conf_t  *glcf;

    glcf = ngx_http_get_module_loc_conf(r, ngx_http_gi2_module);

    if (ctx->req.error) {
        msg.data = (u_char *) ctx->req.error;
        msg.len = ngx_strlen(ctx->req.error);

        return ngx_http_gi2_reject(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "gi2_invalid_request", ctx->req.param,
                                   &msg);
    }

    /* a Responses API request that cannot make images goes as it came */

    if (ctx->endpoint == NGX_HTTP_GI2_RESPONSES && ctx->req.image_tools == 0)
    {
        ctx->decision = NGX_HTTP_GI2_NONE;
        return NGX_DECLINED;
    }

    /* the exception header was taken out of the request when it began */

    exc = ctx->exception_presented;

    if (ctx->exception_count) {

        if (ctx->exception_count > 1
            || ngx_http_gi2_exception_check(r, glcf, &exc) != NGX_OK)
        {
            ngx_str_set(&msg, "the moderation exception presented is "
                        "unknown, expired, not issued to this consumer, or "
                        "sent more than once");

            return ngx_http_gi2_reject(r, ctx, glcf->reject_status,
                                       "gi2_moderation_exception_invalid",
                                       "moderation", &msg);
        }

        ctx->exception_id = exc;
    }

    /* prompt rules */

    prompt = &ctx->req.field[GI2_F_PROMPT];
    deny = NULL;
    has_deny = 0;

    if (ctx->ruleset != NULL) {
        alloc.alloc = ngx_http_gi2_pool_alloc;
        alloc.data = r->pool;
        alloc.free = NULL;

        ctx->hits = ngx_palloc(r->pool, sizeof(unsigned)
                                       * (gi2_ruleset_count(ctx->ruleset)
                                          + 1));
        if (ctx->hits == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        rc = gi2_ruleset_screen(ctx->ruleset, prompt->value.data,
                                prompt->value.len, ctx->hits, NULL, &alloc);
        if (rc == GI2_EINVAL) {
            ngx_str_set(&msg, "'prompt' is not valid UTF-8");
            return ngx_http_gi2_reject(r, ctx, NGX_HTTP_BAD_REQUEST,
                                       "gi2_invalid_request", "prompt",
                                       &msg);
        }

        if (rc == GI2_ENOMEM) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ctx->nhits = (rc > 0) ? rc : 0;

        if (gi2_ruleset_errors(ctx->ruleset)) {
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "gi2: %d rule(s) hit a PCRE2 limit on this prompt "
                          "and count as matched",
                          gi2_ruleset_errors(ctx->ruleset));
        }

        for (i = 0; i < ctx->nhits; i++) {
            rule = gi2_ruleset_rule(ctx->ruleset, ctx->hits[i]);

            if (rule->action == GI2_ACTION_DENY) {
                has_deny = 1;

                if (deny == NULL) {
                    deny = rule;
                }
            }
        }
    }

    if (has_deny) {
        msg.data = ngx_pnalloc(r->pool, 128 + 128);
        if (msg.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        msg.len = ngx_sprintf(msg.data, "The prompt was rejected by the "
                              "gateway's content policy (category: %s).",
                              deny->category)
                  - msg.data;

        return ngx_http_gi2_reject(r, ctx, glcf->reject_status,
                                   "gi2_prompt_rejected", "prompt", &msg);
    }

    /* the moderation policy */

    low = ctx->req.field[GI2_F_MODERATION].type == GI2_T_STRING
          && ctx->req.field[GI2_F_MODERATION].value.len == 3;

    ctx->moderation_effective = low ? ngx_http_gi2_low : ngx_http_gi2_auto;
    ctx->decision = ctx->nhits ? NGX_HTTP_GI2_FLAG : NGX_HTTP_GI2_ALLOW;

    if (low && ctx->exception_id.len == 0) {

        switch (glcf->moderation_low) {

        case NGX_HTTP_GI2_LOW_REWRITE:
            f = &ctx->req.field[GI2_F_MODERATION];
            ed = &ctx->edits[ctx->nedits];

            if (ctx->req.multipart) {
                /* the part's value itself */
                ed->from = (off_t) f->value_start;
                ngx_str_set(&ed->text, "auto");

            } else {
                if (ngx_http_gi2_value_start(r, ctx, f, &ed->from)
                    != NGX_OK)
                {
                    return NGX_HTTP_INTERNAL_SERVER_ERROR;
                }

                ngx_str_set(&ed->text, "\"auto\"");
            }

            ed->to = (off_t) f->value_end;
            ctx->nedits++;

            ctx->moderation_effective = ngx_http_gi2_auto;
            ctx->decision = NGX_HTTP_GI2_REWRITE;
            break;

        case NGX_HTTP_GI2_LOW_ALLOW:
            break;

        default: /* NGX_HTTP_GI2_LOW_REJECT */
            ngx_str_set(&msg, "\"moderation\":\"low\" needs an approved "
                        "exception; send its ID in the exception header or "
                        "use \"auto\"");

            return ngx_http_gi2_reject(r, ctx, glcf->reject_status,
                                       "gi2_moderation_exception_required",
                                       "moderation", &msg);
        }
    }

    /* what leaves for upstream of the caller's "user" field */

    urc = ngx_http_gi2_user_field(r, ctx, glcf);
    if (urc != NGX_DECLINED) {
        return urc;
    }

    if (ctx->nedits && ngx_http_gi2_apply_edits(r, ctx) != NGX_OK) {
        ngx_str_set(&msg, "the request body could not be rewritten: "
                    "unusual spacing around a rewritten field");
        return ngx_http_gi2_reject(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "gi2_invalid_request", NULL, &msg);
    }

    return NGX_DECLINED;
}


static ngx_int_t
ngx_http_gi2_user_field(ngx_http_request_t *r, ngx_http_gi2_ctx_t *ctx,
    ngx_http_gi2_loc_conf_t *glcf)
{
    u_char               *p;
    ngx_str_t             msg, hash;
    gi2_field_t          *f;
    ngx_http_gi2_edit_t  *ed;

    f = &ctx->req.field[GI2_F_USER];

    if (glcf->user_field == NGX_HTTP_GI2_USER_KEEP
        || f->type == GI2_T_NONE)
    {
        return NGX_DECLINED;
    }

    if (f->type != GI2_T_STRING) {
        ngx_str_set(&msg, "'user' must be a string");
        return ngx_http_gi2_reject(r, ctx, NGX_HTTP_BAD_REQUEST,
                                   "gi2_invalid_request", "user", &msg);
    }

    ed = &ctx->edits[ctx->nedits];

    if (ctx->req.multipart) {
        /* drop: the whole part; hash: its value */
        ed->from = (off_t) (glcf->user_field == NGX_HTTP_GI2_USER_DROP
                            ? f->part_start : f->value_start);
        ed->to = (off_t) (glcf->user_field == NGX_HTTP_GI2_USER_DROP
                          ? f->part_end : f->value_end);
        ngx_str_null(&ed->text);

        if (glcf->user_field == NGX_HTTP_GI2_USER_HASH
            && ngx_http_gi2_hmac(r, glcf, (u_char *) f->value.data,
                                 f->value.len, &ed->text)
               != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ctx->nedits++;
        return NGX_DECLINED;
    }

    if (glcf->user_field == NGX_HTTP_GI2_USER_DROP) {
        if (ngx_http_gi2_member_span(r, ctx, f, &ed->from, &ed->to)
            != NGX_OK)
        {
            goto failed;
        }

        ngx_str_null(&ed->text);
        ctx->nedits++;
        return NGX_DECLINED;
    }

    /* hash: the value becomes "hmac-sha256:<hex>" */

    if (ngx_http_gi2_value_start(r, ctx, f, &ed->from) != NGX_OK) {
        goto failed;
    }

    if (ngx_http_gi2_hmac(r, glcf, (u_char *) f->value.data, f->value.len,
                          &hash)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_pnalloc(r->pool, hash.len + 2);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ed->to = (off_t) f->value_end;
    ed->text.data = p;
    ed->text.len = ngx_sprintf(p, "\"%V\"", &hash) - p;
    ctx->nedits++;

    return NGX_DECLINED;

failed:

    ngx_str_set(&msg, "the request body could not be rewritten: unusual "
                "spacing around 'user'");

    return ngx_http_gi2_reject(r, ctx, NGX_HTTP_BAD_REQUEST,
                               "gi2_invalid_request", "user", &msg);
}


static ngx_int_t
ngx_http_gi2_exception_check(ngx_http_request_t *r,
    ngx_http_gi2_loc_conf_t *glcf, ngx_str_t *id)
{
    u_char                     d;
    size_t                     k;
    ngx_str_t                  consumer;
    ngx_uint_t                 i;
    ngx_http_gi2_exception_t  *e;

    if (glcf->exceptions == NULL) {
        return NGX_DECLINED;
    }

    e = glcf->exceptions->elts;

    for (i = 0; i < glcf->exceptions->nelts; i++) {
        if (e[i].id.len == id->len
            && ngx_strncmp(e[i].id.data, id->data, id->len) == 0)
        {
            break;
        }
    }

    if (i == glcf->exceptions->nelts) {
        return NGX_DECLINED;
    }

    if (e[i].expires && ngx_time() >= e[i].expires) {
        return NGX_DECLINED;
    }

    if (e[i].consumer.len == 0) {
        return NGX_OK;
    }

    if (ngx_http_gi2_consumer_value(r, glcf, &consumer) != NGX_OK
        || consumer.len != e[i].consumer.len)
    {
        return NGX_DECLINED;
    }

    /* the consumer may be a credential: compare in constant time */

    d = 0;

    for (k = 0; k < consumer.len; k++) {
        d |= consumer.data[k] ^ e[i].consumer.data[k];
    }

    return d ? NGX_DECLINED : NGX_OK;
}


ngx_int_t
ngx_http_gi2_consumer_value(ngx_http_request_t *r,
    ngx_http_gi2_loc_conf_t *glcf, ngx_str_t *consumer)
{
    u_char           *p, *end;
    ngx_table_elt_t  *auth;

    if (glcf->consumer != NULL) {
        return ngx_http_complex_value(r, glcf->consumer, consumer);
    }

    ngx_str_null(consumer);

    auth = r->headers_in.authorization;

    if (auth == NULL || auth->value.len < 7
        || ngx_strncasecmp(auth->value.data, (u_char *) "Bearer ", 7) != 0)
    {
        return NGX_OK;
    }

    p = auth->value.data + 7;
    end = auth->value.data + auth->value.len;

    while (p < end && *p == ' ') {
        p++;
    }

    while (end > p && end[-1] == ' ') {
        end--;
    }

    consumer->data = p;
    consumer->len = end - p;

    return NGX_OK;
}


/*
 * Field rewrites.  The outcome is NGX_DECLINED to go on, or the status of
 * a rejection already sent.
 */

/*
 * The body offset where a string value's token starts: the first quote
 * after the key, past the colon and any white space.  Read forwards from
 * the key's end, so nothing inside the value can mislead it.
 */

static ngx_int_t
ngx_http_gi2_value_start(ngx_http_request_t *r, ngx_http_gi2_ctx_t *ctx,
    gi2_field_t *f, off_t *start)
{
    off_t    pos, end, n;
    size_t   k;
    u_char   win[NGX_HTTP_GI2_TOKEN_MAX];

    end = (off_t) f->value_end;

    if (end > (off_t) ctx->req.length) {
        return NGX_ERROR;
    }

    for (pos = (off_t) f->key_end; pos < end; pos += n) {
        n = ngx_min(end - pos, NGX_HTTP_GI2_TOKEN_MAX);

        if (ngx_http_gi2_chain_read(r, pos, pos + n, win) != NGX_OK) {
            return NGX_ERROR;
        }

        for (k = 0; k < (size_t) n; k++) {
            if (win[k] == ' ' || win[k] == '\t' || win[k] == '\r'
                || win[k] == '\n' || win[k] == ':')
            {
                continue;
            }

            if (win[k] != '"') {
                return NGX_ERROR;
            }

            *start = pos + k;
            return NGX_OK;
        }
    }

    return NGX_ERROR;
}


/*
 * The bytes that remove a top-level member: its key, its value and one
 * comma, so that what is left is still a JSON object.  Whitespace runs
 * longer than a window are refused rather than guessed at.
 */

static ngx_int_t
ngx_http_gi2_member_span(ngx_http_request_t *r, ngx_http_gi2_ctx_t *ctx,
    gi2_field_t *f, off_t *from, off_t *to)
{
    off_t    ks, a, e, total;
    long     k;
    u_char   win[NGX_HTTP_GI2_TOKEN_MAX];

    total = (off_t) ctx->req.length;

    /* the key's opening quote */

    e = (off_t) f->key_end;
    a = ngx_max(0, e - NGX_HTTP_GI2_TOKEN_MAX);

    if (a >= e || ngx_http_gi2_chain_read(r, a, e, win) != NGX_OK) {
        return NGX_ERROR;
    }

    k = gi2_json_string_start(win, e - a);
    if (k < 0) {
        return NGX_ERROR;
    }

    ks = a + k;

    /* what stands before the key: a comma, or the object's brace */

    a = ngx_max(0, ks - NGX_HTTP_GI2_TOKEN_MAX);

    if (a < ks) {
        if (ngx_http_gi2_chain_read(r, a, ks, win) != NGX_OK) {
            return NGX_ERROR;
        }

        for (k = ks - a - 1; k >= 0; k--) {
            if (win[k] != ' ' && win[k] != '\t' && win[k] != '\r'
                && win[k] != '\n')
            {
                break;
            }
        }

        if (k >= 0 && win[k] == ',') {
            *from = a + k;
            *to = (off_t) f->value_end;
            return NGX_OK;
        }

        if (k < 0 || win[k] != '{') {
            return NGX_ERROR;
        }
    }

    /* the first member: take the comma after it, if any */

    a = (off_t) f->value_end;
    e = ngx_min(total, a + NGX_HTTP_GI2_TOKEN_MAX);

    if (a >= e || ngx_http_gi2_chain_read(r, a, e, win) != NGX_OK) {
        return NGX_ERROR;
    }

    for (k = 0; k < e - a; k++) {
        if (win[k] != ' ' && win[k] != '\t' && win[k] != '\r'
            && win[k] != '\n')
        {
            break;
        }
    }

    if (k == e - a) {
        return NGX_ERROR;
    }

    *from = ks;
    *to = (win[k] == ',') ? a + k + 1 : (off_t) f->value_end;

    return NGX_OK;
}


/*
 * Apply the edits (sorted, not overlapping) by splicing the body: the
 * untouched bytes stay where they are, in memory or in the temporary
 * file, and Content-Length follows.
 */

static ngx_int_t
ngx_http_gi2_apply_edits(ngx_http_request_t *r, ngx_http_gi2_ctx_t *ctx)
{
    off_t                 total, pos, len;
    u_char               *p;
    ngx_buf_t            *b;
    ngx_uint_t            i;
    ngx_chain_t          *out, **last, *cl;
    ngx_table_elt_t      *h;
    ngx_http_gi2_edit_t  *ed, t;

    total = (off_t) ctx->req.length;
    ed = ctx->edits;

    if (ctx->nedits == 2 && ed[1].from < ed[0].from) {
        t = ed[0];
        ed[0] = ed[1];
        ed[1] = t;
    }

    if (ctx->nedits == 2 && ed[0].to > ed[1].from) {
        return NGX_ERROR;
    }

    out = NULL;
    last = &out;
    pos = 0;
    len = total;

    for (i = 0; i < ctx->nedits; i++) {
        if (ed[i].from < pos || ed[i].to > total || ed[i].from > ed[i].to) {
            return NGX_ERROR;
        }

        if (ngx_http_gi2_slice(r, &last, pos, ed[i].from) != NGX_OK) {
            return NGX_ERROR;
        }

        if (ed[i].text.len) {
            b = ngx_calloc_buf(r->pool);
            cl = ngx_alloc_chain_link(r->pool);
            if (b == NULL || cl == NULL) {
                return NGX_ERROR;
            }

            b->pos = ed[i].text.data;
            b->last = ed[i].text.data + ed[i].text.len;
            b->memory = 1;

            cl->buf = b;
            cl->next = NULL;
            *last = cl;
            last = &cl->next;
        }

        len += (off_t) ed[i].text.len - (ed[i].to - ed[i].from);
        pos = ed[i].to;
    }

    if (ngx_http_gi2_slice(r, &last, pos, total) != NGX_OK || out == NULL) {
        return NGX_ERROR;
    }

    /* the last buffer ends the body */
    for (cl = out; cl->next; cl = cl->next) { /* void */ }
    cl->buf->last_buf = 1;

    r->request_body->bufs = out;
    r->headers_in.content_length_n = len;

    h = r->headers_in.content_length;

    if (h != NULL) {
        p = ngx_pnalloc(r->pool, NGX_OFF_T_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        h->value.data = p;
        h->value.len = ngx_sprintf(p, "%O", len) - p;
    }

    return NGX_OK;
}


/* copy body bytes [from, to) of the current chain into dst */

static ngx_int_t
ngx_http_gi2_chain_read(ngx_http_request_t *r, off_t from, off_t to,
    u_char *dst)
{
    off_t         pos, size, s, e;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    pos = 0;

    for (cl = r->request_body->bufs; cl && pos < to; cl = cl->next) {
        b = cl->buf;
        size = ngx_buf_size(b);

        s = ngx_max(from, pos);
        e = ngx_min(to, pos + size);

        if (s < e) {
            if (ngx_buf_in_memory(b)) {
                ngx_memcpy(dst, b->pos + (s - pos), e - s);

            } else {
                n = ngx_read_file(b->file, dst, e - s,
                                  b->file_pos + (s - pos));
                if (n != e - s) {
                    return NGX_ERROR;
                }
            }

            dst += e - s;
        }

        pos += size;
    }

    return (pos >= to) ? NGX_OK : NGX_ERROR;
}


/* append buffers covering body bytes [from, to) of the current chain */

static ngx_int_t
ngx_http_gi2_slice(ngx_http_request_t *r, ngx_chain_t ***last, off_t from,
    off_t to)
{
    off_t         pos, size, s, e;
    ngx_buf_t    *b, *nb;
    ngx_chain_t  *cl, *ncl;

    pos = 0;

    for (cl = r->request_body->bufs; cl && pos < to; cl = cl->next) {
        b = cl->buf;
        size = ngx_buf_size(b);

        s = ngx_max(from, pos);
        e = ngx_min(to, pos + size);

        if (s < e) {
            nb = ngx_calloc_buf(r->pool);
            ncl = ngx_alloc_chain_link(r->pool);
            if (nb == NULL || ncl == NULL) {
                return NGX_ERROR;
            }

            if (ngx_buf_in_memory(b)) {
                nb->memory = 1;
                nb->start = b->pos + (s - pos);
                nb->pos = nb->start;
                nb->last = b->pos + (e - pos);
                nb->end = nb->last;

            } else {
                nb->in_file = 1;
                nb->file = b->file;
                nb->file_pos = b->file_pos + (s - pos);
                nb->file_last = b->file_pos + (e - pos);
            }

            ncl->buf = nb;
            ncl->next = NULL;
            **last = ncl;
            *last = &ncl->next;
        }

        pos += size;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_gi2_reject(ngx_http_request_t *r, ngx_http_gi2_ctx_t *ctx,
    ngx_uint_t status, const char *code, const char *param,
    ngx_str_t *message)
{
    size_t            len, esc;
    u_char           *p;
    ngx_int_t         rc;
    ngx_buf_t        *b;
    ngx_chain_t       out;
    const char       *type;
    ngx_table_elt_t  *h;

    ctx->decision = NGX_HTTP_GI2_REJECT;
    ctx->reject_code = code;
    ctx->done = 1;
    ctx->status = NGX_DONE;
    ngx_str_null(&ctx->moderation_effective);

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "gi2: rejected with %s", code);

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    /* code and param are ours; the message may quote JSON */

    esc = ngx_escape_json(NULL, message->data, message->len);

    /* a service gi2 depends on failed: a server error, worth a retry */
    type = (status >= 500) ? "server_error" : "invalid_request_error";

    len = sizeof("{\"error\":{\"message\":\"\",\"type\":\"\",\"param\":,"
                 "\"code\":\"\"}}\n") - 1
          + message->len + esc + ngx_strlen(type) + ngx_strlen(code)
          + (param ? ngx_strlen(param) + 2 : 4);

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(b->last, "{\"error\":{\"message\":\"",
                   sizeof("{\"error\":{\"message\":\"") - 1);
    p = (u_char *) ngx_escape_json(p, message->data, message->len);
    p = ngx_sprintf(p, "\",\"type\":\"%s\",\"param\":", type);

    if (param) {
        p = ngx_sprintf(p, "\"%s\"", param);

    } else {
        p = ngx_cpymem(p, "null", 4);
    }

    p = ngx_sprintf(p, ",\"code\":\"%s\"}}\n", code);

    b->last = p;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    /* the OpenAI SDKs honour this: a policy answer is not worth a retry */

    if (status < 500) {
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "x-should-retry");
        ngx_str_set(&h->value, "false");
    }

    r->headers_out.status = status;
    r->headers_out.content_length_n = b->last - b->pos;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}
