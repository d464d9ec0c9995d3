/*
 * ngx_gi2_module: streaming scanner of OpenAI image API responses.
 *
 * Fed an upstream response body chunk by chunk as it passes through a body
 * filter; keeps what the audit needs: a SHA-256, size, format, dimensions
 * and C2PA presence of every base64 image, URLs, usage, error details.
 * A byte-level JSON state machine and an SSE line reader: no string is
 * ever held whole, so memory per scanner is fixed (gi2_resp_memory()) and
 * does not grow with the images.  Any chunking gives the same result.
 *
 * Shapes recognised, in a JSON body (sse = 0) or in each event of a
 * text/event-stream (sse = 1):
 *
 *   images API    {"created","data":[{"b64_json"|"url","revised_prompt"}],
 *                  "background","output_format","quality","size",
 *                  "usage":{"input_tokens","input_tokens_details":
 *                  {"text_tokens","image_tokens"},"output_tokens",
 *                  "output_tokens_details":{...},"total_tokens"}}
 *   errors        {"error":{"message","type","param","code",
 *                  "moderation_details":{"moderation_stage",
 *                  "categories":[...]}}}
 *   image events  {"type":"image_generation.partial_image"|
 *                  "image_generation.completed"|"image_edit.*",
 *                  "b64_json","created_at","usage",...}
 *   error events  event: error / {"type":"error","error":{...}} or
 *                  {"error":{...}}, and the flat {"type":"error","code",
 *                  "message","param"} of the Responses API when "type"
 *                  comes first
 *   responses API {"type":"response.image_generation_call.partial_image",
 *                  "partial_image_b64"}, {"type":"response.output_item.done",
 *                  "item":{"type":"image_generation_call","result"}},
 *                  {"type":"response.completed"|"response.failed",
 *                  "response":{"usage","error"}} and the non-stream
 *                  {"output":[{"type":"image_generation_call","result"}],
 *                  "usage"}; response.output inside events is not read
 *                  (its images were counted from output_item.done)
 *
 * Decisions an auditor should know:
 *
 *   - An image whose base64 string never ended (body cut, event cut,
 *     malformed JSON inside it) is KEPT with truncated = 1; its sha256 and
 *     bytes cover the complete base64 quads that arrived, which is what the
 *     client could decode.  It is not the hash of a whole image: check the
 *     flag before comparing hashes.
 *   - Whether a base64 string is an image is decided when its object
 *     ends: at the end of the JSON body, or at the end of the SSE event
 *     (the "type" key may come after "b64_json").  Partial images are
 *     counted and dropped.  An event type is its JSON "type", else its SSE
 *     "event:" name.  Read the result after gi2_resp_finish().
 *   - Images past GI2_RESP_MAX_IMAGES are counted in images_total, not
 *     stored; for those the partial/final decision uses what is known when
 *     their string ends.
 *   - bad_base64: any character outside A-Z a-z 0-9 + / (escaped ones
 *     too, so "\/" is fine and "\n" is not), '=' anywhere but at the end,
 *     missing padding, nonzero bits in the last character.  Bad characters
 *     are skipped; the rest is still decoded and hashed.
 *   - Malformed JSON: malformed = 1.  A JSON body stops being scanned; an
 *     SSE stream skips the rest of that event and goes on with the next.
 *   - Nesting beyond GI2_RESP_DEPTH is skipped by a bracket counter
 *     (too_deep = 1): inside it, brackets are not matched by kind and
 *     nothing is extracted.
 *   - Keys are compared after decoding escapes; keys longer than 63 bytes
 *     or holding U+0000 are unknown.  Captured strings are cut at a UTF-8
 *     character boundary; lone surrogate escapes become U+FFFD.
 *   - Repeated fields: the last wins (usage of several completed events,
 *     for instance).
 *
 * Memory: the scanner is one block of gi2_resp_memory() bytes (about
 * 14 KiB, result included) from the given allocator, taken in
 * gi2_resp_create(); feeding never calls the allocator.  The SHA-256 is
 * OpenSSL's (EVP, SHA-NI where the CPU has it): one EVP_MD_CTX per scanner,
 * allocated by OpenSSL in gi2_resp_create() and freed by gi2_resp_finish()
 * or gi2_resp_destroy(); with a pool allocator the caller must still make
 * sure one of them runs (a pool cleanup).  OpenSSL 3 itself allocates a
 * small digest state on each image start, and loads its default provider
 * at the first digest of a process.
 *
 * The caller picks the mode from the response's Content-Type
 * (text/event-stream: sse = 1) and inflates compressed bodies first.
 */

#ifndef _GI2_RESP_H_INCLUDED_
#define _GI2_RESP_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>

#include "gi2_core.h"


#define GI2_RESP_MAX_IMAGES   16
#define GI2_RESP_URL_LEN      512
#define GI2_RESP_DEPTH        32      /* nesting tracked exactly */


typedef struct {
    unsigned char         sha256[32];  /* of the decoded image bytes */
    uint64_t              bytes;       /* decoded size */
    char                  format[8];   /* "png" "jpeg" "webp" or "" */
    uint32_t              width;       /* 0 when unknown */
    uint32_t              height;
    unsigned              c2pa:1;      /* PNG caBX, JPEG APP11 JUMBF,
                                          WebP C2PA chunk */
    unsigned              bad_base64:1;
    unsigned              truncated:1; /* the string never ended */
    int                   index;       /* data[] index, else -1 */
} gi2_image_t;


typedef struct {
    gi2_image_t           image[GI2_RESP_MAX_IMAGES];
    unsigned              nimages;        /* stored */
    unsigned              images_total;   /* seen, even past the max */
    unsigned              partial_images; /* partial image events */

    char                  url[GI2_RESP_MAX_IMAGES][GI2_RESP_URL_LEN];
    unsigned              nurls;          /* stored */
    unsigned              urls_total;     /* seen */
    unsigned              url_truncated;  /* bit i: url[i] was cut */

    int64_t               input_tokens;   /* -1: unknown */
    int64_t               output_tokens;
    int64_t               total_tokens;
    int64_t               input_text_tokens;
    int64_t               input_image_tokens;
    int64_t               output_text_tokens;
    int64_t               output_image_tokens;
    int64_t               created;        /* "created" or "created_at" */

    char                  error_type[64];
    char                  error_code[64];
    char                  error_param[64];
    char                  error_message[256];
    char                  moderation_stage[32];
    char                  categories[256];   /* comma-joined, whole
                                                categories only */

    char                  response_size[32];
    char                  response_quality[32];
    char                  response_format[16];
    char                  response_background[16];

    unsigned              sse:1;
    unsigned              malformed:1;
    unsigned              truncated:1;    /* ended mid-value or mid-event */
    unsigned              error_event:1;  /* an error object or event */
    unsigned              too_deep:1;
} gi2_resp_result_t;


typedef struct gi2_resp_s  gi2_resp_t;


/* sse: the body is text/event-stream; NULL when out of memory */
gi2_resp_t *gi2_resp_create(int sse, gi2_alloc_t *a);

/*
 * GI2_OK, also for malformed input (see the result's flags);
 * GI2_EINVAL after gi2_resp_finish().
 */
int gi2_resp_feed(gi2_resp_t *r, const unsigned char *buf, size_t len);

/* end of the body: flags what was cut, decides pending images */
int gi2_resp_finish(gi2_resp_t *r);

const gi2_resp_result_t *gi2_resp_result(gi2_resp_t *r);

/* frees the OpenSSL context, and the scanner when a->free is set */
void gi2_resp_destroy(gi2_resp_t *r);

/* bytes per scanner, all of them from the caller's allocator */
size_t gi2_resp_memory(void);

/*
 * The base64 decoder's vector path (AVX2 on x86-64, chosen at run time by
 * the CPU): on = 1 uses it when the CPU has it, 0 never, -1 only asks.
 * Returns whether it is in use.  Tests compare both paths.
 */
int gi2_resp_simd(int on);


#endif /* _GI2_RESP_H_INCLUDED_ */
