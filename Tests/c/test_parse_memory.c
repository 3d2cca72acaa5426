/* test_parse_memory.c — the memory a message takes while it is parsed is
 * bounded by a documented multiple of its size (docs/ABI.md, "Limits"): the
 * peak resident set of one fs_hub_handle of a body made of the smallest
 * values JSON has, each shape sized just past a power of two (where arrays
 * have just grown), against PARSE_BYTES_PER_BYTE with a margin. Each test
 * runs in its own forked process, so the peak is this call's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"

/* docs/ABI.md: parsing takes at most 64 bytes of memory per byte of text. */
#define PARSE_BYTES_PER_BYTE 64
/* jansson's tree alone measures up to 60 on the shapes below; the engine's
 * values are built while it is released (86 when both trees were kept
 * whole): the margin must not hide that */
#define MARGIN 1.125
#define ITEMS ((1 << 19) + 1)

static long status_kib(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(key);
    if (f == NULL) return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, n) == 0) v = atol(line + n);
    fclose(f);
    return v;
}

/* `ITEMS` copies of `item` between `open` and `close`, comma-separated;
 * `%x` in item (if any) becomes the item's index, zero-padded (unique keys). */
static char *body_of(const char *open, const char *item, const char *close, size_t *len) {
    size_t cap = (strlen(item) + 8) * (size_t)ITEMS + 16, i;
    char *s = (char *)malloc(cap), *p = s;
    if (s == NULL) abort();
    p += sprintf(p, "%s", open);
    for (i = 0; i < ITEMS; i++) {
        if (i) *p++ = ',';
        if (strstr(item, "%")) p += sprintf(p, item, (unsigned)i);
        else p += sprintf(p, "%s", item);
    }
    p += sprintf(p, "%s", close);
    *len = (size_t)(p - s);
    return s;
}

static void check_shape(fs_hub *h, const char *open, const char *item, const char *close) {
    size_t len = 0;
    char *body = body_of(open, item, close, &len);
    char *out = NULL;
    FILE *reset = fopen("/proc/self/clear_refs", "w");
    long before, peak;
    double per_byte;
    /* "5" resets the peak (VmHWM) to the current resident set */
    if (reset != NULL) {
        fputs("5", reset);
        fclose(reset);
    }
    before = status_kib("VmRSS:");
    /* not a request: refused after it is parsed, which is what is measured */
    CHECK_STATUS(fs_hub_handle(h, body, &out), FS_ERR_ARG);
    peak = status_kib("VmHWM:");
    REQUIRE(before > 0 && peak > 0);
    per_byte = (double)(peak - before) * 1024.0 / (double)len;
    if (per_byte > PARSE_BYTES_PER_BYTE * MARGIN)
        fs_test_fail(__FILE__, __LINE__, "%s%s,...%s (%zu bytes) took %.1f bytes per byte, over %d (+%.0f%%)",
                     open, item, close, len, per_byte, PARSE_BYTES_PER_BYTE, (MARGIN - 1) * 100);
    fs_free(out);
    free(body);
}

TEST(test_parsing_a_message_takes_a_bounded_multiple_of_its_size) {
    fs_hub *h = open_task_hub();
    REQUIRE(h != NULL);
    check_shape(h, "[", "1", "]");
    check_shape(h, "[", "[]", "]");
    check_shape(h, "[", "\"\"", "]");
    check_shape(h, "{", "\"%05x\":1", "}");
    check_shape(h, "[", "[1]", "]");
    check_shape(h, "[", "{\"\":1}", "]");
    check_shape(h, "[", "{\"\":{\"\":{\"\":{\"\":{\"\":{\"\":{\"\":{\"\":1}}}}}}}}", "]");
    check_shape(h, "[", "[[[[[[[[1]]]]]]]]", "]");
    fs_hub_close(h);
}
