/*
 * ngx_gi2_module: the response side and the audit record.
 *
 * A header filter decides whether the upstream answer can be read (JSON
 * or an event stream, plain or gzip/deflate); a body filter feeds a copy
 * of each buffer, inflated when needed, to the streaming scanner and
 * passes the buffers on untouched.  The log-phase variables and the JSON
 * record are computed once, when the log first asks.
 */

#include "ngx_http_gi2_module.h"
#include "ngx_http_gi2_metrics.h"
#include "gi2_resp.h"

#include <zlib.h>


#define NGX_HTTP_GI2_INFLATE_OUT  4096
#define NGX_HTTP_GI2_FIELD_MAX    256      /* client strings in the log */
#define NGX_HTTP_GI2_PROMPT_LOG_MAX  131072  /* gi2_log_prompt on */


typedef struct {
    u_char                     *start;
    u_char                     *pos;
    u_char                     *end;
} ngx_http_gi2_json_t;


static ngx_int_t ngx_http_gi2_log_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_gi2_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_gi2_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static void ngx_http_gi2_scan(ngx_http_request_t *r, ngx_http_gi2_ctx_t *ctx,
    u_char *p, size_t len);
static ngx_uint_t ngx_http_gi2_media_type(ngx_str_t *ct, char *type);
static void *ngx_http_gi2_zalloc(void *opaque, u_int items, u_int size);
static void ngx_http_gi2_zfree(void *opaque, void *address);
static void ngx_http_gi2_resp_cleanup(void *data);
static ngx_str_t *ngx_http_gi2_find_header(ngx_list_t *list, char *name,
    size_t len);

static void ngx_http_gi2_json_raw(ngx_http_gi2_json_t *j, const char *s);
static void ngx_http_gi2_json_raw_n(ngx_http_gi2_json_t *j, const u_char *s,
    size_t n);
static void ngx_http_gi2_json_sep(ngx_http_gi2_json_t *j);
static void ngx_http_gi2_json_open(ngx_http_gi2_json_t *j, const char *key,
    u_char c);
static void ngx_http_gi2_json_str_full(ngx_http_gi2_json_t *j,
    const u_char *s, size_t len);
static void ngx_http_gi2_json_split(ngx_http_gi2_json_t *j,
    const char *list);
static void ngx_http_gi2_json_kstr(ngx_http_gi2_json_t *j, const char *key,
    const u_char *s, size_t len);
static void ngx_http_gi2_json_kcstr(ngx_http_gi2_json_t *j, const char *key,
    const char *s);
static void ngx_http_gi2_json_knum(ngx_http_gi2_json_t *j, const char *key,
    int64_t n);
static void ngx_http_gi2_json_field(ngx_http_gi2_json_t *j, const char *key,
    gi2_field_t *f);
static void ngx_http_gi2_json_count(ngx_http_gi2_json_t *j, const char *key,
    gi2_field_t *f);
static void ngx_http_gi2_json_key(ngx_http_gi2_json_t *j, const char *key);
static void ngx_http_gi2_json_str(ngx_http_gi2_json_t *j, const u_char *s,
    size_t len);
static void ngx_http_gi2_json_cstr(ngx_http_gi2_json_t *j, const char *s);
static void ngx_http_gi2_json_num(ngx_http_gi2_json_t *j, int64_t n);
static void ngx_http_gi2_json_close(ngx_http_gi2_json_t *j, u_char c);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


ngx_int_t
ngx_http_gi2_audit_init(ngx_conf_t *cf)
{
    ngx_array_t                *a;
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    /*
     * The log-phase handler must run before the log module writes the
     * line: nginx calls log handlers in the order they were added, so it
     * goes in front.
     */

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);
    a = &cmcf->phases[NGX_HTTP_LOG_PHASE].handlers;

    h = ngx_array_push(a);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h = a->elts;
    ngx_memmove(&h[1], &h[0], (a->nelts - 1) * sizeof(ngx_http_handler_pt));
    h[0] = ngx_http_gi2_log_handler;

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_gi2_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_gi2_body_filter;

    return NGX_OK;
}


/* for the thread scanner's filter (ngx_http_gi2_rt.c) */

ngx_int_t
ngx_http_gi2_next_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    return ngx_http_next_body_filter(r, in);
}


static ngx_int_t
ngx_http_gi2_header_filter(ngx_http_request_t *r)
{
    int                       sse;
    ngx_str_t                *ce, *rid;
    z_stream                 *zs;
    gi2_alloc_t              *alloc;
    ngx_pool_cleanup_t       *cln;
    ngx_http_gi2_ctx_t       *ctx;
    ngx_http_gi2_loc_conf_t  *glcf;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_gi2_get_ctx(r);

    /*
     * gi2's own rejections are not upstream answers; a Responses API
     * request without the image tool (no decision) is not read either
     */

    if (ctx == NULL || !ctx->done || ctx->decision == NGX_HTTP_GI2_REJECT
        || ctx->decision == NGX_HTTP_GI2_NONE
        || r->upstream == NULL || ctx->resp != NULL)
    {
        return ngx_http_next_header_filter(r);
    }

    ctx->resp_status = r->headers_out.status;

    glcf = ngx_http_get_module_loc_conf(r, ngx_http_gi2_module);

    rid = ngx_http_gi2_find_header(&r->headers_out.headers, "x-request-id",
                                   sizeof("x-request-id") - 1);
    if (rid != NULL) {
        ctx->request_id = *rid;
    }

    if (ngx_http_gi2_media_type(&r->headers_out.content_type,
                                "text/event-stream"))
    {
        sse = 1;

    } else if (ngx_http_gi2_media_type(&r->headers_out.content_type,
                                       "application/json"))
    {
        sse = 0;

    } else {
        ctx->resp_skipped = 1;
        return ngx_http_next_header_filter(r);
    }

    /* request screening only: the answer is passed on unread */

    if (!glcf->response_inspection) {
        ctx->resp_skipped = 1;
        return ngx_http_next_header_filter(r);
    }

    ce = (r->headers_out.content_encoding != NULL)
         ? &r->headers_out.content_encoding->value : NULL;

    if (ce != NULL && ce->len
        && !(ce->len == 4 && ngx_strncasecmp(ce->data, (u_char *) "gzip", 4)
                             == 0)
        && !(ce->len == 7
             && ngx_strncasecmp(ce->data, (u_char *) "deflate", 7) == 0)
        && !(ce->len == 8
             && ngx_strncasecmp(ce->data, (u_char *) "identity", 8) == 0))
    {
        /* br, zstd...: passed on, recorded as not inspected */
        ctx->resp_skipped = 1;
        return ngx_http_next_header_filter(r);
    }

    alloc = ngx_palloc(r->pool, sizeof(gi2_alloc_t));
    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (alloc == NULL || cln == NULL) {
        return NGX_ERROR;
    }

    alloc->alloc = ngx_http_gi2_pool_alloc;
    alloc->data = r->pool;
    alloc->free = NULL;

    ctx->resp = gi2_resp_create(sse, alloc);
    if (ctx->resp == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_http_gi2_resp_cleanup;
    cln->data = ctx;

    if (ce != NULL && ce->len
        && !(ce->len == 8
             && ngx_strncasecmp(ce->data, (u_char *) "identity", 8) == 0))
    {
        /* inflated on a copy: the client still gets the encoded bytes */

        zs = ngx_pcalloc(r->pool, sizeof(z_stream));
        ctx->zout = ngx_palloc(r->pool, NGX_HTTP_GI2_INFLATE_OUT);
        if (zs == NULL || ctx->zout == NULL) {
            return NGX_ERROR;
        }

        zs->zalloc = ngx_http_gi2_zalloc;
        zs->zfree = ngx_http_gi2_zfree;
        zs->opaque = r->pool;

        /* 32 + 15: a gzip or a zlib header, found automatically */

        if (inflateInit2(zs, MAX_WBITS + 32) != Z_OK) {
            return NGX_ERROR;
        }

        ctx->zs = zs;
        ctx->resp_gzip = (ce->len == 4);
    }

#if (NGX_THREADS)
    if (glcf->response_threads != NULL && ctx->zs == NULL) {
        if (ngx_http_gi2_rt_create(r, ctx, glcf->response_threads)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }
#endif

    /* the body filter reads buffers, so they must be in memory */
    r->filter_need_in_memory = 1;

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_http_gi2_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_buf_t           *b;
    ngx_chain_t         *cl;
    ngx_http_gi2_ctx_t  *ctx;

    if (r != r->main) {
        return ngx_http_next_body_filter(r, in);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_gi2_module);

#if (NGX_THREADS)
    if (ctx != NULL && ctx->rt != NULL) {
        return ngx_http_gi2_rt_body_filter(r, ctx, in);
    }
#endif

    if (in == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    if (ctx == NULL || ctx->resp == NULL || ctx->resp_finished) {
        return ngx_http_next_body_filter(r, in);
    }

    /* a tee: read each buffer, change nothing, hold nothing */

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        if (ngx_buf_in_memory(b)) {
            if (b->last > b->pos) {
                ngx_http_gi2_scan(r, ctx, b->pos, b->last - b->pos);
            }

        } else if (ngx_buf_size(b) > 0) {
            /* not readable here: the record says the scan is incomplete */
            ctx->resp_skipped = 1;
            ctx->resp_finished = 1;
            break;
        }

        if (b->last_buf) {
            (void) gi2_resp_finish(ctx->resp);
            ctx->resp_finished = 1;
            break;
        }
    }

    return ngx_http_next_body_filter(r, in);
}


static void
ngx_http_gi2_scan(ngx_http_request_t *r, ngx_http_gi2_ctx_t *ctx, u_char *p,
    size_t len)
{
    int        rc;
    z_stream  *zs;

    zs = ctx->zs;

    if (zs == NULL) {
        (void) gi2_resp_feed(ctx->resp, p, len);
        return;
    }

    if (ctx->zdone) {
        return;
    }

    zs->next_in = p;
    zs->avail_in = (uInt) len;

    while (zs->avail_in) {
        zs->next_out = ctx->zout;
        zs->avail_out = NGX_HTTP_GI2_INFLATE_OUT;

        rc = inflate(zs, Z_NO_FLUSH);

        if (zs->avail_out < NGX_HTTP_GI2_INFLATE_OUT) {
            (void) gi2_resp_feed(ctx->resp, ctx->zout,
                                 NGX_HTTP_GI2_INFLATE_OUT - zs->avail_out);
        }

        if (rc == Z_STREAM_END) {
            ctx->zdone = 1;
            return;
        }

        /* "deflate" sent without its zlib header: raw deflate, again */

        if (rc == Z_DATA_ERROR && !ctx->zraw && zs->total_out == 0
            && !ctx->resp_gzip)
        {
            ctx->zraw = 1;

            if (inflateReset2(zs, -MAX_WBITS) != Z_OK) {
                ctx->zdone = 1;
                ctx->resp_zerror = 1;
                return;
            }

            zs->next_in = p;
            zs->avail_in = (uInt) len;
            continue;
        }

        if (rc != Z_OK && rc != Z_BUF_ERROR) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "gi2: upstream body does not inflate (%d)", rc);
            ctx->zdone = 1;
            ctx->resp_zerror = 1;
            return;
        }

        if (rc == Z_BUF_ERROR && zs->avail_out) {
            return;
        }
    }
}


/* zlib's ~40K state comes from the request pool: bounded, freed with it */

/* the media type itself, not a longer one it prefixes ("…/jsonl") */

static ngx_uint_t
ngx_http_gi2_media_type(ngx_str_t *ct, char *type)
{
    size_t  n;

    n = ngx_strlen(type);

    return ct->len >= n
           && ngx_strncasecmp(ct->data, (u_char *) type, n) == 0
           && (ct->len == n || ct->data[n] == ';' || ct->data[n] == ' '
               || ct->data[n] == '\t');
}


static void *
ngx_http_gi2_zalloc(void *opaque, u_int items, u_int size)
{
    return ngx_palloc(opaque, (size_t) items * size);
}


static void
ngx_http_gi2_zfree(void *opaque, void *address)
{
    /* the pool frees it */
}


static void
ngx_http_gi2_resp_cleanup(void *data)
{
    ngx_http_gi2_ctx_t  *ctx = data;

    if (ctx->zs != NULL) {
        (void) inflateEnd(ctx->zs);
        ctx->zs = NULL;
    }

    if (ctx->resp != NULL) {
        gi2_resp_destroy(ctx->resp);
    }
}


static ngx_str_t *
ngx_http_gi2_find_header(ngx_list_t *list, char *name, size_t len)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    for (part = &list->part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (h[i].hash && h[i].key.len == len
                && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
            {
                return &h[i].value;
            }
        }
    }

    return NULL;
}


/*
 * The log phase has begun: the response is over, whether it ended, failed
 * or the client went away.  From here on the response-side variables have
 * their final values; before it they are empty rather than half-made.
 */

static ngx_int_t
ngx_http_gi2_log_handler(ngx_http_request_t *r)
{
    ngx_http_gi2_ctx_t       *ctx;
    ngx_http_gi2_loc_conf_t  *glcf;

    if (r != r->main) {
        return NGX_OK;
    }

    ctx = ngx_http_gi2_get_ctx(r);

    if (ctx == NULL) {
        glcf = ngx_http_get_module_loc_conf(r, ngx_http_gi2_module);

        if (!glcf->enable) {
            return NGX_OK;
        }

        /* not inspected, but in a gi2 location: still a record */

        ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_gi2_ctx_t));
        if (ctx == NULL) {
            return NGX_ERROR;
        }

        ngx_http_set_ctx(r, ctx, ngx_http_gi2_module);
    }

    ctx->logging = 1;

    ngx_http_gi2_metrics_count(r, ctx);

    return NGX_OK;
}


/*
 * Everything the record needs, computed once, in the log phase: the scan
 * is closed (a client that went away leaves it unfinished), hashes and
 * cost are made.
 */

ngx_int_t
ngx_http_gi2_audit_finalize(ngx_http_request_t *r, ngx_http_gi2_ctx_t *ctx)
{
    double                    cost, tin, tout;
    int64_t                   it, ot, img;
    u_char                   *p;
    ngx_str_t                 consumer, *v;
    ngx_uint_t                i;
    gi2_field_t              *f;
    ngx_http_upstream_state_t *st;
    const gi2_resp_result_t  *res;
    ngx_http_gi2_price_t     *price;
    ngx_http_gi2_loc_conf_t  *glcf;

    if (ctx->finalized) {
        return NGX_OK;
    }

    ctx->finalized = 1;

    glcf = ngx_http_get_module_loc_conf(r, ngx_http_gi2_module);

    /*
     * No last buffer went by: upstream failed or the client went away
     * before the end, whatever the scanner made of what it saw.
     */

#if (NGX_THREADS)
    /* what the last task left: no task runs in the log phase */
    ngx_http_gi2_rt_flush(ctx);
#endif

    if (ctx->resp != NULL && !ctx->resp_finished) {
        (void) gi2_resp_finish(ctx->resp);
        ctx->resp_finished = 1;
        ctx->resp_cut = 1;
    }

    /* the last upstream attempt */

    if (r->upstream_states != NULL && r->upstream_states->nelts) {
        st = r->upstream_states->elts;
        ctx->upstream_status = st[r->upstream_states->nelts - 1].status;
    }

    /* hashes: only with a key, never the raw values */

    f = &ctx->req.field[GI2_F_PROMPT];

    if (f->type == GI2_T_STRING) {
        if (ngx_http_gi2_hmac(r, glcf, (u_char *) f->value.data,
                              f->value.len, &ctx->prompt_hash)
            == NGX_ERROR)
        {
            return NGX_ERROR;
        }
    }

    if (ngx_http_gi2_consumer_value(r, glcf, &consumer) == NGX_OK
        && consumer.len)
    {
        if (ngx_http_gi2_hmac(r, glcf, consumer.data, consumer.len,
                              &ctx->consumer_hash)
            == NGX_ERROR)
        {
            return NGX_ERROR;
        }
    }

    /* the client's retry counter, as the OpenAI SDKs send it */

    v = ngx_http_gi2_find_header(&r->headers_in.headers,
                                 "x-stainless-retry-count",
                                 sizeof("x-stainless-retry-count") - 1);
    ctx->retry_count = -1;

    if (v != NULL) {
        ctx->retry_count = ngx_atoi(v->data, v->len);
    }

    /* cost, from the configured price of the requested model */

    ctx->cost = -1;
    res = (ctx->resp != NULL) ? gi2_resp_result(ctx->resp) : NULL;
    f = &ctx->req.field[GI2_F_MODEL];

    if (res == NULL || glcf->prices == NULL || f->type != GI2_T_STRING
        || res->input_tokens < 0 || res->output_tokens < 0)
    {
        return NGX_OK;
    }

    price = glcf->prices->elts;

    for (i = 0; i < glcf->prices->nelts; i++) {
        if (price[i].model.len == f->value.len
            && ngx_strncmp(price[i].model.data, f->value.data,
                           f->value.len) == 0)
        {
            break;
        }
    }

    if (i == glcf->prices->nelts) {
        return NGX_OK;
    }

    it = res->input_tokens;
    ot = res->output_tokens;
    img = res->input_image_tokens;

    tin = (double) it * price[i].input;

    if (price[i].image_input >= 0 && img > 0 && img <= it) {
        tin = (double) (it - img) * price[i].input
              + (double) img * price[i].image_input;
    }

    tout = (double) ot * price[i].output;
    cost = (tin + tout) / 1e6;

    /* absurd usage figures make no cost, not a wrong one */

    if (!(cost >= 0 && cost < 1e12)) {
        return NGX_OK;
    }

    ctx->cost = cost;

    p = ngx_pnalloc(r->pool, 32);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ctx->cost_text.data = p;
    ctx->cost_text.len = ngx_sprintf(p, "%.6f", cost) - p;

    return NGX_OK;
}


/* the audit record: one JSON object, typed, always valid UTF-8 */

static void
ngx_http_gi2_json_raw(ngx_http_gi2_json_t *j, const char *s)
{
    size_t  n;

    n = ngx_strlen(s);

    if ((size_t) (j->end - j->pos) < n) {
        j->pos = j->end;
        return;
    }

    j->pos = ngx_cpymem(j->pos, s, n);
}


static void
ngx_http_gi2_json_sep(ngx_http_gi2_json_t *j)
{
    if (j->pos > j->start && j->pos[-1] != '{' && j->pos[-1] != '['
        && j->pos[-1] != ':' && j->pos < j->end)
    {
        *j->pos++ = ',';
    }
}


static void
ngx_http_gi2_json_key(ngx_http_gi2_json_t *j, const char *key)
{
    ngx_http_gi2_json_sep(j);
    ngx_http_gi2_json_cstr(j, key);
    ngx_http_gi2_json_raw(j, ":");
}


static void
ngx_http_gi2_json_open(ngx_http_gi2_json_t *j, const char *key, u_char c)
{
    if (key) {
        ngx_http_gi2_json_key(j, key);

    } else {
        ngx_http_gi2_json_sep(j);
    }

    if (j->pos < j->end) {
        *j->pos++ = c;
    }
}


static void
ngx_http_gi2_json_close(ngx_http_gi2_json_t *j, u_char c)
{
    if (j->pos < j->end) {
        *j->pos++ = c;
    }
}


/*
 * A JSON string from any bytes: quotes, backslashes and controls escaped,
 * invalid UTF-8 replaced by U+FFFD, cut at NGX_HTTP_GI2_FIELD_MAX bytes.
 */

static void
ngx_http_gi2_json_str(ngx_http_gi2_json_t *j, const u_char *s, size_t len)
{
    if (len > NGX_HTTP_GI2_FIELD_MAX) {
        len = NGX_HTTP_GI2_FIELD_MAX;
    }

    ngx_http_gi2_json_str_full(j, s, len);
}


static void
ngx_http_gi2_json_str_full(ngx_http_gi2_json_t *j, const u_char *s,
    size_t len)
{
    u_char      c, *p;
    size_t      i, n;
    uint32_t    cp;

    static u_char  hex[] = "0123456789abcdef";

    /* worst case: six bytes a byte, plus quotes */

    if ((size_t) (j->end - j->pos) < len * 6 + 2) {
        j->pos = j->end;
        return;
    }

    p = j->pos;
    *p++ = '"';

    for (i = 0; i < len; /* void */) {
        c = s[i];

        if (c >= 0x80) {
            n = (c >= 0xf0) ? 4 : (c >= 0xe0) ? 3 : (c >= 0xc2) ? 2 : 0;

            if (n && i + n <= len && gi2_utf8_valid(s + i, n)) {
                p = ngx_cpymem(p, s + i, n);
                i += n;

            } else {
                p = ngx_cpymem(p, "\xef\xbf\xbd", 3);
                i++;
            }

            continue;
        }

        i++;

        if (c == '"' || c == '\\') {
            *p++ = '\\';
            *p++ = c;
            continue;
        }

        if (c < 0x20 || c == 0x7f) {
            cp = c;
            *p++ = '\\';
            *p++ = 'u';
            *p++ = '0';
            *p++ = '0';
            *p++ = hex[(cp >> 4) & 0xf];
            *p++ = hex[cp & 0xf];
            continue;
        }

        *p++ = c;
    }

    *p++ = '"';
    j->pos = p;
}


static void
ngx_http_gi2_json_raw_n(ngx_http_gi2_json_t *j, const u_char *s, size_t n)
{
    if ((size_t) (j->end - j->pos) < n) {
        j->pos = j->end;
        return;
    }

    j->pos = ngx_cpymem(j->pos, s, n);
}


/* "a,b,c" as the array elements "a","b","c" */

static void
ngx_http_gi2_json_split(ngx_http_gi2_json_t *j, const char *list)
{
    const char  *p, *e;

    for (p = list; *p; p = *e ? e + 1 : e) {
        for (e = p; *e && *e != ','; e++) { /* void */ }

        if (e > p) {
            ngx_http_gi2_json_sep(j);
            ngx_http_gi2_json_str(j, (const u_char *) p, e - p);
        }
    }
}


static void
ngx_http_gi2_json_cstr(ngx_http_gi2_json_t *j, const char *s)
{
    ngx_http_gi2_json_str(j, (const u_char *) s, ngx_strlen(s));
}


static void
ngx_http_gi2_json_num(ngx_http_gi2_json_t *j, int64_t n)
{
    if ((size_t) (j->end - j->pos) < NGX_INT64_LEN) {
        j->pos = j->end;
        return;
    }

    j->pos = ngx_sprintf(j->pos, "%L", n);
}


/* key: "string" or null */

static void
ngx_http_gi2_json_kstr(ngx_http_gi2_json_t *j, const char *key,
    const u_char *s, size_t len)
{
    ngx_http_gi2_json_key(j, key);

    if (s == NULL || len == 0) {
        ngx_http_gi2_json_raw(j, "null");
        return;
    }

    ngx_http_gi2_json_str(j, s, len);
}


static void
ngx_http_gi2_json_kcstr(ngx_http_gi2_json_t *j, const char *key,
    const char *s)
{
    ngx_http_gi2_json_kstr(j, key, (const u_char *) s, s ? ngx_strlen(s) : 0);
}


/* key: number or null (negative means unknown) */

static void
ngx_http_gi2_json_knum(ngx_http_gi2_json_t *j, const char *key, int64_t n)
{
    ngx_http_gi2_json_key(j, key);

    if (n < 0) {
        ngx_http_gi2_json_raw(j, "null");
        return;
    }

    ngx_http_gi2_json_num(j, n);
}


/*
 * A request field as a string, whatever JSON type the client used (a
 * number's text, "true"), so that one field always has one type.
 */

static void
ngx_http_gi2_json_field(ngx_http_gi2_json_t *j, const char *key,
    gi2_field_t *f)
{
    if (f->type == GI2_T_STRING || f->type == GI2_T_NUMBER
        || f->type == GI2_T_BOOL)
    {
        ngx_http_gi2_json_kstr(j, key, f->value.data, f->value.len);
        return;
    }

    ngx_http_gi2_json_kstr(j, key, NULL, 0);
}


/* a count: a whole number, else null */

static void
ngx_http_gi2_json_count(ngx_http_gi2_json_t *j, const char *key,
    gi2_field_t *f)
{
    ngx_int_t  n;

    n = (f->type == GI2_T_NUMBER && f->value.len)
        ? ngx_atoi((u_char *) f->value.data, f->value.len) : NGX_ERROR;

    ngx_http_gi2_json_knum(j, key, n == NGX_ERROR ? -1 : (int64_t) n);
}


ngx_int_t
ngx_http_gi2_log_json(ngx_http_request_t *r, ngx_http_gi2_ctx_t *ctx,
    ngx_str_t *out)
{
    u_char                    *buf, hex[65];
    size_t                     size;
    ngx_tm_t                   tm;
    ngx_uint_t                 i, status, upstream_error;
    ngx_msec_int_t             ms;
    size_t                     plen;
    const u_char              *pd;
    const char                *mres;
    ngx_time_t                *tp;
    ngx_http_gi2_json_t        j, *w;
    const gi2_image_t         *img;
    const gi2_resp_result_t   *res;
    ngx_http_variable_value_t *rid;
    ngx_http_gi2_loc_conf_t   *glcf;

    static ngx_str_t  endpoints[] = {
        ngx_null_string,
        ngx_string("image_generation"),
        ngx_string("image_edit"),
        ngx_string("responses")
    };

    static char *decisions[] = { NULL, "allow", "flag", "rewrite", "reject" };

    glcf = ngx_http_get_module_loc_conf(r, ngx_http_gi2_module);

    if (ngx_http_gi2_audit_finalize(r, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    res = (ctx->resp != NULL) ? gi2_resp_result(ctx->resp) : NULL;

    size = 32768;

    if (glcf->log_prompt) {
        size += 6 * ngx_min(ctx->req.field[GI2_F_PROMPT].value.len,
                            NGX_HTTP_GI2_PROMPT_LOG_MAX);
    }

    buf = ngx_pnalloc(r->pool, size);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    j.start = buf;
    j.pos = buf;
    j.end = buf + size;
    w = &j;

    status = r->headers_out.status;
    /* the Responses API's error events may have a code and no type */
    upstream_error = (res != NULL && (res->error_type[0] != '\0'
                                      || res->error_code[0] != '\0'));

    ngx_http_gi2_json_open(w, NULL, '{');

    /* when: the request's start, in UTC with milliseconds */

    ngx_gmtime(r->start_sec, &tm);
    ngx_http_gi2_json_key(w, "@timestamp");
    if (w->end - w->pos > 32) {
        w->pos = ngx_sprintf(w->pos, "\"%4d-%02d-%02dT%02d:%02d:%02d.%03MZ\"",
                             tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                             tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec,
                             r->start_msec);
    }

    ngx_http_gi2_json_open(w, "ecs", '{');
    ngx_http_gi2_json_kcstr(w, "version", "9.0.0");
    ngx_http_gi2_json_close(w, '}');

    /* the event: what gi2 decided and how it ended */

    ngx_http_gi2_json_open(w, "event", '{');
    ngx_http_gi2_json_kcstr(w, "kind", "event");
    ngx_http_gi2_json_key(w, "category");
    ngx_http_gi2_json_raw(w, "[\"web\"]");
    ngx_http_gi2_json_key(w, "type");
    ngx_http_gi2_json_raw(w, ctx->decision == NGX_HTTP_GI2_REJECT
                             ? "[\"access\",\"denied\"]"
                             : (upstream_error || status >= 400)
                               ? "[\"access\",\"error\"]"
                               : "[\"access\",\"allowed\"]");
    ngx_http_gi2_json_kcstr(w, "action", decisions[ctx->decision]);
    ngx_http_gi2_json_kcstr(w, "outcome",
                            (ctx->decision == NGX_HTTP_GI2_REJECT
                             || status >= 400) ? "failure"
                            : (status >= 200 && status < 300) ? "success"
                            : "unknown");
    ngx_http_gi2_json_kcstr(w, "reason", ctx->reject_code);

    tp = ngx_timeofday();
    ms = (ngx_msec_int_t) ((tp->sec - r->start_sec) * 1000
                           + (tp->msec - r->start_msec));
    ngx_http_gi2_json_knum(w, "duration", (int64_t) ngx_max(ms, 0) * 1000000);
    ngx_http_gi2_json_kcstr(w, "dataset", "gi2.audit");
    ngx_http_gi2_json_close(w, '}');

    /* the HTTP exchange */

    rid = ngx_http_get_indexed_variable(r, ngx_http_gi2_request_id_index);

    ngx_http_gi2_json_open(w, "http", '{');
    ngx_http_gi2_json_open(w, "request", '{');
    ngx_http_gi2_json_kstr(w, "method", r->method_name.data,
                           r->method_name.len);
    ngx_http_gi2_json_kstr(w, "id", (rid && !rid->not_found) ? rid->data : NULL,
                           (rid && !rid->not_found) ? rid->len : 0);
    ngx_http_gi2_json_close(w, '}');
    ngx_http_gi2_json_open(w, "response", '{');
    ngx_http_gi2_json_knum(w, "status_code", (int64_t) status);
    ngx_http_gi2_json_close(w, '}');
    ngx_http_gi2_json_close(w, '}');

    ngx_http_gi2_json_open(w, "url", '{');
    ngx_http_gi2_json_kstr(w, "path", r->uri.data, r->uri.len);
    ngx_http_gi2_json_close(w, '}');

    /* a unix socket peer has no address: null, not "unix:" */

    ngx_http_gi2_json_open(w, "client", '{');
    ngx_http_gi2_json_kstr(w, "ip", r->connection->addr_text.data,
                           (r->connection->sockaddr->sa_family == AF_INET
#if (NGX_HAVE_INET6)
                            || r->connection->sockaddr->sa_family == AF_INET6
#endif
                           ) ? r->connection->addr_text.len : 0);
    ngx_http_gi2_json_close(w, '}');

    ngx_http_gi2_json_open(w, "user", '{');
    ngx_http_gi2_json_kstr(w, "hash", ctx->consumer_hash.data,
                           ctx->consumer_hash.len);
    ngx_http_gi2_json_close(w, '}');

    /* the rules that matched */

    ngx_http_gi2_json_open(w, "rule", '{');
    ngx_http_gi2_json_open(w, "id", '[');
    for (i = 0; i < ctx->nhits; i++) {
        ngx_http_gi2_json_sep(w);
        ngx_http_gi2_json_cstr(w, gi2_ruleset_rule(ctx->ruleset,
                                                   ctx->hits[i])->id);
    }
    ngx_http_gi2_json_close(w, ']');
    ngx_http_gi2_json_open(w, "category", '[');
    for (i = 0; i < ctx->nhits; i++) {
        ngx_http_gi2_json_sep(w);
        ngx_http_gi2_json_cstr(w, gi2_ruleset_rule(ctx->ruleset,
                                                   ctx->hits[i])->category);
    }
    ngx_http_gi2_json_close(w, ']');
    ngx_http_gi2_json_close(w, '}');

    /* the error the client got: upstream's, or gi2's own rejection */

    ngx_http_gi2_json_open(w, "error", '{');
    if (upstream_error) {
        ngx_http_gi2_json_kcstr(w, "type", res->error_type);
        ngx_http_gi2_json_kcstr(w, "code", res->error_code);

    } else if (ctx->reject_code) {
        ngx_http_gi2_json_kcstr(w, "type", status >= 500
                                           ? "server_error"
                                           : "invalid_request_error");
        ngx_http_gi2_json_kcstr(w, "code", ctx->reject_code);

    } else {
        ngx_http_gi2_json_kcstr(w, "type", NULL);
        ngx_http_gi2_json_kcstr(w, "code", NULL);
    }
    ngx_http_gi2_json_close(w, '}');

    /* related.hash: every hash in the record, for pivoting */

    ngx_http_gi2_json_open(w, "related", '{');
    ngx_http_gi2_json_open(w, "hash", '[');
    if (ctx->prompt_hash.len) {
        ngx_http_gi2_json_sep(w);
        ngx_http_gi2_json_str(w, ctx->prompt_hash.data, ctx->prompt_hash.len);
    }
    if (ctx->consumer_hash.len) {
        ngx_http_gi2_json_sep(w);
        ngx_http_gi2_json_str(w, ctx->consumer_hash.data,
                              ctx->consumer_hash.len);
    }
    for (i = 0; i < ctx->req.ninputs; i++) {
        ngx_hex_dump(hex, ctx->req.input[i].sha256, 32);
        ngx_http_gi2_json_sep(w);
        ngx_http_gi2_json_str(w, hex, 64);
    }
    for (i = 0; res && i < res->nimages; i++) {
        if (res->image[i].truncated) {
            continue;
        }

        ngx_hex_dump(hex, (u_char *) res->image[i].sha256, 32);
        ngx_http_gi2_json_sep(w);
        ngx_http_gi2_json_str(w, hex, 64);
    }
    ngx_http_gi2_json_close(w, ']');
    ngx_http_gi2_json_close(w, '}');

    /* gen_ai: the OpenTelemetry / ECS generative AI fields */

    ngx_http_gi2_json_open(w, "gen_ai", '{');
    ngx_http_gi2_json_open(w, "operation", '{');
    ngx_http_gi2_json_kstr(w, "name", endpoints[ctx->endpoint].data,
                           endpoints[ctx->endpoint].len);
    ngx_http_gi2_json_close(w, '}');
    ngx_http_gi2_json_open(w, "request", '{');
    ngx_http_gi2_json_field(w, "model", &ctx->req.field[GI2_F_MODEL]);
    ngx_http_gi2_json_open(w, "choice", '{');
    ngx_http_gi2_json_count(w, "count", &ctx->req.field[GI2_F_N]);
    ngx_http_gi2_json_close(w, '}');
    ngx_http_gi2_json_close(w, '}');
    ngx_http_gi2_json_open(w, "output", '{');
    ngx_http_gi2_json_kcstr(w, "type", ctx->decision ? "image" : NULL);
    ngx_http_gi2_json_close(w, '}');
    ngx_http_gi2_json_open(w, "usage", '{');
    ngx_http_gi2_json_knum(w, "input_tokens", res ? res->input_tokens : -1);
    ngx_http_gi2_json_knum(w, "output_tokens", res ? res->output_tokens : -1);
    ngx_http_gi2_json_close(w, '}');
    ngx_http_gi2_json_close(w, '}');

    /* gi2: everything else of ours */

    ngx_http_gi2_json_open(w, "gi2", '{');
    ngx_http_gi2_json_kcstr(w, "decision", decisions[ctx->decision]);
    ngx_http_gi2_json_kstr(w, "hash_key_id", glcf->hash_key_id.data,
                           glcf->hash_key_id.len);
    ngx_http_gi2_json_kcstr(w, "reject_code", ctx->reject_code);

    ngx_http_gi2_json_open(w, "prompt", '{');
    ngx_http_gi2_json_kstr(w, "hash", ctx->prompt_hash.data,
                           ctx->prompt_hash.len);
    ngx_http_gi2_json_knum(w, "length",
                           ctx->req.field[GI2_F_PROMPT].type == GI2_T_STRING
                           ? (int64_t) ctx->req.field[GI2_F_PROMPT].value.len
                           : -1);
    if (glcf->log_prompt
        && ctx->req.field[GI2_F_PROMPT].type == GI2_T_STRING)
    {
        /*
         * The operator asked for it: the prompt as sent, up to 128 KiB
         * (four times the longest prompt the image models take), cut
         * between characters.
         */

        plen = ctx->req.field[GI2_F_PROMPT].value.len;
        pd = ctx->req.field[GI2_F_PROMPT].value.data;

        if (plen > NGX_HTTP_GI2_PROMPT_LOG_MAX) {
            plen = NGX_HTTP_GI2_PROMPT_LOG_MAX;

            while (plen && (pd[plen] & 0xc0) == 0x80) {
                plen--;
            }
        }

        ngx_http_gi2_json_key(w, "text");
        ngx_http_gi2_json_str_full(w, pd, plen);
    }
    ngx_http_gi2_json_close(w, '}');

    ngx_http_gi2_json_open(w, "request", '{');
    ngx_http_gi2_json_field(w, "size", &ctx->req.field[GI2_F_SIZE]);
    ngx_http_gi2_json_field(w, "quality", &ctx->req.field[GI2_F_QUALITY]);
    ngx_http_gi2_json_count(w, "n", &ctx->req.field[GI2_F_N]);
    ngx_http_gi2_json_key(w, "stream");
    ngx_http_gi2_json_raw(w,
        ctx->req.field[GI2_F_STREAM].type != GI2_T_BOOL ? "null"
        : (ctx->req.field[GI2_F_STREAM].value.len == 4) ? "true" : "false");
    ngx_http_gi2_json_close(w, '}');

    /* the images and the mask of a multipart edit, in body order */

    ngx_http_gi2_json_open(w, "input_image", '{');
    ngx_http_gi2_json_open(w, "sha256", '[');
    for (i = 0; i < ctx->req.ninputs; i++) {
        ngx_hex_dump(hex, ctx->req.input[i].sha256, 32);
        ngx_http_gi2_json_sep(w);
        ngx_http_gi2_json_str(w, hex, 64);
    }
    ngx_http_gi2_json_close(w, ']');
    for (i = 0; i < ctx->req.ninputs && !ctx->req.input[i].mask; i++) {
        /* void */
    }
    if (i < ctx->req.ninputs) {
        ngx_hex_dump(hex, ctx->req.input[i].sha256, 32);
    }
    ngx_http_gi2_json_kstr(w, "mask_sha256",
                           i < ctx->req.ninputs ? hex : NULL, 64);
    ngx_http_gi2_json_close(w, '}');

    ngx_http_gi2_json_open(w, "moderation", '{');
    ngx_http_gi2_json_kstr(w, "requested",
                           ctx->req.field[GI2_F_MODERATION].type
                           == GI2_T_STRING
                           ? ctx->req.field[GI2_F_MODERATION].value.data
                           : NULL,
                           ctx->req.field[GI2_F_MODERATION].value.len);
    ngx_http_gi2_json_kstr(w, "effective", ctx->moderation_effective.data,
                           ctx->moderation_effective.len);

    /* the external moderation service (ngx_http_gi2_modapi.c) */

    mres = ngx_http_gi2_modapi_result(r, ctx);
    ngx_http_gi2_json_kcstr(w, "result", mres);
    ngx_http_gi2_json_key(w, "cached");
    ngx_http_gi2_json_raw(w,
        (ctx->modapi.result != NGX_HTTP_GI2_MODAPI_CLEAN
         && ctx->modapi.result != NGX_HTTP_GI2_MODAPI_FLAGGED) ? "null"
        : ctx->modapi.cached ? "true" : "false");
    ngx_http_gi2_json_open(w, "flagged_categories", '[');
    if (ctx->modapi.categories.len) {
        ngx_http_gi2_json_split(w, (char *) ctx->modapi.categories.data);
    }
    ngx_http_gi2_json_close(w, ']');
    ngx_http_gi2_json_knum(w, "ms", ctx->modapi.timed
                                    ? (int64_t) ctx->modapi.ms : -1);
    ngx_http_gi2_json_close(w, '}');

    ngx_http_gi2_json_open(w, "exception", '{');
    ngx_http_gi2_json_kstr(w, "id", ctx->exception_id.data,
                           ctx->exception_id.len);
    ngx_http_gi2_json_kstr(w, "presented", ctx->exception_presented.data,
                           ctx->exception_presented.len);
    ngx_http_gi2_json_close(w, '}');

    ngx_http_gi2_json_open(w, "upstream", '{');
    ngx_http_gi2_json_knum(w, "status", ctx->upstream_status
                                        ? (int64_t) ctx->upstream_status
                                        : -1);
    ngx_http_gi2_json_kstr(w, "request_id", ctx->request_id.data,
                           ctx->request_id.len);
    ngx_http_gi2_json_open(w, "error", '{');
    ngx_http_gi2_json_kcstr(w, "type", res ? res->error_type : NULL);
    ngx_http_gi2_json_kcstr(w, "code", res ? res->error_code : NULL);
    ngx_http_gi2_json_kcstr(w, "param", res ? res->error_param : NULL);
    ngx_http_gi2_json_kcstr(w, "moderation_stage",
                            res ? res->moderation_stage : NULL);
    ngx_http_gi2_json_open(w, "categories", '[');
    if (res && res->categories[0]) {
        ngx_http_gi2_json_split(w, res->categories);
    }
    ngx_http_gi2_json_close(w, ']');
    ngx_http_gi2_json_close(w, '}');
    ngx_http_gi2_json_close(w, '}');

    ngx_http_gi2_json_open(w, "response", '{');
    ngx_http_gi2_json_key(w, "inspected");
    ngx_http_gi2_json_raw(w, res != NULL && !ctx->resp_skipped
                             ? "true" : "false");
    ngx_http_gi2_json_key(w, "stream");
    ngx_http_gi2_json_raw(w, res == NULL ? "null" : res->sse ? "true"
                                                             : "false");
    ngx_http_gi2_json_key(w, "truncated");
    ngx_http_gi2_json_raw(w, res == NULL ? "null"
                             : (res->truncated || ctx->resp_zerror
                                || ctx->resp_cut)
                               ? "true" : "false");
    ngx_http_gi2_json_key(w, "malformed");
    ngx_http_gi2_json_raw(w, res == NULL ? "null"
                             : (res->malformed || ctx->resp_zerror)
                               ? "true" : "false");
    ngx_http_gi2_json_kcstr(w, "content_encoding",
                            ctx->zs || ctx->zdone
                            ? (ctx->resp_gzip ? "gzip" : "deflate") : NULL);
    ngx_http_gi2_json_close(w, '}');

    ngx_http_gi2_json_open(w, "images", '{');
    ngx_http_gi2_json_knum(w, "count", res ? (int64_t) res->images_total : -1);
    ngx_http_gi2_json_knum(w, "partial_count",
                           res ? (int64_t) res->partial_images : -1);
    ngx_http_gi2_json_knum(w, "url_count",
                           res ? (int64_t) res->urls_total : -1);
    ngx_http_gi2_json_open(w, "items", '[');
    for (i = 0; res && i < res->nimages; i++) {
        img = &res->image[i];
        ngx_hex_dump(hex, (u_char *) img->sha256, 32);

        ngx_http_gi2_json_open(w, NULL, '{');
        ngx_http_gi2_json_kstr(w, "sha256", img->truncated ? NULL : hex, 64);
        ngx_http_gi2_json_knum(w, "bytes", (int64_t) img->bytes);
        ngx_http_gi2_json_kcstr(w, "format", img->format);
        ngx_http_gi2_json_knum(w, "width",
                               img->width ? (int64_t) img->width : -1);
        ngx_http_gi2_json_knum(w, "height",
                               img->height ? (int64_t) img->height : -1);
        ngx_http_gi2_json_key(w, "c2pa");
        ngx_http_gi2_json_raw(w, img->c2pa ? "true" : "false");
        ngx_http_gi2_json_key(w, "truncated");
        ngx_http_gi2_json_raw(w, img->truncated ? "true" : "false");
        ngx_http_gi2_json_key(w, "bad_base64");
        ngx_http_gi2_json_raw(w, img->bad_base64 ? "true" : "false");
        ngx_http_gi2_json_close(w, '}');
    }
    ngx_http_gi2_json_close(w, ']');
    ngx_http_gi2_json_close(w, '}');

    ngx_http_gi2_json_open(w, "usage", '{');
    ngx_http_gi2_json_knum(w, "total_tokens", res ? res->total_tokens : -1);
    ngx_http_gi2_json_knum(w, "input_text_tokens",
                           res ? res->input_text_tokens : -1);
    ngx_http_gi2_json_knum(w, "input_image_tokens",
                           res ? res->input_image_tokens : -1);
    ngx_http_gi2_json_knum(w, "output_image_tokens",
                           res ? res->output_image_tokens : -1);
    ngx_http_gi2_json_close(w, '}');

    ngx_http_gi2_json_open(w, "cost", '{');
    ngx_http_gi2_json_key(w, "usd");
    if (ctx->cost_text.len) {
        ngx_http_gi2_json_raw_n(w, ctx->cost_text.data, ctx->cost_text.len);
    } else {
        ngx_http_gi2_json_raw(w, "null");
    }
    ngx_http_gi2_json_close(w, '}');

    ngx_http_gi2_json_knum(w, "retry_count", ctx->retry_count);
    ngx_http_gi2_json_close(w, '}');

    ngx_http_gi2_json_close(w, '}');

    if (w->pos >= w->end) {
        /* never expected: rather a short valid record than a broken one */
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "gi2: audit record over %uz bytes", size);
        out->data = (u_char *) "{\"gi2\":{\"record_overflow\":true}}";
        out->len = sizeof("{\"gi2\":{\"record_overflow\":true}}") - 1;
        return NGX_OK;
    }

    out->data = buf;
    out->len = w->pos - buf;

    return NGX_OK;
}


/* the response-side variables; data is which one */

ngx_int_t
ngx_http_gi2_audit_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                   *p;
    size_t                    len;
    int64_t                   n;
    ngx_str_t                 s;
    ngx_uint_t                i;
    const char               *cs;
    ngx_http_gi2_ctx_t       *ctx;
    const gi2_resp_result_t  *res;

    ctx = ngx_http_gi2_get_ctx(r->main);

    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 1;

    if (ctx == NULL && data == NGX_HTTP_GI2_AVAR_LOG_JSON) {

        /*
         * A location without gi2: still one record a line, so that a log
         * of $gi2_log_json never has a blank line.
         */

        ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_gi2_ctx_t));
        if (ctx == NULL) {
            return NGX_ERROR;
        }

        ctx->logging = 1;
        ngx_http_set_ctx(r->main, ctx, ngx_http_gi2_module);
    }

    /* final values only, in the log phase */

    if (ctx == NULL || !ctx->logging) {
        return NGX_OK;
    }

    if (ngx_http_gi2_audit_finalize(r->main, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    res = (ctx->resp != NULL) ? gi2_resp_result(ctx->resp) : NULL;
    ngx_str_null(&s);
    cs = NULL;
    n = -1;

    switch (data) {

    case NGX_HTTP_GI2_AVAR_UPSTREAM_STATUS:
        n = ctx->upstream_status ? (int64_t) ctx->upstream_status : -1;
        break;

    case NGX_HTTP_GI2_AVAR_ERROR_TYPE:
        cs = res ? res->error_type : NULL;
        break;

    case NGX_HTTP_GI2_AVAR_ERROR_CODE:
        cs = res ? res->error_code : NULL;
        break;

    case NGX_HTTP_GI2_AVAR_MODERATION_STAGE:
        cs = res ? res->moderation_stage : NULL;
        break;

    case NGX_HTTP_GI2_AVAR_MODERATION_CATEGORIES:
        cs = res ? res->categories : NULL;
        break;

    case NGX_HTTP_GI2_AVAR_IMAGE_SHA256:
        if (res == NULL || res->nimages == 0) {
            return NGX_OK;
        }

        p = ngx_pnalloc(r->pool, res->nimages * 65);
        if (p == NULL) {
            return NGX_ERROR;
        }

        s.data = p;

        for (i = 0; i < res->nimages; i++) {
            if (res->image[i].truncated) {
                continue;
            }

            if (p > s.data) {
                *p++ = ',';
            }

            p = ngx_hex_dump(p, (u_char *) res->image[i].sha256, 32);
        }

        s.len = p - s.data;
        break;

    case NGX_HTTP_GI2_AVAR_IMAGE_COUNT:
        n = res ? (int64_t) res->images_total : -1;
        break;

    case NGX_HTTP_GI2_AVAR_INPUT_TOKENS:
        n = res ? res->input_tokens : -1;
        break;

    case NGX_HTTP_GI2_AVAR_OUTPUT_TOKENS:
        n = res ? res->output_tokens : -1;
        break;

    case NGX_HTTP_GI2_AVAR_TOTAL_TOKENS:
        n = res ? res->total_tokens : -1;
        break;

    case NGX_HTTP_GI2_AVAR_PROMPT_HASH:
        s = ctx->prompt_hash;
        break;

    case NGX_HTTP_GI2_AVAR_CONSUMER_HASH:
        s = ctx->consumer_hash;
        break;

    case NGX_HTTP_GI2_AVAR_REQUEST_ID:
        s = ctx->request_id;
        break;

    case NGX_HTTP_GI2_AVAR_RETRY_COUNT:
        n = ctx->retry_count;
        break;

    case NGX_HTTP_GI2_AVAR_COST_USD:
        s = ctx->cost_text;
        break;

    case NGX_HTTP_GI2_AVAR_LOG_JSON:
        if (ctx->log_json.len == 0
            && ngx_http_gi2_log_json(r->main, ctx, &ctx->log_json) != NGX_OK)
        {
            return NGX_ERROR;
        }

        s = ctx->log_json;
        break;
    }

    if (cs != NULL && cs[0] != '\0') {
        s.data = (u_char *) cs;
        s.len = ngx_strlen(cs);
    }

    if (n >= 0) {
        len = NGX_INT64_LEN;
        p = ngx_pnalloc(r->pool, len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        s.data = p;
        s.len = ngx_sprintf(p, "%L", n) - p;
    }

    if (s.len == 0) {
        return NGX_OK;
    }

    v->data = s.data;
    v->len = s.len;
    v->not_found = 0;

    return NGX_OK;
}
