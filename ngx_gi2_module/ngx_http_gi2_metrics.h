/*
 * ngx_gi2_module: counters in shared memory, and the status handler that
 * serves them (Prometheus text, JSON, an HTML page).
 */

#ifndef _NGX_HTTP_GI2_METRICS_H_INCLUDED_
#define _NGX_HTTP_GI2_METRICS_H_INCLUDED_


#include "ngx_http_gi2_module.h"


/*
 * The outcome of a call to an external moderation service, for
 * ngx_http_gi2_metrics_moderation().
 */
#define NGX_HTTP_GI2_MODERATION_ALLOW     0    /* nothing flagged */
#define NGX_HTTP_GI2_MODERATION_FLAG      1    /* flagged, let through */
#define NGX_HTTP_GI2_MODERATION_DENY      2    /* flagged, rejected */
#define NGX_HTTP_GI2_MODERATION_ERROR     3    /* the service failed */
#define NGX_HTTP_GI2_MODERATION_TIMEOUT   4    /* no answer in time */
#define NGX_HTTP_GI2_MODERATION_RESULTS   5


typedef struct ngx_http_gi2_metrics_conf_s  ngx_http_gi2_metrics_conf_t;


/* directives */
char *ngx_http_gi2_metrics_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_gi2_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);

/* every gi2_rule, gi2_keywords and gi2_exception, as it is read */
ngx_int_t ngx_http_gi2_metrics_rule(ngx_conf_t *cf, ngx_str_t *id,
    ngx_str_t *category, int action);
ngx_int_t ngx_http_gi2_metrics_exception(ngx_conf_t *cf, ngx_str_t *id);

/* postconfiguration: the checks that need the whole http block */
ngx_int_t ngx_http_gi2_metrics_init(ngx_conf_t *cf);

/* the log phase: one call a request, with everything known in ctx */
void ngx_http_gi2_metrics_count(ngx_http_request_t *r,
    ngx_http_gi2_ctx_t *ctx);

/*
 * One call to the external moderation service: its outcome
 * (NGX_HTTP_GI2_MODERATION_*) and how long it took.  Safe to call from
 * any phase, any number of times a request; does nothing without
 * gi2_metrics.
 */
void ngx_http_gi2_metrics_moderation(ngx_http_request_t *r,
    ngx_uint_t result, ngx_msec_t ms);


#endif /* _NGX_HTTP_GI2_METRICS_H_INCLUDED_ */
