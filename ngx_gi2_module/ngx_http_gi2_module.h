/*
 * ngx_gi2_module: moderation and audit for AI image generation.
 * Shared declarations of the nginx glue.
 */

#ifndef _NGX_HTTP_GI2_MODULE_H_INCLUDED_
#define _NGX_HTTP_GI2_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "gi2_core.h"
#include "gi2_multipart.h"


#define NGX_HTTP_GI2_LOW_REJECT      0
#define NGX_HTTP_GI2_LOW_REWRITE     1
#define NGX_HTTP_GI2_LOW_ALLOW       2

#define NGX_HTTP_GI2_NONE            0
#define NGX_HTTP_GI2_ALLOW           1
#define NGX_HTTP_GI2_FLAG            2
#define NGX_HTTP_GI2_REWRITE         3
#define NGX_HTTP_GI2_REJECT          4

#define NGX_HTTP_GI2_USER_KEEP       0
#define NGX_HTTP_GI2_USER_HASH       1
#define NGX_HTTP_GI2_USER_DROP       2

/* the response-side variables */
#define NGX_HTTP_GI2_AVAR_UPSTREAM_STATUS         1
#define NGX_HTTP_GI2_AVAR_ERROR_TYPE              2
#define NGX_HTTP_GI2_AVAR_ERROR_CODE              3
#define NGX_HTTP_GI2_AVAR_MODERATION_STAGE        4
#define NGX_HTTP_GI2_AVAR_MODERATION_CATEGORIES   5
#define NGX_HTTP_GI2_AVAR_IMAGE_SHA256            6
#define NGX_HTTP_GI2_AVAR_IMAGE_COUNT             7
#define NGX_HTTP_GI2_AVAR_INPUT_TOKENS            8
#define NGX_HTTP_GI2_AVAR_OUTPUT_TOKENS           9
#define NGX_HTTP_GI2_AVAR_TOTAL_TOKENS            10
#define NGX_HTTP_GI2_AVAR_PROMPT_HASH             11
#define NGX_HTTP_GI2_AVAR_CONSUMER_HASH           12
#define NGX_HTTP_GI2_AVAR_REQUEST_ID              13
#define NGX_HTTP_GI2_AVAR_RETRY_COUNT             14
#define NGX_HTTP_GI2_AVAR_COST_USD                15
#define NGX_HTTP_GI2_AVAR_LOG_JSON                16

/* the entry point: gi2_endpoint, or from the URI (auto) */
#define NGX_HTTP_GI2_ENDPOINT_AUTO   0
#define NGX_HTTP_GI2_GENERATIONS     1
#define NGX_HTTP_GI2_EDITS           2
#define NGX_HTTP_GI2_RESPONSES       3

/* what the external moderation service said (ngx_http_gi2_modapi.c) */
#define NGX_HTTP_GI2_MODAPI_NONE       0
#define NGX_HTTP_GI2_MODAPI_CLEAN      1
#define NGX_HTTP_GI2_MODAPI_FLAGGED    2
#define NGX_HTTP_GI2_MODAPI_ERROR      3
#define NGX_HTTP_GI2_MODAPI_TIMEOUT    4
#define NGX_HTTP_GI2_MODAPI_CANCELLED  5


/* the response scanner on a thread pool (ngx_http_gi2_rt.c) */
typedef struct ngx_http_gi2_rt_s  ngx_http_gi2_rt_t;


typedef struct {
    off_t                       from;
    off_t                       to;
    ngx_str_t                   text;
} ngx_http_gi2_edit_t;


typedef struct {
    ngx_str_t                   model;
    double                      input;         /* USD per 1M tokens */
    double                      output;
    double                      image_input;   /* < 0: as input */
} ngx_http_gi2_price_t;


typedef struct {
    ngx_str_t                   id;
    time_t                      expires;    /* 0: never; else first second
                                               after the last valid day */
    ngx_str_t                   consumer;   /* empty: any consumer */
} ngx_http_gi2_exception_t;


typedef struct {
    ngx_str_t                   id;
    ngx_str_t                   category;
    ngx_str_t                   pattern;       /* or the keyword file */
    int                         action;
    ngx_array_t                *phrases;       /* ngx_str_t, keywords */
    u_char                     *file;
    ngx_uint_t                  line;
} ngx_http_gi2_rule_decl_t;


typedef struct {
    ngx_flag_t                  enable;
    ngx_uint_t                  endpoint;
    ngx_uint_t                  moderation_low;
    ngx_uint_t                  reject_status;
    ngx_str_t                   exception_header;
    ngx_array_t                *exceptions;    /* ngx_http_gi2_exception_t */
    ngx_http_complex_value_t   *consumer;

    ngx_uint_t                  user_field;
    ngx_str_t                   hash_key;
    ngx_str_t                   hash_key_id;   /* which key, not the key */
    ngx_flag_t                  log_prompt;
    ngx_flag_t                  response_inspection;
    void                       *response_threads;  /* ngx_thread_pool_t */
    ngx_array_t                *prices;        /* ngx_http_gi2_price_t */

    ngx_array_t                *rules;         /* gi2_rule */
    ngx_array_t                *keywords;      /* gi2_keywords */
    gi2_ruleset_t              *ruleset;       /* built from both */
} ngx_http_gi2_loc_conf_t;


typedef struct {
    ngx_array_t                 rule_ids;      /* ngx_str_t, all levels */
    struct ngx_http_gi2_metrics_conf_s  *metrics;  /* gi2_metrics */
} ngx_http_gi2_main_conf_t;


typedef struct {
    void                       *call;          /* in flight */
    ngx_uint_t                  result;        /* NGX_HTTP_GI2_MODAPI_* */
    ngx_str_t                   categories;    /* flagged, comma-separated */
    ngx_msec_t                  ms;
    unsigned                    cached:1;
    unsigned                    timed:1;       /* ms is known */
} ngx_http_gi2_modapi_state_t;


typedef struct {
    ngx_int_t                   status;        /* for the phase re-entry */

    gi2_req_parser_t           *parser;
    gi2_mp_t                   *mp;            /* a multipart edit */
    ngx_str_t                   boundary;
    gi2_req_t                   req;
    gi2_ruleset_t              *ruleset;
    unsigned                   *hits;
    ngx_uint_t                  nhits;

    ngx_uint_t                  decision;
    const char                 *reject_code;
    ngx_str_t                   exception_id;
    ngx_str_t                   exception_presented;
    ngx_uint_t                  exception_count;
    ngx_str_t                   moderation_effective;

    ngx_http_gi2_edit_t         edits[2];
    ngx_uint_t                  nedits;

    ngx_http_gi2_modapi_state_t  modapi;

    /* the response side */
    void                       *resp;          /* gi2_resp_t */
    ngx_http_gi2_rt_t          *rt;            /* scanned on a thread */
    void                       *zs;            /* z_stream, when encoded */
    u_char                     *zout;
    ngx_uint_t                  resp_status;
    ngx_uint_t                  upstream_status;
    ngx_str_t                   request_id;    /* upstream x-request-id */
    ngx_str_t                   prompt_hash;
    ngx_str_t                   consumer_hash;
    ngx_int_t                   retry_count;
    double                      cost;
    ngx_str_t                   cost_text;
    ngx_str_t                   log_json;

    unsigned                    endpoint:2;
    unsigned                    filtered:1;    /* body parsed by filter */
    unsigned                    done:1;
    unsigned                    resp_finished:1;
    unsigned                    resp_skipped:1;
    unsigned                    resp_gzip:1;
    unsigned                    resp_zerror:1;
    unsigned                    zdone:1;
    unsigned                    finalized:1;
    unsigned                    logging:1;     /* the log phase began */
    unsigned                    resp_cut:1;    /* no last buffer seen */
    unsigned                    zraw:1;        /* raw deflate */
} ngx_http_gi2_ctx_t;


ngx_int_t ngx_http_gi2_handler(ngx_http_request_t *r);
ngx_http_gi2_ctx_t *ngx_http_gi2_get_ctx(ngx_http_request_t *r);
ngx_int_t ngx_http_gi2_request_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
void *ngx_http_gi2_pool_alloc(void *data, size_t size);
ngx_int_t ngx_http_gi2_consumer_value(ngx_http_request_t *r,
    ngx_http_gi2_loc_conf_t *glcf, ngx_str_t *consumer);
ngx_int_t ngx_http_gi2_audit_init(ngx_conf_t *cf);
ngx_int_t ngx_http_gi2_audit_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
ngx_int_t ngx_http_gi2_audit_finalize(ngx_http_request_t *r,
    ngx_http_gi2_ctx_t *ctx);
ngx_int_t ngx_http_gi2_next_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
ngx_int_t ngx_http_gi2_rt_create(ngx_http_request_t *r,
    ngx_http_gi2_ctx_t *ctx, void *pool);
ngx_int_t ngx_http_gi2_rt_body_filter(ngx_http_request_t *r,
    ngx_http_gi2_ctx_t *ctx, ngx_chain_t *in);
void ngx_http_gi2_rt_flush(ngx_http_gi2_ctx_t *ctx);
ngx_int_t ngx_http_gi2_log_json(ngx_http_request_t *r,
    ngx_http_gi2_ctx_t *ctx, ngx_str_t *out);
ngx_int_t ngx_http_gi2_hmac(ngx_http_request_t *r,
    ngx_http_gi2_loc_conf_t *glcf, u_char *data, size_t len,
    ngx_str_t *out);
void ngx_http_gi2_resume(ngx_http_request_t *r, ngx_http_gi2_ctx_t *ctx,
    ngx_int_t rc);
ngx_int_t ngx_http_gi2_reject(ngx_http_request_t *r, ngx_http_gi2_ctx_t *ctx,
    ngx_uint_t status, const char *code, const char *param,
    ngx_str_t *message);
ngx_int_t ngx_http_gi2_modapi_check(ngx_http_request_t *r,
    ngx_http_gi2_ctx_t *ctx, ngx_int_t rc);
const char *ngx_http_gi2_modapi_result(ngx_http_request_t *r,
    ngx_http_gi2_ctx_t *ctx);


extern ngx_module_t                    ngx_http_gi2_module;
extern ngx_module_t                    ngx_http_gi2_modapi_module;
extern ngx_int_t                       ngx_http_gi2_request_id_index;
extern ngx_http_request_body_filter_pt ngx_http_gi2_next_request_body_filter;


#endif /* _NGX_HTTP_GI2_MODULE_H_INCLUDED_ */
