
/*
 * ngx_gi2_module: the response scanner on a thread pool
 * (gi2_response_inspection threads[=pool]).
 *
 * The body filter copies each buffer of the answer into a ring of
 * NGX_HTTP_GI2_RT_RING bytes and passes the buffer on unchanged at once.
 * A task on one of nginx's thread pools scans what the ring holds
 * (gi2_resp_feed(): base64 decoding, SHA-256, image sniffing; it never
 * allocates) while the event loop goes on with other work.  One task at a
 * time per request, so no lock: the scanner and the ring's filled part
 * belong to the task while it runs, to the event loop otherwise.  A task
 * is posted when NGX_HTTP_GI2_RT_POST bytes wait, and at the end.
 *
 * Back-pressure: when the ring is full, the rest of the input is held, in
 * order, until the task frees room (the event pipe then stops reading from
 * upstream, as for a slow client).  While a task runs, the request is kept
 * alive (r->main->blocked, as the copy filter does for its thread reads)
 * and is not finalized (a c->buffered bit, as gzip's), so the log phase
 * always sees the whole scan.
 *
 * Compressed answers stay on the event loop: zlib's state and window come
 * from the request pool, which is not thread-safe, and would exceed the
 * memory budget next to the ring.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_gi2_module.h"
#include "gi2_resp.h"


#if (NGX_THREADS)

#include <ngx_thread_pool.h>


#define NGX_HTTP_GI2_RT_RING   (32 * 1024)
#define NGX_HTTP_GI2_RT_POST   (16 * 1024)

/* a connection-level bit, beside gzip's 0x20 and the writer's 0x10 */
#define NGX_HTTP_GI2_BUFFERED  0x40


struct ngx_http_gi2_rt_s {
    ngx_http_request_t   *request;
    ngx_http_gi2_ctx_t   *ctx;
    ngx_thread_pool_t    *pool;
    ngx_thread_task_t    *task;
    u_char               *ring;
    size_t                head;      /* bytes copied in, in all */
    size_t                tail;      /* bytes scanned, in all */
    size_t                end;       /* the running task scans to here */
    ngx_chain_t          *held;      /* input not copied yet, in order */
    size_t                offset;    /* copied of held's first buffer */
    unsigned              running:1;
    unsigned              last:1;    /* the last buffer went in */
    unsigned              finish:1;  /* the running task ends the scan */
    unsigned              stopped:1; /* a buffer not in memory */
};


static ngx_uint_t ngx_http_gi2_rt_copy(ngx_http_gi2_rt_t *rt, ngx_buf_t *b,
    size_t *offset);
static void ngx_http_gi2_rt_post(ngx_http_gi2_rt_t *rt);
static void ngx_http_gi2_rt_scan(ngx_http_gi2_rt_t *rt);
static void ngx_http_gi2_rt_thread(void *data, ngx_log_t *log);
static void ngx_http_gi2_rt_done(ngx_event_t *ev);
static void ngx_http_gi2_rt_mark(ngx_http_gi2_rt_t *rt);
static ngx_int_t ngx_http_gi2_rt_next(ngx_http_request_t *r,
    ngx_chain_t *out);
static ngx_int_t ngx_http_gi2_rt_link(ngx_pool_t *pool, ngx_chain_t ***ll,
    ngx_chain_t *from, ngx_chain_t *to);


ngx_int_t
ngx_http_gi2_rt_create(ngx_http_request_t *r, ngx_http_gi2_ctx_t *ctx,
    void *pool)
{
    ngx_thread_task_t   *task;
    ngx_http_gi2_rt_t   *rt;

    task = ngx_thread_task_alloc(r->pool, sizeof(ngx_http_gi2_rt_t));
    if (task == NULL) {
        return NGX_ERROR;
    }

    rt = task->ctx;

    rt->ring = ngx_palloc(r->pool, NGX_HTTP_GI2_RT_RING);
    if (rt->ring == NULL) {
        return NGX_ERROR;
    }

    rt->request = r;
    rt->ctx = ctx;
    rt->pool = pool;
    rt->task = task;

    task->handler = ngx_http_gi2_rt_thread;
    task->event.data = rt;
    task->event.handler = ngx_http_gi2_rt_done;

    ctx->rt = rt;

    return NGX_OK;
}


/*
 * Copies what fits of the chain into the ring and passes on the buffers
 * copied whole; holds the rest.  in == NULL: go on with what is held.
 */

ngx_int_t
ngx_http_gi2_rt_body_filter(ngx_http_request_t *r, ngx_http_gi2_ctx_t *ctx,
    ngx_chain_t *in)
{
    size_t               offset;
    ngx_int_t            rc;
    ngx_chain_t         *cl, *out, **ll, *next;
    ngx_http_gi2_rt_t   *rt;

    rt = ctx->rt;

    if (rt->held == NULL) {

        /* the usual way: all of it fits, the chain is passed as it is */

        for (cl = in; cl; cl = cl->next) {
            offset = 0;

            if (!ngx_http_gi2_rt_copy(rt, cl->buf, &offset)) {
                break;
            }
        }

        if (cl == NULL) {
            ngx_http_gi2_rt_post(rt);
            ngx_http_gi2_rt_mark(rt);

            return ngx_http_gi2_rt_next(r, in);
        }

        /*
         * the ring is full inside cl: the caller's links are the caller's,
         * so both parts are passed and held as copies
         */

        out = NULL;
        ll = &out;

        if (ngx_http_gi2_rt_link(r->pool, &ll, in, cl) != NGX_OK) {
            return NGX_ERROR;
        }

        ll = &rt->held;

        if (ngx_http_gi2_rt_link(r->pool, &ll, cl, NULL) != NGX_OK) {
            return NGX_ERROR;
        }

        rt->offset = offset;

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "gi2 thread scan: ring full, input held at %uz",
                       offset);

    } else {

        /* behind: new input goes after what is held */

        for (ll = &rt->held; *ll; ll = &(*ll)->next) { /* void */ }

        if (ngx_http_gi2_rt_link(r->pool, &ll, in, NULL) != NGX_OK) {
            return NGX_ERROR;
        }

        out = NULL;
        ll = &out;

        while (rt->held) {
            offset = rt->offset;

            if (!ngx_http_gi2_rt_copy(rt, rt->held->buf, &offset)) {
                rt->offset = offset;
                break;
            }

            cl = rt->held;
            rt->held = cl->next;
            rt->offset = 0;

            cl->next = NULL;
            *ll = cl;
            ll = &cl->next;
        }
    }

    ngx_http_gi2_rt_post(rt);
    ngx_http_gi2_rt_mark(rt);

    rc = ngx_http_gi2_rt_next(r, out);

    /* the filters below keep no links of ours */

    for (cl = out; cl; cl = next) {
        next = cl->next;
        ngx_free_chain(r->pool, cl);
    }

    return rc;
}


/* the scan's last steps on the event loop, for the log phase */

void
ngx_http_gi2_rt_flush(ngx_http_gi2_ctx_t *ctx)
{
    ngx_http_gi2_rt_t  *rt;

    rt = ctx->rt;

    if (rt == NULL || rt->running) {
        return;
    }

    rt->end = rt->head;
    rt->finish = (rt->last && !rt->stopped && !ctx->resp_finished);

    ngx_http_gi2_rt_scan(rt);

    rt->tail = rt->end;

    if (rt->finish) {
        ctx->resp_finished = 1;
    }
}


/* 1: all of b is in the ring (or needs no scan); 0: full at *offset */

static ngx_uint_t
ngx_http_gi2_rt_copy(ngx_http_gi2_rt_t *rt, ngx_buf_t *b, size_t *offset)
{
    size_t   len, room, n, at;
    u_char  *p;

    if (rt->last || rt->stopped) {
        return 1;
    }

    if (ngx_buf_in_memory(b)) {
        p = b->pos + *offset;
        len = b->last - p;

        while (len) {
            room = NGX_HTTP_GI2_RT_RING - (rt->head - rt->tail);

            if (room == 0) {
                *offset = p - b->pos;
                return 0;
            }

            at = rt->head % NGX_HTTP_GI2_RT_RING;
            n = ngx_min(len, ngx_min(room, NGX_HTTP_GI2_RT_RING - at));

            ngx_memcpy(rt->ring + at, p, n);

            rt->head += n;
            p += n;
            len -= n;
        }

    } else if (ngx_buf_size(b) > 0) {

        /* not readable here: what came before is scanned, then no more */

        rt->ctx->resp_skipped = 1;
        rt->ctx->resp_finished = 1;
        rt->stopped = 1;
        return 1;
    }

    if (b->last_buf) {
        rt->last = 1;
    }

    return 1;
}


static void
ngx_http_gi2_rt_post(ngx_http_gi2_rt_t *rt)
{
    size_t               pending;
    ngx_http_request_t  *r;

    if (rt->running) {
        return;
    }

    pending = rt->head - rt->tail;

    rt->finish = (rt->last && !rt->stopped && !rt->ctx->resp_finished);

    if (pending < NGX_HTTP_GI2_RT_POST && !rt->finish) {
        return;
    }

    rt->end = rt->head;

    r = rt->request;

    if (ngx_thread_task_post(rt->pool, rt->task) != NGX_OK) {

        /* the queue is full (its error is logged): scanned here instead */

        ngx_http_gi2_rt_scan(rt);

        rt->tail = rt->end;

        if (rt->finish) {
            rt->ctx->resp_finished = 1;
        }

        return;
    }

    rt->running = 1;
    r->main->blocked++;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "gi2 thread scan: task posted, %uz bytes%s",
                   rt->end - rt->tail, rt->finish ? ", the end" : "");
}


/* on the task's thread, or on the event loop when no task runs */

static void
ngx_http_gi2_rt_scan(ngx_http_gi2_rt_t *rt)
{
    size_t  at, n, len;

    len = rt->end - rt->tail;
    at = rt->tail % NGX_HTTP_GI2_RT_RING;

    while (len) {
        n = ngx_min(len, NGX_HTTP_GI2_RT_RING - at);

        (void) gi2_resp_feed(rt->ctx->resp, rt->ring + at, n);

        len -= n;
        at = 0;
    }

    if (rt->finish) {
        (void) gi2_resp_finish(rt->ctx->resp);
    }
}


static void
ngx_http_gi2_rt_thread(void *data, ngx_log_t *log)
{
    ngx_http_gi2_rt_scan(data);
}


/* the task is done: back on the event loop */

static void
ngx_http_gi2_rt_done(ngx_event_t *ev)
{
    ngx_uint_t           wake;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;
    ngx_http_upstream_t *u;
    ngx_http_gi2_rt_t   *rt;

    rt = ev->data;
    r = rt->request;
    c = r->connection;

    ngx_http_set_log_request(c->log, r);

    r->main->blocked--;

    rt->running = 0;
    rt->tail = rt->end;

    if (rt->finish) {
        rt->ctx->resp_finished = 1;
    }

    /*
     * While upstream is being read, it drives the request and only held
     * input needs a push.  Once it is done, or the client is gone, the
     * request may be waiting for this task to be finalized.
     */

    u = r->upstream;

    wake = (rt->held != NULL || c->error || u == NULL || u->cleanup == NULL);

    if (!wake) {
        ngx_http_gi2_rt_post(rt);
        ngx_http_gi2_rt_mark(rt);
        return;
    }

    if (rt->held && !c->error) {
        if (ngx_http_gi2_rt_body_filter(r, rt->ctx, NULL) == NGX_ERROR) {
            c->error = 1;
        }

    } else {
        ngx_http_gi2_rt_post(rt);
        ngx_http_gi2_rt_mark(rt);
    }

    r->write_event_handler(r);

    ngx_http_run_posted_requests(c);
}


/* the request is not finalized while a task runs or input is held */

static void
ngx_http_gi2_rt_mark(ngx_http_gi2_rt_t *rt)
{
    ngx_connection_t  *c;

    c = rt->request->connection;

    if (rt->running || (rt->held && !c->error)) {
        c->buffered |= NGX_HTTP_GI2_BUFFERED;

    } else {
        c->buffered &= ~NGX_HTTP_GI2_BUFFERED;
    }
}


/*
 * Nothing to pass: the postpone filter sends an empty chain on whenever a
 * c->buffered bit is set, and the write filter alerts on an empty chain
 * with nothing of its own to send; so an empty chain goes on only when
 * someone below has something buffered.
 */

static ngx_int_t
ngx_http_gi2_rt_next(ngx_http_request_t *r, ngx_chain_t *out)
{
    if (out == NULL
        && (r->connection->buffered & ~NGX_HTTP_GI2_BUFFERED) == 0)
    {
        return NGX_OK;
    }

    return ngx_http_gi2_next_body_filter(r, out);
}


/* appends copies of the links from .. to (exclusive) at **ll */

static ngx_int_t
ngx_http_gi2_rt_link(ngx_pool_t *pool, ngx_chain_t ***ll, ngx_chain_t *from,
    ngx_chain_t *to)
{
    ngx_chain_t  *cl, *nl;

    for (cl = from; cl != to; cl = cl->next) {
        nl = ngx_alloc_chain_link(pool);
        if (nl == NULL) {
            return NGX_ERROR;
        }

        nl->buf = cl->buf;
        nl->next = NULL;

        **ll = nl;
        *ll = &nl->next;
    }

    return NGX_OK;
}

#endif /* NGX_THREADS */
