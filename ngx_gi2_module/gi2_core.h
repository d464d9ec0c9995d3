/*
 * ngx_gi2_module: the nginx-free core.
 *
 * Normalizer, JSON request parser and rule matcher.  Nothing here knows
 * about nginx, so unit tests and fuzzers call it directly.  Memory that must
 * outlive a call comes from the caller's allocator (an nginx pool in the
 * module, malloc in tests).
 */

#ifndef _GI2_CORE_H_INCLUDED_
#define _GI2_CORE_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


/* word-at-a-time scanning: a byte of ones, and the top bit of each byte */
#define GI2_ONES          0x0101010101010101ULL
#define GI2_HIGHS         0x8080808080808080ULL


#define GI2_OK            0
#define GI2_ERROR        -1
#define GI2_EINVAL       -2
#define GI2_ENOMEM       -3


typedef struct {
    void                *(*alloc)(void *data, size_t size);
    void                 *data;
    void                 (*free)(void *data, void *p);  /* NULL: a pool */
} gi2_alloc_t;


typedef struct {
    const unsigned char  *data;
    size_t                len;
} gi2_str_t;


/* normalizer */

/*
 * NFKC, case fold, default-ignorable and format characters removed,
 * controls and whitespace runs collapsed to one space, trimmed.  Returns
 * GI2_EINVAL for invalid UTF-8.  The result is NUL-terminated.
 */
int gi2_normalize(const unsigned char *in, size_t len, gi2_str_t *out,
    gi2_alloc_t *a);

/*
 * The skeleton of a normal form (from gi2_normalize): accents stripped,
 * letters that look Latin (Cyrillic, Greek, ...) replaced by the Latin
 * ones.  out->len is 0 when it is the normal form itself (always for
 * ASCII).  NUL-terminated, from a.
 */
int gi2_skeleton(const unsigned char *norm, size_t len, gi2_str_t *out,
    gi2_alloc_t *a);

/*
 * 1 when normalization changes a pattern beyond letter case (so a literal
 * in it could never match a normalized prompt), else 0.
 */
int gi2_pattern_folds(const unsigned char *p, size_t len);

/* strict UTF-8 check: no overlongs, no surrogates, nothing past U+10FFFF */
int gi2_utf8_valid(const unsigned char *p, size_t len);


/* JSON request parser */

#define GI2_MAX_DEPTH    128

typedef enum {
    GI2_F_PROMPT = 0,
    GI2_F_MODERATION,
    GI2_F_MODEL,
    GI2_F_N,
    GI2_F_SIZE,
    GI2_F_QUALITY,
    GI2_F_USER,
    GI2_F_STREAM,
    GI2_F_LAST
} gi2_field_e;

typedef enum {
    GI2_T_NONE = 0,       /* absent */
    GI2_T_STRING,
    GI2_T_NUMBER,
    GI2_T_BOOL,
    GI2_T_NULL,
    GI2_T_COMPOUND        /* object or array */
} gi2_type_e;

/* the longest prompt (or Responses API text) screened: 1 MiB */
#define GI2_PROMPT_MAX   1048576

typedef struct {
    gi2_type_e            type;
    gi2_str_t             value;      /* decoded string or number text */
    uint64_t              key_end;    /* body offset just after the key */
    uint64_t              value_end;  /* body offset just after a scalar */

    /* multipart only: the value's bytes, and the whole part's */
    uint64_t              value_start;
    uint64_t              part_start; /* its delimiter's "--" */
    uint64_t              part_end;   /* the next delimiter's "--" */
} gi2_field_t;

/* an image or mask part of a multipart body */
typedef struct {
    unsigned char         sha256[32];
    uint64_t              bytes;
    unsigned              mask:1;
} gi2_input_t;

typedef enum {
    GI2_REQ_IMAGES = 0,   /* images API JSON: a top-level prompt */
    GI2_REQ_RESPONSES     /* Responses API: tools, input, instructions */
} gi2_req_mode_e;

typedef struct {
    gi2_field_t           field[GI2_F_LAST];
    uint64_t              length;     /* bytes fed */

    gi2_input_t          *input;      /* multipart: images, mask */
    unsigned              ninputs;
    unsigned              image_tools; /* responses: image_generation */
    unsigned              multipart:1;

    /* set when parsing fails: a message for the client, and the param */
    const char           *error;
    const char           *param;
} gi2_req_t;

typedef struct gi2_req_parser_s  gi2_req_parser_t;

gi2_req_parser_t *gi2_req_parser_create(gi2_req_t *req, gi2_alloc_t *a);

/*
 * GI2_REQ_RESPONSES: the policy fields of a Responses API request.  The
 * moderation field is that of the image_generation tool (its offsets
 * too), size and quality are the tool's, model, user and stream the top
 * level's; the prompt is the text the caller gives the model, joined by
 * newlines: "instructions", "input" when a string, and within "input"
 * (and the string values of "prompt"."variables") every string under a
 * "content" or "text" key.  image_tools counts the image_generation
 * tools; without one the request is not subject to the policy.
 */
gi2_req_parser_t *gi2_req_parser_create_mode(gi2_req_t *req, gi2_alloc_t *a,
    gi2_req_mode_e mode);
int gi2_req_parser_feed(gi2_req_parser_t *p, const unsigned char *buf,
    size_t len);
int gi2_req_parser_finish(gi2_req_parser_t *p);
void gi2_req_parser_destroy(gi2_req_parser_t *p);

const char *gi2_field_name(gi2_field_e f);

/*
 * Given bytes that end with the closing quote of a JSON string, the index
 * of its opening quote, or -1.
 */
long gi2_json_string_start(const unsigned char *win, size_t len);


/* rules */

#define GI2_ACTION_DENY   1
#define GI2_ACTION_FLAG   2

typedef struct {
    const char           *id;
    const char           *category;
    int                   action;
    unsigned              keywords:1;  /* a gi2_keywords list */
    unsigned              prefilter:1; /* a regex gated by its literals */
    void                 *re;          /* pcre2_code_8 * */
} gi2_rule_t;

typedef struct gi2_ruleset_s  gi2_ruleset_t;

gi2_ruleset_t *gi2_ruleset_create(void);
void gi2_ruleset_free(gi2_ruleset_t *rs);

/* compile and discard: for configuration checks */
int gi2_regex_check(const unsigned char *pattern, size_t len, char *err,
    size_t errlen);

/*
 * Both return the rule's index, or GI2_ERROR with a message in err.
 * Strings are copied.
 */
int gi2_ruleset_add_regex(gi2_ruleset_t *rs, const char *id, int action,
    const char *category, const unsigned char *pattern, size_t len,
    char *err, size_t errlen);
int gi2_ruleset_add_keywords(gi2_ruleset_t *rs, const char *id, int action,
    const char *category, char *err, size_t errlen);

/* one keyword or phrase of the list rule `rule`; it is normalized here */
int gi2_ruleset_add_keyword(gi2_ruleset_t *rs, int rule,
    const unsigned char *kw, size_t len, char *err, size_t errlen);

/* build the automaton; no rules may be added afterwards */
int gi2_ruleset_compile(gi2_ruleset_t *rs, char *err, size_t errlen);

/*
 * The literals a regex cannot match without: one per top-level branch,
 * ASCII, lowercased, written into buf (len bytes).  Returns how many, or
 * 0 when some branch has none worth gating on: the regex then always runs.
 */
int gi2_regex_literals(const unsigned char *pattern, size_t len,
    gi2_str_t *lits, size_t max, unsigned char *buf);

size_t gi2_ruleset_count(gi2_ruleset_t *rs);
const gi2_rule_t *gi2_ruleset_rule(gi2_ruleset_t *rs, size_t i);
size_t gi2_ruleset_memory(gi2_ruleset_t *rs);

/* how many regexes hit a PCRE2 limit in the last match (counted as hits) */
int gi2_ruleset_errors(gi2_ruleset_t *rs);

/*
 * Match normalized text.  Writes the indexes of matching rules, in rule
 * order, into hits (room for gi2_ruleset_count() entries) and returns how
 * many, or GI2_ERROR (a regex resource limit: the caller must not treat
 * the text as clean).  Not reentrant: one ruleset serves one thread.
 */
int gi2_ruleset_match(gi2_ruleset_t *rs, const unsigned char *text,
    size_t len, unsigned *hits);

/*
 * What the module does with a prompt: normalize it, match the normal
 * form and, when it differs, its skeleton; a rule hit by either counts.
 * hits as for gi2_ruleset_match (room for count + 1), in rule order;
 * gi2_ruleset_errors() counts both passes.  Returns the number of hits,
 * GI2_EINVAL (not UTF-8) or GI2_ENOMEM.  norm, when not NULL, gets the
 * normal form.
 */
int gi2_ruleset_screen(gi2_ruleset_t *rs, const unsigned char *prompt,
    size_t len, unsigned *hits, gi2_str_t *norm, gi2_alloc_t *a);


#endif /* _GI2_CORE_H_INCLUDED_ */
