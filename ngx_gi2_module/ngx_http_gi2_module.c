/*
 * ngx_gi2_module: moderation and audit for AI image generation.
 * Configuration, variables and module registration.
 */

#include "ngx_http_gi2_module.h"
#include "ngx_http_gi2_metrics.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>


#define NGX_HTTP_GI2_ERRLEN  512


static ngx_int_t ngx_http_gi2_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_gi2_init(ngx_conf_t *cf);
static void *ngx_http_gi2_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_gi2_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_gi2_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_gi2_rule(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_gi2_keywords(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_gi2_exception(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_gi2_reject_status(ngx_conf_t *cf, void *post,
    void *data);
static char *ngx_http_gi2_header_name(ngx_conf_t *cf, void *post,
    void *data);
static time_t ngx_http_gi2_days(ngx_int_t y, ngx_int_t m, ngx_int_t d);
static char *ngx_http_gi2_response_inspection(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_gi2_hash_key_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_gi2_price(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_http_gi2_rule_decl_t *ngx_http_gi2_rule_head(ngx_conf_t *cf,
    ngx_http_gi2_loc_conf_t *glcf, ngx_uint_t keywords);
static gi2_ruleset_t *ngx_http_gi2_build(ngx_conf_t *cf,
    ngx_http_gi2_loc_conf_t *glcf);
static ngx_int_t ngx_http_gi2_token_valid(ngx_str_t *s);
static ngx_int_t ngx_http_gi2_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_gi2_inputs_value(ngx_http_request_t *r,
    ngx_http_gi2_ctx_t *ctx, ngx_http_variable_value_t *v);
static void ngx_http_gi2_ruleset_cleanup(void *data);


static ngx_conf_enum_t  ngx_http_gi2_moderation_low[] = {
    { ngx_string("reject"), NGX_HTTP_GI2_LOW_REJECT },
    { ngx_string("rewrite"), NGX_HTTP_GI2_LOW_REWRITE },
    { ngx_string("allow"), NGX_HTTP_GI2_LOW_ALLOW },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_http_gi2_endpoints[] = {
    { ngx_string("auto"), NGX_HTTP_GI2_ENDPOINT_AUTO },
    { ngx_string("generations"), NGX_HTTP_GI2_GENERATIONS },
    { ngx_string("edits"), NGX_HTTP_GI2_EDITS },
    { ngx_string("responses"), NGX_HTTP_GI2_RESPONSES },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_http_gi2_user_field[] = {
    { ngx_string("keep"), NGX_HTTP_GI2_USER_KEEP },
    { ngx_string("hash"), NGX_HTTP_GI2_USER_HASH },
    { ngx_string("drop"), NGX_HTTP_GI2_USER_DROP },
    { ngx_null_string, 0 }
};


static ngx_conf_post_t  ngx_http_gi2_reject_status_post = {
    ngx_http_gi2_reject_status
};


static ngx_conf_post_t  ngx_http_gi2_header_name_post = {
    ngx_http_gi2_header_name
};


static ngx_command_t  ngx_http_gi2_commands[] = {

    { ngx_string("gi2"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_gi2_loc_conf_t, enable),
      NULL },

    { ngx_string("gi2_endpoint"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_gi2_loc_conf_t, endpoint),
      &ngx_http_gi2_endpoints },

    { ngx_string("gi2_rule"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE4,
      ngx_http_gi2_rule,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("gi2_keywords"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE4,
      ngx_http_gi2_keywords,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("gi2_moderation_low"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_gi2_loc_conf_t, moderation_low),
      &ngx_http_gi2_moderation_low },

    { ngx_string("gi2_exception_header"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_gi2_loc_conf_t, exception_header),
      &ngx_http_gi2_header_name_post },

    { ngx_string("gi2_exception"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE123,
      ngx_http_gi2_exception,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("gi2_consumer"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_gi2_loc_conf_t, consumer),
      NULL },

    { ngx_string("gi2_reject_status"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_gi2_loc_conf_t, reject_status),
      &ngx_http_gi2_reject_status_post },

    { ngx_string("gi2_user_field"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_gi2_loc_conf_t, user_field),
      &ngx_http_gi2_user_field },

    { ngx_string("gi2_hash_key_file"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_gi2_hash_key_file,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("gi2_response_inspection"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_gi2_response_inspection,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("gi2_log_prompt"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_gi2_loc_conf_t, log_prompt),
      NULL },

    { ngx_string("gi2_price"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_2MORE,
      ngx_http_gi2_price,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("gi2_metrics"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_gi2_metrics_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("gi2_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_gi2_status,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_gi2_module_ctx = {
    ngx_http_gi2_add_variables,            /* preconfiguration */
    ngx_http_gi2_init,                     /* postconfiguration */

    ngx_http_gi2_create_main_conf,         /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_gi2_create_loc_conf,          /* create location configuration */
    ngx_http_gi2_merge_loc_conf            /* merge location configuration */
};


ngx_module_t  ngx_http_gi2_module = {
    NGX_MODULE_V1,
    &ngx_http_gi2_module_ctx,              /* module context */
    ngx_http_gi2_commands,                 /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


ngx_http_request_body_filter_pt  ngx_http_gi2_next_request_body_filter;
ngx_int_t                        ngx_http_gi2_request_id_index;


/* variables: data is the field they show */

enum {
    NGX_HTTP_GI2_VAR_DECISION = 0,
    NGX_HTTP_GI2_VAR_RULE_ID,
    NGX_HTTP_GI2_VAR_RULE_CATEGORY,
    NGX_HTTP_GI2_VAR_MOD_REQUESTED,
    NGX_HTTP_GI2_VAR_MOD_EFFECTIVE,
    NGX_HTTP_GI2_VAR_EXCEPTION_ID,
    NGX_HTTP_GI2_VAR_MODEL,
    NGX_HTTP_GI2_VAR_N,
    NGX_HTTP_GI2_VAR_SIZE,
    NGX_HTTP_GI2_VAR_QUALITY,
    NGX_HTTP_GI2_VAR_REJECT_CODE,
    NGX_HTTP_GI2_VAR_EXCEPTION_PRESENTED,
    NGX_HTTP_GI2_VAR_INPUT_IMAGE_SHA256
};


static ngx_http_variable_t  ngx_http_gi2_vars[] = {

    { ngx_string("gi2_decision"), NULL, ngx_http_gi2_variable,
      NGX_HTTP_GI2_VAR_DECISION, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("gi2_rule_id"), NULL, ngx_http_gi2_variable,
      NGX_HTTP_GI2_VAR_RULE_ID, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("gi2_rule_category"), NULL, ngx_http_gi2_variable,
      NGX_HTTP_GI2_VAR_RULE_CATEGORY, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("gi2_moderation_requested"), NULL, ngx_http_gi2_variable,
      NGX_HTTP_GI2_VAR_MOD_REQUESTED, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("gi2_moderation_effective"), NULL, ngx_http_gi2_variable,
      NGX_HTTP_GI2_VAR_MOD_EFFECTIVE, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("gi2_exception_id"), NULL, ngx_http_gi2_variable,
      NGX_HTTP_GI2_VAR_EXCEPTION_ID, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("gi2_model"), NULL, ngx_http_gi2_variable,
      NGX_HTTP_GI2_VAR_MODEL, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("gi2_n"), NULL, ngx_http_gi2_variable,
      NGX_HTTP_GI2_VAR_N, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("gi2_size"), NULL, ngx_http_gi2_variable,
      NGX_HTTP_GI2_VAR_SIZE, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("gi2_quality"), NULL, ngx_http_gi2_variable,
      NGX_HTTP_GI2_VAR_QUALITY, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("gi2_reject_code"), NULL, ngx_http_gi2_variable,
      NGX_HTTP_GI2_VAR_REJECT_CODE, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("gi2_exception_presented"), NULL, ngx_http_gi2_variable,
      NGX_HTTP_GI2_VAR_EXCEPTION_PRESENTED, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("gi2_input_image_sha256"), NULL, ngx_http_gi2_variable,
      NGX_HTTP_GI2_VAR_INPUT_IMAGE_SHA256, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("gi2_upstream_status"), NULL, ngx_http_gi2_audit_variable,
      NGX_HTTP_GI2_AVAR_UPSTREAM_STATUS, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("gi2_error_type"), NULL, ngx_http_gi2_audit_variable,
      NGX_HTTP_GI2_AVAR_ERROR_TYPE, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("gi2_error_code"), NULL, ngx_http_gi2_audit_variable,
      NGX_HTTP_GI2_AVAR_ERROR_CODE, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("gi2_moderation_stage"), NULL, ngx_http_gi2_audit_variable,
      NGX_HTTP_GI2_AVAR_MODERATION_STAGE, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("gi2_moderation_categories"), NULL,
      ngx_http_gi2_audit_variable,
      NGX_HTTP_GI2_AVAR_MODERATION_CATEGORIES, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("gi2_image_sha256"), NULL, ngx_http_gi2_audit_variable,
      NGX_HTTP_GI2_AVAR_IMAGE_SHA256, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("gi2_image_count"), NULL, ngx_http_gi2_audit_variable,
      NGX_HTTP_GI2_AVAR_IMAGE_COUNT, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("gi2_input_tokens"), NULL, ngx_http_gi2_audit_variable,
      NGX_HTTP_GI2_AVAR_INPUT_TOKENS, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("gi2_output_tokens"), NULL, ngx_http_gi2_audit_variable,
      NGX_HTTP_GI2_AVAR_OUTPUT_TOKENS, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("gi2_total_tokens"), NULL, ngx_http_gi2_audit_variable,
      NGX_HTTP_GI2_AVAR_TOTAL_TOKENS, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("gi2_prompt_hash"), NULL, ngx_http_gi2_audit_variable,
      NGX_HTTP_GI2_AVAR_PROMPT_HASH, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("gi2_consumer_hash"), NULL, ngx_http_gi2_audit_variable,
      NGX_HTTP_GI2_AVAR_CONSUMER_HASH, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("gi2_request_id"), NULL, ngx_http_gi2_audit_variable,
      NGX_HTTP_GI2_AVAR_REQUEST_ID, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("gi2_retry_count"), NULL, ngx_http_gi2_audit_variable,
      NGX_HTTP_GI2_AVAR_RETRY_COUNT, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("gi2_cost_usd"), NULL, ngx_http_gi2_audit_variable,
      NGX_HTTP_GI2_AVAR_COST_USD, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("gi2_log_json"), NULL, ngx_http_gi2_audit_variable,
      NGX_HTTP_GI2_AVAR_LOG_JSON, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_str_t  ngx_http_gi2_decisions[] = {
    ngx_null_string,
    ngx_string("allow"),
    ngx_string("flag"),
    ngx_string("rewrite"),
    ngx_string("reject")
};


static ngx_int_t
ngx_http_gi2_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_gi2_vars; v->name.len; v++) {
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
ngx_http_gi2_field_value(ngx_http_gi2_ctx_t *ctx, gi2_field_e f,
    ngx_http_variable_value_t *v)
{
    gi2_field_t  *fd;

    fd = &ctx->req.field[f];

    if (fd->value.data == NULL || fd->type == GI2_T_COMPOUND) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->data = (u_char *) fd->value.data;
    v->len = fd->value.len;

    return NGX_OK;
}


static ngx_int_t
ngx_http_gi2_rules_value(ngx_http_request_t *r, ngx_http_gi2_ctx_t *ctx,
    ngx_http_variable_value_t *v, ngx_uint_t category)
{
    u_char            *p;
    size_t             len;
    ngx_uint_t         i;
    const char        *s;
    const gi2_rule_t  *rule;

    if (ctx->nhits == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    len = 0;

    for (i = 0; i < ctx->nhits; i++) {
        rule = gi2_ruleset_rule(ctx->ruleset, ctx->hits[i]);
        s = category ? rule->category : rule->id;
        len += ngx_strlen(s) + 1;
    }

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v->data = p;

    for (i = 0; i < ctx->nhits; i++) {
        rule = gi2_ruleset_rule(ctx->ruleset, ctx->hits[i]);
        s = category ? rule->category : rule->id;

        if (i) {
            *p++ = ',';
        }

        p = ngx_cpymem(p, s, ngx_strlen(s));
    }

    v->len = p - v->data;

    return NGX_OK;
}


/* the SHA-256 of each image and mask part, in body order */

static ngx_int_t
ngx_http_gi2_inputs_value(ngx_http_request_t *r, ngx_http_gi2_ctx_t *ctx,
    ngx_http_variable_value_t *v)
{
    u_char      *p;
    ngx_uint_t   i;

    if (ctx->req.ninputs == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, ctx->req.ninputs * 65);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v->data = p;

    for (i = 0; i < ctx->req.ninputs; i++) {
        if (i) {
            *p++ = ',';
        }

        p = ngx_hex_dump(p, ctx->req.input[i].sha256, 32);
    }

    v->len = p - v->data;

    return NGX_OK;
}


static ngx_int_t
ngx_http_gi2_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    ngx_str_t           *s;
    ngx_http_gi2_ctx_t  *ctx;

    ctx = ngx_http_gi2_get_ctx(r->main);

    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    if (ctx == NULL || !ctx->done) {
        v->not_found = 1;
        return NGX_OK;
    }

    s = NULL;

    switch (data) {

    case NGX_HTTP_GI2_VAR_DECISION:
        s = &ngx_http_gi2_decisions[ctx->decision];
        break;

    case NGX_HTTP_GI2_VAR_RULE_ID:
        return ngx_http_gi2_rules_value(r, ctx, v, 0);

    case NGX_HTTP_GI2_VAR_RULE_CATEGORY:
        return ngx_http_gi2_rules_value(r, ctx, v, 1);

    case NGX_HTTP_GI2_VAR_MOD_REQUESTED:
        if (ctx->req.field[GI2_F_MODERATION].type != GI2_T_STRING) {
            v->not_found = 1;
            return NGX_OK;
        }

        return ngx_http_gi2_field_value(ctx, GI2_F_MODERATION, v);

    case NGX_HTTP_GI2_VAR_MOD_EFFECTIVE:
        s = &ctx->moderation_effective;
        break;

    case NGX_HTTP_GI2_VAR_EXCEPTION_ID:
        s = &ctx->exception_id;
        break;

    case NGX_HTTP_GI2_VAR_EXCEPTION_PRESENTED:
        s = &ctx->exception_presented;
        break;

    case NGX_HTTP_GI2_VAR_MODEL:
        return ngx_http_gi2_field_value(ctx, GI2_F_MODEL, v);

    case NGX_HTTP_GI2_VAR_N:
        return ngx_http_gi2_field_value(ctx, GI2_F_N, v);

    case NGX_HTTP_GI2_VAR_SIZE:
        return ngx_http_gi2_field_value(ctx, GI2_F_SIZE, v);

    case NGX_HTTP_GI2_VAR_QUALITY:
        return ngx_http_gi2_field_value(ctx, GI2_F_QUALITY, v);

    case NGX_HTTP_GI2_VAR_INPUT_IMAGE_SHA256:
        return ngx_http_gi2_inputs_value(r, ctx, v);

    case NGX_HTTP_GI2_VAR_REJECT_CODE:
        if (ctx->reject_code == NULL) {
            v->not_found = 1;
            return NGX_OK;
        }

        v->data = (u_char *) ctx->reject_code;
        v->len = ngx_strlen(ctx->reject_code);
        return NGX_OK;
    }

    if (s == NULL || s->len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->data = s->data;
    v->len = s->len;

    return NGX_OK;
}


static ngx_str_t  ngx_http_gi2_request_id_name = ngx_string("request_id");


static ngx_int_t
ngx_http_gi2_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    /*
     * Registered last, the access handler runs first in its phase, before
     * any module whose NGX_OK under "satisfy any" would skip the rest.
     * The same handler in the precontent phase inspects whatever the
     * access phase did not reach, so nothing guarded is forwarded
     * uninspected.
     */

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_gi2_handler;

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PRECONTENT_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_gi2_handler;

    ngx_http_gi2_next_request_body_filter = ngx_http_top_request_body_filter;
    ngx_http_top_request_body_filter = ngx_http_gi2_request_body_filter;

    ngx_http_gi2_request_id_index = ngx_http_get_variable_index(cf,
                                              &ngx_http_gi2_request_id_name);
    if (ngx_http_gi2_request_id_index == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (ngx_http_gi2_metrics_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_gi2_audit_init(cf);
}


static void *
ngx_http_gi2_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_gi2_main_conf_t  *gmcf;

    gmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_gi2_main_conf_t));
    if (gmcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&gmcf->rule_ids, cf->pool, 16, sizeof(ngx_str_t))
        != NGX_OK)
    {
        return NULL;
    }

    return gmcf;
}


static void *
ngx_http_gi2_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_gi2_loc_conf_t  *glcf;

    glcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_gi2_loc_conf_t));
    if (glcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     glcf->exception_header = { 0, NULL };
     *     glcf->ruleset = NULL;
     */

    glcf->enable = NGX_CONF_UNSET;
    glcf->endpoint = NGX_CONF_UNSET_UINT;
    glcf->moderation_low = NGX_CONF_UNSET_UINT;
    glcf->reject_status = NGX_CONF_UNSET_UINT;
    glcf->exceptions = NGX_CONF_UNSET_PTR;
    glcf->consumer = NGX_CONF_UNSET_PTR;
    glcf->user_field = NGX_CONF_UNSET_UINT;
    glcf->log_prompt = NGX_CONF_UNSET;
    glcf->response_inspection = NGX_CONF_UNSET;
    glcf->prices = NGX_CONF_UNSET_PTR;

    return glcf;
}


static char *
ngx_http_gi2_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_gi2_loc_conf_t *prev = parent;
    ngx_http_gi2_loc_conf_t *conf = child;

    ngx_conf_merge_value(conf->enable, prev->enable, 0);
    ngx_conf_merge_uint_value(conf->endpoint, prev->endpoint,
                              NGX_HTTP_GI2_ENDPOINT_AUTO);
    ngx_conf_merge_uint_value(conf->moderation_low, prev->moderation_low,
                              NGX_HTTP_GI2_LOW_REJECT);
    ngx_conf_merge_uint_value(conf->reject_status, prev->reject_status,
                              NGX_HTTP_BAD_REQUEST);
    ngx_conf_merge_str_value(conf->exception_header, prev->exception_header,
                             "X-GI2-Exception");
    ngx_conf_merge_ptr_value(conf->exceptions, prev->exceptions, NULL);
    ngx_conf_merge_ptr_value(conf->consumer, prev->consumer, NULL);
    ngx_conf_merge_uint_value(conf->user_field, prev->user_field,
                              NGX_HTTP_GI2_USER_KEEP);
    ngx_conf_merge_str_value(conf->hash_key, prev->hash_key, "");
    ngx_conf_merge_str_value(conf->hash_key_id, prev->hash_key_id, "");
    ngx_conf_merge_value(conf->log_prompt, prev->log_prompt, 0);
    if (conf->response_inspection == NGX_CONF_UNSET) {
        conf->response_inspection = (prev->response_inspection
                                     == NGX_CONF_UNSET)
                                    ? 1 : prev->response_inspection;
        conf->response_threads = prev->response_threads;
    }
    ngx_conf_merge_ptr_value(conf->prices, prev->prices, NULL);

    if (conf->user_field == NGX_HTTP_GI2_USER_HASH
        && conf->hash_key.len == 0)
    {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"gi2_user_field hash\" needs gi2_hash_key_file");
        return NGX_CONF_ERROR;
    }

    /*
     * gi2_rule and gi2_keywords are two nginx arrays, each inherited only
     * by a level that has none of its own; the rule set is built once per
     * distinct pair.  The http level is never a child: build it here.
     */

    if (prev->ruleset == NULL && (prev->rules || prev->keywords)) {
        prev->ruleset = ngx_http_gi2_build(cf, prev);
        if (prev->ruleset == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    if (conf->rules == NULL) {
        conf->rules = prev->rules;
    }

    if (conf->keywords == NULL) {
        conf->keywords = prev->keywords;
    }

    if (conf->rules == prev->rules && conf->keywords == prev->keywords) {
        conf->ruleset = prev->ruleset;

    } else if (conf->ruleset == NULL) {
        conf->ruleset = ngx_http_gi2_build(cf, conf);
        if (conf->ruleset == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_gi2_token_valid(ngx_str_t *s)
{
    size_t  i;
    u_char  c;

    if (s->len == 0 || s->len > 128) {
        return NGX_ERROR;
    }

    for (i = 0; i < s->len; i++) {
        c = s->data[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.'
              || c == ':' || c == '/'))
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* the ID, ACTION and CATEGORY that gi2_rule and gi2_keywords share */

static ngx_http_gi2_rule_decl_t *
ngx_http_gi2_rule_head(ngx_conf_t *cf, ngx_http_gi2_loc_conf_t *glcf,
    ngx_uint_t keywords)
{
    int                        action;
    ngx_str_t                 *value, *id;
    ngx_uint_t                 i;
    ngx_array_t              **list;
    ngx_http_gi2_rule_decl_t  *decl;
    ngx_http_gi2_main_conf_t  *gmcf;

    value = cf->args->elts;

    if (ngx_http_gi2_token_valid(&value[1]) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid rule id \"%V\": use 1 to 128 of "
                           "A-Z a-z 0-9 _ - . : /", &value[1]);
        return NULL;
    }

    if (ngx_strcmp(value[2].data, "deny") == 0) {
        action = GI2_ACTION_DENY;

    } else if (ngx_strcmp(value[2].data, "flag") == 0) {
        action = GI2_ACTION_FLAG;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid action \"%V\" in rule \"%V\": "
                           "use \"deny\" or \"flag\"", &value[2], &value[1]);
        return NULL;
    }

    if (ngx_http_gi2_token_valid(&value[3]) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid category \"%V\" in rule \"%V\": use 1 to "
                           "128 of A-Z a-z 0-9 _ - . : /",
                           &value[3], &value[1]);
        return NULL;
    }

    gmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_gi2_module);

    id = gmcf->rule_ids.elts;

    for (i = 0; i < gmcf->rule_ids.nelts; i++) {
        if (id[i].len == value[1].len
            && ngx_strncmp(id[i].data, value[1].data, id[i].len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "gi2: duplicate rule id \"%V\"", &value[1]);
            return NULL;
        }
    }

    id = ngx_array_push(&gmcf->rule_ids);
    if (id == NULL) {
        return NULL;
    }

    *id = value[1];

    if (ngx_http_gi2_metrics_rule(cf, &value[1], &value[3], action)
        != NGX_OK)
    {
        return NULL;
    }

    list = keywords ? &glcf->keywords : &glcf->rules;

    if (*list == NULL) {
        *list = ngx_array_create(cf->pool, 8,
                                 sizeof(ngx_http_gi2_rule_decl_t));
        if (*list == NULL) {
            return NULL;
        }
    }

    decl = ngx_array_push(*list);
    if (decl == NULL) {
        return NULL;
    }

    ngx_memzero(decl, sizeof(ngx_http_gi2_rule_decl_t));

    decl->id = value[1];
    decl->category = value[3];
    decl->pattern = value[4];
    decl->action = action;
    decl->file = cf->conf_file->file.name.data;
    decl->line = cf->conf_file->line;

    return decl;
}


static void
ngx_http_gi2_ruleset_cleanup(void *data)
{
    gi2_ruleset_free(data);
}


static char *
ngx_http_gi2_rule(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_gi2_loc_conf_t *glcf = conf;

    char                       err[NGX_HTTP_GI2_ERRLEN];
    ngx_http_gi2_rule_decl_t  *decl;

    decl = ngx_http_gi2_rule_head(cf, glcf, 0);
    if (decl == NULL) {
        return NGX_CONF_ERROR;
    }

    if (decl->pattern.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "empty pattern in gi2_rule \"%V\"", &decl->id);
        return NGX_CONF_ERROR;
    }

    if (gi2_regex_check(decl->pattern.data, decl->pattern.len, err,
                        sizeof(err))
        != GI2_OK)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "gi2_rule \"%V\": bad pattern: %s",
                           &decl->id, err);
        return NGX_CONF_ERROR;
    }

    if (gi2_pattern_folds(decl->pattern.data, decl->pattern.len)) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "gi2_rule \"%V\": the pattern has characters "
                           "that normalization rewrites (such as \"\xc3\x9f\" "
                           "to \"ss\" or fullwidth letters); prompts are "
                           "matched normalized, so write it normalized",
                           &decl->id);
    }

    return NGX_CONF_OK;
}


/* configuration time: the list is read and checked here, used in merge */

static char *
ngx_http_gi2_keywords(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_gi2_loc_conf_t *glcf = conf;

    char                      *rv;
    u_char                    *buf, *p, *end, *eol, *s, *e;
    ssize_t                    n;
    ngx_fd_t                   fd;
    ngx_str_t                  name, *kw;
    gi2_str_t                  norm;
    ngx_uint_t                 line;
    gi2_alloc_t                alloc;
    ngx_file_info_t            fi;
    ngx_http_gi2_rule_decl_t  *decl;

    decl = ngx_http_gi2_rule_head(cf, glcf, 1);
    if (decl == NULL) {
        return NGX_CONF_ERROR;
    }

    name = decl->pattern;

    if (ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    fd = ngx_open_file(name.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "gi2_keywords \"%V\": cannot open \"%V\"",
                           &decl->id, &name);
        return NGX_CONF_ERROR;
    }

    rv = NGX_CONF_ERROR;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "gi2_keywords \"%V\": cannot stat \"%V\"",
                           &decl->id, &name);
        goto done;
    }

    if (ngx_file_size(&fi) > 64 * 1024 * 1024) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "gi2_keywords \"%V\": \"%V\" is over 64M",
                           &decl->id, &name);
        goto done;
    }

    buf = ngx_pnalloc(cf->pool, ngx_file_size(&fi) + 1);
    if (buf == NULL) {
        goto done;
    }

    n = ngx_read_fd(fd, buf, ngx_file_size(&fi));
    if (n == -1 || n != ngx_file_size(&fi)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "gi2_keywords \"%V\": cannot read \"%V\"",
                           &decl->id, &name);
        goto done;
    }

    decl->phrases = ngx_array_create(cf->pool, 64, sizeof(ngx_str_t));
    if (decl->phrases == NULL) {
        goto done;
    }

    alloc.alloc = ngx_http_gi2_pool_alloc;
    alloc.data = cf->temp_pool;
    alloc.free = NULL;

    end = buf + n;
    line = 0;
    p = buf;

    if (n >= 3 && p[0] == 0xef && p[1] == 0xbb && p[2] == 0xbf) {
        p += 3;    /* a UTF-8 byte order mark */
    }

    for ( /* void */ ; p < end; p = eol + 1) {
        line++;

        eol = ngx_strlchr(p, end, '\n');
        if (eol == NULL) {
            eol = end;
        }

        for (s = p; s < eol && (*s == ' ' || *s == '\t'); s++) {
            /* void */
        }

        for (e = eol; e > s && (e[-1] == ' ' || e[-1] == '\t'
                                || e[-1] == '\r'); e--)
        {
            /* void */
        }

        if (s == e || *s == '#') {
            continue;
        }

        if (gi2_normalize(s, e - s, &norm, &alloc) != GI2_OK
            || norm.len == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "gi2_keywords \"%V\": %V:%ui: not valid "
                               "UTF-8, or nothing left once normalized",
                               &decl->id, &name, line);
            goto done;
        }

        kw = ngx_array_push(decl->phrases);
        if (kw == NULL) {
            goto done;
        }

        kw->data = s;
        kw->len = e - s;
    }

    if (decl->phrases->nelts == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "gi2_keywords \"%V\": no keywords in \"%V\"",
                           &decl->id, &name);
        goto done;
    }

    rv = NGX_CONF_OK;

done:

    if (ngx_close_file(fd) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, cf->log, ngx_errno,
                      ngx_close_file_n " \"%V\" failed", &name);
    }

    return rv;
}


/* one rule set: the gi2_rule list, then the gi2_keywords lists */

static gi2_ruleset_t *
ngx_http_gi2_build(ngx_conf_t *cf, ngx_http_gi2_loc_conf_t *glcf)
{
    int                        rule;
    char                       err[NGX_HTTP_GI2_ERRLEN];
    ngx_str_t                 *kw;
    ngx_uint_t                 i, j, k;
    ngx_array_t               *lists[2];
    gi2_ruleset_t             *rs;
    ngx_pool_cleanup_t        *cln;
    ngx_http_gi2_rule_decl_t  *decl;

    rs = gi2_ruleset_create();
    if (rs == NULL) {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        gi2_ruleset_free(rs);
        return NULL;
    }

    cln->handler = ngx_http_gi2_ruleset_cleanup;
    cln->data = rs;

    lists[0] = glcf->rules;
    lists[1] = glcf->keywords;
    decl = NULL;

    for (k = 0; k < 2; k++) {
        if (lists[k] == NULL) {
            continue;
        }

        decl = lists[k]->elts;

        for (i = 0; i < lists[k]->nelts; i++, decl++) {

            if (k == 0) {
                rule = gi2_ruleset_add_regex(rs, (char *) decl->id.data,
                                             decl->action,
                                             (char *) decl->category.data,
                                             decl->pattern.data,
                                             decl->pattern.len,
                                             err, sizeof(err));
                if (rule < 0) {
                    goto failed;
                }

                continue;
            }

            rule = gi2_ruleset_add_keywords(rs, (char *) decl->id.data,
                                            decl->action,
                                            (char *) decl->category.data,
                                            err, sizeof(err));
            if (rule < 0) {
                goto failed;
            }

            kw = decl->phrases->elts;

            for (j = 0; j < decl->phrases->nelts; j++) {
                if (gi2_ruleset_add_keyword(rs, rule, kw[j].data, kw[j].len,
                                            err, sizeof(err))
                    != GI2_OK)
                {
                    goto failed;
                }
            }
        }
    }

    if (gi2_ruleset_compile(rs, err, sizeof(err)) != GI2_OK) {
        decl = glcf->keywords ? glcf->keywords->elts : glcf->rules->elts;
        goto failed;
    }

    return rs;

failed:

    ngx_log_error(NGX_LOG_EMERG, cf->log, 0, "gi2 rule \"%V\": %s in %s:%ui",
                  &decl->id, err, decl->file, decl->line);

    return NULL;
}


static char *
ngx_http_gi2_exception(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_gi2_loc_conf_t *glcf = conf;

    ngx_str_t                 *value, v;
    ngx_int_t                  y, m, d;
    ngx_uint_t                 i;
    ngx_http_gi2_exception_t  *e, *x;

    value = cf->args->elts;

    if (ngx_http_gi2_token_valid(&value[1]) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid exception id \"%V\": use 1 to 128 of "
                           "A-Z a-z 0-9 _ - . : /", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (glcf->exceptions == NGX_CONF_UNSET_PTR) {
        glcf->exceptions = ngx_array_create(cf->pool, 4,
                                      sizeof(ngx_http_gi2_exception_t));
        if (glcf->exceptions == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    x = glcf->exceptions->elts;

    for (i = 0; i < glcf->exceptions->nelts; i++) {
        if (x[i].id.len == value[1].len
            && ngx_strncmp(x[i].id.data, value[1].data, value[1].len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate exception id \"%V\"", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    e = ngx_array_push(glcf->exceptions);
    if (e == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(e, sizeof(ngx_http_gi2_exception_t));
    e->id = value[1];

    if (ngx_http_gi2_metrics_exception(cf, &value[1]) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "expires=", 8) == 0) {
            v.data = value[i].data + 8;
            v.len = value[i].len - 8;

            if (e->expires || v.len != 10 || v.data[4] != '-'
                || v.data[7] != '-')
            {
                goto invalid;
            }

            y = ngx_atoi(v.data, 4);
            m = ngx_atoi(v.data + 5, 2);
            d = ngx_atoi(v.data + 8, 2);

            if (y < 1970 || m < 1 || m > 12 || d < 1
                || d > (ngx_int_t) ((m == 2)
                                    ? ((y % 4 == 0 && y % 100 != 0)
                                       || y % 400 == 0) ? 29 : 28
                                    : (m == 4 || m == 6 || m == 9
                                       || m == 11) ? 30 : 31))
            {
                goto invalid;
            }

            /* valid through the whole last day, UTC */
            e->expires = (ngx_http_gi2_days(y, m, d) + 1) * 86400;

            if (e->expires <= ngx_time()) {
                ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                                   "gi2_exception \"%V\" has expired",
                                   &e->id);
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "consumer=", 9) == 0) {
            if (e->consumer.len || value[i].len == 9) {
                goto invalid;
            }

            e->consumer.data = value[i].data + 9;
            e->consumer.len = value[i].len - 9;
            continue;
        }

        goto invalid;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\" in gi2_exception \"%V\": "
                       "use expires=YYYY-MM-DD and consumer=VALUE",
                       &value[i], &value[1]);

    return NGX_CONF_ERROR;
}


/* days since 1970-01-01 of a proleptic Gregorian date */

static time_t
ngx_http_gi2_days(ngx_int_t y, ngx_int_t m, ngx_int_t d)
{
    ngx_int_t  era, yoe, doy, doe;

    y -= (m <= 2);
    era = y / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

    return (time_t) (era * 146097 + doe - 719468);
}


static char *
ngx_http_gi2_reject_status(ngx_conf_t *cf, void *post, void *data)
{
    ngx_uint_t  *status = data;

    /* a policy rejection must not look retryable to the SDKs */

    if (*status < 400 || *status > 499 || *status == 408 || *status == 409
        || *status == 429 || *status == 444)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "gi2_reject_status must be a 4xx status that "
                           "clients do not retry: not 408, 409, 429 or 444");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * A header name nginx can receive: letters, digits, '-' and '_' (the last
 * only arrives with underscores_in_headers on).  Any other name would
 * never match, and no exception could ever be presented.
 */

static char *
ngx_http_gi2_header_name(ngx_conf_t *cf, void *post, void *data)
{
    ngx_str_t  *name = data;

    u_char      c;
    ngx_uint_t  i;

    for (i = 0; i < name->len; i++) {
        c = name->data[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '-' || c == '_'))
        {
            break;
        }
    }

    if (name->len == 0 || name->len > 128 || i < name->len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid header name \"%V\": use 1 to 128 of "
                           "A-Z a-z 0-9 - _", name);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* gi2_response_inspection on | off | threads[=pool] */

static char *
ngx_http_gi2_response_inspection(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_gi2_loc_conf_t *glcf = conf;

    ngx_str_t  *value;
#if (NGX_THREADS)
    ngx_str_t   name;
#endif

    if (glcf->response_inspection != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "on") == 0) {
        glcf->response_inspection = 1;
        return NGX_CONF_OK;
    }

    if (ngx_strcmp(value[1].data, "off") == 0) {
        glcf->response_inspection = 0;
        return NGX_CONF_OK;
    }

    if (ngx_strncmp(value[1].data, "threads", 7) == 0
        && (value[1].len == 7 || value[1].data[7] == '='))
    {
#if (NGX_THREADS)
        glcf->response_inspection = 1;

        if (value[1].len == 7) {
            glcf->response_threads = ngx_thread_pool_add(cf, NULL);

        } else {
            name.len = value[1].len - 8;
            name.data = value[1].data + 8;

            if (name.len == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "gi2: empty thread pool name in \"%V\"",
                                   &value[1]);
                return NGX_CONF_ERROR;
            }

            glcf->response_threads = ngx_thread_pool_add(cf, &name);
        }

        if (glcf->response_threads == NULL) {
            return NGX_CONF_ERROR;
        }

        return NGX_CONF_OK;
#else
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "gi2: \"%V\" needs nginx built with threads "
                           "(--with-threads)", &value[1]);
        return NGX_CONF_ERROR;
#endif
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid value \"%V\" in \"%V\" directive, "
                       "it must be \"on\", \"off\", \"threads\" or "
                       "\"threads=POOL\"", &value[1], &cmd->name);
    return NGX_CONF_ERROR;
}


/*
 * The key for every hash the module writes (prompt, consumer, user field):
 * a secret file, read once here.  Without it the hashes are not written.
 */

static char *
ngx_http_gi2_hash_key_file(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_gi2_loc_conf_t *glcf = conf;

    u_char           *buf, *p;
    size_t            len;
    ssize_t           n;
    ngx_fd_t          fd;
    ngx_str_t        *value, name;
    unsigned int      mdlen;
    ngx_file_info_t   fi;
    u_char            md[EVP_MAX_MD_SIZE];

    if (glcf->hash_key.data != NULL) {
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
                           "gi2_hash_key_file: cannot open \"%V\"", &name);
        return NGX_CONF_ERROR;
    }

    buf = NULL;
    n = -1;

    if (ngx_fd_info(fd, &fi) != NGX_FILE_ERROR
        && ngx_file_size(&fi) <= 4096)
    {
        buf = ngx_pnalloc(cf->pool, ngx_file_size(&fi) + 1);
        if (buf != NULL) {
            n = ngx_read_fd(fd, buf, ngx_file_size(&fi));
        }
    }

    ngx_close_file(fd);

    if (buf == NULL || n < 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "gi2_hash_key_file: cannot read \"%V\" (at most "
                           "4096 bytes)", &name);
        return NGX_CONF_ERROR;
    }

    /* a trailing newline is not part of the key */

    len = n;

    while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r')) {
        len--;
    }

    if (len < 16) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "gi2_hash_key_file: \"%V\" holds %uz bytes; a key "
                           "needs at least 16 (32 random bytes are best)",
                           &name, len);
        return NGX_CONF_ERROR;
    }

    glcf->hash_key.data = buf;
    glcf->hash_key.len = len;

    /*
     * The record names the key a hash was made with, by a fingerprint
     * that does not reveal it, so hashes stay comparable across rotations.
     */

    if (EVP_Digest(buf, len, md, &mdlen, EVP_sha256(), NULL) != 1) {
        return NGX_CONF_ERROR;
    }

    p = ngx_pnalloc(cf->pool, sizeof("sha256:") - 1 + 16);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    glcf->hash_key_id.data = p;
    p = ngx_cpymem(p, "sha256:", sizeof("sha256:") - 1);
    p = ngx_hex_dump(p, md, 8);
    glcf->hash_key_id.len = p - glcf->hash_key_id.data;

    return NGX_CONF_OK;
}


/* gi2_price MODEL input=USD output=USD [image_input=USD], per 1M tokens */

static char *
ngx_http_gi2_price(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_gi2_loc_conf_t *glcf = conf;

    u_char                *p, *end;
    double                *d, v, scale;
    ngx_str_t             *value;
    ngx_uint_t             i;
    ngx_http_gi2_price_t  *price;

    value = cf->args->elts;

    if (glcf->prices == NGX_CONF_UNSET_PTR) {
        glcf->prices = ngx_array_create(cf->pool, 4,
                                        sizeof(ngx_http_gi2_price_t));
        if (glcf->prices == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    if (value[1].len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "gi2_price needs a model name");
        return NGX_CONF_ERROR;
    }

    price = glcf->prices->elts;

    for (i = 0; i < glcf->prices->nelts; i++) {
        if (price[i].model.len == value[1].len
            && ngx_strncmp(price[i].model.data, value[1].data,
                           value[1].len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate gi2_price for \"%V\"", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    price = ngx_array_push(glcf->prices);
    if (price == NULL) {
        return NGX_CONF_ERROR;
    }

    price->model = value[1];
    price->input = -1;
    price->output = -1;
    price->image_input = -1;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "input=", 6) == 0) {
            d = &price->input;
            p = value[i].data + 6;

        } else if (ngx_strncmp(value[i].data, "output=", 7) == 0) {
            d = &price->output;
            p = value[i].data + 7;

        } else if (ngx_strncmp(value[i].data, "image_input=", 12) == 0) {
            d = &price->image_input;
            p = value[i].data + 12;

        } else {
            goto invalid;
        }

        if (*d >= 0) {
            goto invalid;
        }

        /* a plain decimal: digits, one point */

        end = value[i].data + value[i].len;
        v = 0;
        scale = 0;

        if (p == end) {
            goto invalid;
        }

        for ( /* void */ ; p < end; p++) {
            if (*p == '.' && scale == 0) {
                scale = 1;
                continue;
            }

            if (*p < '0' || *p > '9') {
                goto invalid;
            }

            if (scale) {
                scale /= 10;
                v += (*p - '0') * scale;

            } else {
                v = v * 10 + (*p - '0');
            }
        }

        /* USD per 1M tokens: anything above is a typo */

        if (v > 100000) {
            goto invalid;
        }

        *d = v;
    }

    if (price->input < 0 || price->output < 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "gi2_price \"%V\" needs input= and output= "
                           "(USD per 1M tokens)", &value[1]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\" in gi2_price \"%V\": use "
                       "input=USD output=USD [image_input=USD], per 1M "
                       "tokens, at most 100000",
                       &value[i], &value[1]);

    return NGX_CONF_ERROR;
}


/* "hmac-sha256:<64 hex>" of data under the configured key */

ngx_int_t
ngx_http_gi2_hmac(ngx_http_request_t *r, ngx_http_gi2_loc_conf_t *glcf,
    u_char *data, size_t len, ngx_str_t *out)
{
    u_char        *p;
    unsigned int   mdlen;
    u_char         md[EVP_MAX_MD_SIZE];

    if (glcf->hash_key.len == 0) {
        return NGX_DECLINED;
    }

    if (HMAC(EVP_sha256(), glcf->hash_key.data, (int) glcf->hash_key.len,
             data, len, md, &mdlen)
        == NULL)
    {
        return NGX_ERROR;
    }

    p = ngx_pnalloc(r->pool, sizeof("hmac-sha256:") - 1 + 2 * mdlen);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;
    p = ngx_cpymem(p, "hmac-sha256:", sizeof("hmac-sha256:") - 1);
    p = ngx_hex_dump(p, md, mdlen);
    out->len = p - out->data;

    return NGX_OK;
}


void *
ngx_http_gi2_pool_alloc(void *data, size_t size)
{
    return ngx_palloc(data, size);
}
