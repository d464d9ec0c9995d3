/*
 * ngx_gi2_module: streaming multipart/form-data parser (image edits).
 *
 * Fed the request body chunk by chunk as it arrives, like the JSON parser,
 * and fills the same gi2_req_t: the text fields the policy and the audit
 * need, with the byte offsets of their values and parts (for a rewrite by
 * splicing), and a SHA-256 of every image and mask part.  File parts are
 * hashed as they pass and never held; memory is fixed but for the text
 * fields, which are capped.  Any chunking gives the same result.
 *
 * Refused (req->error set), so that the gateway never reads a body
 * differently from the upstream:
 *
 *   - a body that does not start with its boundary (no preamble), a
 *     delimiter followed by anything but padding and CRLF or "--", a
 *     missing close delimiter, anything but white space after it;
 *   - part header lines over GI2_MP_LINE_MAX bytes, more than
 *     GI2_MP_HEADERS_MAX of them, folded lines, a bare CR or LF, a line
 *     without a colon, a repeated Content-Disposition, Content-Type or
 *     Content-Transfer-Encoding;
 *   - a Content-Transfer-Encoding other than 7bit, 8bit or binary (the
 *     gateway would read other bytes than the upstream decodes);
 *   - a part that is not "form-data", has no name, an empty name, a
 *     name*= (RFC 2231) parameter, a repeated name or filename, a name
 *     with a backslash, '%' or a control character, a quoted value with
 *     a backslash before a quote (escaping is read differently by
 *     different parsers);
 *   - a text field with a charset other than UTF-8 or US-ASCII, a
 *     _charset_ field naming another, text that is not UTF-8, a known
 *     text field sent as a file (with a filename), a repeated known
 *     field (names compared case-insensitively), a prompt over
 *     GI2_PROMPT_MAX bytes or another known field over GI2_MP_FIELD_MAX;
 *   - more than GI2_MP_PARTS_MAX parts, more than GI2_MP_IMAGES_MAX
 *     image parts, a second mask, an image or mask over GI2_MP_FILE_MAX.
 *
 * filename*= marks a file part like filename=; its value is not read.
 * Parts of other names pass unread (counted, not kept).
 */

#ifndef _GI2_MULTIPART_H_INCLUDED_
#define _GI2_MULTIPART_H_INCLUDED_


#include "gi2_core.h"


#define GI2_MP_BOUNDARY_MAX   70          /* RFC 2046 */
#define GI2_MP_LINE_MAX       8192        /* a part header line */
#define GI2_MP_HEADERS_MAX    16          /* header lines a part */
#define GI2_MP_PARTS_MAX      64
#define GI2_MP_IMAGES_MAX     16
#define GI2_MP_FILE_MAX       (50 * 1024 * 1024)
#define GI2_MP_FIELD_MAX      4096        /* known text fields but prompt */

/* the inputs kept: every image, and the mask */
#define GI2_MP_INPUTS_MAX     (GI2_MP_IMAGES_MAX + 1)


typedef struct gi2_mp_s  gi2_mp_t;


/*
 * A Content-Type value: 0 if it is not multipart/form-data, 1 if it is,
 * with its boundary (pointing into ct), GI2_EINVAL with a message for the
 * client when its boundary is missing, repeated or not 1 to 70 of RFC
 * 2046's characters.
 */
int gi2_mp_content_type(const unsigned char *ct, size_t len,
    gi2_str_t *boundary, const char **error);

/* the boundary is copied; req is cleared and marked multipart */
gi2_mp_t *gi2_mp_create(gi2_req_t *req, const unsigned char *boundary,
    size_t len, gi2_alloc_t *a);

/* GI2_OK, or GI2_EINVAL once req->error is set */
int gi2_mp_feed(gi2_mp_t *m, const unsigned char *buf, size_t len);

/* the end of the body: the close delimiter must have come */
int gi2_mp_finish(gi2_mp_t *m);

/* frees what the parser holds outside the allocator; idempotent */
void gi2_mp_destroy(gi2_mp_t *m);


#endif /* _GI2_MULTIPART_H_INCLUDED_ */
