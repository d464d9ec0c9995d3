/*
 * ngx_gi2_module: counters in shared memory, and gi2_status.
 *
 * "gi2_metrics zone=NAME:SIZE" keeps one fixed-layout block in a shared
 * zone: plain counters for the label sets fixed in the code (endpoint,
 * decision, rejection code, status class ...), a table of labelled
 * counters for the rule and exception ids of the configuration, a small
 * table of upstream error codes with an overflow bucket, and a ring of
 * per-minute decision counts.  Workers add with atomic instructions;
 * only a new error code and the ring's turn to a new minute take the
 * zone's mutex.  Each request is counted once, in the log phase.
 *
 * Reloads: nginx keeps a zone of the same name and size, so the counters
 * go on.  Table entries are keyed by (kind, id, category, action) and
 * are never removed while the zone lives: an id that leaves the
 * configuration is no longer exported and finds its counter again if it
 * comes back; an id whose category or action changed is a new series
 * from zero.  Workers of the old configuration finishing their requests
 * keep adding to the entries they knew.  Ids that find the table full
 * count under "_other" (a warning says so at the reload).
 */

#include "ngx_http_gi2_metrics.h"
#include "ngx_http_gi2_status_html.h"
#include "gi2_resp.h"


#define NGX_HTTP_GI2_M_MAGIC         0x47493221
#define NGX_HTTP_GI2_M_VERSION       1

#define NGX_HTTP_GI2_M_ID_LEN        128   /* ids and categories */
#define NGX_HTTP_GI2_M_CODE_LEN      64    /* upstream error codes */
#define NGX_HTTP_GI2_M_CODES         32    /* distinct codes kept */
#define NGX_HTTP_GI2_M_MINUTES       30
#define NGX_HTTP_GI2_M_BUCKETS       11
#define NGX_HTTP_GI2_M_DECISIONS     (NGX_HTTP_GI2_REJECT + 1)
#define NGX_HTTP_GI2_M_ENDPOINTS     3
#define NGX_HTTP_GI2_M_REJECT_CODES  5
#define NGX_HTTP_GI2_M_LOW           4
#define NGX_HTTP_GI2_M_CLASSES       6
#define NGX_HTTP_GI2_M_STAGES        3

#define NGX_HTTP_GI2_M_RULE          1
#define NGX_HTTP_GI2_M_EXCEPTION     2

#define NGX_HTTP_GI2_M_LOW_REJECTED  0
#define NGX_HTTP_GI2_M_LOW_REWRITTEN 1
#define NGX_HTTP_GI2_M_LOW_ALLOWED   2
#define NGX_HTTP_GI2_M_LOW_EXCEPTION 3

#define NGX_HTTP_GI2_M_TEXT          0
#define NGX_HTTP_GI2_M_JSON          1
#define NGX_HTTP_GI2_M_HTML          2


typedef struct {
    ngx_atomic_t                count;
    ngx_uint_t                  kind;
    ngx_uint_t                  action;
    size_t                      id_len;
    size_t                      category_len;
    u_char                      id[NGX_HTTP_GI2_M_ID_LEN];
    u_char                      category[NGX_HTTP_GI2_M_ID_LEN];
} ngx_http_gi2_m_entry_t;


typedef struct {
    ngx_atomic_t                count;
    size_t                      len;
    u_char                      code[NGX_HTTP_GI2_M_CODE_LEN];
} ngx_http_gi2_m_code_t;


typedef struct {
    ngx_atomic_t                minute;        /* minutes since the epoch */
    ngx_atomic_t                decision[NGX_HTTP_GI2_M_DECISIONS];
} ngx_http_gi2_m_minute_t;


typedef struct {
    uint32_t                    magic;
    uint32_t                    version;
    size_t                      size;          /* of this header */
    size_t                      entry_size;
    time_t                      started;

    ngx_atomic_t                requests[NGX_HTTP_GI2_M_ENDPOINTS]
                                        [NGX_HTTP_GI2_M_DECISIONS];
    ngx_atomic_t                rejections[NGX_HTTP_GI2_M_REJECT_CODES];
    ngx_atomic_t                low[NGX_HTTP_GI2_M_LOW];
    ngx_atomic_t                upstream[NGX_HTTP_GI2_M_CLASSES];
    ngx_atomic_t                blocked[NGX_HTTP_GI2_M_STAGES];
    ngx_atomic_t                moderation[NGX_HTTP_GI2_MODERATION_RESULTS];
    ngx_atomic_t                buckets[NGX_HTTP_GI2_M_BUCKETS + 1];
    ngx_atomic_t                moderation_ms;
    ngx_atomic_t                images;
    ngx_atomic_t                tokens_in;
    ngx_atomic_t                tokens_out;
    ngx_atomic_t                cost;          /* micro-USD */
    ngx_atomic_t                rules_other;
    ngx_atomic_t                exceptions_other;
    ngx_atomic_t                codes_other;

    ngx_http_gi2_m_minute_t     minutes[NGX_HTTP_GI2_M_MINUTES];

    ngx_atomic_t                ncodes;
    ngx_http_gi2_m_code_t       codes[NGX_HTTP_GI2_M_CODES];

    ngx_uint_t                  capacity;
    ngx_atomic_t                nentries;
    ngx_http_gi2_m_entry_t      entries[1];
} ngx_http_gi2_m_shm_t;


/* a rule or exception of this configuration, and its table entry */

typedef struct {
    ngx_str_t                   id;
    ngx_str_t                   category;
    ngx_uint_t                  action;
    ngx_int_t                   slot;          /* -1: counted as _other */
} ngx_http_gi2_m_label_t;


struct ngx_http_gi2_metrics_conf_s {
    ngx_shm_zone_t             *zone;
    ngx_http_gi2_m_shm_t       *sh;
    ngx_slab_pool_t            *shpool;
    u_char                     *file;          /* gi2_metrics */
    ngx_uint_t                  line;
    u_char                     *status_file;   /* the first gi2_status */
    ngx_uint_t                  status_line;
    ngx_array_t                 rules;         /* ngx_http_gi2_m_label_t */
    ngx_array_t                 exceptions;    /* sorted by id */
};


/* the exposition being written: Prometheus text or JSON */

typedef struct {
    u_char                     *pos;
    u_char                     *end;
    ngx_uint_t                  json;
    ngx_uint_t                  families;
    ngx_uint_t                  samples;
} ngx_http_gi2_m_out_t;


typedef struct {
    const char                 *key;
    u_char                     *value;
    size_t                      len;
} ngx_http_gi2_m_kv_t;


static ngx_http_gi2_metrics_conf_t *ngx_http_gi2_m_conf(ngx_conf_t *cf);
static size_t ngx_http_gi2_m_room(size_t size);
static ngx_int_t ngx_http_gi2_m_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_int_t ngx_http_gi2_m_assign(ngx_http_gi2_metrics_conf_t *mc,
    ngx_log_t *log);
static ngx_int_t ngx_http_gi2_m_find(ngx_http_gi2_m_shm_t *sh,
    ngx_uint_t *index, ngx_uint_t n, ngx_uint_t kind,
    ngx_http_gi2_m_label_t *l);
static int ngx_libc_cdecl ngx_http_gi2_m_entry_cmp(const void *a,
    const void *b);
static int ngx_libc_cdecl ngx_http_gi2_m_label_cmp(const void *a,
    const void *b);
static int ngx_http_gi2_m_cmp(ngx_uint_t ka, u_char *a, size_t alen,
    ngx_uint_t kb, u_char *b, size_t blen);
static ngx_http_gi2_m_label_t *ngx_http_gi2_m_lookup(ngx_array_t *a,
    u_char *id, size_t len);
static void ngx_http_gi2_m_code(ngx_http_gi2_metrics_conf_t *mc,
    const char *code);
static void ngx_http_gi2_m_minute(ngx_http_gi2_metrics_conf_t *mc,
    ngx_uint_t decision);
static ngx_int_t ngx_http_gi2_status_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_gi2_m_format(ngx_http_request_t *r);
static size_t ngx_http_gi2_m_size(ngx_http_gi2_metrics_conf_t *mc);
static void ngx_http_gi2_m_emit(ngx_http_gi2_metrics_conf_t *mc,
    ngx_http_gi2_m_out_t *o);
static void ngx_http_gi2_m_timeline(ngx_http_gi2_metrics_conf_t *mc,
    ngx_http_gi2_m_out_t *o);
static void ngx_http_gi2_m_raw(ngx_http_gi2_m_out_t *o, const char *s);
static void ngx_http_gi2_m_raw_n(ngx_http_gi2_m_out_t *o, u_char *s,
    size_t len);
static void ngx_http_gi2_m_esc(ngx_http_gi2_m_out_t *o, u_char *s,
    size_t len);
static void ngx_http_gi2_m_family(ngx_http_gi2_m_out_t *o, const char *name,
    const char *type, const char *help);
static void ngx_http_gi2_m_family_end(ngx_http_gi2_m_out_t *o);
static void ngx_http_gi2_m_sample(ngx_http_gi2_m_out_t *o, const char *name,
    const char *suffix, ngx_http_gi2_m_kv_t *kv, ngx_uint_t n,
    u_char *value, size_t len);
static void ngx_http_gi2_m_counter(ngx_http_gi2_m_out_t *o,
    const char *name, ngx_http_gi2_m_kv_t *kv, ngx_uint_t n,
    ngx_atomic_uint_t v);
static void ngx_http_gi2_m_one(ngx_http_gi2_m_out_t *o, const char *name,
    const char *key, const char *value, ngx_atomic_uint_t v);


/* label values, in the order of the counters' indexes */

static char  *ngx_http_gi2_m_endpoints[] = {
    "other", "image_generation", "image_edit"
};

static char  *ngx_http_gi2_m_decisions[] = {
    "none", "allow", "flag", "rewrite", "reject"
};

static char  *ngx_http_gi2_m_reject_codes[] = {
    "gi2_invalid_request", "gi2_prompt_rejected",
    "gi2_moderation_exception_required", "gi2_moderation_exception_invalid",
    "other"
};

static char  *ngx_http_gi2_m_low[] = {
    "rejected", "rewritten", "allowed", "exception"
};

static char  *ngx_http_gi2_m_classes[] = {
    "1xx", "2xx", "3xx", "4xx", "5xx", "other"
};

static char  *ngx_http_gi2_m_stages[] = {
    "input", "output", "other"
};

static char  *ngx_http_gi2_m_results[] = {
    "allow", "flag", "deny", "error", "timeout"
};

static char  *ngx_http_gi2_m_actions[] = {
    "", "deny", "flag"
};

/* the histogram's upper bounds, in milliseconds and as written */

static ngx_msec_t  ngx_http_gi2_m_bounds[NGX_HTTP_GI2_M_BUCKETS] = {
    5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000
};

static char  *ngx_http_gi2_m_le[NGX_HTTP_GI2_M_BUCKETS + 1] = {
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5",
    "5", "10", "+Inf"
};


static ngx_http_gi2_m_shm_t  *ngx_http_gi2_m_sort_base;


/* configuration */

static ngx_http_gi2_metrics_conf_t *
ngx_http_gi2_m_conf(ngx_conf_t *cf)
{
    ngx_http_gi2_main_conf_t     *gmcf;
    ngx_http_gi2_metrics_conf_t  *mc;

    gmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_gi2_module);

    if (gmcf->metrics != NULL) {
        return gmcf->metrics;
    }

    mc = ngx_pcalloc(cf->pool, sizeof(ngx_http_gi2_metrics_conf_t));
    if (mc == NULL) {
        return NULL;
    }

    if (ngx_array_init(&mc->rules, cf->pool, 16,
                       sizeof(ngx_http_gi2_m_label_t))
        != NGX_OK
        || ngx_array_init(&mc->exceptions, cf->pool, 4,
                          sizeof(ngx_http_gi2_m_label_t))
           != NGX_OK)
    {
        return NULL;
    }

    gmcf->metrics = mc;

    return mc;
}


/* gi2_metrics zone=NAME:SIZE */

char *
ngx_http_gi2_metrics_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    u_char                       *p, *end;
    ssize_t                       size;
    ngx_str_t                    *value, name, s;
    ngx_http_gi2_metrics_conf_t  *mc;

    mc = ngx_http_gi2_m_conf(cf);
    if (mc == NULL) {
        return NGX_CONF_ERROR;
    }

    if (mc->zone != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;
    end = value[1].data + value[1].len;

    if (value[1].len < 5 || ngx_strncmp(value[1].data, "zone=", 5) != 0) {
        goto invalid;
    }

    name.data = value[1].data + 5;

    p = ngx_strlchr(name.data, end, ':');
    if (p == NULL || p == name.data) {
        goto invalid;
    }

    name.len = p - name.data;

    s.data = p + 1;
    s.len = end - s.data;

    size = ngx_parse_size(&s);
    if (size == NGX_ERROR) {
        goto invalid;
    }

    if (size < (ssize_t) (8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "gi2_metrics zone \"%V\" is too small: use at "
                           "least %uzk", &name, 8 * ngx_pagesize / 1024);
        return NGX_CONF_ERROR;
    }

    mc->zone = ngx_shared_memory_add(cf, &name, size, &ngx_http_gi2_module);
    if (mc->zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (mc->zone->data != NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "gi2_metrics zone \"%V\" is already in use",
                           &name);
        return NGX_CONF_ERROR;
    }

    mc->zone->init = ngx_http_gi2_m_init_zone;
    mc->zone->data = mc;
    mc->file = cf->conf_file->file.name.data;
    mc->line = cf->conf_file->line;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\": use zone=NAME:SIZE",
                       &value[1]);

    return NGX_CONF_ERROR;
}


/* gi2_status: this location serves the counters */

char *
ngx_http_gi2_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t     *clcf;
    ngx_http_gi2_metrics_conf_t  *mc;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler == ngx_http_gi2_status_handler) {
        return "is duplicate";
    }

    mc = ngx_http_gi2_m_conf(cf);
    if (mc == NULL) {
        return NGX_CONF_ERROR;
    }

    clcf->handler = ngx_http_gi2_status_handler;

    if (mc->status_file == NULL) {
        mc->status_file = cf->conf_file->file.name.data;
        mc->status_line = cf->conf_file->line;
    }

    return NGX_CONF_OK;
}


ngx_int_t
ngx_http_gi2_metrics_rule(ngx_conf_t *cf, ngx_str_t *id, ngx_str_t *category,
    int action)
{
    ngx_http_gi2_m_label_t       *l;
    ngx_http_gi2_metrics_conf_t  *mc;

    /* ids are unique across the configuration: the caller checked */

    mc = ngx_http_gi2_m_conf(cf);
    if (mc == NULL) {
        return NGX_ERROR;
    }

    l = ngx_array_push(&mc->rules);
    if (l == NULL) {
        return NGX_ERROR;
    }

    l->id = *id;
    l->category = *category;
    l->action = (action == GI2_ACTION_DENY) ? 1 : 2;
    l->slot = -1;

    return NGX_OK;
}


ngx_int_t
ngx_http_gi2_metrics_exception(ngx_conf_t *cf, ngx_str_t *id)
{
    ngx_uint_t                    i;
    ngx_http_gi2_m_label_t       *l;
    ngx_http_gi2_metrics_conf_t  *mc;

    mc = ngx_http_gi2_m_conf(cf);
    if (mc == NULL) {
        return NGX_ERROR;
    }

    /* one id may be issued at several levels: one label */

    l = mc->exceptions.elts;

    for (i = 0; i < mc->exceptions.nelts; i++) {
        if (l[i].id.len == id->len
            && ngx_strncmp(l[i].id.data, id->data, id->len) == 0)
        {
            return NGX_OK;
        }
    }

    l = ngx_array_push(&mc->exceptions);
    if (l == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(l, sizeof(ngx_http_gi2_m_label_t));
    l->id = *id;
    l->slot = -1;

    return NGX_OK;
}


/*
 * Postconfiguration: gi2_status needs gi2_metrics, and the zone must hold
 * at least the configuration's own ids.  The room is counted as
 * ngx_slab_init() will lay the zone out (the zone starts on a page): the
 * pool's header, its slots and statistics, a descriptor per page, then
 * the pages from the next page boundary.
 */

ngx_int_t
ngx_http_gi2_metrics_init(ngx_conf_t *cf)
{
    size_t                        need, room, size;
    ngx_uint_t                    n;
    ngx_http_gi2_main_conf_t     *gmcf;
    ngx_http_gi2_metrics_conf_t  *mc;

    gmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_gi2_module);
    mc = gmcf->metrics;

    if (mc == NULL) {
        return NGX_OK;
    }

    if (mc->zone == NULL) {
        if (mc->status_file != NULL) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "gi2_status needs \"gi2_metrics zone=NAME:SIZE\" "
                          "in the http block in %s:%ui",
                          mc->status_file, mc->status_line);
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    ngx_qsort(mc->rules.elts, mc->rules.nelts,
              sizeof(ngx_http_gi2_m_label_t), ngx_http_gi2_m_label_cmp);
    ngx_qsort(mc->exceptions.elts, mc->exceptions.nelts,
              sizeof(ngx_http_gi2_m_label_t), ngx_http_gi2_m_label_cmp);

    n = mc->rules.nelts + mc->exceptions.nelts;
    need = offsetof(ngx_http_gi2_m_shm_t, entries)
           + n * sizeof(ngx_http_gi2_m_entry_t);

    room = ngx_http_gi2_m_room(mc->zone->shm.size);

    if (room < need) {

        /* the least size that holds them, in whole KiB */

        for (size = mc->zone->shm.size;
             ngx_http_gi2_m_room(size) < need;
             size += 1024)
        {
            /* void */
        }

        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "gi2_metrics zone \"%V\" is too small for %ui rules "
                      "and exceptions: use at least %uzk in %s:%ui",
                      &mc->zone->shm.name, n, (size + 1023) / 1024,
                      mc->file, mc->line);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static size_t
ngx_http_gi2_m_room(size_t size)
{
    size_t  head, pages, start, n;

    n = ngx_pagesize_shift - 3;     /* the slots above min_shift 3 */
    head = sizeof(ngx_slab_pool_t)
           + n * (sizeof(ngx_slab_page_t) + sizeof(ngx_slab_stat_t));

    if (size <= head) {
        return 0;
    }

    pages = (size - head) / (ngx_pagesize + sizeof(ngx_slab_page_t));
    start = ngx_align(head + pages * sizeof(ngx_slab_page_t), ngx_pagesize);

    if (start >= size) {
        return 0;
    }

    pages = ngx_min(pages, (size - start) / ngx_pagesize);

    return pages * ngx_pagesize;
}


static ngx_int_t
ngx_http_gi2_m_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    size_t                        size;
    ngx_slab_pool_t              *shpool;
    ngx_http_gi2_m_shm_t         *sh;
    ngx_http_gi2_metrics_conf_t  *mc;

    mc = shm_zone->data;
    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (data != NULL || shm_zone->shm.exists) {

        /* the zone of the previous configuration, kept by nginx */

        sh = shpool->data;

        if (sh == NULL || sh->magic != NGX_HTTP_GI2_M_MAGIC
            || sh->version != NGX_HTTP_GI2_M_VERSION
            || sh->size != offsetof(ngx_http_gi2_m_shm_t, entries)
            || sh->entry_size != sizeof(ngx_http_gi2_m_entry_t))
        {
            ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                          "gi2_metrics zone \"%V\" was made by another "
                          "version of the module: give it another name "
                          "or size in %s:%ui",
                          &shm_zone->shm.name, mc->file, mc->line);
            return NGX_ERROR;
        }

    } else {

        /* the whole zone: the table takes what the counters leave */

        size = shpool->pfree << ngx_pagesize_shift;

        sh = ngx_slab_calloc(shpool, size);
        if (sh == NULL || size < sizeof(ngx_http_gi2_m_shm_t)) {
            ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                          "gi2_metrics zone \"%V\" is too small in %s:%ui",
                          &shm_zone->shm.name, mc->file, mc->line);
            return NGX_ERROR;
        }

        sh->magic = NGX_HTTP_GI2_M_MAGIC;
        sh->version = NGX_HTTP_GI2_M_VERSION;
        sh->size = offsetof(ngx_http_gi2_m_shm_t, entries);
        sh->entry_size = sizeof(ngx_http_gi2_m_entry_t);
        sh->started = ngx_time();
        sh->capacity = (size - offsetof(ngx_http_gi2_m_shm_t, entries))
                       / sizeof(ngx_http_gi2_m_entry_t);

        shpool->data = sh;

        if (sh->capacity < mc->rules.nelts + mc->exceptions.nelts) {
            ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                          "gi2_metrics zone \"%V\" is too small for %ui "
                          "rules and exceptions in %s:%ui",
                          &shm_zone->shm.name,
                          mc->rules.nelts + mc->exceptions.nelts,
                          mc->file, mc->line);
            return NGX_ERROR;
        }
    }

    mc->sh = sh;
    mc->shpool = shpool;

    return ngx_http_gi2_m_assign(mc, shm_zone->shm.log);
}


/*
 * Every rule and exception of this configuration gets its table entry:
 * the one it had, found by a binary search over the entries sorted, or a
 * new one.  The master does this while old workers may be counting: an
 * entry is written whole before the count of entries says it exists.
 */

static ngx_int_t
ngx_http_gi2_m_assign(ngx_http_gi2_metrics_conf_t *mc, ngx_log_t *log)
{
    ngx_int_t                k;
    ngx_uint_t               i, n, j, kind, full, *index;
    ngx_array_t             *list;
    ngx_http_gi2_m_shm_t    *sh;
    ngx_http_gi2_m_entry_t  *e;
    ngx_http_gi2_m_label_t  *l;

    sh = mc->sh;

    ngx_shmtx_lock(&mc->shpool->mutex);

    n = sh->nentries;
    index = NULL;

    if (n) {
        index = ngx_alloc(n * sizeof(ngx_uint_t), log);
        if (index == NULL) {
            ngx_shmtx_unlock(&mc->shpool->mutex);
            return NGX_ERROR;
        }

        for (i = 0; i < n; i++) {
            index[i] = i;
        }

        ngx_http_gi2_m_sort_base = sh;
        ngx_qsort(index, n, sizeof(ngx_uint_t), ngx_http_gi2_m_entry_cmp);
    }

    full = 0;

    for (k = 0; k < 2; k++) {
        list = k ? &mc->exceptions : &mc->rules;
        kind = k ? NGX_HTTP_GI2_M_EXCEPTION : NGX_HTTP_GI2_M_RULE;
        l = list->elts;

        for (i = 0; i < list->nelts; i++) {
            l[i].slot = ngx_http_gi2_m_find(sh, index, n, kind, &l[i]);

            if (l[i].slot >= 0) {
                continue;
            }

            j = sh->nentries;

            if (j >= sh->capacity) {
                full++;
                continue;
            }

            e = &sh->entries[j];
            ngx_memzero(e, sizeof(ngx_http_gi2_m_entry_t));
            e->kind = kind;
            e->action = l[i].action;
            e->id_len = ngx_min(l[i].id.len, NGX_HTTP_GI2_M_ID_LEN);
            ngx_memcpy(e->id, l[i].id.data, e->id_len);
            e->category_len = ngx_min(l[i].category.len,
                                      NGX_HTTP_GI2_M_ID_LEN);

            /* an exception has no category: no data to copy from */

            if (e->category_len) {
                ngx_memcpy(e->category, l[i].category.data,
                           e->category_len);
            }

            ngx_memory_barrier();

            sh->nentries = j + 1;
            l[i].slot = j;
        }
    }

    ngx_shmtx_unlock(&mc->shpool->mutex);

    if (index != NULL) {
        ngx_free(index);
    }

    if (full) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "gi2_metrics zone \"%V\" is full: %ui rule and "
                      "exception ids are counted as \"_other\"; a larger "
                      "zone (or a restart) starts a new table",
                      &mc->zone->shm.name, full);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_gi2_m_find(ngx_http_gi2_m_shm_t *sh, ngx_uint_t *index,
    ngx_uint_t n, ngx_uint_t kind, ngx_http_gi2_m_label_t *l)
{
    int                      rc;
    ngx_uint_t               lo, hi, mid;
    ngx_http_gi2_m_entry_t  *e;

    lo = 0;
    hi = n;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        e = &sh->entries[index[mid]];

        rc = ngx_http_gi2_m_cmp(kind, l->id.data, l->id.len,
                                e->kind, e->id, e->id_len);

        if (rc == 0) {
            rc = ngx_http_gi2_m_cmp(l->action, l->category.data,
                                    l->category.len, e->action,
                                    e->category, e->category_len);
        }

        if (rc == 0) {
            return index[mid];
        }

        if (rc < 0) {
            hi = mid;

        } else {
            lo = mid + 1;
        }
    }

    return -1;
}


static int ngx_libc_cdecl
ngx_http_gi2_m_entry_cmp(const void *a, const void *b)
{
    int                      rc;
    ngx_http_gi2_m_entry_t  *ea, *eb;

    ea = &ngx_http_gi2_m_sort_base->entries[*(const ngx_uint_t *) a];
    eb = &ngx_http_gi2_m_sort_base->entries[*(const ngx_uint_t *) b];

    rc = ngx_http_gi2_m_cmp(ea->kind, ea->id, ea->id_len,
                            eb->kind, eb->id, eb->id_len);
    if (rc) {
        return rc;
    }

    return ngx_http_gi2_m_cmp(ea->action, ea->category, ea->category_len,
                              eb->action, eb->category, eb->category_len);
}


static int ngx_libc_cdecl
ngx_http_gi2_m_label_cmp(const void *a, const void *b)
{
    const ngx_http_gi2_m_label_t  *la = a, *lb = b;

    return ngx_http_gi2_m_cmp(0, la->id.data, la->id.len,
                              0, lb->id.data, lb->id.len);
}


/* (k, bytes) pairs: by k, then bytewise, a prefix first */

static int
ngx_http_gi2_m_cmp(ngx_uint_t ka, u_char *a, size_t alen, ngx_uint_t kb,
    u_char *b, size_t blen)
{
    int  rc;

    if (ka != kb) {
        return (ka < kb) ? -1 : 1;
    }

    /* an empty string (no category) may have no data at all */

    rc = (alen && blen) ? ngx_memcmp(a, b, ngx_min(alen, blen)) : 0;
    if (rc) {
        return rc;
    }

    return (alen > blen) - (alen < blen);
}


static ngx_http_gi2_m_label_t *
ngx_http_gi2_m_lookup(ngx_array_t *a, u_char *id, size_t len)
{
    int                      rc;
    ngx_uint_t               lo, hi, mid;
    ngx_http_gi2_m_label_t  *l;

    l = a->elts;
    lo = 0;
    hi = a->nelts;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;

        rc = ngx_http_gi2_m_cmp(0, id, len, 0, l[mid].id.data,
                                l[mid].id.len);
        if (rc == 0) {
            return &l[mid];
        }

        if (rc < 0) {
            hi = mid;

        } else {
            lo = mid + 1;
        }
    }

    return NULL;
}


/* counting */

void
ngx_http_gi2_metrics_count(ngx_http_request_t *r, ngx_http_gi2_ctx_t *ctx)
{
    size_t                        len;
    ngx_uint_t                    i, k;
    gi2_field_t                  *f;
    const char                   *code;
    const gi2_rule_t             *rule;
    ngx_http_gi2_m_shm_t         *sh;
    ngx_http_gi2_m_label_t       *l;
    const gi2_resp_result_t      *res;
    ngx_http_core_loc_conf_t     *clcf;
    ngx_http_gi2_main_conf_t     *gmcf;
    ngx_http_gi2_metrics_conf_t  *mc;

    gmcf = ngx_http_get_module_main_conf(r, ngx_http_gi2_module);
    mc = gmcf->metrics;

    if (mc == NULL || mc->sh == NULL) {
        return;
    }

    /* scrapes are not traffic */

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (clcf->handler == ngx_http_gi2_status_handler) {
        return;
    }

    /* upstream status and cost are made here, once, for the log too */

    (void) ngx_http_gi2_audit_finalize(r, ctx);

    sh = mc->sh;

    (void) ngx_atomic_fetch_add(&sh->requests[ctx->endpoint][ctx->decision],
                                1);

    if (ctx->decision != NGX_HTTP_GI2_NONE) {
        ngx_http_gi2_m_minute(mc, ctx->decision);
    }

    /*
     * the external moderation service's verdict, once a request (a cached
     * verdict too: it took no call, and its time is about 0); a flagged
     * prompt that was rejected can only have been rejected by it, since
     * the local rules come first
     */

    switch (ctx->modapi.result) {

    case NGX_HTTP_GI2_MODAPI_CLEAN:
        k = NGX_HTTP_GI2_MODERATION_ALLOW;
        break;

    case NGX_HTTP_GI2_MODAPI_FLAGGED:
        k = (ctx->decision == NGX_HTTP_GI2_REJECT)
            ? NGX_HTTP_GI2_MODERATION_DENY : NGX_HTTP_GI2_MODERATION_FLAG;
        break;

    case NGX_HTTP_GI2_MODAPI_ERROR:
        k = NGX_HTTP_GI2_MODERATION_ERROR;
        break;

    case NGX_HTTP_GI2_MODAPI_TIMEOUT:
        k = NGX_HTTP_GI2_MODERATION_TIMEOUT;
        break;

    default:    /* none, cancelled */
        k = NGX_HTTP_GI2_MODERATION_RESULTS;
    }

    if (k < NGX_HTTP_GI2_MODERATION_RESULTS) {
        ngx_http_gi2_metrics_moderation(r, k, ctx->modapi.ms);
    }

    if (ctx->reject_code != NULL) {
        for (k = 0; k < NGX_HTTP_GI2_M_REJECT_CODES - 1; k++) {
            if (ngx_strcmp(ctx->reject_code, ngx_http_gi2_m_reject_codes[k])
                == 0)
            {
                break;
            }
        }

        (void) ngx_atomic_fetch_add(&sh->rejections[k], 1);
    }

    /* the rules that matched */

    for (i = 0; i < ctx->nhits; i++) {
        rule = gi2_ruleset_rule(ctx->ruleset, ctx->hits[i]);
        len = ngx_strlen(rule->id);

        l = ngx_http_gi2_m_lookup(&mc->rules, (u_char *) rule->id, len);

        if (l != NULL && l->slot >= 0) {
            (void) ngx_atomic_fetch_add(&sh->entries[l->slot].count, 1);

        } else {
            (void) ngx_atomic_fetch_add(&sh->rules_other, 1);
        }
    }

    /* the moderation policy, for requests that asked for "low" */

    f = &ctx->req.field[GI2_F_MODERATION];

    if (f->type == GI2_T_STRING && f->value.len == 3) {
        k = NGX_HTTP_GI2_M_LOW;

        if (ctx->reject_code != NULL
            && ngx_strcmp(ctx->reject_code,
                          "gi2_moderation_exception_required") == 0)
        {
            k = NGX_HTTP_GI2_M_LOW_REJECTED;

        } else if (ctx->decision == NGX_HTTP_GI2_REWRITE) {
            k = NGX_HTTP_GI2_M_LOW_REWRITTEN;

        } else if (ctx->moderation_effective.len == 3) {
            k = ctx->exception_id.len ? NGX_HTTP_GI2_M_LOW_EXCEPTION
                                      : NGX_HTTP_GI2_M_LOW_ALLOWED;
        }

        if (k < NGX_HTTP_GI2_M_LOW) {
            (void) ngx_atomic_fetch_add(&sh->low[k], 1);
        }

        if (k == NGX_HTTP_GI2_M_LOW_EXCEPTION) {
            l = ngx_http_gi2_m_lookup(&mc->exceptions,
                                      ctx->exception_id.data,
                                      ctx->exception_id.len);

            if (l != NULL && l->slot >= 0) {
                (void) ngx_atomic_fetch_add(&sh->entries[l->slot].count, 1);

            } else {
                (void) ngx_atomic_fetch_add(&sh->exceptions_other, 1);
            }
        }
    }

    /* the upstream's answer */

    if (ctx->upstream_status) {
        k = ctx->upstream_status / 100;
        k = (k >= 1 && k <= 5) ? k - 1 : NGX_HTTP_GI2_M_CLASSES - 1;
        (void) ngx_atomic_fetch_add(&sh->upstream[k], 1);
    }

    res = (ctx->resp != NULL) ? gi2_resp_result(ctx->resp) : NULL;

    if (res == NULL) {
        return;
    }

    if (res->error_type[0] != '\0') {
        code = res->error_code;

        if (ngx_strcmp(code, "moderation_blocked") == 0) {
            k = (ngx_strcmp(res->moderation_stage, "input") == 0) ? 0
                : (ngx_strcmp(res->moderation_stage, "output") == 0) ? 1 : 2;
            (void) ngx_atomic_fetch_add(&sh->blocked[k], 1);

        } else {
            ngx_http_gi2_m_code(mc, code);
        }
    }

    (void) ngx_atomic_fetch_add(&sh->images, res->images_total);

    if (res->input_tokens > 0) {
        (void) ngx_atomic_fetch_add(&sh->tokens_in,
                                    (ngx_atomic_uint_t) res->input_tokens);
    }

    if (res->output_tokens > 0) {
        (void) ngx_atomic_fetch_add(&sh->tokens_out,
                                    (ngx_atomic_uint_t) res->output_tokens);
    }

    if (ctx->cost > 0) {
        /* as $gi2_cost_usd rounds it: to the micro-dollar */
        (void) ngx_atomic_fetch_add(&sh->cost,
                                    (ngx_atomic_uint_t) (ctx->cost * 1e6
                                                         + 0.5));
    }
}


/*
 * An upstream error code: the codes are the provider's, so only a few
 * distinct ones are kept, with what they may hold restricted to a safe
 * label value; the rest count as "_other".
 */

static void
ngx_http_gi2_m_code(ngx_http_gi2_metrics_conf_t *mc, const char *code)
{
    u_char                  c, buf[NGX_HTTP_GI2_M_CODE_LEN];
    size_t                  len;
    ngx_uint_t              i, n;
    ngx_http_gi2_m_shm_t   *sh;
    ngx_http_gi2_m_code_t  *ec;

    sh = mc->sh;

    if (code[0] == '\0') {
        code = "none";
    }

    for (len = 0; code[len] && len < NGX_HTTP_GI2_M_CODE_LEN - 1; len++) {
        c = (u_char) code[len];

        buf[len] = ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
                    || (c >= '0' && c <= '9') || c == '_' || c == '-'
                    || c == '.' || c == ':' || c == '/')
                   ? c : '_';
    }

    n = sh->ncodes;

    for (i = 0; i < n; i++) {
        ec = &sh->codes[i];

        if (ec->len == len && ngx_memcmp(ec->code, buf, len) == 0) {
            (void) ngx_atomic_fetch_add(&ec->count, 1);
            return;
        }
    }

    ngx_shmtx_lock(&mc->shpool->mutex);

    for (i = 0; i < sh->ncodes; i++) {
        ec = &sh->codes[i];

        if (ec->len == len && ngx_memcmp(ec->code, buf, len) == 0) {
            (void) ngx_atomic_fetch_add(&ec->count, 1);
            goto done;
        }
    }

    if (sh->ncodes < NGX_HTTP_GI2_M_CODES) {
        ec = &sh->codes[sh->ncodes];
        ngx_memcpy(ec->code, buf, len);
        ec->len = len;
        ec->count = 1;

        ngx_memory_barrier();

        sh->ncodes++;

    } else {
        (void) ngx_atomic_fetch_add(&sh->codes_other, 1);
    }

done:

    ngx_shmtx_unlock(&mc->shpool->mutex);
}


/* the ring of minutes: a slot is cleared when its minute comes round */

static void
ngx_http_gi2_m_minute(ngx_http_gi2_metrics_conf_t *mc, ngx_uint_t decision)
{
    ngx_uint_t                minute, i;
    ngx_http_gi2_m_minute_t  *m;

    minute = ngx_time() / 60;
    m = &mc->sh->minutes[minute % NGX_HTTP_GI2_M_MINUTES];

    if (m->minute != minute) {
        ngx_shmtx_lock(&mc->shpool->mutex);

        if (m->minute != minute) {
            for (i = 0; i < NGX_HTTP_GI2_M_DECISIONS; i++) {
                m->decision[i] = 0;
            }

            ngx_memory_barrier();

            m->minute = minute;
        }

        ngx_shmtx_unlock(&mc->shpool->mutex);
    }

    (void) ngx_atomic_fetch_add(&m->decision[decision], 1);
}


void
ngx_http_gi2_metrics_moderation(ngx_http_request_t *r, ngx_uint_t result,
    ngx_msec_t ms)
{
    ngx_uint_t                    i;
    ngx_http_gi2_m_shm_t         *sh;
    ngx_http_gi2_main_conf_t     *gmcf;
    ngx_http_gi2_metrics_conf_t  *mc;

    gmcf = ngx_http_get_module_main_conf(r, ngx_http_gi2_module);
    mc = gmcf->metrics;

    if (mc == NULL || mc->sh == NULL
        || result >= NGX_HTTP_GI2_MODERATION_RESULTS)
    {
        return;
    }

    sh = mc->sh;

    (void) ngx_atomic_fetch_add(&sh->moderation[result], 1);

    for (i = 0; i < NGX_HTTP_GI2_M_BUCKETS; i++) {
        if (ms <= ngx_http_gi2_m_bounds[i]) {
            break;
        }
    }

    (void) ngx_atomic_fetch_add(&sh->buckets[i], 1);
    (void) ngx_atomic_fetch_add(&sh->moderation_ms, ms);
}


/* gi2_status */

static ngx_int_t
ngx_http_gi2_status_handler(ngx_http_request_t *r)
{
    size_t                        size;
    ngx_int_t                     rc, format;
    ngx_buf_t                    *b;
    ngx_chain_t                   out;
    ngx_table_elt_t              *h;
    ngx_http_gi2_m_out_t          o;
    ngx_http_gi2_main_conf_t     *gmcf;
    ngx_http_gi2_metrics_conf_t  *mc;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    gmcf = ngx_http_get_module_main_conf(r, ngx_http_gi2_module);
    mc = gmcf->metrics;

    if (mc == NULL || mc->sh == NULL) {
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    format = ngx_http_gi2_m_format(r);
    if (format == NGX_ERROR) {
        return NGX_HTTP_BAD_REQUEST;
    }

    if (format == NGX_HTTP_GI2_M_HTML) {
        b = ngx_calloc_buf(r->pool);
        if (b == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        b->pos = (u_char *) ngx_http_gi2_status_html;
        b->last = b->pos + sizeof(ngx_http_gi2_status_html) - 1;
        b->memory = 1;

        ngx_str_set(&r->headers_out.content_type, "text/html; charset=utf-8");

    } else {
        size = ngx_http_gi2_m_size(mc);

        b = ngx_create_temp_buf(r->pool, size);
        if (b == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_memzero(&o, sizeof(ngx_http_gi2_m_out_t));
        o.pos = b->pos;
        o.end = b->end;
        o.json = (format == NGX_HTTP_GI2_M_JSON);

        ngx_http_gi2_m_emit(mc, &o);

        if (o.pos >= o.end) {
            ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                          "gi2_status: over %uz bytes", size);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        b->last = o.pos;

        if (o.json) {
            ngx_str_set(&r->headers_out.content_type, "application/json");

        } else {
            ngx_str_set(&r->headers_out.content_type,
                        "text/plain; version=0.0.4; charset=utf-8");
        }
    }

    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = b->last - b->pos;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Cache-Control");
    ngx_str_set(&h->value, "no-store");

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* what is sent without ?format= depends on Accept */

    h->hash = 1;
    ngx_str_set(&h->key, "Vary");
    ngx_str_set(&h->value, "Accept");

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/* ?format=json|prometheus|html, else HTML to browsers, text to others */

static ngx_int_t
ngx_http_gi2_m_format(ngx_http_request_t *r)
{
    ngx_str_t         arg;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    if (ngx_http_arg(r, (u_char *) "format", 6, &arg) == NGX_OK) {

        if (arg.len == 4 && ngx_strncmp(arg.data, "json", 4) == 0) {
            return NGX_HTTP_GI2_M_JSON;
        }

        if (arg.len == 10 && ngx_strncmp(arg.data, "prometheus", 10) == 0) {
            return NGX_HTTP_GI2_M_TEXT;
        }

        if (arg.len == 4 && ngx_strncmp(arg.data, "html", 4) == 0) {
            return NGX_HTTP_GI2_M_HTML;
        }

        return NGX_ERROR;
    }

    for (part = &r->headers_in.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (h[i].key.len == 6
                && ngx_strncasecmp(h[i].key.data, (u_char *) "Accept", 6)
                   == 0
                && ngx_strlcasestrn(h[i].value.data,
                                    h[i].value.data + h[i].value.len,
                                    (u_char *) "text/html", 9 - 1)
                   != NULL)
            {
                return NGX_HTTP_GI2_M_HTML;
            }
        }
    }

    return NGX_HTTP_GI2_M_TEXT;
}


/*
 * An upper bound of the exposition: a few KiB of fixed text, and for each
 * labelled series its name and labels with every byte escaped.
 */

static size_t
ngx_http_gi2_m_size(ngx_http_gi2_metrics_conf_t *mc)
{
    return 32768
           + (mc->rules.nelts + mc->exceptions.nelts)
             * (2 * 2 * NGX_HTTP_GI2_M_ID_LEN + 256)
           + NGX_HTTP_GI2_M_CODES * (2 * NGX_HTTP_GI2_M_CODE_LEN + 256)
           + NGX_HTTP_GI2_M_MINUTES * 160;
}


static void
ngx_http_gi2_m_emit(ngx_http_gi2_metrics_conf_t *mc, ngx_http_gi2_m_out_t *o)
{
    u_char                   num[NGX_ATOMIC_T_LEN * 2 + 8];
    size_t                   len;
    ngx_uint_t               i, k, n;
    ngx_atomic_uint_t        v, cum;
    ngx_http_gi2_m_kv_t      kv[3];
    ngx_http_gi2_m_shm_t    *sh;
    ngx_http_gi2_m_code_t   *ec;
    ngx_http_gi2_m_entry_t  *e;
    ngx_http_gi2_m_label_t  *l;

    sh = mc->sh;

    if (o->json) {
        ngx_http_gi2_m_raw(o, "{\"zone\":\"");
        ngx_http_gi2_m_esc(o, mc->zone->shm.name.data,
                           mc->zone->shm.name.len);
        len = ngx_sprintf(num, "%T", sh->started) - num;
        ngx_http_gi2_m_raw(o, "\",\"started\":");
        ngx_http_gi2_m_raw_n(o, num, len);
        len = ngx_sprintf(num, "%T", ngx_time()) - num;
        ngx_http_gi2_m_raw(o, ",\"time\":");
        ngx_http_gi2_m_raw_n(o, num, len);
        ngx_http_gi2_m_raw(o, ",\"metrics\":[");
    }

    /* requests */

    ngx_http_gi2_m_family(o, "gi2_requests_total", "counter",
                          "Requests in gi2 locations by endpoint and "
                          "decision (none: not inspected or not decided).");

    kv[0].key = "endpoint";
    kv[1].key = "decision";

    for (i = 0; i < NGX_HTTP_GI2_M_ENDPOINTS; i++) {
        for (k = 0; k < NGX_HTTP_GI2_M_DECISIONS; k++) {
            if (i == 0 && k != NGX_HTTP_GI2_NONE) {
                continue;    /* other endpoints are never inspected */
            }

            kv[0].value = (u_char *) ngx_http_gi2_m_endpoints[i];
            kv[0].len = ngx_strlen(kv[0].value);
            kv[1].value = (u_char *) ngx_http_gi2_m_decisions[k];
            kv[1].len = ngx_strlen(kv[1].value);

            ngx_http_gi2_m_counter(o, "gi2_requests_total", kv, 2,
                                   sh->requests[i][k]);
        }
    }

    ngx_http_gi2_m_family_end(o);

    ngx_http_gi2_m_family(o, "gi2_rejections_total", "counter",
                          "Requests gi2 rejected, by the code of the error "
                          "sent to the client.");

    for (k = 0; k < NGX_HTTP_GI2_M_REJECT_CODES; k++) {
        ngx_http_gi2_m_one(o, "gi2_rejections_total", "code",
                           ngx_http_gi2_m_reject_codes[k],
                           sh->rejections[k]);
    }

    ngx_http_gi2_m_family_end(o);

    /* rules */

    ngx_http_gi2_m_family(o, "gi2_rule_hits_total", "counter",
                          "Prompts matched, by rule id, category and action "
                          "(the rules of the current configuration).");

    kv[0].key = "rule";
    kv[1].key = "category";
    kv[2].key = "action";

    l = mc->rules.elts;

    for (i = 0; i < mc->rules.nelts; i++) {
        if (l[i].slot < 0) {
            continue;
        }

        e = &sh->entries[l[i].slot];
        kv[0].value = e->id;
        kv[0].len = e->id_len;
        kv[1].value = e->category;
        kv[1].len = e->category_len;
        kv[2].value = (u_char *) ngx_http_gi2_m_actions[e->action];
        kv[2].len = ngx_strlen(kv[2].value);

        ngx_http_gi2_m_counter(o, "gi2_rule_hits_total", kv, 3, e->count);
    }

    if (sh->rules_other) {
        kv[0].value = (u_char *) "_other";
        kv[0].len = 6;
        kv[1] = kv[0];
        kv[1].key = "category";
        kv[2] = kv[0];
        kv[2].key = "action";

        ngx_http_gi2_m_counter(o, "gi2_rule_hits_total", kv, 3,
                               sh->rules_other);
    }

    ngx_http_gi2_m_family_end(o);

    /* the moderation policy */

    ngx_http_gi2_m_family(o, "gi2_moderation_low_total", "counter",
                          "Requests for moderation low by outcome: "
                          "rejected, rewritten to auto, allowed by policy, "
                          "allowed by an exception.");

    for (k = 0; k < NGX_HTTP_GI2_M_LOW; k++) {
        ngx_http_gi2_m_one(o, "gi2_moderation_low_total", "outcome",
                           ngx_http_gi2_m_low[k], sh->low[k]);
    }

    ngx_http_gi2_m_family_end(o);

    ngx_http_gi2_m_family(o, "gi2_exceptions_used_total", "counter",
                          "Requests that ran with moderation low under an "
                          "approved exception, by exception id.");

    kv[0].key = "exception";
    l = mc->exceptions.elts;

    for (i = 0; i < mc->exceptions.nelts; i++) {
        if (l[i].slot < 0) {
            continue;
        }

        e = &sh->entries[l[i].slot];
        kv[0].value = e->id;
        kv[0].len = e->id_len;

        ngx_http_gi2_m_counter(o, "gi2_exceptions_used_total", kv, 1,
                               e->count);
    }

    if (sh->exceptions_other) {
        ngx_http_gi2_m_one(o, "gi2_exceptions_used_total", "exception",
                           "_other", sh->exceptions_other);
    }

    ngx_http_gi2_m_family_end(o);

    /* upstream */

    ngx_http_gi2_m_family(o, "gi2_upstream_responses_total", "counter",
                          "Answers of the upstream by status class (the "
                          "last attempt of a request).");

    for (k = 0; k < NGX_HTTP_GI2_M_CLASSES; k++) {
        ngx_http_gi2_m_one(o, "gi2_upstream_responses_total", "class",
                           ngx_http_gi2_m_classes[k], sh->upstream[k]);
    }

    ngx_http_gi2_m_family_end(o);

    ngx_http_gi2_m_family(o, "gi2_upstream_errors_total", "counter",
                          "Error objects in upstream answers by error code, "
                          "moderation_blocked apart (first 32 codes, the "
                          "rest as _other).");

    n = sh->ncodes;
    kv[0].key = "code";

    for (i = 0; i < n && i < NGX_HTTP_GI2_M_CODES; i++) {
        ec = &sh->codes[i];
        kv[0].value = ec->code;
        kv[0].len = ec->len;

        ngx_http_gi2_m_counter(o, "gi2_upstream_errors_total", kv, 1,
                               ec->count);
    }

    if (sh->codes_other) {
        ngx_http_gi2_m_one(o, "gi2_upstream_errors_total", "code", "_other",
                           sh->codes_other);
    }

    ngx_http_gi2_m_family_end(o);

    ngx_http_gi2_m_family(o, "gi2_upstream_moderation_blocked_total",
                          "counter",
                          "Upstream answers with error code "
                          "moderation_blocked, by moderation stage.");

    for (k = 0; k < NGX_HTTP_GI2_M_STAGES; k++) {
        ngx_http_gi2_m_one(o, "gi2_upstream_moderation_blocked_total",
                           "stage", ngx_http_gi2_m_stages[k],
                           sh->blocked[k]);
    }

    ngx_http_gi2_m_family_end(o);

    /* external moderation */

    ngx_http_gi2_m_family(o, "gi2_external_moderation_total", "counter",
                          "Calls to the external moderation service by "
                          "result.");

    for (k = 0; k < NGX_HTTP_GI2_MODERATION_RESULTS; k++) {
        ngx_http_gi2_m_one(o, "gi2_external_moderation_total", "result",
                           ngx_http_gi2_m_results[k], sh->moderation[k]);
    }

    ngx_http_gi2_m_family_end(o);

    ngx_http_gi2_m_family(o, "gi2_external_moderation_duration_seconds",
                          "histogram",
                          "Time the external moderation service took to "
                          "answer, every result included.");

    kv[0].key = "le";
    cum = 0;

    for (k = 0; k <= NGX_HTTP_GI2_M_BUCKETS; k++) {
        cum += sh->buckets[k];
        kv[0].value = (u_char *) ngx_http_gi2_m_le[k];
        kv[0].len = ngx_strlen(kv[0].value);

        len = ngx_sprintf(num, "%uA", cum) - num;
        ngx_http_gi2_m_sample(o, "gi2_external_moderation_duration_seconds",
                              "_bucket", kv, 1, num, len);
    }

    v = sh->moderation_ms;
    len = ngx_sprintf(num, "%uA.%03uA", v / 1000, v % 1000) - num;
    ngx_http_gi2_m_sample(o, "gi2_external_moderation_duration_seconds",
                          "_sum", NULL, 0, num, len);

    len = ngx_sprintf(num, "%uA", cum) - num;
    ngx_http_gi2_m_sample(o, "gi2_external_moderation_duration_seconds",
                          "_count", NULL, 0, num, len);

    ngx_http_gi2_m_family_end(o);

    /* what the answers held */

    ngx_http_gi2_m_family(o, "gi2_images_total", "counter",
                          "Images in upstream answers (final images, "
                          "partial images not counted).");
    ngx_http_gi2_m_counter(o, "gi2_images_total", NULL, 0, sh->images);
    ngx_http_gi2_m_family_end(o);

    ngx_http_gi2_m_family(o, "gi2_tokens_total", "counter",
                          "Tokens of the usage in upstream answers, by "
                          "direction.");
    ngx_http_gi2_m_one(o, "gi2_tokens_total", "direction", "input",
                       sh->tokens_in);
    ngx_http_gi2_m_one(o, "gi2_tokens_total", "direction", "output",
                       sh->tokens_out);
    ngx_http_gi2_m_family_end(o);

    ngx_http_gi2_m_family(o, "gi2_cost_usd_total", "counter",
                          "Cost in US dollars of the usage, at the "
                          "gi2_price of the requested model.");
    v = sh->cost;
    len = ngx_sprintf(num, "%uA.%06uA", v / 1000000, v % 1000000) - num;
    ngx_http_gi2_m_sample(o, "gi2_cost_usd_total", "", NULL, 0, num, len);
    ngx_http_gi2_m_family_end(o);

    /* the zone itself */

    ngx_http_gi2_m_family(o, "gi2_metrics_start_time_seconds", "gauge",
                          "When the counters started, in seconds since the "
                          "epoch: a change means they were reset.");
    len = ngx_sprintf(num, "%T", sh->started) - num;
    ngx_http_gi2_m_sample(o, "gi2_metrics_start_time_seconds", "", NULL, 0,
                          num, len);
    ngx_http_gi2_m_family_end(o);

    ngx_http_gi2_m_family(o, "gi2_metrics_label_slots", "gauge",
                          "Entries of the zone's table of rule and exception "
                          "ids, used and in all.");
    ngx_http_gi2_m_one(o, "gi2_metrics_label_slots", "state", "used",
                       sh->nentries);
    ngx_http_gi2_m_one(o, "gi2_metrics_label_slots", "state", "total",
                       sh->capacity);
    ngx_http_gi2_m_family_end(o);

    if (o->json) {
        ngx_http_gi2_m_raw(o, "],");
        ngx_http_gi2_m_timeline(mc, o);
        ngx_http_gi2_m_raw(o, "}\n");
    }
}


/* JSON only: the decisions of the last minutes, oldest first */

static void
ngx_http_gi2_m_timeline(ngx_http_gi2_metrics_conf_t *mc,
    ngx_http_gi2_m_out_t *o)
{
    u_char                    num[NGX_ATOMIC_T_LEN + 8];
    size_t                    len;
    ngx_uint_t                now, minute, i, k, same;
    ngx_http_gi2_m_minute_t  *m;

    ngx_http_gi2_m_raw(o, "\"timeline\":{\"step\":60,\"minutes\":[");

    now = ngx_time() / 60;

    for (i = 0; i < NGX_HTTP_GI2_M_MINUTES; i++) {
        minute = now - (NGX_HTTP_GI2_M_MINUTES - 1) + i;
        m = &mc->sh->minutes[minute % NGX_HTTP_GI2_M_MINUTES];
        same = (m->minute == minute);

        ngx_http_gi2_m_raw(o, i ? ",{\"start\":" : "{\"start\":");
        len = ngx_sprintf(num, "%uA", (ngx_atomic_uint_t) minute * 60) - num;
        ngx_http_gi2_m_raw_n(o, num, len);

        for (k = NGX_HTTP_GI2_ALLOW; k < NGX_HTTP_GI2_M_DECISIONS; k++) {
            ngx_http_gi2_m_raw(o, ",\"");
            ngx_http_gi2_m_raw(o, ngx_http_gi2_m_decisions[k]);
            ngx_http_gi2_m_raw(o, "\":");
            len = ngx_sprintf(num, "%uA",
                              same ? m->decision[k] : 0) - num;
            ngx_http_gi2_m_raw_n(o, num, len);
        }

        ngx_http_gi2_m_raw(o, "}");
    }

    ngx_http_gi2_m_raw(o, "]}");
}


/* the writer: past the end, pos stays at the end and the caller fails */

static void
ngx_http_gi2_m_raw(ngx_http_gi2_m_out_t *o, const char *s)
{
    ngx_http_gi2_m_raw_n(o, (u_char *) s, ngx_strlen(s));
}


static void
ngx_http_gi2_m_raw_n(ngx_http_gi2_m_out_t *o, u_char *s, size_t len)
{
    if ((size_t) (o->end - o->pos) <= len) {
        o->pos = o->end;
        return;
    }

    if (len) {
        o->pos = ngx_cpymem(o->pos, s, len);
    }
}


/* a label value: the same escapes suit both formats; controls go */

static void
ngx_http_gi2_m_esc(ngx_http_gi2_m_out_t *o, u_char *s, size_t len)
{
    u_char  c;
    size_t  i;

    if ((size_t) (o->end - o->pos) <= 2 * len) {
        o->pos = o->end;
        return;
    }

    for (i = 0; i < len; i++) {
        c = s[i];

        if (c == '\\' || c == '"') {
            *o->pos++ = '\\';
            *o->pos++ = c;

        } else if (c == '\n') {
            *o->pos++ = '\\';
            *o->pos++ = 'n';

        } else {
            *o->pos++ = (c < 0x20 || c == 0x7f) ? '_' : c;
        }
    }
}


static void
ngx_http_gi2_m_family(ngx_http_gi2_m_out_t *o, const char *name,
    const char *type, const char *help)
{
    o->samples = 0;

    if (o->json) {
        ngx_http_gi2_m_raw(o, o->families++ ? ",{\"name\":\"" : "{\"name\":\"");
        ngx_http_gi2_m_raw(o, name);
        ngx_http_gi2_m_raw(o, "\",\"type\":\"");
        ngx_http_gi2_m_raw(o, type);
        ngx_http_gi2_m_raw(o, "\",\"help\":\"");
        ngx_http_gi2_m_raw(o, help);
        ngx_http_gi2_m_raw(o, "\",\"samples\":[");
        return;
    }

    ngx_http_gi2_m_raw(o, "# HELP ");
    ngx_http_gi2_m_raw(o, name);
    ngx_http_gi2_m_raw(o, " ");
    ngx_http_gi2_m_raw(o, help);
    ngx_http_gi2_m_raw(o, "\n# TYPE ");
    ngx_http_gi2_m_raw(o, name);
    ngx_http_gi2_m_raw(o, " ");
    ngx_http_gi2_m_raw(o, type);
    ngx_http_gi2_m_raw(o, "\n");
}


static void
ngx_http_gi2_m_family_end(ngx_http_gi2_m_out_t *o)
{
    if (o->json) {
        ngx_http_gi2_m_raw(o, "]}");
    }
}


static void
ngx_http_gi2_m_sample(ngx_http_gi2_m_out_t *o, const char *name,
    const char *suffix, ngx_http_gi2_m_kv_t *kv, ngx_uint_t n, u_char *value,
    size_t len)
{
    ngx_uint_t  i;

    if (o->json) {
        ngx_http_gi2_m_raw(o, o->samples++ ? ",{\"name\":\"" : "{\"name\":\"");
        ngx_http_gi2_m_raw(o, name);
        ngx_http_gi2_m_raw(o, suffix);
        ngx_http_gi2_m_raw(o, "\",\"labels\":{");

        for (i = 0; i < n; i++) {
            ngx_http_gi2_m_raw(o, i ? ",\"" : "\"");
            ngx_http_gi2_m_raw(o, kv[i].key);
            ngx_http_gi2_m_raw(o, "\":\"");
            ngx_http_gi2_m_esc(o, kv[i].value, kv[i].len);
            ngx_http_gi2_m_raw(o, "\"");
        }

        ngx_http_gi2_m_raw(o, "},\"value\":");
        ngx_http_gi2_m_raw_n(o, value, len);
        ngx_http_gi2_m_raw(o, "}");
        return;
    }

    ngx_http_gi2_m_raw(o, name);
    ngx_http_gi2_m_raw(o, suffix);

    for (i = 0; i < n; i++) {
        ngx_http_gi2_m_raw(o, i ? "," : "{");
        ngx_http_gi2_m_raw(o, kv[i].key);
        ngx_http_gi2_m_raw(o, "=\"");
        ngx_http_gi2_m_esc(o, kv[i].value, kv[i].len);
        ngx_http_gi2_m_raw(o, "\"");
    }

    ngx_http_gi2_m_raw(o, n ? "} " : " ");
    ngx_http_gi2_m_raw_n(o, value, len);
    ngx_http_gi2_m_raw(o, "\n");
}


static void
ngx_http_gi2_m_counter(ngx_http_gi2_m_out_t *o, const char *name,
    ngx_http_gi2_m_kv_t *kv, ngx_uint_t n, ngx_atomic_uint_t v)
{
    u_char  num[NGX_ATOMIC_T_LEN];

    ngx_http_gi2_m_sample(o, name, "", kv, n, num,
                          ngx_sprintf(num, "%uA", v) - num);
}


static void
ngx_http_gi2_m_one(ngx_http_gi2_m_out_t *o, const char *name,
    const char *key, const char *value, ngx_atomic_uint_t v)
{
    ngx_http_gi2_m_kv_t  kv;

    kv.key = key;
    kv.value = (u_char *) value;
    kv.len = ngx_strlen(value);

    ngx_http_gi2_m_counter(o, name, &kv, 1, v);
}
