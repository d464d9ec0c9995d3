/*
 * ngx_gi2_module: the external moderation service, the nginx-free part.
 *
 * The request body sent to the service, a streaming parser of its answer
 * (OpenAI's /v1/moderations or the generic contract of
 * docs/moderation-api.md), the verdict under configured thresholds, and
 * a compact form of an answer for the shared verdict cache.
 */

#ifndef _GI2_MODAPI_H_INCLUDED_
#define _GI2_MODAPI_H_INCLUDED_


#include "gi2_core.h"


#define GI2_MODAPI_OPENAI       0
#define GI2_MODAPI_GENERIC      1

/* what is kept of an answer: more categories are ignored */
#define GI2_MODAPI_CATS_MAX     32
#define GI2_MODAPI_NAME_MAX     64

/* the packed form is never longer */
#define GI2_MODAPI_PACK_MAX                                                  \
    (2 + GI2_MODAPI_CATS_MAX * (2 + GI2_MODAPI_NAME_MAX + 8))


typedef struct {
    char                  name[GI2_MODAPI_NAME_MAX + 1];
    double                score;       /* < 0: the service gave none */
    int                   flagged;     /* the service's flag for it */
} gi2_modapi_cat_t;

typedef struct {
    int                   flagged;     /* the service's own verdict */
    size_t                ncats;
    gi2_modapi_cat_t      cat[GI2_MODAPI_CATS_MAX];

    /* set when the answer is refused: why, for the error log */
    const char           *error;
} gi2_modapi_result_t;

typedef struct {
    const char           *name;
    double                score;
} gi2_modapi_threshold_t;

typedef struct {
    gi2_str_t             url;         /* decoded */
} gi2_modapi_image_t;

typedef struct gi2_modapi_parser_s  gi2_modapi_parser_t;
typedef struct gi2_modapi_images_s  gi2_modapi_images_t;


/*
 * The JSON body of the call.  openai: {"model","input"}, the input an
 * array of a text part and image_url parts when images are given;
 * generic: {"prompt","model","consumer"} (images are not part of it).
 * Strings are escaped here.  A NULL consumer is null.  Returns the
 * length; with buf NULL only computes it.
 */
size_t gi2_modapi_request(int format, const gi2_str_t *prompt,
    const gi2_str_t *model, const gi2_str_t *consumer,
    const gi2_modapi_image_t *images, size_t nimages, unsigned char *buf);

/* JSON string escaping: the length, or with dst the end of what it wrote */
size_t gi2_json_escape_len(const unsigned char *s, size_t len);
unsigned char *gi2_json_escape(unsigned char *dst, const unsigned char *s,
    size_t len);

/* the answer, fed as it arrives; res is filled as it is read */
gi2_modapi_parser_t *gi2_modapi_parser_create(int format,
    gi2_modapi_result_t *res, gi2_alloc_t *a);
int gi2_modapi_parser_feed(gi2_modapi_parser_t *p, const unsigned char *buf,
    size_t len);
int gi2_modapi_parser_finish(gi2_modapi_parser_t *p);
void gi2_modapi_parser_destroy(gi2_modapi_parser_t *p);

/*
 * The verdict: 1 flagged, 0 clean.  Without thresholds the service's own
 * "flagged" decides and the flagged categories are those it flagged;
 * with them, a category is flagged when its score reaches its threshold
 * and nothing else counts.  The flagged categories are written to out as
 * a comma-separated list (cut to outlen - 1 bytes at a comma), NUL-ended.
 */
int gi2_modapi_verdict(const gi2_modapi_result_t *res,
    const gi2_modapi_threshold_t *th, size_t nth, char *out, size_t outlen);

/*
 * The images of a JSON edit request: the image_url strings of the
 * top-level "images" array's objects.  Fed the request body; keeps the
 * first (decoded) when it is at most max bytes, and counts them all.
 */
gi2_modapi_images_t *gi2_modapi_images_create(size_t max, gi2_alloc_t *a);
int gi2_modapi_images_feed(gi2_modapi_images_t *im, const unsigned char *buf,
    size_t len);
void gi2_modapi_images_result(gi2_modapi_images_t *im, gi2_str_t *first,
    size_t *count, size_t *too_big);
void gi2_modapi_images_destroy(gi2_modapi_images_t *im);

/* the cache's form of an answer: bytes written (0: no room) / GI2_OK */
size_t gi2_modapi_pack(const gi2_modapi_result_t *res, unsigned char *buf,
    size_t len);
int gi2_modapi_unpack(const unsigned char *buf, size_t len,
    gi2_modapi_result_t *res);


#endif /* _GI2_MODAPI_H_INCLUDED_ */
