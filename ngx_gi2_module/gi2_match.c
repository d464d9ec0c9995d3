/*
 * ngx_gi2_module: rule matcher.
 *
 * One pass of an Aho-Corasick automaton over the normalized prompt finds
 * every keyword of every gi2_keywords list and every literal a gi2_rule
 * regex cannot match without; only the regexes whose literal appeared (and
 * those with no usable literal) then run.  A clean prompt thus costs one
 * table walk, however many rules and keywords are configured.
 *
 * The automaton is a full DFA over byte classes: bytes that occur in no
 * pattern share one class.  The top bit of a transition marks a state
 * that ends a pattern, so the scan loop tests one word per byte.
 */

#include <stdlib.h>
#include <string.h>
#include <stdio.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <utf8proc.h>

#include "gi2_core.h"


#define GI2_OUT_BIT        0x80000000u
#define GI2_MAX_TABLE      (512u * 1024 * 1024)
#define GI2_MIN_LITERAL    2
#define GI2_MAX_BRANCHES   16

#define GI2_PAT_LITERAL    0x01    /* gates a regex */
#define GI2_PAT_LEFT       0x02    /* a word boundary is needed before */
#define GI2_PAT_RIGHT      0x04    /* and after */


typedef struct {
    unsigned char        *data;
    size_t                len;
    unsigned              rule;
    unsigned              flags;
    uint32_t              next;      /* next pattern ending here, + 1 */
} gi2_pat_t;

typedef struct {
    uint32_t              child;     /* first child, + 1 */
    uint32_t              sibling;   /* next sibling, + 1 */
    unsigned char         byte;
} gi2_node_t;

struct gi2_ruleset_s {
    gi2_rule_t           *rules;
    size_t                nrules;
    size_t                arules;

    gi2_pat_t            *pats;
    size_t                npats;
    size_t                apats;

    gi2_node_t           *nodes;     /* the trie while building */
    size_t                nnodes;
    size_t                anodes;

    uint32_t             *delta;     /* nstates x nclasses */
    uint32_t             *out;       /* first pattern ending here, + 1 */
    uint32_t             *dict;      /* nearest suffix state with output */
    unsigned              nclasses;
    size_t                maxlen;    /* the longest pattern */
    unsigned char         cls[256];

    unsigned char        *cand;      /* per match: regexes to run */
    unsigned char        *seen;      /* per match: rules hit */

    pcre2_match_data     *md;
    pcre2_match_context  *mctx;
    pcre2_jit_stack      *jit;

    size_t                memory;
    int                   errors;    /* regexes that failed last match */
    unsigned              compiled:1;
};


static int gi2_grow(void **p, size_t *alloc, size_t n, size_t size);
static int gi2_add_rule(gi2_ruleset_t *rs, const char *id, int action,
    const char *category, char *err, size_t errlen);
static int gi2_add_pattern(gi2_ruleset_t *rs, unsigned rule,
    const unsigned char *s, size_t len, unsigned flags);
static long gi2_skip_group(const unsigned char *p, size_t len, size_t i);
static long gi2_skip_class(const unsigned char *p, size_t len, size_t i);
static long gi2_skip_posix(const unsigned char *p, size_t len, size_t i);
static long gi2_skip_comments(const unsigned char *p, size_t len,
    size_t i);
static long gi2_skip_quantifier(const unsigned char *p, size_t len,
    size_t i);
static int gi2_is_word_char(int32_t c);
static int gi2_is_continuous_script(int32_t c);
static int32_t gi2_char_before(const unsigned char *text, size_t pos);
static int32_t gi2_char_at(const unsigned char *text, size_t len,
    size_t pos);
static void *gi2_malloc(void *data, size_t size);
static void gi2_free(void *data, void *p);


static char *
gi2_strdup(const char *s)
{
    size_t   n;
    char    *d;

    n = strlen(s) + 1;
    d = malloc(n);
    if (d != NULL) {
        memcpy(d, s, n);
    }

    return d;
}


gi2_ruleset_t *
gi2_ruleset_create(void)
{
    gi2_ruleset_t  *rs;

    rs = calloc(1, sizeof(gi2_ruleset_t));

    return rs;
}


void
gi2_ruleset_free(gi2_ruleset_t *rs)
{
    size_t  i;

    if (rs == NULL) {
        return;
    }

    for (i = 0; i < rs->nrules; i++) {
        free((char *) rs->rules[i].id);
        free((char *) rs->rules[i].category);
        pcre2_code_free(rs->rules[i].re);
    }

    for (i = 0; i < rs->npats; i++) {
        free(rs->pats[i].data);
    }

    free(rs->rules);
    free(rs->pats);
    free(rs->nodes);
    free(rs->delta);
    free(rs->out);
    free(rs->dict);
    free(rs->cand);
    free(rs->seen);
    pcre2_match_data_free(rs->md);
    pcre2_match_context_free(rs->mctx);
    pcre2_jit_stack_free(rs->jit);
    free(rs);
}


size_t
gi2_ruleset_count(gi2_ruleset_t *rs)
{
    return rs->nrules;
}


const gi2_rule_t *
gi2_ruleset_rule(gi2_ruleset_t *rs, size_t i)
{
    return (i < rs->nrules) ? &rs->rules[i] : NULL;
}


int
gi2_ruleset_errors(gi2_ruleset_t *rs)
{
    return rs->errors;
}


size_t
gi2_ruleset_memory(gi2_ruleset_t *rs)
{
    return rs->memory;
}


static int
gi2_grow(void **p, size_t *alloc, size_t n, size_t size)
{
    size_t   a;
    void    *np;

    if (n < *alloc) {
        return GI2_OK;
    }

    a = *alloc ? *alloc * 2 : 16;
    np = realloc(*p, a * size);
    if (np == NULL) {
        return GI2_ENOMEM;
    }

    *p = np;
    *alloc = a;

    return GI2_OK;
}


static int
gi2_add_rule(gi2_ruleset_t *rs, const char *id, int action,
    const char *category, char *err, size_t errlen)
{
    gi2_rule_t  *r;

    if (rs->compiled) {
        snprintf(err, errlen, "rule set already compiled");
        return GI2_ERROR;
    }

    if (gi2_grow((void **) &rs->rules, &rs->arules, rs->nrules,
                 sizeof(gi2_rule_t)) != GI2_OK)
    {
        snprintf(err, errlen, "out of memory");
        return GI2_ERROR;
    }

    r = &rs->rules[rs->nrules];
    memset(r, 0, sizeof(gi2_rule_t));

    r->id = gi2_strdup(id);
    r->category = gi2_strdup(category);
    r->action = action;

    if (r->id == NULL || r->category == NULL) {
        free((char *) r->id);
        free((char *) r->category);
        snprintf(err, errlen, "out of memory");
        return GI2_ERROR;
    }

    return (int) rs->nrules++;
}


static pcre2_code *
gi2_regex_compile(const unsigned char *pattern, size_t len, char *err,
    size_t errlen)
{
    int           rc;
    size_t        off;
    pcre2_code   *re;
    PCRE2_UCHAR   msg[256];

    re = pcre2_compile(pattern, len,
                       PCRE2_UTF | PCRE2_UCP | PCRE2_CASELESS
                       | PCRE2_NEVER_BACKSLASH_C,
                       &rc, &off, NULL);
    if (re == NULL) {
        pcre2_get_error_message(rc, msg, sizeof(msg));
        snprintf(err, errlen, "%s at offset %zu", (char *) msg, off);
    }

    return re;
}


int
gi2_regex_check(const unsigned char *pattern, size_t len, char *err,
    size_t errlen)
{
    pcre2_code  *re;

    re = gi2_regex_compile(pattern, len, err, errlen);
    if (re == NULL) {
        return GI2_ERROR;
    }

    pcre2_code_free(re);

    return GI2_OK;
}


int
gi2_ruleset_add_regex(gi2_ruleset_t *rs, const char *id, int action,
    const char *category, const unsigned char *pattern, size_t len,
    char *err, size_t errlen)
{
    int              idx, n, i;
    pcre2_code      *re;
    unsigned char   *buf;
    gi2_str_t        lits[GI2_MAX_BRANCHES];

    re = gi2_regex_compile(pattern, len, err, errlen);
    if (re == NULL) {
        return GI2_ERROR;
    }

    /* without JIT the interpreter still matches, only slower */
    (void) pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);

    idx = gi2_add_rule(rs, id, action, category, err, errlen);
    if (idx < 0) {
        pcre2_code_free(re);
        return GI2_ERROR;
    }

    rs->rules[idx].re = re;

    buf = malloc(len + 1);
    if (buf == NULL) {
        snprintf(err, errlen, "out of memory");
        return GI2_ERROR;
    }

    n = gi2_regex_literals(pattern, len, lits, GI2_MAX_BRANCHES, buf);

    for (i = 0; i < n; i++) {
        if (gi2_add_pattern(rs, idx, lits[i].data, lits[i].len,
                            GI2_PAT_LITERAL) != GI2_OK)
        {
            free(buf);
            snprintf(err, errlen, "out of memory");
            return GI2_ERROR;
        }
    }

    free(buf);

    rs->rules[idx].prefilter = (n > 0);

    return idx;
}


int
gi2_ruleset_add_keywords(gi2_ruleset_t *rs, const char *id, int action,
    const char *category, char *err, size_t errlen)
{
    int  idx;

    idx = gi2_add_rule(rs, id, action, category, err, errlen);
    if (idx >= 0) {
        rs->rules[idx].keywords = 1;
    }

    return idx;
}


int
gi2_ruleset_add_keyword(gi2_ruleset_t *rs, int rule, const unsigned char *kw,
    size_t len, char *err, size_t errlen)
{
    int           rc;
    unsigned      flags;
    int32_t       c;
    gi2_str_t     norm, skel;
    gi2_alloc_t   a;

    if (rule < 0 || (size_t) rule >= rs->nrules
        || !rs->rules[rule].keywords || rs->compiled)
    {
        snprintf(err, errlen, "not a keyword list");
        return GI2_ERROR;
    }

    a.alloc = gi2_malloc;
    a.data = NULL;
    a.free = gi2_free;

    rc = gi2_normalize(kw, len, &norm, &a);
    if (rc == GI2_EINVAL) {
        snprintf(err, errlen, "invalid UTF-8");
        return GI2_ERROR;
    }

    if (rc != GI2_OK) {
        snprintf(err, errlen, "out of memory");
        return GI2_ERROR;
    }

    if (norm.len == 0) {
        free((void *) norm.data);
        snprintf(err, errlen, "empty after normalization");
        return GI2_ERROR;
    }

    flags = 0;

    c = gi2_char_at(norm.data, norm.len, 0);
    if (gi2_is_word_char(c) && !gi2_is_continuous_script(c)) {
        flags |= GI2_PAT_LEFT;
    }

    c = gi2_char_before(norm.data, norm.len);
    if (gi2_is_word_char(c) && !gi2_is_continuous_script(c)) {
        flags |= GI2_PAT_RIGHT;
    }

    rc = gi2_add_pattern(rs, rule, norm.data, norm.len, flags);

    /*
     * Prompts are matched in their skeleton form too (gi2_ruleset_screen):
     * a keyword spelled with letters that have look-alikes ("секс") is
     * added in its skeleton form as well, so that the same word written
     * with Latin look-alikes mixed in is found.
     */

    if (rc == GI2_OK) {
        rc = gi2_skeleton(norm.data, norm.len, &skel, &a);

        if (rc == GI2_OK && skel.len > 0) {
            rc = gi2_add_pattern(rs, rule, skel.data, skel.len, flags);
            free((void *) skel.data);
        }
    }

    free((void *) norm.data);

    if (rc != GI2_OK) {
        snprintf(err, errlen, "out of memory");
        return GI2_ERROR;
    }

    return GI2_OK;
}


static void *
gi2_malloc(void *data, size_t size)
{
    (void) data;

    return malloc(size);
}


static void
gi2_free(void *data, void *p)
{
    (void) data;

    free(p);
}


static int
gi2_add_pattern(gi2_ruleset_t *rs, unsigned rule, const unsigned char *s,
    size_t len, unsigned flags)
{
    gi2_pat_t  *p;

    if (gi2_grow((void **) &rs->pats, &rs->apats, rs->npats,
                 sizeof(gi2_pat_t)) != GI2_OK)
    {
        return GI2_ENOMEM;
    }

    p = &rs->pats[rs->npats];

    p->data = malloc(len);
    if (p->data == NULL) {
        return GI2_ENOMEM;
    }

    memcpy(p->data, s, len);
    p->len = len;
    p->rule = rule;
    p->flags = flags;
    p->next = 0;

    rs->npats++;

    return GI2_OK;
}


/* the trie, then the DFA: goto where the trie has an edge, else fail's */

static long
gi2_trie_child(gi2_ruleset_t *rs, uint32_t node, unsigned char b, int add)
{
    uint32_t     c;
    gi2_node_t  *n;

    for (c = rs->nodes[node].child; c; c = rs->nodes[c - 1].sibling) {
        if (rs->nodes[c - 1].byte == b) {
            return c - 1;
        }
    }

    if (!add) {
        return -1;
    }

    if (gi2_grow((void **) &rs->nodes, &rs->anodes, rs->nnodes,
                 sizeof(gi2_node_t)) != GI2_OK)
    {
        return -2;
    }

    n = &rs->nodes[rs->nnodes];
    n->child = 0;
    n->byte = b;
    n->sibling = rs->nodes[node].child;
    rs->nodes[node].child = (uint32_t) rs->nnodes + 1;

    return (long) rs->nnodes++;
}


int
gi2_ruleset_compile(gi2_ruleset_t *rs, char *err, size_t errlen)
{
    size_t       i, j, k, head, tail, ns, nc;
    uint32_t     s, u, v, f, c, *queue, *fail, *newid, *delta, *out, *dict;
    long         r;
    gi2_pat_t   *p;

    if (rs->compiled) {
        return GI2_OK;
    }

    rs->compiled = 1;

    rs->cand = calloc(rs->nrules + 1, 1);
    rs->seen = calloc(rs->nrules + 1, 1);
    rs->md = pcre2_match_data_create(1, NULL);
    rs->mctx = pcre2_match_context_create(NULL);
    rs->jit = pcre2_jit_stack_create(32 * 1024, 1024 * 1024, NULL);

    if (rs->cand == NULL || rs->seen == NULL || rs->md == NULL
        || rs->mctx == NULL || rs->jit == NULL)
    {
        snprintf(err, errlen, "out of memory");
        return GI2_ERROR;
    }

    pcre2_jit_stack_assign(rs->mctx, NULL, rs->jit);

    if (rs->npats == 0) {
        return GI2_OK;
    }

    /* byte classes: 0 for bytes no pattern has */

    memset(rs->cls, 0, sizeof(rs->cls));

    for (i = 0; i < rs->npats; i++) {
        if (rs->pats[i].len > rs->maxlen) {
            rs->maxlen = rs->pats[i].len;
        }

        for (j = 0; j < rs->pats[i].len; j++) {
            rs->cls[rs->pats[i].data[j]] = 1;
        }
    }

    nc = 1;

    for (i = 0; i < 256; i++) {
        if (rs->cls[i]) {
            rs->cls[i] = (unsigned char) nc++;
        }
    }

    rs->nclasses = (unsigned) nc;

    /* the trie; node 0 is the root */

    rs->nnodes = 0;

    if (gi2_grow((void **) &rs->nodes, &rs->anodes, 0, sizeof(gi2_node_t))
        != GI2_OK)
    {
        snprintf(err, errlen, "out of memory");
        return GI2_ERROR;
    }

    memset(&rs->nodes[0], 0, sizeof(gi2_node_t));
    rs->nnodes = 1;

    /* the end state of each pattern goes into its "next" for now */

    for (i = 0; i < rs->npats; i++) {
        p = &rs->pats[i];
        s = 0;

        for (j = 0; j < p->len; j++) {
            r = gi2_trie_child(rs, s, p->data[j], 1);
            if (r < 0) {
                snprintf(err, errlen, "out of memory");
                return GI2_ERROR;
            }

            s = (uint32_t) r;
        }

        p->next = s;
    }

    ns = rs->nnodes;

    if (ns >= GI2_OUT_BIT || ns * nc > GI2_MAX_TABLE / sizeof(uint32_t)) {
        snprintf(err, errlen, "too many keywords: %zu states", ns);
        return GI2_ERROR;
    }

    rs->delta = malloc(ns * nc * sizeof(uint32_t));
    rs->out = calloc(ns, sizeof(uint32_t));
    rs->dict = calloc(ns, sizeof(uint32_t));
    queue = malloc(ns * sizeof(uint32_t));
    fail = calloc(ns, sizeof(uint32_t));

    if (rs->delta == NULL || rs->out == NULL || rs->dict == NULL
        || queue == NULL || fail == NULL)
    {
        free(queue);
        free(fail);
        snprintf(err, errlen, "out of memory");
        return GI2_ERROR;
    }

    rs->memory = ns * nc * sizeof(uint32_t) + 2 * ns * sizeof(uint32_t);

    for (i = rs->npats; i > 0; i--) {
        p = &rs->pats[i - 1];
        s = p->next;
        p->next = rs->out[s];
        rs->out[s] = (uint32_t) i;
    }

    /* breadth first: a state's fail link is complete before its children */

    head = 0;
    tail = 0;

    for (k = 0; k < nc; k++) {
        rs->delta[k] = 0;
    }

    for (c = rs->nodes[0].child; c; c = rs->nodes[c - 1].sibling) {
        v = c - 1;
        rs->delta[rs->cls[rs->nodes[v].byte]] = v;
        fail[v] = 0;
        queue[tail++] = v;
    }

    while (head < tail) {
        u = queue[head++];
        f = fail[u];

        memcpy(&rs->delta[(size_t) u * nc], &rs->delta[(size_t) f * nc],
               nc * sizeof(uint32_t));

        rs->dict[u] = rs->out[f] ? f : rs->dict[f];

        for (c = rs->nodes[u].child; c; c = rs->nodes[c - 1].sibling) {
            v = c - 1;
            k = rs->cls[rs->nodes[v].byte];
            fail[v] = rs->delta[(size_t) f * nc + k];
            rs->delta[(size_t) u * nc + k] = v;
            queue[tail++] = v;
        }
    }

    /*
     * States are renumbered in breadth-first order: the shallow states a
     * clean prompt keeps returning to share a few cache lines, however
     * many deep keyword states follow them.
     */

    newid = fail;
    newid[0] = 0;

    for (i = 0; i < tail; i++) {
        newid[queue[i]] = (uint32_t) (i + 1);
    }

    delta = malloc(ns * nc * sizeof(uint32_t));
    out = calloc(ns, sizeof(uint32_t));
    dict = calloc(ns, sizeof(uint32_t));

    if (delta == NULL || out == NULL || dict == NULL) {
        free(delta);
        free(out);
        free(dict);
        free(queue);
        free(fail);
        snprintf(err, errlen, "out of memory");
        return GI2_ERROR;
    }

    for (u = 0; u < ns; u++) {
        for (k = 0; k < nc; k++) {
            v = rs->delta[(size_t) u * nc + k];
            delta[(size_t) newid[u] * nc + k] = newid[v];
        }

        out[newid[u]] = rs->out[u];
        dict[newid[u]] = newid[rs->dict[u]];
    }

    free(rs->delta);
    free(rs->out);
    free(rs->dict);
    rs->delta = delta;
    rs->out = out;
    rs->dict = dict;

    /*
     * Transitions hold the target's row offset (state x classes), so the
     * scan needs no multiply; the top bit marks a state that ends a
     * pattern.
     */

    for (i = 0; i < ns * nc; i++) {
        v = rs->delta[i];
        rs->delta[i] = (uint32_t) (v * nc);

        if (rs->out[v] || rs->dict[v]) {
            rs->delta[i] |= GI2_OUT_BIT;
        }
    }

    free(queue);
    free(fail);
    free(rs->nodes);
    rs->nodes = NULL;
    rs->anodes = 0;
    rs->nnodes = 0;

    return GI2_OK;
}


static void
gi2_output(gi2_ruleset_t *rs, uint32_t s, const unsigned char *text,
    size_t len, size_t end)
{
    uint32_t    x;
    size_t      start;
    gi2_pat_t  *p;

    for ( ; s; s = rs->dict[s]) {
        for (x = rs->out[s]; x; x = p->next) {
            p = &rs->pats[x - 1];

            if (p->flags & GI2_PAT_LITERAL) {
                rs->cand[p->rule] = 1;
                continue;
            }

            if (rs->seen[p->rule]) {
                continue;
            }

            start = end - p->len;

            if ((p->flags & GI2_PAT_LEFT) && start > 0
                && gi2_is_word_char(gi2_char_before(text, start)))
            {
                continue;
            }

            if ((p->flags & GI2_PAT_RIGHT) && end < len
                && gi2_is_word_char(gi2_char_at(text, len, end)))
            {
                continue;
            }

            rs->seen[p->rule] = 1;
        }
    }
}


int
gi2_ruleset_match(gi2_ruleset_t *rs, const unsigned char *text, size_t len,
    unsigned *hits)
{
    int             rc, n;
    size_t          i, j, mid, nc;
    uint32_t        s, t;
    gi2_rule_t     *r;
    const uint32_t *delta;

    memset(rs->cand, 0, rs->nrules);
    memset(rs->seen, 0, rs->nrules);
    rs->errors = 0;

    if (rs->delta != NULL) {
        delta = rs->delta;
        nc = rs->nclasses;
        s = 0;
        i = 0;

        /*
         * Each step waits for the previous load, so two scans run side by
         * side: the second starts maxlen - 1 bytes before the middle and
         * owns every match that ends from the middle on.  A match ending
         * in the overlap is seen twice, which the flags make harmless.
         */

        if (len >= 4 * rs->maxlen + 64) {
            mid = len / 2;
            j = mid - (rs->maxlen - 1);
            t = 0;

            for ( /* void */ ; i < mid; i++, j++) {
                s = delta[s + rs->cls[text[i]]];
                t = delta[t + rs->cls[text[j]]];

                if ((s | t) & GI2_OUT_BIT) {
                    if (s & GI2_OUT_BIT) {
                        s &= ~GI2_OUT_BIT;
                        gi2_output(rs, s / nc, text, len, i + 1);
                    }

                    if (t & GI2_OUT_BIT) {
                        t &= ~GI2_OUT_BIT;
                        gi2_output(rs, t / nc, text, len, j + 1);
                    }
                }
            }

            /* the second scan carries on to the end */
            i = j;
            s = t;
        }

        for ( /* void */ ; i < len; i++) {
            s = delta[s + rs->cls[text[i]]];

            if (s & GI2_OUT_BIT) {
                s &= ~GI2_OUT_BIT;
                gi2_output(rs, s / nc, text, len, i + 1);
            }
        }
    }

    n = 0;

    for (i = 0; i < rs->nrules; i++) {
        r = &rs->rules[i];

        if (r->keywords) {
            if (rs->seen[i]) {
                hits[n++] = (unsigned) i;
            }

            continue;
        }

        if (r->prefilter && !rs->cand[i]) {
            continue;
        }

        rc = pcre2_match(r->re, text, len, 0, PCRE2_NO_UTF_CHECK, rs->md,
                         rs->mctx);

        /* a resource limit counts as a match: never fail open */

        if (rc != PCRE2_ERROR_NOMATCH) {
            hits[n++] = (unsigned) i;

            if (rc < 0) {
                rs->errors++;
            }
        }
    }

    return n;
}


int
gi2_ruleset_screen(gi2_ruleset_t *rs, const unsigned char *prompt,
    size_t len, unsigned *hits, gi2_str_t *norm, gi2_alloc_t *a)
{
    int         rc, n, k, i, j, m, errors;
    unsigned   *more, *all;
    gi2_str_t   nf, sk;

    rc = gi2_normalize(prompt, len, &nf, a);
    if (rc != GI2_OK) {
        return rc;
    }

    if (norm != NULL) {
        *norm = nf;
    }

    n = gi2_ruleset_match(rs, nf.data, nf.len, hits);
    if (n < 0 || n == (int) rs->nrules) {
        return n;
    }

    rc = gi2_skeleton(nf.data, nf.len, &sk, a);
    if (rc != GI2_OK) {
        return rc;
    }

    if (sk.len == 0) {
        return n;
    }

    more = a->alloc(a->data, 2 * (rs->nrules + 1) * sizeof(unsigned));
    if (more == NULL) {
        return GI2_ENOMEM;
    }

    all = more + rs->nrules + 1;
    errors = rs->errors;

    k = gi2_ruleset_match(rs, sk.data, sk.len, more);

    rs->errors += errors;

    if (k < 0) {
        return k;
    }

    /* both lists are in rule order: merged, each rule once */

    i = 0;
    j = 0;
    m = 0;

    while (i < n || j < k) {
        if (j == k || (i < n && hits[i] < more[j])) {
            all[m++] = hits[i++];

        } else if (i == n || more[j] < hits[i]) {
            all[m++] = more[j++];

        } else {
            all[m++] = hits[i++];
            j++;
        }
    }

    memcpy(hits, all, m * sizeof(unsigned));

    if (a->free) {
        a->free(a->data, more);
        a->free(a->data, (void *) sk.data);
    }

    return m;
}


/* literal extraction from a regex, conservative: when unsure, give up */

int
gi2_regex_literals(const unsigned char *p, size_t len, gi2_str_t *lits,
    size_t max, unsigned char *buf)
{
    size_t          i, w, run, best, bestlen, nb;
    long            j;
    unsigned char   c, q;

    i = 0;
    w = 0;
    run = 0;
    best = 0;
    bestlen = 0;
    nb = 0;

    /* (*ACCEPT), even deep in a group, ends the whole match early */

    for (i = 0; i + 2 < len; i++) {
        if (p[i] == '(' && p[i + 1] == '*' && p[i + 2] == 'A') {
            return 0;
        }
    }

    i = 0;

#define gi2_close_run()                                                       \
    if (w - run > bestlen) {                                                  \
        best = run;                                                           \
        bestlen = w - run;                                                    \
    }                                                                         \
    run = w

    for ( ;; ) {
        if (i == len || p[i] == '|') {
            gi2_close_run();

            if (bestlen < GI2_MIN_LITERAL || nb == max) {
                return 0;
            }

            lits[nb].data = buf + best;
            lits[nb].len = bestlen;
            nb++;

            if (i == len) {
                return (int) nb;
            }

            /* the next branch writes after what is kept */
            i++;
            run = best = w;
            bestlen = 0;
            continue;
        }

        c = p[i];

        switch (c) {

        case '(':
            if (i + 2 < len && p[i + 1] == '?' && p[i + 2] == '#') {
                while (i < len && p[i] != ')') {
                    i++;
                }

                if (i == len) {
                    return 0;
                }

                gi2_close_run();
                i++;
                continue;
            }

            if (i + 1 < len && p[i + 1] == '?') {
                for (j = (long) i + 2; (size_t) j < len; j++) {
                    q = p[j];

                    if (q == 'x' || q == 'n') {
                        return 0;
                    }

                    if (!((q >= 'a' && q <= 'z') || (q >= 'A' && q <= 'Z')
                          || q == '-' || q == '^'))
                    {
                        break;
                    }
                }
            }

            j = gi2_skip_group(p, len, i);
            if (j < 0) {
                return 0;
            }

            gi2_close_run();
            i = (size_t) j;
            continue;

        case ')':
            return 0;

        case '[':
            j = gi2_skip_class(p, len, i);
            if (j < 0) {
                return 0;
            }

            gi2_close_run();
            i = (size_t) j;
            continue;

        case '{':
            j = gi2_skip_quantifier(p, len, i);
            if (j < 0) {
                return 0;
            }

            gi2_close_run();
            i = (size_t) j;
            continue;

        case '*':
        case '+':
        case '?':
        case '.':
        case '^':
        case '$':
            gi2_close_run();
            i++;
            continue;

        case '\\':
            if (i + 1 == len) {
                return 0;
            }

            q = p[i + 1];

            if (q >= 0x80) {
                return 0;
            }

            if ((q >= '0' && q <= '9') || (q >= 'a' && q <= 'z')
                || (q >= 'A' && q <= 'Z'))
            {
                if (strchr("xocpPNgkQEuU0123456789", q) != NULL) {
                    return 0;
                }

                gi2_close_run();
                i += 2;
                continue;
            }

            c = q;
            i += 2;
            break;

        default:
            if (c >= 0x80 || c < 0x20) {
                gi2_close_run();
                i++;
                continue;
            }

            i++;
            break;
        }

        /*
         * c is a literal character: is it optional?  PCRE2 lets comments
         * stand between an item and its quantifier: "a(?#x)?"
         */

        j = gi2_skip_comments(p, len, i);
        if (j < 0) {
            return 0;
        }

        if ((size_t) j < len && (p[j] == '*' || p[j] == '?' || p[j] == '{'))
        {
            gi2_close_run();
            continue;
        }

        if (c >= 'A' && c <= 'Z') {
            c |= 0x20;
        }

        buf[w++] = c;

        if ((size_t) j < len && p[j] == '+') {
            gi2_close_run();
        }
    }

#undef gi2_close_run
}


static long
gi2_skip_class(const unsigned char *p, size_t len, size_t i)
{
    long  j;

    i++;

    if (i < len && p[i] == '^') {
        i++;
    }

    if (i < len && p[i] == ']') {
        i++;
    }

    while (i < len) {
        if (p[i] == '\\') {
            if (i + 1 < len && (p[i + 1] == 'Q' || p[i + 1] == 'E')) {
                return -1;
            }

            i += 2;
            continue;
        }

        if (p[i] == '[' && i + 1 < len
            && (p[i + 1] == ':' || p[i + 1] == '.' || p[i + 1] == '='))
        {
            j = gi2_skip_posix(p, len, i + 1);

            if (j > 0) {
                i = (size_t) j;
                continue;
            }

            /* not a POSIX class: the '[' is an ordinary member */
        }

        if (p[i] == ']') {
            return (long) i + 1;
        }

        i++;
    }

    return -1;
}


/* as PCRE2's check_posix_syntax(): "[:alpha:]", else not a class name */

static long
gi2_skip_posix(const unsigned char *p, size_t len, size_t i)
{
    unsigned char  t;

    t = p[i++];

    for ( ; i + 1 < len; i++) {
        if (p[i] == '\\' && (p[i + 1] == ']' || p[i + 1] == '\\')) {
            i++;
            continue;
        }

        if ((p[i] == '[' && p[i + 1] == t) || p[i] == ']') {
            return -1;
        }

        if (p[i] == t && p[i + 1] == ']') {
            return (long) i + 2;
        }
    }

    return -1;
}


/* "(?#...)" runs: PCRE2 ends each at the first ')', escaped or not */

static long
gi2_skip_comments(const unsigned char *p, size_t len, size_t i)
{
    while (i + 2 < len && p[i] == '(' && p[i + 1] == '?' && p[i + 2] == '#')
    {
        while (i < len && p[i] != ')') {
            i++;
        }

        if (i == len) {
            return -1;
        }

        i++;
    }

    return (long) i;
}


static long
gi2_skip_group(const unsigned char *p, size_t len, size_t i)
{
    int   depth;
    long  j;

    depth = 0;

    while (i < len) {
        switch (p[i]) {

        case '\\':
            if (i + 1 < len && (p[i + 1] == 'Q' || p[i + 1] == 'E')) {
                return -1;
            }

            i += 2;
            continue;

        case '[':
            j = gi2_skip_class(p, len, i);
            if (j < 0) {
                return -1;
            }

            i = (size_t) j;
            continue;

        case '(':
            if (i + 2 < len && p[i + 1] == '?' && p[i + 2] == '#') {
                j = gi2_skip_comments(p, len, i);
                if (j < 0) {
                    return -1;
                }

                i = (size_t) j;
                continue;
            }

            /* extended mode: '#' comments and spaces are not parsed here */

            if (i + 1 < len && p[i + 1] == '?') {
                for (j = (long) i + 2; (size_t) j < len; j++) {
                    if (p[j] == 'x') {
                        return -1;
                    }

                    if (!((p[j] >= 'a' && p[j] <= 'z')
                          || (p[j] >= 'A' && p[j] <= 'Z')
                          || p[j] == '-' || p[j] == '^'))
                    {
                        break;
                    }
                }
            }

            depth++;
            break;

        case ')':
            if (--depth == 0) {
                return (long) i + 1;
            }

            break;
        }

        i++;
    }

    return -1;
}


static long
gi2_skip_quantifier(const unsigned char *p, size_t len, size_t i)
{
    for (i++; i < len; i++) {
        if (p[i] == '}') {
            return (long) i + 1;
        }

        if (!((p[i] >= '0' && p[i] <= '9') || p[i] == ',' || p[i] == ' ')) {
            return -1;
        }
    }

    return -1;
}


/* word boundaries for keywords, as \b with Unicode properties sees them */

static int
gi2_is_word_char(int32_t c)
{
    int  cat;

    if (c < 0) {
        return 0;
    }

    if (c < 0x80) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
               || (c >= '0' && c <= '9') || c == '_';
    }

    cat = utf8proc_category(c);

    /* letters and digits: a combining mark does not extend a word */

    return (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO)
           || (cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO)
           || cat == UTF8PROC_CATEGORY_PC;
}


/* scripts written without spaces between words: no boundary needed */

static int
gi2_is_continuous_script(int32_t c)
{
    return (c >= 0x0e00 && c <= 0x0eff)        /* Thai, Lao */
           || (c >= 0x0f00 && c <= 0x0fff)     /* Tibetan */
           || (c >= 0x1000 && c <= 0x109f)     /* Myanmar */
           || (c >= 0x1780 && c <= 0x17ff)     /* Khmer */
           || (c >= 0x2e80 && c <= 0x2fdf)     /* CJK radicals */
           || (c >= 0x3005 && c <= 0x3007)
           || (c >= 0x3021 && c <= 0x3029)
           || (c >= 0x3040 && c <= 0x31ff)     /* kana, bopomofo */
           || (c >= 0x3400 && c <= 0x4dbf)
           || (c >= 0x4e00 && c <= 0x9fff)
           || (c >= 0xf900 && c <= 0xfaff)
           || (c >= 0x20000 && c <= 0x3ffff);
}


static int32_t
gi2_char_at(const unsigned char *text, size_t len, size_t pos)
{
    utf8proc_int32_t  c;

    if (pos >= len) {
        return -1;
    }

    if (text[pos] < 0x80) {
        return text[pos];
    }

    if (utf8proc_iterate(text + pos, (utf8proc_ssize_t) (len - pos), &c)
        < 0)
    {
        return -1;
    }

    return c;
}


static int32_t
gi2_char_before(const unsigned char *text, size_t pos)
{
    size_t  start;

    if (pos == 0) {
        return -1;
    }

    start = pos - 1;

    while (start > 0 && (text[start] & 0xc0) == 0x80 && pos - start < 4) {
        start--;
    }

    return gi2_char_at(text, pos, start);
}
