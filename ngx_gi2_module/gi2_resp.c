/*
 * ngx_gi2_module: streaming scanner of image API responses.
 *
 * Three layers, each a byte-level state machine that keeps no input: an
 * SSE line reader (event streams only) hands "data:" bytes to a JSON
 * reader, which hands the bytes of the strings that matter to a base64
 * decoder, which hands decoded image bytes to SHA-256 and to a sniffer of
 * PNG, JPEG and WebP headers.  The JSON reader knows the meaning of each
 * open container from a small stack; nothing deeper than GI2_RESP_DEPTH
 * matters, so past it only a bracket counter runs.
 */

#include <string.h>
#include <openssl/evp.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define GI2_RESP_AVX2  1
#endif

#include "gi2_core.h"
#include "gi2_resp.h"


#define GI2_RESP_OUT       6144        /* decoded bytes between hashings */
#define GI2_RESP_SLACK     8           /* a 32-byte store of 24 bytes */


/* the JSON reader's states */

enum {
    GI2_J_VALUE = 0,
    GI2_J_ARR_FIRST,
    GI2_J_OBJ_FIRST,
    GI2_J_OBJ_KEY,
    GI2_J_COLON,
    GI2_J_AFTER,
    GI2_J_STRING,
    GI2_J_NUMBER,
    GI2_J_LITERAL,
    GI2_J_DEEP,
    GI2_J_DONE,
    GI2_J_STOP
};


/*
 * What a value means, from its key and the container it is in.  A
 * container opened by one of these is also its context: keys are looked up
 * by it.
 */

enum {
    GI2_V_NONE = 0,
    GI2_V_ROOT,
    GI2_V_CREATED,
    GI2_V_DATA,
    GI2_V_DATA_ITEM,
    GI2_V_DATA_B64,
    GI2_V_DATA_URL,
    GI2_V_USAGE,
    GI2_V_IN_TOKENS,
    GI2_V_OUT_TOKENS,
    GI2_V_TOTAL_TOKENS,
    GI2_V_IN_DETAILS,
    GI2_V_OUT_DETAILS,
    GI2_V_IN_TEXT,
    GI2_V_IN_IMAGE,
    GI2_V_OUT_TEXT,
    GI2_V_OUT_IMAGE,
    GI2_V_ERROR,
    GI2_V_ERR_MESSAGE,
    GI2_V_ERR_TYPE,
    GI2_V_ERR_CODE,
    GI2_V_ERR_PARAM,
    GI2_V_MOD,
    GI2_V_STAGE,
    GI2_V_CATS,
    GI2_V_CAT,
    GI2_V_ROOT_TYPE,
    GI2_V_ROOT_B64,
    GI2_V_ROOT_PARTIAL,
    GI2_V_SIZE,
    GI2_V_QUALITY,
    GI2_V_FORMAT,
    GI2_V_BACKGROUND,
    GI2_V_FLAT_MESSAGE,
    GI2_V_FLAT_CODE,
    GI2_V_FLAT_PARAM,
    GI2_V_OUTPUT,
    GI2_V_OUTPUT_ITEM,
    GI2_V_OUTPUT_TYPE,
    GI2_V_OUTPUT_RESULT,
    GI2_V_ITEM,
    GI2_V_ITEM_TYPE,
    GI2_V_ITEM_RESULT,
    GI2_V_RESPONSE,
    GI2_V_LAST
};


/* where the bytes of a string go */

enum {
    GI2_S_SKIP = 0,
    GI2_S_CAP,            /* decoded into a buffer, keys too */
    GI2_S_B64
};


/* a base64 string waiting for its object to end: is it an image? */

enum {
    GI2_P_COMMIT = 0,
    GI2_P_DISCARD,
    GI2_P_ROOT,           /* root b64_json: unless a partial image */
    GI2_P_ITEM,           /* item.result: if an image_generation_call */
    GI2_P_OUTPUT          /* output[i].result: decided when it closes */
};


enum {
    GI2_EV_OTHER = 0,
    GI2_EV_PARTIAL,
    GI2_EV_ERROR
};


/* number grammar */

enum {
    GI2_N_SIGN = 0,
    GI2_N_ZERO,
    GI2_N_INT,
    GI2_N_DOT,
    GI2_N_FRAC,
    GI2_N_E,
    GI2_N_ESIGN,
    GI2_N_EXP
};


/* image header sniffer */

enum {
    GI2_SN_MAGIC = 0,
    GI2_SN_PNG_CHUNK,
    GI2_SN_PNG_IHDR,
    GI2_SN_JPEG_FF,
    GI2_SN_JPEG_MARK,
    GI2_SN_JPEG_LEN,
    GI2_SN_JPEG_SOF,
    GI2_SN_JPEG_APP11,
    GI2_SN_WEBP_CHUNK,
    GI2_SN_WEBP_VP8X,
    GI2_SN_WEBP_VP8,
    GI2_SN_WEBP_VP8L,
    GI2_SN_DONE
};


/* SSE line reader */

enum {
    GI2_L_START = 0,
    GI2_L_NAME,
    GI2_L_SPACE,
    GI2_L_VALUE,
    GI2_L_SKIP
};

enum {
    GI2_SSE_OTHER = 0,
    GI2_SSE_DATA,
    GI2_SSE_EVENT
};


/* gi2_resp_b64[] beyond the 64 digits */
#define GI2_B64_EQ         64
#define GI2_B64_QUOTE      65
#define GI2_B64_BSL        66
#define GI2_B64_CTL        67
#define GI2_B64_BAD        68
#define GI2_B64_SPECIAL    0x40


struct gi2_resp_s {
    gi2_resp_result_t     res;

    gi2_alloc_t          *alloc;
    EVP_MD_CTX           *md;

    /* JSON reader */
    uint64_t              deep;       /* levels open past GI2_RESP_DEPTH */
    uint64_t              num;
    uint32_t              arrays;     /* bit d: level d + 1 is an array */
    uint32_t              count[GI2_RESP_DEPTH];  /* elements so far */
    unsigned char         ctx[GI2_RESP_DEPTH];    /* GI2_V_* or NONE */
    unsigned              depth;
    unsigned              js;
    unsigned              va;         /* meaning of the value to come */
    unsigned              nst;
    const char           *lit;        /* the rest of true/false/null */
    int                   data_index;

    /* the string being read */
    unsigned              sink;
    unsigned              esc;        /* 1: after '\', 2-5: \u digits */
    uint32_t              cp;
    uint32_t              high;       /* a high surrogate escape */
    char                 *cap;
    size_t                cap_len;
    size_t                cap_size;
    unsigned              cap_va;
    size_t                cap_start;  /* a category's first byte */
    char                  key[64];

    /* the object deciding on its images: an SSE event, or the body */
    char                  type[48];
    char                  item_type[32];
    char                  out_type[32];
    unsigned char         pend[GI2_RESP_MAX_IMAGES];
    unsigned              npend;

    /* the image being decoded */
    gi2_image_t          *img;
    gi2_image_t           spare;      /* past GI2_RESP_MAX_IMAGES */
    unsigned              kind;
    uint32_t              quad;
    unsigned              qn;         /* digits in quad */
    unsigned              pad;        /* 1: one '=' more, 2: padded */
    size_t                out_len;

    /* sniffer */
    uint64_t              sn_skip;
    uint64_t              sn_rest;
    unsigned              sn_state;
    unsigned              sn_need;
    unsigned              sn_have;
    unsigned              sn_mark;
    unsigned char         sn_buf[16];

    /* SSE */
    unsigned              ls;
    unsigned              field;
    unsigned              name_len;
    char                  name[8];
    size_t                event_len;
    char                  event[64];

    unsigned              key_string:1;
    unsigned              cap_cut:1;
    unsigned              neg:1;
    unsigned              frac:1;
    unsigned              over:1;
    unsigned              json_any:1; /* the document has begun */
    unsigned              decided:1;
    unsigned              partial_key:1;
    unsigned              md_bad:1;
    unsigned              sn_first:1;
    unsigned              sn_dims:1;
    unsigned              cr:1;
    unsigned              ev_open:1;
    unsigned              ev_data:1;
    unsigned              ev_bad:1;
    unsigned              finished:1;
    unsigned              cats_cut:1; /* a category did not fit */

    unsigned char         out[GI2_RESP_OUT + GI2_RESP_SLACK];
};


typedef struct {
    unsigned char         ctx;
    unsigned char         va;
    unsigned char         len;
    const char           *name;
} gi2_resp_key_t;


static const EVP_MD *gi2_resp_sha256(void);
static void gi2_resp_reset_doc(gi2_resp_t *r);
static void gi2_resp_json(gi2_resp_t *r, const unsigned char *p,
    const unsigned char *end);
static void gi2_resp_token(gi2_resp_t *r, unsigned char c);
static void gi2_resp_value(gi2_resp_t *r, unsigned char c);
static void gi2_resp_open(gi2_resp_t *r, unsigned array);
static void gi2_resp_close(gi2_resp_t *r, unsigned array);
static void gi2_resp_element(gi2_resp_t *r);
static void gi2_resp_value_done(gi2_resp_t *r);
static int gi2_resp_number(gi2_resp_t *r, unsigned char c);
static void gi2_resp_number_end(gi2_resp_t *r);
static void gi2_resp_literal(gi2_resp_t *r, unsigned char c);
static const unsigned char *gi2_resp_deep(gi2_resp_t *r,
    const unsigned char *p, const unsigned char *end);
static void gi2_resp_bad(gi2_resp_t *r);
static void gi2_resp_abort(gi2_resp_t *r);
static unsigned gi2_resp_lookup(unsigned ctx, const char *key, size_t len);
static unsigned gi2_resp_container(unsigned va);

static void gi2_resp_string_begin(gi2_resp_t *r, unsigned sink);
static void gi2_resp_key_begin(gi2_resp_t *r);
static void gi2_resp_value_string(gi2_resp_t *r);
static void gi2_resp_capture(gi2_resp_t *r, char *buf, size_t size,
    size_t len);
static const unsigned char *gi2_resp_string(gi2_resp_t *r,
    const unsigned char *p, const unsigned char *end);
static const unsigned char *gi2_resp_skip_plain(const unsigned char *p,
    const unsigned char *end);
static void gi2_resp_escape(gi2_resp_t *r, unsigned char c);
static void gi2_resp_cp(gi2_resp_t *r, uint32_t cp);
static void gi2_resp_put(gi2_resp_t *r, unsigned char c);
static void gi2_resp_put_cp(gi2_resp_t *r, uint32_t cp);
static void gi2_resp_string_end(gi2_resp_t *r);
static void gi2_resp_cap_end(gi2_resp_t *r);

static unsigned gi2_resp_class(gi2_resp_t *r);
static int gi2_resp_type_ok(const char *type);
static int gi2_resp_keep(gi2_resp_t *r, unsigned kind, unsigned cls);
static void gi2_resp_resolve(gi2_resp_t *r);

static void gi2_resp_image_begin(gi2_resp_t *r, unsigned kind, int index);
static const unsigned char *gi2_resp_b64(gi2_resp_t *r,
    const unsigned char *p, const unsigned char *end);
static size_t gi2_resp_decode(const unsigned char *p, size_t n,
    unsigned char *o);
static size_t gi2_resp_quads(const unsigned char *p, size_t n,
    unsigned char *o);
#if (GI2_RESP_AVX2)
static size_t gi2_resp_quads_avx2(const unsigned char *p, size_t n,
    unsigned char *o);
#endif
static void gi2_resp_digit(gi2_resp_t *r, unsigned v);
static void gi2_resp_emit(gi2_resp_t *r, const unsigned char *b, size_t n);
static void gi2_resp_flush(gi2_resp_t *r);
static void gi2_resp_image_end(gi2_resp_t *r, int cut);

static void gi2_resp_sniff(gi2_resp_t *r, const unsigned char *p,
    size_t len);
static void gi2_resp_sniff_next(gi2_resp_t *r, unsigned state,
    unsigned need);
static void gi2_resp_sniff_step(gi2_resp_t *r);

static void gi2_resp_sse(gi2_resp_t *r, const unsigned char *p,
    const unsigned char *end);
static const unsigned char *gi2_resp_eol(const unsigned char *p,
    const unsigned char *end);
static void gi2_resp_field(gi2_resp_t *r);
static void gi2_resp_field_data(gi2_resp_t *r, const unsigned char *p,
    const unsigned char *end);
static void gi2_resp_dispatch(gi2_resp_t *r, int cut);


/*
 * 0-63: base64 digits; 64 '=', 65 '"', 66 '\', 67 control characters
 * (never allowed raw in a JSON string), 68 anything else
 */

#if (GI2_RESP_AVX2)
static int  gi2_resp_use_avx2 = -1;    /* -1: not probed yet */
#endif


static const unsigned char  gi2_resp_b64_tab[256] = {
    67, 67, 67, 67, 67, 67, 67, 67, 67, 67, 67, 67, 67, 67, 67, 67,
    67, 67, 67, 67, 67, 67, 67, 67, 67, 67, 67, 67, 67, 67, 67, 67,
    68, 68, 65, 68, 68, 68, 68, 68, 68, 68, 68, 62, 68, 68, 68, 63,
    52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 68, 68, 68, 64, 68, 68,
    68,  0,  1,  2,  3,  4,  5,  6,  7,  8,  9, 10, 11, 12, 13, 14,
    15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 68, 66, 68, 68, 68,
    68, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
    41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 68, 68, 68, 68, 68,
    68, 68, 68, 68, 68, 68, 68, 68, 68, 68, 68, 68, 68, 68, 68, 68,
    68, 68, 68, 68, 68, 68, 68, 68, 68, 68, 68, 68, 68, 68, 68, 68,
    68, 68, 68, 68, 68, 68, 68, 68, 68, 68, 68, 68, 68, 68, 68, 68,
    68, 68, 68, 68, 68, 68, 68, 68, 68, 68, 68, 68, 68, 68, 68, 68,
    68, 68, 68, 68, 68, 68, 68, 68, 68, 68, 68, 68, 68, 68, 68, 68,
    68, 68, 68, 68, 68, 68, 68, 68, 68, 68, 68, 68, 68, 68, 68, 68,
    68, 68, 68, 68, 68, 68, 68, 68, 68, 68, 68, 68, 68, 68, 68, 68,
    68, 68, 68, 68, 68, 68, 68, 68, 68, 68, 68, 68, 68, 68, 68, 68
};


#define gi2_resp_key(ctx, name, va)                                          \
    { GI2_V_##ctx, GI2_V_##va, sizeof(name) - 1, name }

static const gi2_resp_key_t  gi2_resp_keys[] = {
    gi2_resp_key(ROOT, "created", CREATED),
    gi2_resp_key(ROOT, "created_at", CREATED),
    gi2_resp_key(ROOT, "data", DATA),
    gi2_resp_key(ROOT, "usage", USAGE),
    gi2_resp_key(ROOT, "error", ERROR),
    gi2_resp_key(ROOT, "type", ROOT_TYPE),
    gi2_resp_key(ROOT, "b64_json", ROOT_B64),
    gi2_resp_key(ROOT, "partial_image_b64", ROOT_PARTIAL),
    gi2_resp_key(ROOT, "size", SIZE),
    gi2_resp_key(ROOT, "quality", QUALITY),
    gi2_resp_key(ROOT, "output_format", FORMAT),
    gi2_resp_key(ROOT, "background", BACKGROUND),
    gi2_resp_key(ROOT, "message", FLAT_MESSAGE),
    gi2_resp_key(ROOT, "code", FLAT_CODE),
    gi2_resp_key(ROOT, "param", FLAT_PARAM),
    gi2_resp_key(ROOT, "output", OUTPUT),
    gi2_resp_key(ROOT, "item", ITEM),
    gi2_resp_key(ROOT, "response", RESPONSE),

    gi2_resp_key(DATA_ITEM, "b64_json", DATA_B64),
    gi2_resp_key(DATA_ITEM, "url", DATA_URL),

    gi2_resp_key(USAGE, "input_tokens", IN_TOKENS),
    gi2_resp_key(USAGE, "output_tokens", OUT_TOKENS),
    gi2_resp_key(USAGE, "total_tokens", TOTAL_TOKENS),
    gi2_resp_key(USAGE, "input_tokens_details", IN_DETAILS),
    gi2_resp_key(USAGE, "output_tokens_details", OUT_DETAILS),
    gi2_resp_key(IN_DETAILS, "text_tokens", IN_TEXT),
    gi2_resp_key(IN_DETAILS, "image_tokens", IN_IMAGE),
    gi2_resp_key(OUT_DETAILS, "text_tokens", OUT_TEXT),
    gi2_resp_key(OUT_DETAILS, "image_tokens", OUT_IMAGE),

    gi2_resp_key(ERROR, "message", ERR_MESSAGE),
    gi2_resp_key(ERROR, "type", ERR_TYPE),
    gi2_resp_key(ERROR, "code", ERR_CODE),
    gi2_resp_key(ERROR, "param", ERR_PARAM),
    gi2_resp_key(ERROR, "moderation_details", MOD),
    gi2_resp_key(MOD, "moderation_stage", STAGE),
    gi2_resp_key(MOD, "categories", CATS),

    gi2_resp_key(OUTPUT_ITEM, "type", OUTPUT_TYPE),
    gi2_resp_key(OUTPUT_ITEM, "result", OUTPUT_RESULT),
    gi2_resp_key(OUTPUT_ITEM, "size", SIZE),
    gi2_resp_key(OUTPUT_ITEM, "quality", QUALITY),
    gi2_resp_key(OUTPUT_ITEM, "output_format", FORMAT),
    gi2_resp_key(OUTPUT_ITEM, "background", BACKGROUND),
    gi2_resp_key(ITEM, "type", ITEM_TYPE),
    gi2_resp_key(ITEM, "result", ITEM_RESULT),
    gi2_resp_key(ITEM, "size", SIZE),
    gi2_resp_key(ITEM, "quality", QUALITY),
    gi2_resp_key(ITEM, "output_format", FORMAT),
    gi2_resp_key(ITEM, "background", BACKGROUND),
    gi2_resp_key(RESPONSE, "usage", USAGE),
    gi2_resp_key(RESPONSE, "error", ERROR)
};


static const unsigned char  gi2_resp_png_sig[8] = {
    0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'
};


#define gi2_resp_be16(p)  ((uint32_t) (p)[0] << 8 | (p)[1])
#define gi2_resp_be32(p)                                                     \
    ((uint32_t) (p)[0] << 24 | (uint32_t) (p)[1] << 16                       \
     | (uint32_t) (p)[2] << 8 | (p)[3])
#define gi2_resp_le16(p)  ((uint32_t) (p)[1] << 8 | (p)[0])
#define gi2_resp_le24(p)                                                     \
    ((uint32_t) (p)[2] << 16 | (uint32_t) (p)[1] << 8 | (p)[0])
#define gi2_resp_le32(p)  ((uint32_t) (p)[3] << 24 | gi2_resp_le24(p))


/* API */

/*
 * SHA-256 fetched once a process: EVP_sha256() makes OpenSSL 3 look the
 * algorithm up again on every digest started.
 */

static const EVP_MD *
gi2_resp_sha256(void)
{
    static EVP_MD  *md;

    if (md == NULL) {
        md = EVP_MD_fetch(NULL, "SHA256", NULL);
    }

    return (md != NULL) ? md : EVP_sha256();
}


int
gi2_resp_simd(int on)
{
#if (GI2_RESP_AVX2)
    if (on == 1 || (on == -1 && gi2_resp_use_avx2 == -1)) {
        __builtin_cpu_init();
        gi2_resp_use_avx2 = __builtin_cpu_supports("avx2") ? 1 : 0;

    } else if (on == 0) {
        gi2_resp_use_avx2 = 0;
    }

    return gi2_resp_use_avx2;
#else
    (void) on;
    return 0;
#endif
}


gi2_resp_t *
gi2_resp_create(int sse, gi2_alloc_t *a)
{
    gi2_resp_t  *r;

#if (GI2_RESP_AVX2)
    if (gi2_resp_use_avx2 == -1) {
        (void) gi2_resp_simd(-1);
    }
#endif

    r = a->alloc(a->data, sizeof(gi2_resp_t));
    if (r == NULL) {
        return NULL;
    }

    /* the output buffer needs no clearing */
    memset(r, 0, offsetof(gi2_resp_t, out));

    r->md = EVP_MD_CTX_new();
    if (r->md == NULL) {
        if (a->free != NULL) {
            a->free(a->data, r);
        }

        return NULL;
    }

    r->alloc = a;
    r->res.sse = sse ? 1 : 0;
    r->res.input_tokens = -1;
    r->res.output_tokens = -1;
    r->res.total_tokens = -1;
    r->res.input_text_tokens = -1;
    r->res.input_image_tokens = -1;
    r->res.output_text_tokens = -1;
    r->res.output_image_tokens = -1;
    r->res.created = -1;

    gi2_resp_reset_doc(r);

    return r;
}


int
gi2_resp_feed(gi2_resp_t *r, const unsigned char *buf, size_t len)
{
    if (r == NULL || r->finished) {
        return GI2_EINVAL;
    }

    if (len == 0) {
        return GI2_OK;
    }

    if (r->res.sse) {
        gi2_resp_sse(r, buf, buf + len);

    } else {
        gi2_resp_json(r, buf, buf + len);
    }

    return GI2_OK;
}


int
gi2_resp_finish(gi2_resp_t *r)
{
    if (r == NULL) {
        return GI2_EINVAL;
    }

    if (r->finished) {
        return GI2_OK;
    }

    if (r->res.sse) {
        if (r->ls != GI2_L_START || r->ev_open) {
            r->res.truncated = 1;
            gi2_resp_dispatch(r, 1);
        }

    } else if (r->json_any && r->js != GI2_J_DONE && r->js != GI2_J_STOP) {
        r->res.truncated = 1;
        gi2_resp_abort(r);
        gi2_resp_resolve(r);
    }

    r->finished = 1;

    EVP_MD_CTX_free(r->md);
    r->md = NULL;

    return GI2_OK;
}


const gi2_resp_result_t *
gi2_resp_result(gi2_resp_t *r)
{
    return &r->res;
}


void
gi2_resp_destroy(gi2_resp_t *r)
{
    if (r == NULL) {
        return;
    }

    EVP_MD_CTX_free(r->md);
    r->md = NULL;

    if (r->alloc->free != NULL) {
        r->alloc->free(r->alloc->data, r);
    }
}


size_t
gi2_resp_memory(void)
{
    return sizeof(gi2_resp_t);
}


/* a new JSON document: the body, or the data of an SSE event */

static void
gi2_resp_reset_doc(gi2_resp_t *r)
{
    r->js = GI2_J_VALUE;
    r->va = GI2_V_ROOT;
    r->depth = 0;
    r->deep = 0;
    r->arrays = 0;
    r->esc = 0;
    r->high = 0;
    r->sink = GI2_S_SKIP;
    r->key_string = 0;
    r->json_any = 0;
    r->decided = 0;
    r->partial_key = 0;
    r->npend = 0;
    r->type[0] = '\0';
    r->item_type[0] = '\0';
    r->out_type[0] = '\0';
}


/* JSON reader */

static void
gi2_resp_json(gi2_resp_t *r, const unsigned char *p,
    const unsigned char *end)
{
    unsigned char  c;

    while (p < end) {

        switch (r->js) {

        case GI2_J_STRING:
            p = gi2_resp_string(r, p, end);
            break;

        case GI2_J_DEEP:
            p = gi2_resp_deep(r, p, end);
            break;

        case GI2_J_NUMBER:
            if (gi2_resp_number(r, *p)) {
                p++;
            }

            break;

        case GI2_J_LITERAL:
            gi2_resp_literal(r, *p++);
            break;

        case GI2_J_STOP:
            return;

        default:
            c = *p++;

            if (c == ' ' || c == '\n' || c == '\r' || c == '\t') {
                break;
            }

            gi2_resp_token(r, c);
        }
    }
}


static void
gi2_resp_token(gi2_resp_t *r, unsigned char c)
{
    switch (r->js) {

    case GI2_J_VALUE:
        gi2_resp_value(r, c);
        return;

    case GI2_J_ARR_FIRST:
        if (c == ']') {
            gi2_resp_close(r, 1);
            return;
        }

        gi2_resp_element(r);
        gi2_resp_value(r, c);
        return;

    case GI2_J_OBJ_FIRST:
        if (c == '}') {
            gi2_resp_close(r, 0);
            return;
        }

        /* fall through */

    case GI2_J_OBJ_KEY:
        if (c == '"') {
            gi2_resp_key_begin(r);
            return;
        }

        break;

    case GI2_J_COLON:
        if (c == ':') {
            r->js = GI2_J_VALUE;
            return;
        }

        break;

    case GI2_J_AFTER:
        if (c == ',') {
            if ((r->arrays >> (r->depth - 1)) & 1) {
                gi2_resp_element(r);
                r->js = GI2_J_VALUE;

            } else {
                r->js = GI2_J_OBJ_KEY;
            }

            return;
        }

        if (c == '}' || c == ']') {
            gi2_resp_close(r, c == ']');
            return;
        }

        break;

    default:
        /* GI2_J_DONE: something after the root */
        break;
    }

    gi2_resp_bad(r);
}


static void
gi2_resp_value(gi2_resp_t *r, unsigned char c)
{
    if (r->depth == 0) {
        r->json_any = 1;

        if (c != '{') {
            gi2_resp_bad(r);
            return;
        }
    }

    switch (c) {

    case '{':
        gi2_resp_open(r, 0);
        return;

    case '[':
        gi2_resp_open(r, 1);
        return;

    case '"':
        gi2_resp_value_string(r);
        return;

    case 't':
        r->lit = "rue";
        r->js = GI2_J_LITERAL;
        return;

    case 'f':
        r->lit = "alse";
        r->js = GI2_J_LITERAL;
        return;

    case 'n':
        r->lit = "ull";
        r->js = GI2_J_LITERAL;
        return;

    case '-':
        r->nst = GI2_N_SIGN;
        r->neg = 1;
        break;

    default:
        if (c < '0' || c > '9') {
            gi2_resp_bad(r);
            return;
        }

        r->nst = (c == '0') ? GI2_N_ZERO : GI2_N_INT;
        r->neg = 0;
    }

    r->num = (c == '-') ? 0 : (uint64_t) (c - '0');
    r->frac = 0;
    r->over = 0;
    r->js = GI2_J_NUMBER;
}


static void
gi2_resp_open(gi2_resp_t *r, unsigned array)
{
    unsigned  ctx;

    if (r->depth == GI2_RESP_DEPTH) {
        r->deep = 1;
        r->res.too_deep = 1;
        r->js = GI2_J_DEEP;
        return;
    }

    ctx = (gi2_resp_container(r->va) == array + 1) ? r->va : GI2_V_NONE;

    switch (ctx) {

    case GI2_V_ERROR:
        r->res.error_event = 1;
        break;

    case GI2_V_CATS:
        r->res.categories[0] = '\0';
        r->cats_cut = 0;
        break;

    case GI2_V_OUTPUT_ITEM:
        r->out_type[0] = '\0';
        break;

    case GI2_V_ITEM:
        r->item_type[0] = '\0';
        break;
    }

    if (array) {
        r->arrays |= (uint32_t) 1 << r->depth;

    } else {
        r->arrays &= ~((uint32_t) 1 << r->depth);
    }

    r->ctx[r->depth] = (unsigned char) ctx;
    r->count[r->depth] = 0;
    r->depth++;

    r->js = array ? GI2_J_ARR_FIRST : GI2_J_OBJ_FIRST;
}


static void
gi2_resp_close(gi2_resp_t *r, unsigned array)
{
    unsigned  i, keep;

    if (((r->arrays >> (r->depth - 1)) & 1) != array) {
        gi2_resp_bad(r);
        return;
    }

    if (r->ctx[r->depth - 1] == GI2_V_OUTPUT_ITEM) {
        keep = gi2_resp_type_ok(r->out_type);

        for (i = 0; i < r->npend; i++) {
            if (r->pend[i] == GI2_P_OUTPUT) {
                r->pend[i] = keep ? GI2_P_COMMIT : GI2_P_DISCARD;
            }
        }
    }

    r->depth--;

    gi2_resp_value_done(r);
}


/* an array element starts: its meaning, from the array's */

static void
gi2_resp_element(gi2_resp_t *r)
{
    unsigned  d;

    d = r->depth - 1;

    switch (r->ctx[d]) {

    case GI2_V_DATA:
        r->va = GI2_V_DATA_ITEM;
        r->data_index = (r->count[d] < 0x7fffffff) ? (int) r->count[d]
                                                    : 0x7fffffff;
        break;

    case GI2_V_CATS:
        r->va = GI2_V_CAT;
        break;

    case GI2_V_OUTPUT:
        r->va = GI2_V_OUTPUT_ITEM;
        break;

    default:
        r->va = GI2_V_NONE;
    }

    if (r->count[d] != UINT32_MAX) {
        r->count[d]++;
    }
}


static void
gi2_resp_value_done(gi2_resp_t *r)
{
    if (r->depth > 0) {
        r->js = GI2_J_AFTER;
        return;
    }

    r->js = GI2_J_DONE;

    /* an SSE event decides at its end: "event:" may follow "data:" */

    if (!r->res.sse) {
        gi2_resp_resolve(r);
    }
}


/* 1: the byte belongs to the number; 0: it ended before it */

static int
gi2_resp_number(gi2_resp_t *r, unsigned char c)
{
    unsigned  d;

    d = (unsigned) c - '0';

    switch (r->nst) {

    case GI2_N_SIGN:
        if (d > 9) {
            break;
        }

        r->nst = (d == 0) ? GI2_N_ZERO : GI2_N_INT;
        r->num = d;
        return 1;

    case GI2_N_INT:
        if (d <= 9) {
            if (r->num > (UINT64_C(0x7fffffffffffffff) - d) / 10) {
                r->over = 1;

            } else {
                r->num = r->num * 10 + d;
            }

            return 1;
        }

        /* fall through */

    case GI2_N_ZERO:
        if (d <= 9) {
            break;              /* a leading zero */
        }

        if (c == '.') {
            r->nst = GI2_N_DOT;
            r->frac = 1;
            return 1;
        }

        /* fall through */

    case GI2_N_FRAC:
        if (d <= 9) {
            return 1;
        }

        if (c == 'e' || c == 'E') {
            r->nst = GI2_N_E;
            r->frac = 1;
            return 1;
        }

        gi2_resp_number_end(r);
        return 0;

    case GI2_N_DOT:
        if (d <= 9) {
            r->nst = GI2_N_FRAC;
            return 1;
        }

        break;

    case GI2_N_E:
        if (c == '+' || c == '-') {
            r->nst = GI2_N_ESIGN;
            return 1;
        }

        /* fall through */

    case GI2_N_ESIGN:
        if (d <= 9) {
            r->nst = GI2_N_EXP;
            return 1;
        }

        break;

    default: /* GI2_N_EXP */
        if (d <= 9) {
            return 1;
        }

        gi2_resp_number_end(r);
        return 0;
    }

    gi2_resp_bad(r);

    return 0;
}


static void
gi2_resp_number_end(gi2_resp_t *r)
{
    int64_t  *to, v;

    if (!r->frac && !r->over) {
        v = r->neg ? -(int64_t) r->num : (int64_t) r->num;

        switch (r->va) {
        case GI2_V_CREATED:      to = &r->res.created; break;
        case GI2_V_IN_TOKENS:    to = &r->res.input_tokens; break;
        case GI2_V_OUT_TOKENS:   to = &r->res.output_tokens; break;
        case GI2_V_TOTAL_TOKENS: to = &r->res.total_tokens; break;
        case GI2_V_IN_TEXT:      to = &r->res.input_text_tokens; break;
        case GI2_V_IN_IMAGE:     to = &r->res.input_image_tokens; break;
        case GI2_V_OUT_TEXT:     to = &r->res.output_text_tokens; break;
        case GI2_V_OUT_IMAGE:    to = &r->res.output_image_tokens; break;
        default:                 to = NULL;
        }

        if (to != NULL) {
            *to = v;
        }
    }

    gi2_resp_value_done(r);
}


static void
gi2_resp_literal(gi2_resp_t *r, unsigned char c)
{
    if (c != (unsigned char) *r->lit) {
        gi2_resp_bad(r);
        return;
    }

    if (*++r->lit == '\0') {
        gi2_resp_value_done(r);
    }
}


/*
 * Past GI2_RESP_DEPTH: only brackets outside strings are counted, of
 * either kind; when the outermost one closes, it was one value.
 */

static const unsigned char *
gi2_resp_deep(gi2_resp_t *r, const unsigned char *p,
    const unsigned char *end)
{
    unsigned char  c;

    while (p < end) {
        c = *p++;

        switch (c) {

        case '"':
            r->key_string = 0;
            gi2_resp_string_begin(r, GI2_S_SKIP);
            return p;

        case '{':
        case '[':
            r->deep++;
            break;

        case '}':
        case ']':
            if (--r->deep == 0) {
                gi2_resp_value_done(r);
                return p;
            }

            break;
        }
    }

    return p;
}


/* not JSON: a body stops here, an event is skipped to its end */

static void
gi2_resp_bad(gi2_resp_t *r)
{
    r->res.malformed = 1;

    gi2_resp_abort(r);

    r->js = GI2_J_STOP;

    if (r->res.sse) {
        r->ev_bad = 1;

    } else {
        gi2_resp_resolve(r);
    }
}


/* the document ends here: close the string in flight */

static void
gi2_resp_abort(gi2_resp_t *r)
{
    if (r->js != GI2_J_STRING || r->key_string) {
        return;
    }

    if (r->sink == GI2_S_B64) {
        gi2_resp_image_end(r, 1);

    } else if (r->sink == GI2_S_CAP) {
        r->cap_cut = 1;
        gi2_resp_cap_end(r);
    }

    r->sink = GI2_S_SKIP;
}


static unsigned
gi2_resp_lookup(unsigned ctx, const char *key, size_t len)
{
    size_t  i;

    for (i = 0; i < sizeof(gi2_resp_keys) / sizeof(gi2_resp_keys[0]); i++) {
        if (gi2_resp_keys[i].ctx == ctx
            && gi2_resp_keys[i].len == len
            && memcmp(gi2_resp_keys[i].name, key, len) == 0)
        {
            return gi2_resp_keys[i].va;
        }
    }

    return GI2_V_NONE;
}


/* which meanings open a container: 1 an object, 2 an array */

static unsigned
gi2_resp_container(unsigned va)
{
    switch (va) {

    case GI2_V_ROOT:
    case GI2_V_DATA_ITEM:
    case GI2_V_USAGE:
    case GI2_V_IN_DETAILS:
    case GI2_V_OUT_DETAILS:
    case GI2_V_ERROR:
    case GI2_V_MOD:
    case GI2_V_OUTPUT_ITEM:
    case GI2_V_ITEM:
    case GI2_V_RESPONSE:
        return 1;

    case GI2_V_DATA:
    case GI2_V_CATS:
    case GI2_V_OUTPUT:
        return 2;
    }

    return 0;
}


/* strings */

static void
gi2_resp_string_begin(gi2_resp_t *r, unsigned sink)
{
    r->sink = sink;
    r->esc = 0;
    r->high = 0;
    r->js = GI2_J_STRING;
}


static void
gi2_resp_key_begin(gi2_resp_t *r)
{
    r->key_string = 1;
    r->cap_va = GI2_V_NONE;

    if (r->ctx[r->depth - 1] == GI2_V_NONE) {
        gi2_resp_string_begin(r, GI2_S_SKIP);
        return;
    }

    gi2_resp_capture(r, r->key, sizeof(r->key), 0);
}


static void
gi2_resp_value_string(gi2_resp_t *r)
{
    gi2_resp_result_t  *res;

    res = &r->res;
    r->key_string = 0;
    r->cap_va = r->va;

    switch (r->va) {

    case GI2_V_ROOT_TYPE:
        gi2_resp_capture(r, r->type, sizeof(r->type), 0);
        return;

    case GI2_V_OUTPUT_TYPE:
        gi2_resp_capture(r, r->out_type, sizeof(r->out_type), 0);
        return;

    case GI2_V_ITEM_TYPE:
        gi2_resp_capture(r, r->item_type, sizeof(r->item_type), 0);
        return;

    case GI2_V_SIZE:
        gi2_resp_capture(r, res->response_size, sizeof(res->response_size),
                         0);
        return;

    case GI2_V_QUALITY:
        gi2_resp_capture(r, res->response_quality,
                         sizeof(res->response_quality), 0);
        return;

    case GI2_V_FORMAT:
        gi2_resp_capture(r, res->response_format,
                         sizeof(res->response_format), 0);
        return;

    case GI2_V_BACKGROUND:
        gi2_resp_capture(r, res->response_background,
                         sizeof(res->response_background), 0);
        return;

    case GI2_V_FLAT_MESSAGE:
    case GI2_V_FLAT_CODE:
    case GI2_V_FLAT_PARAM:

        /* the Responses API error event: its fields are at the root */

        if (gi2_resp_class(r) != GI2_EV_ERROR) {
            break;
        }

        res->error_event = 1;

        if (r->va == GI2_V_FLAT_MESSAGE) {
            gi2_resp_capture(r, res->error_message,
                             sizeof(res->error_message), 0);

        } else if (r->va == GI2_V_FLAT_CODE) {
            gi2_resp_capture(r, res->error_code, sizeof(res->error_code), 0);

        } else {
            gi2_resp_capture(r, res->error_param, sizeof(res->error_param),
                             0);
        }

        return;

    case GI2_V_ERR_MESSAGE:
        gi2_resp_capture(r, res->error_message, sizeof(res->error_message),
                         0);
        return;

    case GI2_V_ERR_TYPE:
        gi2_resp_capture(r, res->error_type, sizeof(res->error_type), 0);
        return;

    case GI2_V_ERR_CODE:
        gi2_resp_capture(r, res->error_code, sizeof(res->error_code), 0);
        return;

    case GI2_V_ERR_PARAM:
        gi2_resp_capture(r, res->error_param, sizeof(res->error_param), 0);
        return;

    case GI2_V_STAGE:
        gi2_resp_capture(r, res->moderation_stage,
                         sizeof(res->moderation_stage), 0);
        return;

    case GI2_V_CAT:

        /* whole categories only, and none after one that did not fit */

        if (r->cats_cut) {
            break;
        }

        r->cap_start = strlen(res->categories);
        gi2_resp_capture(r, res->categories, sizeof(res->categories),
                         r->cap_start);

        if (r->cap_len > 0) {
            gi2_resp_put(r, ',');
        }

        return;

    case GI2_V_DATA_URL:
        res->urls_total++;

        if (res->nurls == GI2_RESP_MAX_IMAGES) {
            break;
        }

        gi2_resp_capture(r, res->url[res->nurls], GI2_RESP_URL_LEN, 0);
        return;

    case GI2_V_DATA_B64:
        gi2_resp_image_begin(r, GI2_P_COMMIT, r->data_index);
        return;

    case GI2_V_ROOT_B64:
        if (gi2_resp_class(r) == GI2_EV_PARTIAL) {
            break;              /* known to be dropped: not worth a hash */
        }

        gi2_resp_image_begin(r, GI2_P_ROOT, -1);
        return;

    case GI2_V_ROOT_PARTIAL:
        r->partial_key = 1;
        break;

    case GI2_V_ITEM_RESULT:
        gi2_resp_image_begin(r, GI2_P_ITEM, -1);
        return;

    case GI2_V_OUTPUT_RESULT:
        gi2_resp_image_begin(r, GI2_P_OUTPUT, -1);
        return;
    }

    gi2_resp_string_begin(r, GI2_S_SKIP);
}


static void
gi2_resp_capture(gi2_resp_t *r, char *buf, size_t size, size_t len)
{
    r->cap = buf;
    r->cap_size = size;
    r->cap_len = len;
    r->cap_cut = 0;
    buf[len] = '\0';

    gi2_resp_string_begin(r, GI2_S_CAP);
}


static const unsigned char *
gi2_resp_string(gi2_resp_t *r, const unsigned char *p,
    const unsigned char *end)
{
    unsigned char  c;

    if (r->sink == GI2_S_B64) {
        return gi2_resp_b64(r, p, end);
    }

    while (p < end) {

        if (r->esc) {
            gi2_resp_escape(r, *p++);

            if (r->js != GI2_J_STRING) {
                return p;
            }

            continue;
        }

        if (r->sink == GI2_S_SKIP) {
            p = gi2_resp_skip_plain(p, end);

            if (p == end) {
                return p;
            }
        }

        c = *p++;

        if (c == '"') {
            gi2_resp_string_end(r);
            return p;
        }

        if (c == '\\') {
            r->esc = 1;
            continue;
        }

        if (c < 0x20) {
            gi2_resp_bad(r);
            return p;
        }

        if (r->high) {
            r->high = 0;
            gi2_resp_put_cp(r, 0xfffd);
        }

        gi2_resp_put(r, c);
    }

    return p;
}


/* the first '"', '\' or control character: eight bytes a step */

static const unsigned char *
gi2_resp_skip_plain(const unsigned char *p, const unsigned char *end)
{
    uint64_t  w, q, e, l;

    while (end - p >= 8) {
        memcpy(&w, p, 8);

        q = w ^ (GI2_ONES * '"');
        e = w ^ (GI2_ONES * '\\');
        l = (w - GI2_ONES * 0x20) & ~w;

        if ((((q - GI2_ONES) & ~q) | ((e - GI2_ONES) & ~e) | l) & GI2_HIGHS) {
            break;
        }

        p += 8;
    }

    while (p < end && *p != '"' && *p != '\\' && *p >= 0x20) {
        p++;
    }

    return p;
}


static void
gi2_resp_escape(gi2_resp_t *r, unsigned char c)
{
    unsigned  x;

    if (r->esc == 1) {
        r->esc = 0;

        switch (c) {
        case '"':
        case '\\':
        case '/':
            break;
        case 'b':
            c = '\b';
            break;
        case 'f':
            c = '\f';
            break;
        case 'n':
            c = '\n';
            break;
        case 'r':
            c = '\r';
            break;
        case 't':
            c = '\t';
            break;
        case 'u':
            r->esc = 2;
            r->cp = 0;
            return;
        default:
            gi2_resp_bad(r);
            return;
        }

        gi2_resp_cp(r, c);
        return;
    }

    x = c | 0x20;

    if (c >= '0' && c <= '9') {
        x = c - '0';

    } else if (x >= 'a' && x <= 'f') {
        x = x - 'a' + 10;

    } else {
        gi2_resp_bad(r);
        return;
    }

    r->cp = (r->cp << 4) | x;

    if (++r->esc == 6) {
        r->esc = 0;
        gi2_resp_cp(r, r->cp);
    }
}


/* an escaped character */

static void
gi2_resp_cp(gi2_resp_t *r, uint32_t cp)
{
    unsigned  v;

    switch (r->sink) {

    case GI2_S_SKIP:
        return;

    case GI2_S_B64:
        v = (cp < 0x80) ? gi2_resp_b64_tab[cp] : GI2_B64_BAD;

        if (v <= GI2_B64_EQ) {
            gi2_resp_digit(r, v);

        } else {
            r->img->bad_base64 = 1;     /* an escaped quote or control */
        }

        return;
    }

    if (cp >= 0xd800 && cp <= 0xdbff) {
        if (r->high) {
            gi2_resp_put_cp(r, 0xfffd);
        }

        r->high = cp;
        return;
    }

    if (cp >= 0xdc00 && cp <= 0xdfff) {
        if (r->high) {
            cp = 0x10000 + ((r->high - 0xd800) << 10) + (cp - 0xdc00);
            r->high = 0;

        } else {
            cp = 0xfffd;
        }

    } else if (r->high) {
        r->high = 0;
        gi2_resp_put_cp(r, 0xfffd);
    }

    if (cp == 0) {

        /* a C string cannot hold it; a key holding it is no key of ours */

        if (r->key_string) {
            r->cap_cut = 1;
        }

        return;
    }

    gi2_resp_put_cp(r, cp);
}


static void
gi2_resp_put(gi2_resp_t *r, unsigned char c)
{
    if (r->cap_cut) {
        return;
    }

    if (r->cap_len + 1 >= r->cap_size) {
        r->cap_cut = 1;
        return;
    }

    r->cap[r->cap_len++] = (char) c;
}


static void
gi2_resp_put_cp(gi2_resp_t *r, uint32_t cp)
{
    size_t         n;
    unsigned char  u[4];

    if (cp < 0x80) {
        u[0] = (unsigned char) cp;
        n = 1;

    } else if (cp < 0x800) {
        u[0] = (unsigned char) (0xc0 | (cp >> 6));
        u[1] = (unsigned char) (0x80 | (cp & 0x3f));
        n = 2;

    } else if (cp < 0x10000) {
        u[0] = (unsigned char) (0xe0 | (cp >> 12));
        u[1] = (unsigned char) (0x80 | ((cp >> 6) & 0x3f));
        u[2] = (unsigned char) (0x80 | (cp & 0x3f));
        n = 3;

    } else {
        u[0] = (unsigned char) (0xf0 | (cp >> 18));
        u[1] = (unsigned char) (0x80 | ((cp >> 12) & 0x3f));
        u[2] = (unsigned char) (0x80 | ((cp >> 6) & 0x3f));
        u[3] = (unsigned char) (0x80 | (cp & 0x3f));
        n = 4;
    }

    if (r->cap_cut) {
        return;
    }

    /* all of the character or none of it */

    if (r->cap_len + n >= r->cap_size) {
        r->cap_cut = 1;
        return;
    }

    memcpy(r->cap + r->cap_len, u, n);
    r->cap_len += n;
}


static void
gi2_resp_string_end(gi2_resp_t *r)
{
    if (r->deep) {
        r->js = GI2_J_DEEP;
        return;
    }

    if (r->key_string) {
        r->key_string = 0;

        if (r->sink == GI2_S_SKIP) {
            r->va = GI2_V_NONE;

        } else {
            if (r->high) {
                r->cap_cut = 1;     /* a lone surrogate: no key of ours */
            }

            r->va = r->cap_cut ? GI2_V_NONE
                               : gi2_resp_lookup(r->ctx[r->depth - 1],
                                                 r->key, r->cap_len);
        }

        r->sink = GI2_S_SKIP;
        r->js = GI2_J_COLON;
        return;
    }

    if (r->sink == GI2_S_B64) {
        gi2_resp_image_end(r, 0);

    } else if (r->sink == GI2_S_CAP) {
        if (r->high) {
            r->high = 0;
            gi2_resp_put_cp(r, 0xfffd);
        }

        gi2_resp_cap_end(r);
    }

    r->sink = GI2_S_SKIP;

    gi2_resp_value_done(r);
}


static void
gi2_resp_cap_end(gi2_resp_t *r)
{
    size_t          i, n, need;
    unsigned char  *s;

    s = (unsigned char *) r->cap;
    n = r->cap_len;

    if (r->cap_cut) {

        /* raw bytes were cut anywhere: drop a partial UTF-8 sequence */

        for (i = n; i > 0 && n - i < 4 && (s[i - 1] & 0xc0) == 0x80; i--) {
            /* void */
        }

        if (i > 0 && s[i - 1] >= 0xc0) {
            need = (s[i - 1] >= 0xf0) ? 4 : (s[i - 1] >= 0xe0) ? 3 : 2;

            if (n - (i - 1) < need) {
                n = i - 1;
            }
        }

        if (r->cap_va == GI2_V_CAT) {
            n = r->cap_start;
            r->cats_cut = 1;
        }
    }

    s[n] = '\0';
    r->cap_len = n;

    if (r->cap_va == GI2_V_DATA_URL && r->cap == r->res.url[r->res.nurls]) {
        if (r->cap_cut) {
            r->res.url_truncated |= 1u << r->res.nurls;
        }

        r->res.nurls++;
    }

    r->cap_va = GI2_V_NONE;
}


/* which images an object keeps */

static unsigned
gi2_resp_class(gi2_resp_t *r)
{
    size_t       n;
    const char  *t;

    t = (r->type[0] != '\0') ? r->type : r->event;
    n = strlen(t);

    if (n >= 13 && memcmp(t + n - 13, "partial_image", 13) == 0) {
        return GI2_EV_PARTIAL;
    }

    if (strcmp(t, "error") == 0
        || strcmp(t, "response.error") == 0
        || strcmp(t, "response.failed") == 0)
    {
        return GI2_EV_ERROR;
    }

    return GI2_EV_OTHER;
}


static int
gi2_resp_type_ok(const char *type)
{
    return type[0] == '\0' || strcmp(type, "image_generation_call") == 0;
}


static int
gi2_resp_keep(gi2_resp_t *r, unsigned kind, unsigned cls)
{
    switch (kind) {

    case GI2_P_COMMIT:
        return 1;

    case GI2_P_ROOT:
        return cls != GI2_EV_PARTIAL;

    case GI2_P_ITEM:
        return cls != GI2_EV_PARTIAL && gi2_resp_type_ok(r->item_type);

    case GI2_P_OUTPUT:
        return gi2_resp_type_ok(r->out_type);
    }

    return 0;
}


/* the object ended (or was cut): its images are kept or dropped */

static void
gi2_resp_resolve(gi2_resp_t *r)
{
    unsigned      i, k, base, cls;
    gi2_image_t  *img;

    if (r->decided) {
        return;
    }

    r->decided = 1;

    cls = gi2_resp_class(r);

    if (r->partial_key) {
        cls = GI2_EV_PARTIAL;
    }

    if (cls == GI2_EV_PARTIAL) {
        r->res.partial_images++;

    } else if (cls == GI2_EV_ERROR) {
        r->res.error_event = 1;
    }

    base = r->res.nimages;
    img = &r->res.image[base];

    for (i = 0, k = 0; i < r->npend; i++) {
        if (!gi2_resp_keep(r, r->pend[i], cls)) {
            continue;
        }

        if (k != i) {
            img[k] = img[i];
        }

        k++;
    }

    if (k < r->npend) {
        memset(&img[k], 0, (r->npend - k) * sizeof(gi2_image_t));
    }

    r->res.nimages += k;
    r->res.images_total += k;
    r->npend = 0;
}


/* base64 images */

static void
gi2_resp_image_begin(gi2_resp_t *r, unsigned kind, int index)
{
    unsigned      slot;
    gi2_image_t  *img;

    slot = r->res.nimages + r->npend;

    if (slot < GI2_RESP_MAX_IMAGES) {
        img = &r->res.image[slot];
        r->pend[r->npend++] = (unsigned char) kind;

    } else {
        img = &r->spare;
    }

    memset(img, 0, sizeof(gi2_image_t));
    img->index = index;

    r->img = img;
    r->kind = kind;
    r->quad = 0;
    r->qn = 0;
    r->pad = 0;
    r->out_len = 0;

    r->sn_skip = 0;
    r->sn_dims = 0;
    r->sn_first = 0;
    gi2_resp_sniff_next(r, GI2_SN_MAGIC, 2);

    /* should OpenSSL fail, the hash stays zero: it is no hash */
    r->md_bad = (EVP_DigestInit_ex(r->md, gi2_resp_sha256(), NULL) != 1);

    gi2_resp_string_begin(r, GI2_S_B64);
}


static const unsigned char *
gi2_resp_b64(gi2_resp_t *r, const unsigned char *p,
    const unsigned char *end)
{
    size_t          n, k, room;
    unsigned        v;
    unsigned char  *o;

    while (p < end) {

        if (r->esc) {
            gi2_resp_escape(r, *p++);

            if (r->js != GI2_J_STRING) {
                return p;
            }

            continue;
        }

        /* whole quads, four digits at a time, while none is pending */

        if (r->qn == 0 && r->pad == 0 && end - p >= 4) {
            room = (GI2_RESP_OUT - r->out_len) / 3;

            if (room == 0) {
                gi2_resp_flush(r);
                room = GI2_RESP_OUT / 3;
            }

            n = (size_t) (end - p) / 4;

            if (n > room) {
                n = room;
            }

            o = r->out + r->out_len;
            k = gi2_resp_decode(p, n, o);
            p += 4 * k;
            o += 3 * k;
            n -= k;

            r->out_len = (size_t) (o - r->out);

            if (n == 0) {
                continue;       /* the buffer is full, or the input ends */
            }
        }

        /* one character at a time */

        v = gi2_resp_b64_tab[*p++];

        if (v <= GI2_B64_EQ) {
            gi2_resp_digit(r, v);
            continue;
        }

        switch (v) {

        case GI2_B64_QUOTE:
            gi2_resp_string_end(r);
            return p;

        case GI2_B64_BSL:
            r->esc = 1;
            continue;

        case GI2_B64_CTL:
            gi2_resp_bad(r);
            return p;

        default:
            r->img->bad_base64 = 1;
        }
    }

    return p;
}


/*
 * Decodes up to n whole quads from p into o (which has GI2_RESP_SLACK
 * bytes to spare past 3 * n) and returns how many: it stops before the
 * first quad that holds anything but base64 digits, which the caller reads
 * a character at a time.
 */

static size_t
gi2_resp_decode(const unsigned char *p, size_t n, unsigned char *o)
{
    size_t  k;

    k = 0;

#if (GI2_RESP_AVX2)
    if (gi2_resp_use_avx2 && n >= 8) {
        k = gi2_resp_quads_avx2(p, n, o);
    }
#endif

    return k + gi2_resp_quads(p + 4 * k, n - k, o + 3 * k);
}


static size_t
gi2_resp_quads(const unsigned char *p, size_t n, unsigned char *o)
{
    size_t    k;
    unsigned  a, b, c, d, v;

    for (k = 0; k < n; k++) {
        a = gi2_resp_b64_tab[p[0]];
        b = gi2_resp_b64_tab[p[1]];
        c = gi2_resp_b64_tab[p[2]];
        d = gi2_resp_b64_tab[p[3]];

        if ((a | b | c | d) & GI2_B64_SPECIAL) {
            break;
        }

        v = a << 18 | b << 12 | c << 6 | d;
        o[0] = (unsigned char) (v >> 16);
        o[1] = (unsigned char) (v >> 8);
        o[2] = (unsigned char) v;
        o += 3;
        p += 4;
    }

    return k;
}


#if (GI2_RESP_AVX2)

/*
 * 32 characters a step with AVX2, after Mula and Lemire, "Faster Base64
 * Encoding and Decoding using AVX2 Instructions" (2018).  Each character
 * is classified by its two nibbles: lut_lo[low] & lut_hi[high] is zero
 * only for the 64 digits, so a step with a quote, a backslash, '=' or any
 * other byte stops the loop and the scalar code takes over.  The digit's
 * value is the character plus lut_roll[high nibble, or 1 for '/']; pairs
 * and then pairs of pairs are merged with multiply-adds, and the three
 * bytes of each 32-bit lane are gathered in order.  Stores are 32 bytes
 * wide, of which 24 count: the caller leaves GI2_RESP_SLACK bytes.
 */

__attribute__((target("avx2")))
static size_t
gi2_resp_quads_avx2(const unsigned char *p, size_t n, unsigned char *o)
{
    size_t   k;
    __m256i  lut_lo, lut_hi, lut_roll, nib, slash, pairs, quads, shuf;
    __m256i  perm, c, hi, lo, roll, v;

    lut_lo = _mm256_setr_epi8(
        0x15, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
        0x11, 0x11, 0x13, 0x1a, 0x1b, 0x1b, 0x1b, 0x1a,
        0x15, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
        0x11, 0x11, 0x13, 0x1a, 0x1b, 0x1b, 0x1b, 0x1a);
    lut_hi = _mm256_setr_epi8(
        0x10, 0x10, 0x01, 0x02, 0x04, 0x08, 0x04, 0x08,
        0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10,
        0x10, 0x10, 0x01, 0x02, 0x04, 0x08, 0x04, 0x08,
        0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10);
    lut_roll = _mm256_setr_epi8(
        0, 16, 19, 4, -65, -65, -71, -71, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 16, 19, 4, -65, -65, -71, -71, 0, 0, 0, 0, 0, 0, 0, 0);
    shuf = _mm256_setr_epi8(
        2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1, -1,
        2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1, -1);
    perm = _mm256_setr_epi32(0, 1, 2, 4, 5, 6, 3, 7);
    nib = _mm256_set1_epi8(0x0f);
    slash = _mm256_set1_epi8('/');
    pairs = _mm256_set1_epi32(0x01400140);
    quads = _mm256_set1_epi32(0x00011000);

    for (k = 0; n - k >= 8; k += 8) {
        c = _mm256_loadu_si256((const __m256i *) (const void *) p);
        hi = _mm256_and_si256(_mm256_srli_epi32(c, 4), nib);
        lo = _mm256_and_si256(c, nib);

        if (!_mm256_testz_si256(_mm256_shuffle_epi8(lut_lo, lo),
                                _mm256_shuffle_epi8(lut_hi, hi)))
        {
            break;
        }

        roll = _mm256_shuffle_epi8(lut_roll,
                   _mm256_add_epi8(_mm256_cmpeq_epi8(c, slash), hi));
        v = _mm256_add_epi8(c, roll);
        v = _mm256_maddubs_epi16(v, pairs);
        v = _mm256_madd_epi16(v, quads);
        v = _mm256_shuffle_epi8(v, shuf);
        v = _mm256_permutevar8x32_epi32(v, perm);
        _mm256_storeu_si256((__m256i *) (void *) o, v);

        p += 32;
        o += 24;
    }

    return k;
}

#endif


/* a base64 digit (0-63) or '=' (GI2_B64_EQ) */

static void
gi2_resp_digit(gi2_resp_t *r, unsigned v)
{
    unsigned char  o[3];

    if (v < 64) {
        if (r->pad) {
            r->img->bad_base64 = 1;     /* after the padding */
            return;
        }

        r->quad = (r->quad << 6) | v;

        if (++r->qn == 4) {
            o[0] = (unsigned char) (r->quad >> 16);
            o[1] = (unsigned char) (r->quad >> 8);
            o[2] = (unsigned char) r->quad;
            gi2_resp_emit(r, o, 3);
            r->qn = 0;
            r->quad = 0;
        }

        return;
    }

    if (r->pad == 1) {
        r->pad = 2;
        return;
    }

    if (r->pad == 2 || r->qn < 2) {
        r->img->bad_base64 = 1;
        return;
    }

    if (r->qn == 2) {
        if (r->quad & 0xf) {
            r->img->bad_base64 = 1;
        }

        o[0] = (unsigned char) (r->quad >> 4);
        gi2_resp_emit(r, o, 1);
        r->pad = 1;

    } else {
        if (r->quad & 0x3) {
            r->img->bad_base64 = 1;
        }

        o[0] = (unsigned char) (r->quad >> 10);
        o[1] = (unsigned char) (r->quad >> 2);
        gi2_resp_emit(r, o, 2);
        r->pad = 2;
    }

    r->qn = 0;
    r->quad = 0;
}


static void
gi2_resp_emit(gi2_resp_t *r, const unsigned char *b, size_t n)
{
    if (r->out_len + n > GI2_RESP_OUT) {
        gi2_resp_flush(r);
    }

    memcpy(r->out + r->out_len, b, n);
    r->out_len += n;
}


static void
gi2_resp_flush(gi2_resp_t *r)
{
    if (r->out_len == 0) {
        return;
    }

    r->img->bytes += r->out_len;

    gi2_resp_sniff(r, r->out, r->out_len);

    if (!r->md_bad
        && EVP_DigestUpdate(r->md, r->out, r->out_len) != 1)
    {
        r->md_bad = 1;
    }

    r->out_len = 0;
}


/*
 * The string ended (cut = 0) or was cut.  A cut image keeps the complete
 * quads that arrived; a missing padding is only an error when the string
 * ended.
 */

static void
gi2_resp_image_end(gi2_resp_t *r, int cut)
{
    unsigned char  o[2];
    gi2_image_t   *img;
    unsigned       keep, cls;

    img = r->img;

    if (!cut) {
        if (r->pad == 1 || r->qn == 1) {
            img->bad_base64 = 1;

        } else if (r->qn == 2) {
            img->bad_base64 = 1;
            o[0] = (unsigned char) (r->quad >> 4);
            gi2_resp_emit(r, o, 1);

        } else if (r->qn == 3) {
            img->bad_base64 = 1;
            o[0] = (unsigned char) (r->quad >> 10);
            o[1] = (unsigned char) (r->quad >> 2);
            gi2_resp_emit(r, o, 2);
        }
    }

    gi2_resp_flush(r);

    if (r->md_bad
        || EVP_DigestFinal_ex(r->md, img->sha256, NULL) != 1)
    {
        memset(img->sha256, 0, sizeof(img->sha256));
    }

    img->truncated = cut ? 1 : 0;

    if (img == &r->spare) {

        /* no room to wait for the object's end: decide with what is known */

        cls = gi2_resp_class(r);
        keep = gi2_resp_keep(r, r->kind, cls);

        if (r->kind == GI2_P_ROOT && r->partial_key) {
            keep = 0;
        }

        if (keep) {
            r->res.images_total++;
        }
    }

    r->img = NULL;
}


/* image headers, from the decoded bytes as they stream by */

static void
gi2_resp_sniff(gi2_resp_t *r, const unsigned char *p, size_t len)
{
    size_t  n;

    while (len > 0) {

        if (r->sn_skip) {
            n = (r->sn_skip < len) ? (size_t) r->sn_skip : len;
            r->sn_skip -= n;
            p += n;
            len -= n;
            continue;
        }

        if (r->sn_state == GI2_SN_DONE) {
            return;
        }

        n = r->sn_need - r->sn_have;

        if (n > len) {
            n = len;
        }

        memcpy(r->sn_buf + r->sn_have, p, n);
        r->sn_have += n;
        p += n;
        len -= n;

        if (r->sn_have == r->sn_need) {
            gi2_resp_sniff_step(r);
        }
    }
}


static void
gi2_resp_sniff_next(gi2_resp_t *r, unsigned state, unsigned need)
{
    r->sn_state = state;
    r->sn_need = need;
    r->sn_have = 0;
}


static void
gi2_resp_sniff_step(gi2_resp_t *r)
{
    uint32_t        len, m;
    uint64_t        padded;
    gi2_image_t    *img;
    unsigned char  *b;

    img = r->img;
    b = r->sn_buf;

    switch (r->sn_state) {

    case GI2_SN_MAGIC:
        if (r->sn_have == 2) {
            if (b[0] == 0xff && b[1] == 0xd8) {
                memcpy(img->format, "jpeg", 5);
                gi2_resp_sniff_next(r, GI2_SN_JPEG_FF, 1);
                return;
            }

            if ((b[0] == 0x89 && b[1] == 'P') || (b[0] == 'R' && b[1] == 'I'))
            {
                r->sn_need = 8;
                return;
            }

            break;
        }

        if (r->sn_have == 8) {
            if (memcmp(b, gi2_resp_png_sig, 8) == 0) {
                memcpy(img->format, "png", 4);
                r->sn_first = 1;
                gi2_resp_sniff_next(r, GI2_SN_PNG_CHUNK, 8);
                return;
            }

            if (memcmp(b, "RIFF", 4) == 0) {
                r->sn_need = 12;
                return;
            }

            break;
        }

        if (memcmp(b + 8, "WEBP", 4) == 0) {
            memcpy(img->format, "webp", 5);
            gi2_resp_sniff_next(r, GI2_SN_WEBP_CHUNK, 8);
            return;
        }

        break;

    case GI2_SN_PNG_CHUNK:
        len = gi2_resp_be32(b);

        if (len > 0x7fffffff || memcmp(b + 4, "IEND", 4) == 0) {
            break;
        }

        if (memcmp(b + 4, "caBX", 4) == 0) {
            img->c2pa = 1;
        }

        if (r->sn_first && memcmp(b + 4, "IHDR", 4) == 0 && len >= 8) {
            r->sn_first = 0;
            r->sn_rest = (uint64_t) len - 8 + 4;
            gi2_resp_sniff_next(r, GI2_SN_PNG_IHDR, 8);
            return;
        }

        r->sn_first = 0;
        r->sn_skip = (uint64_t) len + 4;                /* data and CRC */
        gi2_resp_sniff_next(r, GI2_SN_PNG_CHUNK, 8);
        return;

    case GI2_SN_PNG_IHDR:
        img->width = gi2_resp_be32(b);
        img->height = gi2_resp_be32(b + 4);
        r->sn_skip = r->sn_rest;
        gi2_resp_sniff_next(r, GI2_SN_PNG_CHUNK, 8);
        return;

    case GI2_SN_JPEG_FF:
        if (b[0] != 0xff) {
            break;
        }

        gi2_resp_sniff_next(r, GI2_SN_JPEG_MARK, 1);
        return;

    case GI2_SN_JPEG_MARK:
        m = b[0];

        if (m == 0xff) {
            gi2_resp_sniff_next(r, GI2_SN_JPEG_MARK, 1);    /* fill byte */
            return;
        }

        /* image data from SOS on, or the end: nothing more to learn */

        if (m == 0xda || m == 0xd9 || m == 0x00) {
            break;
        }

        if (m == 0x01 || (m >= 0xd0 && m <= 0xd8)) {
            gi2_resp_sniff_next(r, GI2_SN_JPEG_FF, 1);      /* no length */
            return;
        }

        r->sn_mark = m;
        gi2_resp_sniff_next(r, GI2_SN_JPEG_LEN, 2);
        return;

    case GI2_SN_JPEG_LEN:
        len = gi2_resp_be16(b);

        if (len < 2) {
            break;
        }

        len -= 2;
        m = r->sn_mark;

        /* SOF0-SOF15 but DHT, JPG and DAC */

        if (!r->sn_dims && m >= 0xc0 && m <= 0xcf
            && m != 0xc4 && m != 0xc8 && m != 0xcc && len >= 5)
        {
            r->sn_rest = len - 5;
            gi2_resp_sniff_next(r, GI2_SN_JPEG_SOF, 5);
            return;
        }

        /* APP11: "JP", instance, sequence, then the box: length, "jumb" */

        if (m == 0xeb && len >= 16) {
            r->sn_rest = len - 16;
            gi2_resp_sniff_next(r, GI2_SN_JPEG_APP11, 16);
            return;
        }

        r->sn_skip = len;
        gi2_resp_sniff_next(r, GI2_SN_JPEG_FF, 1);
        return;

    case GI2_SN_JPEG_SOF:
        img->height = gi2_resp_be16(b + 1);
        img->width = gi2_resp_be16(b + 3);
        r->sn_dims = 1;
        r->sn_skip = r->sn_rest;
        gi2_resp_sniff_next(r, GI2_SN_JPEG_FF, 1);
        return;

    case GI2_SN_JPEG_APP11:
        if (b[0] == 'J' && b[1] == 'P' && memcmp(b + 12, "jumb", 4) == 0) {
            img->c2pa = 1;
        }

        r->sn_skip = r->sn_rest;
        gi2_resp_sniff_next(r, GI2_SN_JPEG_FF, 1);
        return;

    case GI2_SN_WEBP_CHUNK:
        len = gi2_resp_le32(b + 4);
        padded = (uint64_t) len + (len & 1);

        if (memcmp(b, "C2PA", 4) == 0) {
            img->c2pa = 1;
        }

        if (!r->sn_dims) {
            if (memcmp(b, "VP8X", 4) == 0 && len >= 10) {
                r->sn_rest = padded - 10;
                gi2_resp_sniff_next(r, GI2_SN_WEBP_VP8X, 10);
                return;
            }

            if (memcmp(b, "VP8 ", 4) == 0 && len >= 10) {
                r->sn_rest = padded - 10;
                gi2_resp_sniff_next(r, GI2_SN_WEBP_VP8, 10);
                return;
            }

            if (memcmp(b, "VP8L", 4) == 0 && len >= 5) {
                r->sn_rest = padded - 5;
                gi2_resp_sniff_next(r, GI2_SN_WEBP_VP8L, 5);
                return;
            }
        }

        r->sn_skip = padded;
        gi2_resp_sniff_next(r, GI2_SN_WEBP_CHUNK, 8);
        return;

    case GI2_SN_WEBP_VP8X:
        img->width = gi2_resp_le24(b + 4) + 1;
        img->height = gi2_resp_le24(b + 7) + 1;
        r->sn_dims = 1;
        r->sn_skip = r->sn_rest;
        gi2_resp_sniff_next(r, GI2_SN_WEBP_CHUNK, 8);
        return;

    case GI2_SN_WEBP_VP8:

        /* a key frame: tag, start code, then 14-bit sizes */

        if (b[3] == 0x9d && b[4] == 0x01 && b[5] == 0x2a) {
            img->width = gi2_resp_le16(b + 6) & 0x3fff;
            img->height = gi2_resp_le16(b + 8) & 0x3fff;
        }

        r->sn_dims = 1;
        r->sn_skip = r->sn_rest;
        gi2_resp_sniff_next(r, GI2_SN_WEBP_CHUNK, 8);
        return;

    case GI2_SN_WEBP_VP8L:
        if (b[0] == 0x2f) {
            m = gi2_resp_le32(b + 1);
            img->width = (m & 0x3fff) + 1;
            img->height = ((m >> 14) & 0x3fff) + 1;
        }

        r->sn_dims = 1;
        r->sn_skip = r->sn_rest;
        gi2_resp_sniff_next(r, GI2_SN_WEBP_CHUNK, 8);
        return;
    }

    r->sn_state = GI2_SN_DONE;
}


/* SSE: event streams */

static void
gi2_resp_sse(gi2_resp_t *r, const unsigned char *p,
    const unsigned char *end)
{
    unsigned char         c;
    const unsigned char  *q;

    while (p < end) {
        c = *p;

        /* CRLF is one line end, even when split between two chunks */

        if (r->cr) {
            r->cr = 0;

            if (c == '\n') {
                p++;
                continue;
            }
        }

        switch (r->ls) {

        case GI2_L_START:
            if (c == '\r' || c == '\n') {
                r->cr = (c == '\r');
                p++;
                gi2_resp_dispatch(r, 0);
                continue;
            }

            if (c == ':') {
                r->ls = GI2_L_SKIP;     /* a comment */
                p++;
                continue;
            }

            r->ls = GI2_L_NAME;
            r->name_len = 0;
            r->ev_open = 1;
            continue;

        case GI2_L_NAME:
            p++;

            if (c == ':') {
                gi2_resp_field(r);
                r->ls = GI2_L_SPACE;
                continue;
            }

            if (c == '\r' || c == '\n') {

                /* a field without a value */

                gi2_resp_field(r);
                r->cr = (c == '\r');
                r->ls = GI2_L_START;
                continue;
            }

            if (r->name_len < sizeof(r->name)) {
                r->name[r->name_len] = (char) c;
            }

            if (r->name_len <= sizeof(r->name)) {
                r->name_len++;
            }

            continue;

        case GI2_L_SPACE:
            r->ls = GI2_L_VALUE;

            if (c == ' ') {
                p++;
            }

            continue;

        default:
            /* GI2_L_VALUE, GI2_L_SKIP: up to the line's end */

            q = gi2_resp_eol(p, end);

            if (r->ls == GI2_L_VALUE && q > p) {
                gi2_resp_field_data(r, p, q);
            }

            if (q == end) {
                return;
            }

            r->cr = (*q == '\r');
            r->ls = GI2_L_START;
            p = q + 1;
        }
    }
}


static const unsigned char *
gi2_resp_eol(const unsigned char *p, const unsigned char *end)
{
    const unsigned char  *lf, *cr;

    lf = memchr(p, '\n', (size_t) (end - p));

    if (lf == NULL) {
        lf = end;
    }

    cr = memchr(p, '\r', (size_t) (lf - p));

    return (cr != NULL) ? cr : lf;
}


/* a field's name is complete */

static void
gi2_resp_field(gi2_resp_t *r)
{
    if (r->name_len == 4 && memcmp(r->name, "data", 4) == 0) {
        r->field = GI2_SSE_DATA;

        /* lines of one event's data are joined with "\n" */

        if (r->ev_data && !r->ev_bad) {
            gi2_resp_json(r, (const unsigned char *) "\n",
                          (const unsigned char *) "\n" + 1);
        }

        r->ev_data = 1;
        return;
    }

    if (r->name_len == 5 && memcmp(r->name, "event", 5) == 0) {
        r->field = GI2_SSE_EVENT;
        r->event_len = 0;
        r->event[0] = '\0';
        return;
    }

    r->field = GI2_SSE_OTHER;
}


static void
gi2_resp_field_data(gi2_resp_t *r, const unsigned char *p,
    const unsigned char *end)
{
    size_t  n;

    switch (r->field) {

    case GI2_SSE_DATA:
        if (!r->ev_bad) {
            gi2_resp_json(r, p, end);
        }

        return;

    case GI2_SSE_EVENT:
        n = (size_t) (end - p);

        if (n > sizeof(r->event) - 1 - r->event_len) {
            n = sizeof(r->event) - 1 - r->event_len;
        }

        memcpy(r->event + r->event_len, p, n);
        r->event_len += n;
        r->event[r->event_len] = '\0';
        return;
    }
}


/* a blank line, or the end of the stream (cut) */

static void
gi2_resp_dispatch(gi2_resp_t *r, int cut)
{
    if (strcmp(r->event, "error") == 0) {
        r->res.error_event = 1;
    }

    if (r->ev_data && r->json_any) {
        if (!r->ev_bad && r->js != GI2_J_DONE) {

            /* the event ended inside its JSON */

            if (!cut) {
                r->res.malformed = 1;
            }

            gi2_resp_abort(r);
        }

        gi2_resp_resolve(r);
    }

    r->ev_open = 0;
    r->ev_data = 0;
    r->ev_bad = 0;
    r->event_len = 0;
    r->event[0] = '\0';

    gi2_resp_reset_doc(r);
}
