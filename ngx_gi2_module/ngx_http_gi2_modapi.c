/*
 * ngx_gi2_module: the external moderation service.
 *
 * A prompt that passed the local checks is sent to a moderation service
 * (OpenAI's /v1/moderations or a service speaking the generic contract of
 * docs/moderation-api.md) before the request is forwarded.  The call is
 * made with libcurl's multi_socket interface on nginx's event loop: one
 * multi handle a worker, curl's sockets wrapped in nginx connections
 * whose events drive curl_multi_socket_action(), curl's timer an nginx
 * timer.  Nothing blocks the worker: never libcurl's blocking easy
 * interface, no waiting, names resolved by curl's threaded resolver.
 * The request waits (NGX_AGAIN in the body handler) and is resumed by
 * the answer; a client that goes away takes its call with it.
 *
 * Verdicts are cached in shared memory across workers, keyed by the
 * prompt's HMAC: an rbtree for lookups and a queue for LRU eviction, as
 * ngx_http_limit_req_module keeps its states.
 */

#include "ngx_http_gi2_module.h"
#include "gi2_modapi.h"

#include <curl/curl.h>
#include <openssl/err.h>
#include <openssl/evp.h>


/* the most of an answer that is read: OpenAI's is about 2 KB */
#define NGX_HTTP_GI2_MODAPI_ANSWER_MAX   65536

#define NGX_HTTP_GI2_MODAPI_FAIL_CLOSED  0
#define NGX_HTTP_GI2_MODAPI_FAIL_OPEN    1

#define NGX_HTTP_GI2_MODAPI_DENY         0
#define NGX_HTTP_GI2_MODAPI_FLAG         1

#define NGX_HTTP_GI2_MODAPI_CATS_LEN     512

/* the longest image URL (a data URL: the image in base64) that is sent */
#define NGX_HTTP_GI2_MODAPI_IMAGE_MAX    (8 * 1024 * 1024)

#define NGX_HTTP_GI2_MODAPI_READ_CHUNK   16384


typedef struct {
    ngx_rbtree_t                    rbtree;
    ngx_rbtree_node_t               sentinel;
    ngx_queue_t                     queue;     /* most recent first */
} ngx_http_gi2_modapi_shctx_t;


typedef struct {
    ngx_http_gi2_modapi_shctx_t    *sh;
    ngx_slab_pool_t                *shpool;
} ngx_http_gi2_modapi_cache_t;


/* follows the rbtree node's key, from its color on */
typedef struct {
    u_char                          color;
    u_char                          dummy;
    u_short                         len;
    ngx_queue_t                     queue;
    ngx_msec_t                      expires;
    u_char                          key[32];
    u_char                          data[1];
} ngx_http_gi2_modapi_node_t;


typedef struct {
    ngx_flag_t                      used;      /* some location calls out */
} ngx_http_gi2_modapi_main_conf_t;


typedef struct {
    ngx_str_t                       url;       /* NUL-terminated; "": off */
    ngx_uint_t                      format;
    ngx_str_t                       auth;      /* the whole header line */
    ngx_str_t                       model;
    ngx_msec_t                      timeout;
    ngx_uint_t                      fail;
    ngx_uint_t                      action;
    ngx_array_t                    *thresholds; /* gi2_modapi_threshold_t */
    ngx_shm_zone_t                 *cache;
    ngx_msec_t                      cache_ttl;
    ngx_flag_t                      images;
    ngx_str_t                       ca_file;   /* NUL-terminated */
    ngx_str_t                       identity;  /* url, model, format */
    u_char                         *cache_file;
    ngx_uint_t                      cache_line;
    ngx_flag_t                      set;       /* gi2_moderation_api seen */
} ngx_http_gi2_modapi_loc_conf_t;


/* a socket of curl's, as an nginx connection */
typedef struct {
    ngx_connection_t               *c;
    unsigned                        owned:1;   /* curl opened it through us */
} ngx_http_gi2_modapi_sock_t;


typedef struct {
    CURLM                          *multi;
    ngx_event_t                     timer;
    ngx_log_t                      *log;
    ngx_http_gi2_modapi_sock_t     *socks;     /* by descriptor */
    ngx_uint_t                      nsocks;
    ngx_queue_t                     calls;     /* in flight */
    ngx_uint_t                      ncalls;
} ngx_http_gi2_modapi_worker_t;


typedef struct {
    CURL                           *easy;
    struct curl_slist              *headers;
    ngx_http_request_t             *request;
    ngx_http_gi2_ctx_t             *ctx;
    ngx_http_gi2_modapi_loc_conf_t *mlcf;
    gi2_modapi_parser_t            *parser;
    gi2_modapi_result_t             result;
    gi2_alloc_t                     alloc;
    size_t                          received;
    ngx_msec_t                      start;
    ngx_queue_t                     queue;
    u_char                          key[32];
    char                            error[CURL_ERROR_SIZE];
    unsigned                        cache:1;   /* key is set */
    unsigned                        too_big:1;
} ngx_http_gi2_modapi_call_t;


static ngx_int_t ngx_http_gi2_modapi_add_variables(ngx_conf_t *cf);
static void *ngx_http_gi2_modapi_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_gi2_modapi_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_gi2_modapi_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static char *ngx_http_gi2_modapi_api(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_gi2_modapi_key_file(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_gi2_modapi_threshold(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_gi2_modapi_cache_conf(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_gi2_modapi_ca_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_gi2_modapi_timeout(ngx_conf_t *cf, void *post,
    void *data);
static ngx_int_t ngx_http_gi2_modapi_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_int_t ngx_http_gi2_modapi_init_process(ngx_cycle_t *cycle);
static void ngx_http_gi2_modapi_exit_process(ngx_cycle_t *cycle);

static ngx_int_t ngx_http_gi2_modapi_start(ngx_http_request_t *r,
    ngx_http_gi2_ctx_t *ctx, ngx_http_gi2_modapi_loc_conf_t *mlcf,
    u_char *key, ngx_uint_t cache);
static ngx_int_t ngx_http_gi2_modapi_body(ngx_http_request_t *r,
    ngx_http_gi2_ctx_t *ctx, ngx_http_gi2_modapi_loc_conf_t *mlcf,
    ngx_str_t *body);
static ngx_int_t ngx_http_gi2_modapi_images(ngx_http_request_t *r,
    gi2_modapi_image_t *image, size_t *count);
static ngx_int_t ngx_http_gi2_modapi_verdict(ngx_http_request_t *r,
    ngx_http_gi2_ctx_t *ctx, ngx_http_gi2_modapi_loc_conf_t *mlcf,
    gi2_modapi_result_t *res);
static ngx_int_t ngx_http_gi2_modapi_failed(ngx_http_request_t *r,
    ngx_http_gi2_ctx_t *ctx, ngx_http_gi2_modapi_loc_conf_t *mlcf,
    ngx_uint_t result);
static void ngx_http_gi2_modapi_detach(ngx_http_gi2_modapi_call_t *call);
static void ngx_http_gi2_modapi_cleanup(void *data);
static void ngx_http_gi2_modapi_finish(ngx_http_gi2_modapi_call_t *call,
    CURLcode code);
static void ngx_http_gi2_modapi_process(ngx_http_gi2_modapi_worker_t *w);
static size_t ngx_http_gi2_modapi_write(char *ptr, size_t size,
    size_t nmemb, void *userdata);
static int ngx_http_gi2_modapi_socket(CURL *easy, curl_socket_t s, int what,
    void *userp, void *socketp);
static int ngx_http_gi2_modapi_timer(CURLM *multi, long timeout_ms,
    void *userp);
static curl_socket_t ngx_http_gi2_modapi_open(void *clientp,
    curlsocktype purpose, struct curl_sockaddr *addr);
static int ngx_http_gi2_modapi_close(void *clientp, curl_socket_t s);
static ngx_http_gi2_modapi_sock_t *ngx_http_gi2_modapi_sock(
    ngx_http_gi2_modapi_worker_t *w, curl_socket_t s, ngx_uint_t add);
static ngx_connection_t *ngx_http_gi2_modapi_connection(
    ngx_http_gi2_modapi_worker_t *w, curl_socket_t s);
static void ngx_http_gi2_modapi_release(ngx_http_gi2_modapi_sock_t *sk);
static void ngx_http_gi2_modapi_event(ngx_event_t *ev);
static void ngx_http_gi2_modapi_timer_event(ngx_event_t *ev);
static void ngx_http_gi2_modapi_cancelable(ngx_http_gi2_modapi_worker_t *w);
static void ngx_http_gi2_modapi_clear_ssl_errors(void);
static ngx_int_t ngx_http_gi2_modapi_key(ngx_http_request_t *r,
    ngx_http_gi2_loc_conf_t *glcf, ngx_http_gi2_modapi_loc_conf_t *mlcf,
    gi2_field_t *prompt, u_char *key);
static ngx_int_t ngx_http_gi2_modapi_lookup(
    ngx_http_gi2_modapi_loc_conf_t *mlcf, u_char *key,
    gi2_modapi_result_t *res);
static void ngx_http_gi2_modapi_store(ngx_http_gi2_modapi_loc_conf_t *mlcf,
    u_char *key, gi2_modapi_result_t *res);
static ngx_http_gi2_modapi_node_t *ngx_http_gi2_modapi_find(
    ngx_http_gi2_modapi_cache_t *cache, u_char *key);
static void ngx_http_gi2_modapi_delete(ngx_http_gi2_modapi_cache_t *cache,
    ngx_http_gi2_modapi_node_t *mn);
static void ngx_http_gi2_modapi_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_int_t ngx_http_gi2_modapi_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


static ngx_conf_enum_t  ngx_http_gi2_modapi_fail_values[] = {
    { ngx_string("closed"), NGX_HTTP_GI2_MODAPI_FAIL_CLOSED },
    { ngx_string("open"), NGX_HTTP_GI2_MODAPI_FAIL_OPEN },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_http_gi2_modapi_action_values[] = {
    { ngx_string("deny"), NGX_HTTP_GI2_MODAPI_DENY },
    { ngx_string("flag"), NGX_HTTP_GI2_MODAPI_FLAG },
    { ngx_null_string, 0 }
};


static ngx_conf_post_t  ngx_http_gi2_modapi_timeout_post = {
    ngx_http_gi2_modapi_timeout
};


static ngx_command_t  ngx_http_gi2_modapi_commands[] = {

    { ngx_string("gi2_moderation_api"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_gi2_modapi_api,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("gi2_moderation_key_file"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_gi2_modapi_key_file,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("gi2_moderation_model"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_gi2_modapi_loc_conf_t, model),
      NULL },

    { ngx_string("gi2_moderation_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_gi2_modapi_loc_conf_t, timeout),
      &ngx_http_gi2_modapi_timeout_post },

    { ngx_string("gi2_moderation_fail"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_gi2_modapi_loc_conf_t, fail),
      &ngx_http_gi2_modapi_fail_values },

    { ngx_string("gi2_moderation_action"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_gi2_modapi_loc_conf_t, action),
      &ngx_http_gi2_modapi_action_values },

    { ngx_string("gi2_moderation_threshold"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE2,
      ngx_http_gi2_modapi_threshold,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("gi2_moderation_cache"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_gi2_modapi_cache_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("gi2_moderation_images"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_gi2_modapi_loc_conf_t, images),
      NULL },

    { ngx_string("gi2_moderation_ca_file"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_gi2_modapi_ca_file,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_gi2_modapi_module_ctx = {
    ngx_http_gi2_modapi_add_variables,     /* preconfiguration */
    NULL,                                  /* postconfiguration */

    ngx_http_gi2_modapi_create_main_conf,  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_gi2_modapi_create_loc_conf,   /* create location configuration */
    ngx_http_gi2_modapi_merge_loc_conf     /* merge location configuration */
};


ngx_module_t  ngx_http_gi2_modapi_module = {
    NGX_MODULE_V1,
    &ngx_http_gi2_modapi_module_ctx,       /* module context */
    ngx_http_gi2_modapi_commands,          /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_gi2_modapi_init_process,      /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_gi2_modapi_exit_process,      /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_http_gi2_modapi_worker_t  ngx_http_gi2_modapi_worker;


enum {
    NGX_HTTP_GI2_MODAPI_VAR_RESULT = 0,
    NGX_HTTP_GI2_MODAPI_VAR_CACHED,
    NGX_HTTP_GI2_MODAPI_VAR_CATEGORIES,
    NGX_HTTP_GI2_MODAPI_VAR_MS
};


static ngx_http_variable_t  ngx_http_gi2_modapi_vars[] = {

    { ngx_string("gi2_moderation_result"), NULL,
      ngx_http_gi2_modapi_variable, NGX_HTTP_GI2_MODAPI_VAR_RESULT,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("gi2_moderation_cached"), NULL,
      ngx_http_gi2_modapi_variable, NGX_HTTP_GI2_MODAPI_VAR_CACHED,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("gi2_moderation_flagged_categories"), NULL,
      ngx_http_gi2_modapi_variable, NGX_HTTP_GI2_MODAPI_VAR_CATEGORIES,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("gi2_moderation_ms"), NULL,
      ngx_http_gi2_modapi_variable, NGX_HTTP_GI2_MODAPI_VAR_MS,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static const char  *ngx_http_gi2_modapi_results[] = {
    NULL, "clean", "flagged", "error", "timeout", "cancelled"
};


/* the request side: called once the local checks are done */

ngx_int_t
ngx_http_gi2_modapi_check(ngx_http_request_t *r, ngx_http_gi2_ctx_t *ctx,
    ngx_int_t rc)
{
    u_char                           key[32];
    ngx_int_t                        cache;
    gi2_field_t                     *prompt;
    gi2_modapi_result_t             *res;
    ngx_http_gi2_loc_conf_t         *glcf;
    ngx_http_gi2_modapi_loc_conf_t  *mlcf;

    mlcf = ngx_http_get_module_loc_conf(r, ngx_http_gi2_modapi_module);

    /* a request the local checks rejected is not sent: "skipped" */

    if (rc != NGX_DECLINED || mlcf->url.len == 0) {
        return rc;
    }

    prompt = &ctx->req.field[GI2_F_PROMPT];

    if (prompt->type != GI2_T_STRING || prompt->value.len == 0) {
        /* nothing to ask about; upstream refuses it anyway */
        return rc;
    }

    cache = 0;

    /* an edit's verdict depends on its images too: it is not cached */

    if (mlcf->cache != NULL
        && !(mlcf->images && mlcf->format == GI2_MODAPI_OPENAI
             && ctx->endpoint == NGX_HTTP_GI2_EDITS))
    {
        glcf = ngx_http_get_module_loc_conf(r, ngx_http_gi2_module);

        if (ngx_http_gi2_modapi_key(r, glcf, mlcf, prompt, key) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        res = ngx_palloc(r->pool, sizeof(gi2_modapi_result_t));
        if (res == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (ngx_http_gi2_modapi_lookup(mlcf, key, res) == NGX_OK) {
            ctx->modapi.cached = 1;
            ctx->modapi.timed = 1;
            ctx->modapi.ms = 0;

            return ngx_http_gi2_modapi_verdict(r, ctx, mlcf, res);
        }

        cache = 1;
    }

    return ngx_http_gi2_modapi_start(r, ctx, mlcf, key, cache);
}


/* the outcome's name, for the variable and the audit record */

const char *
ngx_http_gi2_modapi_result(ngx_http_request_t *r, ngx_http_gi2_ctx_t *ctx)
{
    ngx_http_gi2_modapi_loc_conf_t  *mlcf;

    if (ctx == NULL || !ctx->done) {
        return NULL;
    }

    if (ctx->modapi.result != NGX_HTTP_GI2_MODAPI_NONE) {
        return ngx_http_gi2_modapi_results[ctx->modapi.result];
    }

    mlcf = ngx_http_get_module_loc_conf(r, ngx_http_gi2_modapi_module);

    /* configured, but the request never went: a local check decided */

    return mlcf->url.len ? "skipped" : NULL;
}


static ngx_int_t
ngx_http_gi2_modapi_start(ngx_http_request_t *r, ngx_http_gi2_ctx_t *ctx,
    ngx_http_gi2_modapi_loc_conf_t *mlcf, u_char *key, ngx_uint_t cache)
{
    CURL                          *easy;
    CURLMcode                      mc;
    ngx_str_t                      body;
    ngx_http_cleanup_t            *cln;
    struct curl_slist             *h;
    ngx_http_gi2_modapi_call_t    *call;
    ngx_http_gi2_modapi_worker_t  *w;

    w = &ngx_http_gi2_modapi_worker;

    if (w->multi == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "gi2: no moderation service client in this worker");
        return ngx_http_gi2_modapi_failed(r, ctx, mlcf,
                                          NGX_HTTP_GI2_MODAPI_ERROR);
    }

    call = ngx_pcalloc(r->pool, sizeof(ngx_http_gi2_modapi_call_t));
    cln = ngx_http_cleanup_add(r, 0);
    if (call == NULL || cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_gi2_modapi_body(r, ctx, mlcf, &body) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    call->request = r;
    call->ctx = ctx;
    call->mlcf = mlcf;
    call->cache = cache;

    if (cache) {
        ngx_memcpy(call->key, key, 32);
    }

    call->alloc.alloc = ngx_http_gi2_pool_alloc;
    call->alloc.data = r->pool;
    call->alloc.free = NULL;

    call->parser = gi2_modapi_parser_create(mlcf->format, &call->result,
                                            &call->alloc);
    if (call->parser == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* from here on the cleanup frees what is made */

    cln->handler = ngx_http_gi2_modapi_cleanup;
    cln->data = call;

    easy = curl_easy_init();
    if (easy == NULL) {
        goto failed;
    }

    call->easy = easy;

    h = NULL;
    h = curl_slist_append(h, "Content-Type: application/json");
    if (h) {
        call->headers = h;
        h = curl_slist_append(h, "Accept: application/json");
    }
    if (h) {
        /* a small body: no 100-continue round trip */
        h = curl_slist_append(h, "Expect:");
    }
    if (h && mlcf->auth.len) {
        h = curl_slist_append(h, (char *) mlcf->auth.data);
    }

    if (h == NULL) {
        goto failed;
    }

    if (curl_easy_setopt(easy, CURLOPT_URL, mlcf->url.data) != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_HTTPHEADER, h) != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_POST, 1L) != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, (long) body.len)
           != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body.data) != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_PRIVATE, call) != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, call->error)
           != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION,
                            ngx_http_gi2_modapi_write) != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_WRITEDATA, call) != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) mlcf->timeout)
           != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                            (long) mlcf->timeout) != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L) != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L) != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L) != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_MAXFILESIZE_LARGE,
                            (curl_off_t) NGX_HTTP_GI2_MODAPI_ANSWER_MAX)
           != CURLE_OK
        /* no proxy from the environment: only what is configured */
        || curl_easy_setopt(easy, CURLOPT_PROXY, "") != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_USERAGENT, "ngx_gi2_module")
           != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION,
                            ngx_http_gi2_modapi_open) != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, w) != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION,
                            ngx_http_gi2_modapi_close) != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, w) != CURLE_OK)
    {
        goto failed;
    }

#if (LIBCURL_VERSION_NUM >= 0x075500)
    if (curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https")
        != CURLE_OK)
    {
        goto failed;
    }
#endif

#if (LIBCURL_VERSION_NUM >= 0x075700)
    /*
     * A call removed while its name is being resolved must not wait for
     * the resolver's thread to end: it is left to finish on its own.
     */
    if (curl_easy_setopt(easy, CURLOPT_QUICK_EXIT, 1L) != CURLE_OK) {
        goto failed;
    }
#endif

    if (mlcf->ca_file.len
        && curl_easy_setopt(easy, CURLOPT_CAINFO, mlcf->ca_file.data)
           != CURLE_OK)
    {
        goto failed;
    }

    call->start = ngx_current_msec;

    mc = curl_multi_add_handle(w->multi, easy);
    if (mc != CURLM_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "gi2: curl_multi_add_handle() failed: %s",
                      curl_multi_strerror(mc));
        goto failed;
    }

    ngx_queue_insert_tail(&w->calls, &call->queue);
    w->ncalls++;
    ngx_http_gi2_modapi_cancelable(w);

    ctx->modapi.call = call;

    /* a client that goes away while the call is made cancels it */

    r->read_event_handler = ngx_http_test_reading;
    r->write_event_handler = ngx_http_request_empty_handler;

    return NGX_AGAIN;

failed:

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "gi2: the moderation service call could not be set up");

    ngx_http_gi2_modapi_detach(call);

    return ngx_http_gi2_modapi_failed(r, ctx, mlcf,
                                      NGX_HTTP_GI2_MODAPI_ERROR);
}


/* the call's body, from the request's prompt (and consumer) */

static ngx_int_t
ngx_http_gi2_modapi_body(ngx_http_request_t *r, ngx_http_gi2_ctx_t *ctx,
    ngx_http_gi2_modapi_loc_conf_t *mlcf, ngx_str_t *body)
{
    size_t                    n, nimages, count;
    ngx_str_t                 consumer, hash;
    gi2_str_t                 model, c, *cp;
    gi2_field_t              *prompt;
    gi2_modapi_image_t        image;
    ngx_http_gi2_loc_conf_t  *glcf;

    prompt = &ctx->req.field[GI2_F_PROMPT];

    model.data = mlcf->model.data;
    model.len = mlcf->model.len;
    cp = NULL;
    nimages = 0;
    ngx_memzero(&image, sizeof(gi2_modapi_image_t));

    if (mlcf->images && mlcf->format == GI2_MODAPI_OPENAI
        && ctx->endpoint == NGX_HTTP_GI2_EDITS)
    {
        if (ngx_http_gi2_modapi_images(r, &image, &count) != NGX_OK) {
            return NGX_ERROR;
        }

        nimages = image.url.len ? 1 : 0;

        if (count > nimages) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "gi2: moderation service: %uz of %uz images of "
                          "the edit sent", nimages, count);
        }
    }

    if (mlcf->format == GI2_MODAPI_GENERIC) {

        /* the consumer, only as its HMAC: never the credential itself */

        glcf = ngx_http_get_module_loc_conf(r, ngx_http_gi2_module);

        if (ngx_http_gi2_consumer_value(r, glcf, &consumer) == NGX_OK
            && consumer.len
            && ngx_http_gi2_hmac(r, glcf, consumer.data, consumer.len, &hash)
               == NGX_OK)
        {
            c.data = hash.data;
            c.len = hash.len;
            cp = &c;
        }
    }

    n = gi2_modapi_request(mlcf->format, &prompt->value, &model, cp, &image,
                           nimages, NULL);

    body->data = ngx_pnalloc(r->pool, n);
    if (body->data == NULL) {
        return NGX_ERROR;
    }

    body->len = gi2_modapi_request(mlcf->format, &prompt->value, &model, cp,
                                   &image, nimages, body->data);

    return NGX_OK;
}


/*
 * The first image_url of an edit's images[], read from the body nginx
 * kept (in memory or a temporary file, read in small steps); count is
 * how many there were.
 */

static ngx_int_t
ngx_http_gi2_modapi_images(ngx_http_request_t *r, gi2_modapi_image_t *image,
    size_t *count)
{
    off_t                 off;
    size_t                big;
    ssize_t               n;
    u_char               *buf;
    ngx_buf_t            *b;
    gi2_alloc_t           alloc;
    ngx_chain_t          *cl;
    gi2_modapi_images_t  *im;

    ngx_memzero(image, sizeof(gi2_modapi_image_t));
    *count = 0;

    alloc.alloc = ngx_http_gi2_pool_alloc;
    alloc.data = r->pool;
    alloc.free = NULL;

    im = gi2_modapi_images_create(NGX_HTTP_GI2_MODAPI_IMAGE_MAX, &alloc);
    if (im == NULL) {
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
                (void) gi2_modapi_images_feed(im, b->pos, b->last - b->pos);
            }

            continue;
        }

        if (buf == NULL) {
            buf = ngx_palloc(r->pool, NGX_HTTP_GI2_MODAPI_READ_CHUNK);
            if (buf == NULL) {
                gi2_modapi_images_destroy(im);
                return NGX_ERROR;
            }
        }

        for (off = b->file_pos; off < b->file_last; off += n) {
            n = ngx_read_file(b->file, buf,
                              ngx_min(NGX_HTTP_GI2_MODAPI_READ_CHUNK,
                                      b->file_last - off),
                              off);
            if (n <= 0) {
                gi2_modapi_images_destroy(im);
                return NGX_ERROR;
            }

            (void) gi2_modapi_images_feed(im, buf, n);
        }
    }

    gi2_modapi_images_result(im, &image->url, count, &big);
    gi2_modapi_images_destroy(im);

    if (big) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "gi2: moderation service: %uz image URL(s) of the edit "
                      "over %uz bytes not sent", big,
                      (size_t) NGX_HTTP_GI2_MODAPI_IMAGE_MAX);
    }

    return NGX_OK;
}


/* the verdict on an answer: NGX_DECLINED to forward, or a rejection */

static ngx_int_t
ngx_http_gi2_modapi_verdict(ngx_http_request_t *r, ngx_http_gi2_ctx_t *ctx,
    ngx_http_gi2_modapi_loc_conf_t *mlcf, gi2_modapi_result_t *res)
{
    u_char                   *p, *q;
    size_t                    len;
    ngx_str_t                 msg;
    ngx_uint_t                nth;
    char                      cats[NGX_HTTP_GI2_MODAPI_CATS_LEN];
    ngx_http_gi2_loc_conf_t  *glcf;

    nth = mlcf->thresholds ? mlcf->thresholds->nelts : 0;

    if (!gi2_modapi_verdict(res, nth ? mlcf->thresholds->elts : NULL, nth,
                            cats, sizeof(cats)))
    {
        ctx->modapi.result = NGX_HTTP_GI2_MODAPI_CLEAN;
        return NGX_DECLINED;
    }

    ctx->modapi.result = NGX_HTTP_GI2_MODAPI_FLAGGED;

    len = ngx_strlen(cats);

    if (len) {
        /* NUL-terminated too, for the audit record */
        ctx->modapi.categories.data = ngx_pnalloc(r->pool, len + 1);
        if (ctx->modapi.categories.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_memcpy(ctx->modapi.categories.data, cats, len + 1);
        ctx->modapi.categories.len = len;
    }

    if (mlcf->action == NGX_HTTP_GI2_MODAPI_FLAG) {
        if (ctx->decision == NGX_HTTP_GI2_ALLOW) {
            ctx->decision = NGX_HTTP_GI2_FLAG;
        }

        return NGX_DECLINED;
    }

    /* "a, b" in the message */

    msg.data = ngx_pnalloc(r->pool, 128 + 2 * len);
    if (msg.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(msg.data, "The prompt was rejected by the gateway's "
                   "moderation service",
                   sizeof("The prompt was rejected by the gateway's "
                          "moderation service") - 1);

    if (len) {
        p = ngx_cpymem(p, " (categories: ", sizeof(" (categories: ") - 1);

        for (q = (u_char *) cats; *q; q++) {
            *p++ = *q;

            if (*q == ',') {
                *p++ = ' ';
            }
        }

        *p++ = ')';
    }

    *p++ = '.';
    msg.len = p - msg.data;

    glcf = ngx_http_get_module_loc_conf(r, ngx_http_gi2_module);

    return ngx_http_gi2_reject(r, ctx, glcf->reject_status,
                               "gi2_prompt_rejected", "prompt", &msg);
}


/* no verdict: closed rejects, open forwards; either way it is recorded */

static ngx_int_t
ngx_http_gi2_modapi_failed(ngx_http_request_t *r, ngx_http_gi2_ctx_t *ctx,
    ngx_http_gi2_modapi_loc_conf_t *mlcf, ngx_uint_t result)
{
    ngx_str_t  msg;

    ctx->modapi.result = result;

    if (mlcf->fail == NGX_HTTP_GI2_MODAPI_FAIL_OPEN) {
        return NGX_DECLINED;
    }

    ngx_str_set(&msg, "The gateway's moderation service could not check "
                "the prompt; try again later.");

    return ngx_http_gi2_reject(r, ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                               "gi2_moderation_unavailable", NULL, &msg);
}


/* the easy handle leaves the multi handle; the request stays */

static void
ngx_http_gi2_modapi_detach(ngx_http_gi2_modapi_call_t *call)
{
    ngx_http_gi2_modapi_worker_t  *w;

    w = &ngx_http_gi2_modapi_worker;

    if (call->ctx && call->ctx->modapi.call == call) {
        call->ctx->modapi.call = NULL;
        ngx_queue_remove(&call->queue);
        w->ncalls--;
        ngx_http_gi2_modapi_cancelable(w);

        (void) curl_multi_remove_handle(w->multi, call->easy);
    }

    if (call->easy) {
        curl_easy_cleanup(call->easy);
        call->easy = NULL;
    }

    if (call->headers) {
        curl_slist_free_all(call->headers);
        call->headers = NULL;
    }

    gi2_modapi_parser_destroy(call->parser);
    call->parser = NULL;
}


/* the request ends first: the client went away, or the worker exits */

static void
ngx_http_gi2_modapi_cleanup(void *data)
{
    ngx_http_gi2_modapi_call_t *call = data;

    ngx_http_gi2_ctx_t  *ctx;

    ctx = call->ctx;

    if (ctx == NULL || ctx->modapi.call != call) {
        ngx_http_gi2_modapi_detach(call);
        return;
    }

    ngx_log_error(NGX_LOG_INFO, call->request->connection->log, 0,
                  "gi2: moderation service call cancelled");

    ctx->modapi.result = NGX_HTTP_GI2_MODAPI_CANCELLED;
    ctx->modapi.ms = ngx_current_msec - call->start;
    ctx->modapi.timed = 1;

    ngx_http_gi2_modapi_detach(call);
}


/* a call ended: its verdict, then the request goes on */

static void
ngx_http_gi2_modapi_finish(ngx_http_gi2_modapi_call_t *call, CURLcode code)
{
    long                             status;
    ngx_int_t                        rc;
    ngx_uint_t                       result;
    const char                      *why, *fail;
    ngx_connection_t                *c;
    ngx_http_request_t              *r;
    ngx_http_gi2_ctx_t              *ctx;
    ngx_http_gi2_modapi_loc_conf_t  *mlcf;

    r = call->request;
    ctx = call->ctx;
    mlcf = call->mlcf;
    c = r->connection;

    status = 0;
    (void) curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);

    ctx->modapi.ms = ngx_current_msec - call->start;
    ctx->modapi.timed = 1;

    result = NGX_HTTP_GI2_MODAPI_ERROR;
    why = NULL;

    if (code == CURLE_OPERATION_TIMEDOUT) {
        result = NGX_HTTP_GI2_MODAPI_TIMEOUT;
        why = "no answer in time";

    } else if (call->too_big || code == CURLE_FILESIZE_EXCEEDED) {
        why = "the answer is over 65536 bytes";

    } else if (code != CURLE_OK) {
        why = call->error[0] ? call->error : curl_easy_strerror(code);

    } else if (status != 200) {
        why = "not a 200 answer";

    } else if (gi2_modapi_parser_finish(call->parser) != GI2_OK) {
        why = call->result.error;

    } else {
        result = NGX_HTTP_GI2_MODAPI_CLEAN;
    }

    ngx_http_gi2_modapi_detach(call);

    r->read_event_handler = ngx_http_block_reading;

    if (result == NGX_HTTP_GI2_MODAPI_CLEAN) {
        if (call->cache) {
            ngx_http_gi2_modapi_store(mlcf, call->key, &call->result);
        }

        rc = ngx_http_gi2_modapi_verdict(r, ctx, mlcf, &call->result);

    } else {
        fail = (mlcf->fail == NGX_HTTP_GI2_MODAPI_FAIL_OPEN)
               ? "open: forwarded unchecked" : "closed: 503";

        if (status) {
            ngx_log_error(NGX_LOG_WARN, c->log, 0,
                          "gi2: moderation service: %s (HTTP status %l, "
                          "after %M ms); failing %s", why, status,
                          ctx->modapi.ms, fail);

        } else {
            ngx_log_error(NGX_LOG_WARN, c->log, 0,
                          "gi2: moderation service: %s (after %M ms); "
                          "failing %s", why, ctx->modapi.ms, fail);
        }

        rc = ngx_http_gi2_modapi_failed(r, ctx, mlcf, result);
    }

    ngx_http_gi2_resume(r, ctx, rc);
    ngx_http_run_posted_requests(c);
}


/* the transfers that ended since last asked */

static void
ngx_http_gi2_modapi_process(ngx_http_gi2_modapi_worker_t *w)
{
    int                          left;
    CURL                        *easy;
    CURLMsg                     *msg;
    CURLcode                     code;
    ngx_http_gi2_modapi_call_t  *call;

    while ((msg = curl_multi_info_read(w->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE) {
            continue;
        }

        easy = msg->easy_handle;
        code = msg->data.result;
        call = NULL;

        (void) curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **) &call);

        if (call == NULL) {
            (void) curl_multi_remove_handle(w->multi, easy);
            curl_easy_cleanup(easy);
            continue;
        }

        ngx_http_gi2_modapi_finish(call, code);
    }
}


static size_t
ngx_http_gi2_modapi_write(char *ptr, size_t size, size_t nmemb,
    void *userdata)
{
    ngx_http_gi2_modapi_call_t *call = userdata;

    long    status;
    size_t  n;

    n = size * nmemb;
    call->received += n;

    if (call->received > NGX_HTTP_GI2_MODAPI_ANSWER_MAX) {
        call->too_big = 1;
        return 0;
    }

    status = 0;
    (void) curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);

    /* another status is an error whatever it says: read, not parsed */

    if (status == 200) {
        (void) gi2_modapi_parser_feed(call->parser, (u_char *) ptr, n);
    }

    return n;
}


/*
 * curl's sockets.  curl opens and closes them through the two callbacks
 * below, so each has an nginx connection from the start and is freed
 * with it; others (the threaded resolver's socketpair) get one when curl
 * first wants an event on them, freed when it no longer does.  Events
 * are level-triggered: curl does not promise to read or write until
 * EAGAIN, which edge-triggered events would need.
 */

static int
ngx_http_gi2_modapi_socket(CURL *easy, curl_socket_t s, int what,
    void *userp, void *socketp)
{
    ngx_http_gi2_modapi_worker_t *w = userp;

    ngx_connection_t            *c;
    ngx_http_gi2_modapi_sock_t  *sk;

    sk = ngx_http_gi2_modapi_sock(w, s, 0);
    c = sk ? sk->c : NULL;

    if (what == CURL_POLL_REMOVE) {
        if (c == NULL) {
            return 0;
        }

        if (c->read->active) {
            (void) ngx_del_event(c->read, NGX_READ_EVENT, 0);
        }

        if (c->write->active) {
            (void) ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
        }

        if (!sk->owned) {
            ngx_http_gi2_modapi_release(sk);
        }

        return 0;
    }

    if (c == NULL) {
        sk = ngx_http_gi2_modapi_sock(w, s, 1);
        if (sk == NULL) {
            return 0;
        }

        c = ngx_http_gi2_modapi_connection(w, s);
        if (c == NULL) {
            /* no events: the call times out */
            return 0;
        }

        sk->c = c;
        sk->owned = 0;
    }

    if ((what & CURL_POLL_IN) && !c->read->active) {
        if (ngx_add_event(c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT)
            != NGX_OK)
        {
            return 0;
        }

    } else if (!(what & CURL_POLL_IN) && c->read->active) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, 0);
    }

    if ((what & CURL_POLL_OUT) && !c->write->active) {
        if (ngx_add_event(c->write, NGX_WRITE_EVENT, NGX_LEVEL_EVENT)
            != NGX_OK)
        {
            return 0;
        }

    } else if (!(what & CURL_POLL_OUT) && c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
    }

    return 0;
}


static curl_socket_t
ngx_http_gi2_modapi_open(void *clientp, curlsocktype purpose,
    struct curl_sockaddr *addr)
{
    ngx_http_gi2_modapi_worker_t *w = clientp;

    ngx_socket_t                 s;
    ngx_connection_t            *c;
    ngx_http_gi2_modapi_sock_t  *sk;

    if (purpose != CURLSOCKTYPE_IPCXN) {
        return CURL_SOCKET_BAD;
    }

    s = ngx_socket(addr->family, addr->socktype, addr->protocol);
    if (s == (ngx_socket_t) -1) {
        ngx_log_error(NGX_LOG_ERR, w->log, ngx_socket_errno,
                      "gi2: moderation service: " ngx_socket_n " failed");
        return CURL_SOCKET_BAD;
    }

    sk = ngx_http_gi2_modapi_sock(w, s, 1);
    c = sk ? ngx_http_gi2_modapi_connection(w, s) : NULL;

    if (c == NULL) {
        (void) ngx_close_socket(s);
        return CURL_SOCKET_BAD;
    }

    sk->c = c;
    sk->owned = 1;

    return s;
}


static int
ngx_http_gi2_modapi_close(void *clientp, curl_socket_t s)
{
    ngx_http_gi2_modapi_worker_t *w = clientp;

    ngx_connection_t            *c;
    ngx_http_gi2_modapi_sock_t  *sk;

    sk = ngx_http_gi2_modapi_sock(w, s, 0);

    if (sk == NULL || sk->c == NULL || !sk->owned) {
        return ngx_close_socket(s);
    }

    c = sk->c;
    sk->c = NULL;

    ngx_close_connection(c);

    return 0;
}


/* the slot of a descriptor; with add, the table grows to hold it */

static ngx_http_gi2_modapi_sock_t *
ngx_http_gi2_modapi_sock(ngx_http_gi2_modapi_worker_t *w, curl_socket_t s,
    ngx_uint_t add)
{
    ngx_uint_t                   n;
    ngx_http_gi2_modapi_sock_t  *socks;

    if (s < 0) {
        return NULL;
    }

    if ((ngx_uint_t) s < w->nsocks) {
        if (!add && w->socks[s].c == NULL) {
            return NULL;
        }

        if (add && w->socks[s].c != NULL) {
            /* a descriptor curl closed without telling: forget it */
            ngx_http_gi2_modapi_release(&w->socks[s]);
        }

        return &w->socks[s];
    }

    if (!add) {
        return NULL;
    }

    n = ngx_max(64, 2 * (ngx_uint_t) s);

    socks = ngx_alloc(n * sizeof(ngx_http_gi2_modapi_sock_t), w->log);
    if (socks == NULL) {
        return NULL;
    }

    ngx_memzero(socks, n * sizeof(ngx_http_gi2_modapi_sock_t));

    if (w->socks) {
        ngx_memcpy(socks, w->socks,
                   w->nsocks * sizeof(ngx_http_gi2_modapi_sock_t));
        ngx_free(w->socks);
    }

    w->socks = socks;
    w->nsocks = n;

    return &w->socks[s];
}


static ngx_connection_t *
ngx_http_gi2_modapi_connection(ngx_http_gi2_modapi_worker_t *w,
    curl_socket_t s)
{
    ngx_connection_t  *c;

    c = ngx_get_connection(s, w->log);
    if (c == NULL) {
        return NULL;
    }

    c->data = w;
    c->log = w->log;
    c->read->log = w->log;
    c->write->log = w->log;
    c->read->handler = ngx_http_gi2_modapi_event;
    c->write->handler = ngx_http_gi2_modapi_event;
    c->number = ngx_atomic_fetch_add(ngx_connection_counter, 1);

    return c;
}


/* an nginx connection of a descriptor that is not ours to close */

static void
ngx_http_gi2_modapi_release(ngx_http_gi2_modapi_sock_t *sk)
{
    ngx_connection_t  *c;

    c = sk->c;
    sk->c = NULL;

    if (c == NULL) {
        return;
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    c->read->active = 0;
    c->write->active = 0;

    ngx_free_connection(c);
    c->fd = (ngx_socket_t) -1;
}


static void
ngx_http_gi2_modapi_event(ngx_event_t *ev)
{
    int                            running;
    ngx_socket_t                   fd;
    ngx_connection_t              *c;
    ngx_http_gi2_modapi_worker_t  *w;

    c = ev->data;
    w = c->data;

    if (c->close) {
        /* the worker's shutdown timer: curl owns the socket */
        return;
    }

    fd = c->fd;

    /* the connection may be gone once curl is back: only fd is used */

    (void) curl_multi_socket_action(w->multi, fd,
                                    ev->write ? CURL_CSELECT_OUT
                                              : CURL_CSELECT_IN,
                                    &running);

    ngx_http_gi2_modapi_clear_ssl_errors();
    ngx_http_gi2_modapi_process(w);
}


static int
ngx_http_gi2_modapi_timer(CURLM *multi, long timeout_ms, void *userp)
{
    ngx_http_gi2_modapi_worker_t *w = userp;

    /* never lazily: a timer nginx kept 300 ms late would delay curl */

    if (w->timer.timer_set) {
        ngx_del_timer(&w->timer);
    }

    if (timeout_ms >= 0) {
        ngx_add_timer(&w->timer, (ngx_msec_t) timeout_ms);
    }

    return 0;
}


static void
ngx_http_gi2_modapi_timer_event(ngx_event_t *ev)
{
    int                            running;
    ngx_http_gi2_modapi_worker_t  *w;

    w = ev->data;

    (void) curl_multi_socket_action(w->multi, CURL_SOCKET_TIMEOUT, 0,
                                    &running);

    ngx_http_gi2_modapi_clear_ssl_errors();
    ngx_http_gi2_modapi_process(w);
}


/*
 * curl and nginx share OpenSSL's error queue (one thread): what curl
 * leaves there, a failed verification say, nginx would find before its
 * next TLS operation and log as an alert ("ignoring stale global SSL
 * error").  Once curl is back, anything queued is curl's.
 */

static void
ngx_http_gi2_modapi_clear_ssl_errors(void)
{
    ERR_clear_error();
}


/*
 * A worker that shuts down gracefully waits for timers that are not
 * cancelable: curl's is not while calls are in flight, so their requests
 * get their answers before the worker exits.
 */

static void
ngx_http_gi2_modapi_cancelable(ngx_http_gi2_modapi_worker_t *w)
{
    w->timer.cancelable = (w->ncalls == 0);
}


static ngx_int_t
ngx_http_gi2_modapi_init_process(ngx_cycle_t *cycle)
{
    CURLM                            *multi;
    ngx_http_gi2_modapi_worker_t     *w;
    ngx_http_gi2_modapi_main_conf_t  *mmcf;

    w = &ngx_http_gi2_modapi_worker;
    ngx_memzero(w, sizeof(ngx_http_gi2_modapi_worker_t));
    ngx_queue_init(&w->calls);

    mmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_gi2_modapi_module);

    if (mmcf == NULL || !mmcf->used) {
        return NGX_OK;
    }

    w->log = cycle->log;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                      "gi2: curl_global_init() failed");
        return NGX_OK;
    }

    multi = curl_multi_init();
    if (multi == NULL) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                      "gi2: curl_multi_init() failed");
        curl_global_cleanup();
        return NGX_OK;
    }

    if (curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION,
                          ngx_http_gi2_modapi_socket) != CURLM_OK
        || curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, w) != CURLM_OK
        || curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION,
                             ngx_http_gi2_modapi_timer) != CURLM_OK
        || curl_multi_setopt(multi, CURLMOPT_TIMERDATA, w) != CURLM_OK)
    {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                      "gi2: curl_multi_setopt() failed");
        curl_multi_cleanup(multi);
        curl_global_cleanup();
        return NGX_OK;
    }

    w->timer.handler = ngx_http_gi2_modapi_timer_event;
    w->timer.data = w;
    w->timer.log = cycle->log;
    w->timer.cancelable = 1;

    w->multi = multi;

    return NGX_OK;
}


/* calls still in flight are dropped, curl's connections closed */

static void
ngx_http_gi2_modapi_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                     i;
    ngx_queue_t                   *q;
    ngx_http_gi2_modapi_call_t    *call;
    ngx_http_gi2_modapi_worker_t  *w;

    w = &ngx_http_gi2_modapi_worker;

    if (w->multi == NULL) {
        return;
    }

    while (!ngx_queue_empty(&w->calls)) {
        q = ngx_queue_head(&w->calls);
        call = ngx_queue_data(q, ngx_http_gi2_modapi_call_t, queue);
        ngx_http_gi2_modapi_detach(call);
    }

    if (w->timer.timer_set) {
        ngx_del_timer(&w->timer);
    }

    (void) curl_multi_cleanup(w->multi);
    w->multi = NULL;

    /* whatever curl did not close through us */

    for (i = 0; i < w->nsocks; i++) {
        if (w->socks[i].c == NULL) {
            continue;
        }

        if (w->socks[i].owned) {
            ngx_close_connection(w->socks[i].c);
            w->socks[i].c = NULL;

        } else {
            ngx_http_gi2_modapi_release(&w->socks[i]);
        }
    }

    ngx_free(w->socks);
    w->socks = NULL;
    w->nsocks = 0;

    curl_global_cleanup();
}


/* the verdict cache */

/*
 * The key: SHA-256 of the prompt's HMAC under gi2_hash_key_file and of
 * the service (URL, model, format), so that a verdict is only reused for
 * the same question to the same service, and the prompt itself is never
 * in shared memory.
 */

static ngx_int_t
ngx_http_gi2_modapi_key(ngx_http_request_t *r, ngx_http_gi2_loc_conf_t *glcf,
    ngx_http_gi2_modapi_loc_conf_t *mlcf, gi2_field_t *prompt, u_char *key)
{
    unsigned int   n;
    ngx_str_t      hmac;
    EVP_MD_CTX    *md;
    ngx_int_t      rc;

    if (ngx_http_gi2_hmac(r, glcf, (u_char *) prompt->value.data,
                          prompt->value.len, &hmac)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    md = EVP_MD_CTX_new();
    if (md == NULL) {
        return NGX_ERROR;
    }

    rc = (EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1
          && EVP_DigestUpdate(md, hmac.data, hmac.len) == 1
          && EVP_DigestUpdate(md, mlcf->identity.data, mlcf->identity.len)
             == 1
          && EVP_DigestFinal_ex(md, key, &n) == 1)
         ? NGX_OK : NGX_ERROR;

    EVP_MD_CTX_free(md);

    return rc;
}


static ngx_int_t
ngx_http_gi2_modapi_lookup(ngx_http_gi2_modapi_loc_conf_t *mlcf, u_char *key,
    gi2_modapi_result_t *res)
{
    ngx_int_t                     rc;
    ngx_http_gi2_modapi_node_t   *mn;
    ngx_http_gi2_modapi_cache_t  *cache;

    cache = mlcf->cache->data;
    rc = NGX_DECLINED;

    ngx_shmtx_lock(&cache->shpool->mutex);

    mn = ngx_http_gi2_modapi_find(cache, key);

    if (mn != NULL) {
        if ((ngx_msec_int_t) (mn->expires - ngx_current_msec) <= 0) {
            ngx_http_gi2_modapi_delete(cache, mn);

        } else if (gi2_modapi_unpack(mn->data, mn->len, res) == GI2_OK) {
            ngx_queue_remove(&mn->queue);
            ngx_queue_insert_head(&cache->sh->queue, &mn->queue);
            rc = NGX_OK;
        }
    }

    ngx_shmtx_unlock(&cache->shpool->mutex);

    return rc;
}


static void
ngx_http_gi2_modapi_store(ngx_http_gi2_modapi_loc_conf_t *mlcf, u_char *key,
    gi2_modapi_result_t *res)
{
    size_t                        len, size;
    ngx_uint_t                    i;
    ngx_queue_t                  *q;
    ngx_rbtree_node_t            *node;
    ngx_http_gi2_modapi_node_t   *mn;
    ngx_http_gi2_modapi_cache_t  *cache;
    u_char                        buf[GI2_MODAPI_PACK_MAX];

    len = gi2_modapi_pack(res, buf, sizeof(buf));
    if (len == 0) {
        return;
    }

    cache = mlcf->cache->data;

    size = offsetof(ngx_rbtree_node_t, color)
           + offsetof(ngx_http_gi2_modapi_node_t, data) + len;

    ngx_shmtx_lock(&cache->shpool->mutex);

    /* another worker may have asked the same meanwhile */

    mn = ngx_http_gi2_modapi_find(cache, key);
    if (mn != NULL) {
        ngx_http_gi2_modapi_delete(cache, mn);
    }

    /* what has expired at the old end goes first, then the oldest */

    for (i = 0; i < 2 && !ngx_queue_empty(&cache->sh->queue); i++) {
        q = ngx_queue_last(&cache->sh->queue);
        mn = ngx_queue_data(q, ngx_http_gi2_modapi_node_t, queue);

        if ((ngx_msec_int_t) (mn->expires - ngx_current_msec) > 0) {
            break;
        }

        ngx_http_gi2_modapi_delete(cache, mn);
    }

    node = ngx_slab_alloc_locked(cache->shpool, size);

    for (i = 0; node == NULL && i < 64; i++) {
        if (ngx_queue_empty(&cache->sh->queue)) {
            break;
        }

        q = ngx_queue_last(&cache->sh->queue);
        mn = ngx_queue_data(q, ngx_http_gi2_modapi_node_t, queue);
        ngx_http_gi2_modapi_delete(cache, mn);

        node = ngx_slab_alloc_locked(cache->shpool, size);
    }

    if (node == NULL) {
        ngx_shmtx_unlock(&cache->shpool->mutex);
        return;
    }

    ngx_memcpy(&node->key, key, sizeof(ngx_rbtree_key_t));

    mn = (ngx_http_gi2_modapi_node_t *) &node->color;
    mn->len = (u_short) len;
    mn->expires = ngx_current_msec + mlcf->cache_ttl;
    ngx_memcpy(mn->key, key, 32);
    ngx_memcpy(mn->data, buf, len);

    ngx_rbtree_insert(&cache->sh->rbtree, node);
    ngx_queue_insert_head(&cache->sh->queue, &mn->queue);

    ngx_shmtx_unlock(&cache->shpool->mutex);
}


static ngx_http_gi2_modapi_node_t *
ngx_http_gi2_modapi_find(ngx_http_gi2_modapi_cache_t *cache, u_char *key)
{
    ngx_int_t                    rc;
    ngx_rbtree_key_t             hash;
    ngx_rbtree_node_t           *node, *sentinel;
    ngx_http_gi2_modapi_node_t  *mn;

    ngx_memcpy(&hash, key, sizeof(ngx_rbtree_key_t));

    node = cache->sh->rbtree.root;
    sentinel = cache->sh->rbtree.sentinel;

    while (node != sentinel) {

        if (hash < node->key) {
            node = node->left;
            continue;
        }

        if (hash > node->key) {
            node = node->right;
            continue;
        }

        mn = (ngx_http_gi2_modapi_node_t *) &node->color;

        rc = ngx_memcmp(key, mn->key, 32);

        if (rc == 0) {
            return mn;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


static void
ngx_http_gi2_modapi_delete(ngx_http_gi2_modapi_cache_t *cache,
    ngx_http_gi2_modapi_node_t *mn)
{
    ngx_rbtree_node_t  *node;

    node = (ngx_rbtree_node_t *)
               ((u_char *) mn - offsetof(ngx_rbtree_node_t, color));

    ngx_queue_remove(&mn->queue);
    ngx_rbtree_delete(&cache->sh->rbtree, node);
    ngx_slab_free_locked(cache->shpool, node);
}


static void
ngx_http_gi2_modapi_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t           **p;
    ngx_http_gi2_modapi_node_t   *mn, *mnt;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else {
            mn = (ngx_http_gi2_modapi_node_t *) &node->color;
            mnt = (ngx_http_gi2_modapi_node_t *) &temp->color;

            p = (ngx_memcmp(mn->key, mnt->key, 32) < 0)
                ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


static ngx_int_t
ngx_http_gi2_modapi_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_gi2_modapi_cache_t  *ocache = data;

    size_t                        len;
    ngx_http_gi2_modapi_cache_t  *cache;

    cache = shm_zone->data;

    if (ocache) {
        /* a reload: the verdicts stay */
        cache->sh = ocache->sh;
        cache->shpool = ocache->shpool;
        return NGX_OK;
    }

    cache->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        cache->sh = cache->shpool->data;
        return NGX_OK;
    }

    cache->sh = ngx_slab_alloc(cache->shpool,
                               sizeof(ngx_http_gi2_modapi_shctx_t));
    if (cache->sh == NULL) {
        return NGX_ERROR;
    }

    cache->shpool->data = cache->sh;

    ngx_rbtree_init(&cache->sh->rbtree, &cache->sh->sentinel,
                    ngx_http_gi2_modapi_rbtree_insert);
    ngx_queue_init(&cache->sh->queue);

    len = sizeof(" in gi2_moderation_cache zone \"\"") + shm_zone->shm.name.len;

    cache->shpool->log_ctx = ngx_slab_alloc(cache->shpool, len);
    if (cache->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(cache->shpool->log_ctx,
                " in gi2_moderation_cache zone \"%V\"%Z",
                &shm_zone->shm.name);

    /* a full zone is normal: the oldest verdicts make room */
    cache->shpool->log_nomem = 0;

    return NGX_OK;
}


/* variables */

static ngx_int_t
ngx_http_gi2_modapi_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_gi2_modapi_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_gi2_modapi_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char              *p;
    const char          *s;
    ngx_http_gi2_ctx_t  *ctx;

    ctx = ngx_http_gi2_get_ctx(r->main);

    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 1;

    s = ngx_http_gi2_modapi_result(r->main, ctx);

    if (s == NULL) {
        return NGX_OK;
    }

    switch (data) {

    case NGX_HTTP_GI2_MODAPI_VAR_RESULT:
        v->data = (u_char *) s;
        v->len = ngx_strlen(s);
        break;

    case NGX_HTTP_GI2_MODAPI_VAR_CACHED:
        if (ctx->modapi.result != NGX_HTTP_GI2_MODAPI_CLEAN
            && ctx->modapi.result != NGX_HTTP_GI2_MODAPI_FLAGGED)
        {
            return NGX_OK;
        }

        v->data = (u_char *) (ctx->modapi.cached ? "1" : "0");
        v->len = 1;
        break;

    case NGX_HTTP_GI2_MODAPI_VAR_CATEGORIES:
        if (ctx->modapi.categories.len == 0) {
            return NGX_OK;
        }

        v->data = ctx->modapi.categories.data;
        v->len = ctx->modapi.categories.len;
        break;

    default: /* NGX_HTTP_GI2_MODAPI_VAR_MS */
        if (!ctx->modapi.timed) {
            return NGX_OK;
        }

        p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        v->data = p;
        v->len = ngx_sprintf(p, "%M", ctx->modapi.ms) - p;
        break;
    }

    v->not_found = 0;

    return NGX_OK;
}


/* configuration */

static void *
ngx_http_gi2_modapi_create_main_conf(ngx_conf_t *cf)
{
    return ngx_pcalloc(cf->pool, sizeof(ngx_http_gi2_modapi_main_conf_t));
}


static void *
ngx_http_gi2_modapi_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_gi2_modapi_loc_conf_t  *mlcf;

    mlcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_gi2_modapi_loc_conf_t));
    if (mlcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     mlcf->url = { 0, NULL };
     *     mlcf->auth = { 0, NULL };
     *     mlcf->model = { 0, NULL };
     *     mlcf->ca_file = { 0, NULL };
     *     mlcf->identity = { 0, NULL };
     *     mlcf->set = 0;
     */

    mlcf->format = NGX_CONF_UNSET_UINT;
    mlcf->timeout = NGX_CONF_UNSET_MSEC;
    mlcf->fail = NGX_CONF_UNSET_UINT;
    mlcf->action = NGX_CONF_UNSET_UINT;
    mlcf->thresholds = NGX_CONF_UNSET_PTR;
    mlcf->cache = NGX_CONF_UNSET_PTR;
    mlcf->cache_ttl = NGX_CONF_UNSET_MSEC;
    mlcf->images = NGX_CONF_UNSET;

    return mlcf;
}


static char *
ngx_http_gi2_modapi_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_gi2_modapi_loc_conf_t *prev = parent;
    ngx_http_gi2_modapi_loc_conf_t *conf = child;

    u_char                   *p;
    ngx_http_gi2_loc_conf_t  *glcf;

    if (!conf->set) {
        conf->url = prev->url;
        conf->format = prev->format;
        conf->set = prev->set;
    }

    ngx_conf_merge_uint_value(conf->format, prev->format,
                              GI2_MODAPI_OPENAI);
    ngx_conf_merge_str_value(conf->auth, prev->auth, "");
    ngx_conf_merge_str_value(conf->model, prev->model,
                             "omni-moderation-latest");
    ngx_conf_merge_msec_value(conf->timeout, prev->timeout, 3000);
    ngx_conf_merge_uint_value(conf->fail, prev->fail,
                              NGX_HTTP_GI2_MODAPI_FAIL_CLOSED);
    ngx_conf_merge_uint_value(conf->action, prev->action,
                              NGX_HTTP_GI2_MODAPI_DENY);
    ngx_conf_merge_ptr_value(conf->thresholds, prev->thresholds, NULL);
    ngx_conf_merge_value(conf->images, prev->images, 0);
    ngx_conf_merge_str_value(conf->ca_file, prev->ca_file, "");

    if (conf->cache == NGX_CONF_UNSET_PTR) {
        conf->cache = prev->cache;
        conf->cache_ttl = prev->cache_ttl;
        conf->cache_file = prev->cache_file;
        conf->cache_line = prev->cache_line;
    }

    ngx_conf_merge_ptr_value(conf->cache, prev->cache, NULL);
    ngx_conf_merge_msec_value(conf->cache_ttl, prev->cache_ttl, 3600000);

    if (conf->url.len == 0) {
        return NGX_CONF_OK;
    }

    /* what a cached verdict was the answer to */

    conf->identity.len = conf->url.len + conf->model.len + 4;
    conf->identity.data = ngx_pnalloc(cf->pool, conf->identity.len);
    if (conf->identity.data == NULL) {
        return NGX_CONF_ERROR;
    }

    p = ngx_cpymem(conf->identity.data, "\0", 1);
    p = ngx_cpymem(p, conf->url.data, conf->url.len);
    *p++ = '\0';
    p = ngx_cpymem(p, conf->model.data, conf->model.len);
    *p++ = '\0';
    *p++ = (u_char) ('0' + conf->format);

    if (conf->cache != NULL) {
        glcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_gi2_module);

        if (glcf->hash_key.len == 0) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "gi2_moderation_cache needs gi2_hash_key_file: "
                          "verdicts are keyed by the prompt's HMAC in %s:%ui",
                          conf->cache_file, conf->cache_line);
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


/* gi2_moderation_api URL [format=openai|generic] | off */

static char *
ngx_http_gi2_modapi_api(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_gi2_modapi_loc_conf_t *mlcf = conf;

    u_char                           *p, *host, *end;
    size_t                            len;
    ngx_str_t                        *value;
    ngx_uint_t                        i, numeric;
    curl_version_info_data           *cv;
    ngx_http_gi2_modapi_main_conf_t  *mmcf;

    if (mlcf->set) {
        return "is duplicate";
    }

    value = cf->args->elts;
    mlcf->set = 1;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        if (cf->args->nelts > 2) {
            return "takes no parameters after \"off\"";
        }

        ngx_str_null(&mlcf->url);
        return NGX_CONF_OK;
    }

    /* a URL of its own is not in the format of an inherited one */
    mlcf->format = GI2_MODAPI_OPENAI;

    for (i = 2; i < cf->args->nelts; i++) {
        if (ngx_strcmp(value[i].data, "format=openai") == 0) {
            mlcf->format = GI2_MODAPI_OPENAI;

        } else if (ngx_strcmp(value[i].data, "format=generic") == 0) {
            mlcf->format = GI2_MODAPI_GENERIC;

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\" in "
                               "gi2_moderation_api: use format=openai or "
                               "format=generic", &value[i]);
            return NGX_CONF_ERROR;
        }
    }

    p = value[1].data;
    len = value[1].len;

    if (len > 7 && ngx_strncasecmp(p, (u_char *) "http://", 7) == 0) {
        host = p + 7;

    } else if (len > 8 && ngx_strncasecmp(p, (u_char *) "https://", 8) == 0)
    {
        host = p + 8;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "gi2_moderation_api: \"%V\" is not an http:// or "
                           "https:// URL", &value[1]);
        return NGX_CONF_ERROR;
    }

    for (i = 0; i < len; i++) {
        if (p[i] <= 0x20 || p[i] >= 0x7f) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "gi2_moderation_api: the URL has spaces, "
                               "controls or bytes that are not ASCII");
            return NGX_CONF_ERROR;
        }
    }

    for (end = host; end < p + len && *end != '/' && *end != '?'
                     && *end != '#'; end++)
    {
        if (*end == '@') {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "gi2_moderation_api: no credentials in the "
                               "URL; use gi2_moderation_key_file");
            return NGX_CONF_ERROR;
        }
    }

    if (end == host || *host == ':') {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "gi2_moderation_api: no host in \"%V\"",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    /*
     * A name is resolved by curl: only its threaded resolver (or c-ares)
     * keeps that off the worker's thread.  Without one, only addresses.
     */

    numeric = (*host == '[');

    if (!numeric) {
        numeric = 1;

        for (p = host; p < end && *p != ':'; p++) {
            if (!((*p >= '0' && *p <= '9') || *p == '.')) {
                numeric = 0;
                break;
            }
        }
    }

    cv = curl_version_info(CURLVERSION_NOW);

    if (!numeric && !(cv->features & CURL_VERSION_ASYNCHDNS)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "gi2_moderation_api: this libcurl (%s) resolves "
                           "names synchronously, which would block the "
                           "worker; give an IP address", cv->version);
        return NGX_CONF_ERROR;
    }

    mlcf->url = value[1];

    mmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_gi2_modapi_module);
    mmcf->used = 1;

    return NGX_CONF_OK;
}


/* the bearer token: read once here, sent in a header, never logged */

static char *
ngx_http_gi2_modapi_key_file(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_gi2_modapi_loc_conf_t *mlcf = conf;

    u_char           *buf, *p;
    size_t            len, i;
    ssize_t           n;
    ngx_fd_t          fd;
    ngx_err_t         err;
    ngx_str_t        *value, name;
    ngx_file_info_t   fi;

    if (mlcf->auth.data != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;
    name = value[1];

    if (ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    fd = ngx_open_file(name.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "gi2_moderation_key_file: cannot open \"%V\"",
                           &name);
        return NGX_CONF_ERROR;
    }

    buf = NULL;
    n = -1;
    err = 0;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        err = ngx_errno;

    } else if (ngx_file_size(&fi) <= 4096) {
        buf = ngx_pnalloc(cf->temp_pool, ngx_file_size(&fi) + 1);
        if (buf != NULL) {
            n = ngx_read_fd(fd, buf, ngx_file_size(&fi));
            err = (n < 0) ? ngx_errno : 0;
        }
    }

    ngx_close_file(fd);

    if (buf == NULL || n < 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, err,
                           "gi2_moderation_key_file: cannot read \"%V\" (at "
                           "most 4096 bytes)", &name);
        return NGX_CONF_ERROR;
    }

    len = n;

    while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r'
                   || buf[len - 1] == ' ' || buf[len - 1] == '\t'))
    {
        len--;
    }

    /* it goes into a header line: visible ASCII only, and never echoed */

    for (i = 0; i < len; i++) {
        if (buf[i] <= 0x20 || buf[i] >= 0x7f) {
            break;
        }
    }

    if (len == 0 || i < len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "gi2_moderation_key_file: \"%V\" must hold one "
                           "token of visible ASCII characters", &name);
        ngx_explicit_memzero(buf, n);
        return NGX_CONF_ERROR;
    }

    mlcf->auth.len = sizeof("Authorization: Bearer ") - 1 + len;
    mlcf->auth.data = ngx_pnalloc(cf->pool, mlcf->auth.len + 1);
    if (mlcf->auth.data == NULL) {
        return NGX_CONF_ERROR;
    }

    p = ngx_cpymem(mlcf->auth.data, "Authorization: Bearer ",
                   sizeof("Authorization: Bearer ") - 1);
    p = ngx_cpymem(p, buf, len);
    *p = '\0';

    ngx_explicit_memzero(buf, n);

    return NGX_CONF_OK;
}


/* gi2_moderation_threshold CATEGORY SCORE */

static char *
ngx_http_gi2_modapi_threshold(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_gi2_modapi_loc_conf_t *mlcf = conf;

    char                    *end;
    double                   score;
    u_char                   c;
    ngx_str_t               *value;
    ngx_uint_t               i;
    gi2_modapi_threshold_t  *th;

    value = cf->args->elts;

    if (value[1].len == 0 || value[1].len > GI2_MODAPI_NAME_MAX) {
        goto bad_name;
    }

    for (i = 0; i < value[1].len; i++) {
        c = value[1].data[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.'
              || c == '/' || c == ':'))
        {
            goto bad_name;
        }
    }

    for (i = 0; i < value[2].len; i++) {
        c = value[2].data[i];

        if (!((c >= '0' && c <= '9') || c == '.')) {
            goto bad_score;
        }
    }

    score = strtod((char *) value[2].data, &end);

    if (value[2].len == 0 || *end != '\0' || score < 0 || score > 1) {
        goto bad_score;
    }

    if (mlcf->thresholds == NGX_CONF_UNSET_PTR) {
        mlcf->thresholds = ngx_array_create(cf->pool, 8,
                                            sizeof(gi2_modapi_threshold_t));
        if (mlcf->thresholds == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    th = mlcf->thresholds->elts;

    for (i = 0; i < mlcf->thresholds->nelts; i++) {
        if (ngx_strcmp(th[i].name, value[1].data) == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate gi2_moderation_threshold for "
                               "\"%V\"", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    th = ngx_array_push(mlcf->thresholds);
    if (th == NULL) {
        return NGX_CONF_ERROR;
    }

    /* arguments are NUL-terminated */
    th->name = (char *) value[1].data;
    th->score = score;

    return NGX_CONF_OK;

bad_name:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid category \"%V\" in gi2_moderation_threshold: "
                       "use 1 to 64 of A-Z a-z 0-9 _ - . / :", &value[1]);
    return NGX_CONF_ERROR;

bad_score:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid score \"%V\" in gi2_moderation_threshold: "
                       "use a decimal from 0 to 1", &value[2]);
    return NGX_CONF_ERROR;
}


/* gi2_moderation_cache zone=NAME:SIZE [ttl=TIME] | off */

static char *
ngx_http_gi2_modapi_cache_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_gi2_modapi_loc_conf_t *mlcf = conf;

    u_char                       *p;
    ssize_t                       size;
    ngx_str_t                    *value, name, s;
    ngx_int_t                     ttl;
    ngx_uint_t                    i;
    ngx_shm_zone_t               *shm_zone;
    ngx_http_gi2_modapi_cache_t  *cache;

    if (mlcf->cache != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    mlcf->cache_file = cf->conf_file->file.name.data;
    mlcf->cache_line = cf->conf_file->line;

    if (ngx_strcmp(value[1].data, "off") == 0 && cf->args->nelts == 2) {
        mlcf->cache = NULL;
        return NGX_CONF_OK;
    }

    ngx_str_null(&name);
    size = 0;
    ttl = NGX_CONF_UNSET;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "zone=", 5) == 0 && name.len == 0) {
            name.data = value[i].data + 5;

            p = (u_char *) ngx_strchr(name.data, ':');
            if (p == NULL) {
                goto invalid;
            }

            name.len = p - name.data;

            s.data = p + 1;
            s.len = value[i].data + value[i].len - s.data;

            size = ngx_parse_size(&s);

            if (name.len == 0 || size == NGX_ERROR) {
                goto invalid;
            }

            if (size < (ssize_t) (8 * ngx_pagesize)) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "gi2_moderation_cache zone \"%V\" is too "
                                   "small: at least %uzk", &name,
                                   8 * ngx_pagesize / 1024);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "ttl=", 4) == 0
            && ttl == NGX_CONF_UNSET)
        {
            s.data = value[i].data + 4;
            s.len = value[i].len - 4;

            ttl = ngx_parse_time(&s, 0);

            if (ttl == NGX_ERROR || ttl == 0) {
                goto invalid;
            }

            continue;
        }

        goto invalid;
    }

    if (name.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "gi2_moderation_cache needs zone=NAME:SIZE");
        return NGX_CONF_ERROR;
    }

    shm_zone = ngx_shared_memory_add(cf, &name, size,
                                     &ngx_http_gi2_modapi_module);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (shm_zone->data == NULL) {
        cache = ngx_pcalloc(cf->pool, sizeof(ngx_http_gi2_modapi_cache_t));
        if (cache == NULL) {
            return NGX_CONF_ERROR;
        }

        shm_zone->init = ngx_http_gi2_modapi_init_zone;
        shm_zone->data = cache;
    }

    mlcf->cache = shm_zone;
    mlcf->cache_ttl = (ttl == NGX_CONF_UNSET) ? 3600000 : (ngx_msec_t) ttl;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\" in gi2_moderation_cache: "
                       "use zone=NAME:SIZE [ttl=TIME], or off", &value[i]);
    return NGX_CONF_ERROR;
}


static char *
ngx_http_gi2_modapi_ca_file(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_gi2_modapi_loc_conf_t *mlcf = conf;

    ngx_str_t  *value, name;

    if (mlcf->ca_file.data != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;
    name = value[1];

    if (ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (access((char *) name.data, R_OK) != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "gi2_moderation_ca_file: cannot read \"%V\"",
                           &name);
        return NGX_CONF_ERROR;
    }

    /* ngx_conf_full_name() leaves it NUL-terminated */
    mlcf->ca_file = name;

    return NGX_CONF_OK;
}


static char *
ngx_http_gi2_modapi_timeout(ngx_conf_t *cf, void *post, void *data)
{
    ngx_msec_t  *ms = data;

    if (*ms == 0) {
        return "must be more than 0";
    }

    return NGX_CONF_OK;
}
