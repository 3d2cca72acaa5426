// The public header as the library's Swift sees it: status codes, limits and
// versions come from include/fieldsync.h, their one source.
#include "../../include/fieldsync.h"

// Macros Swift cannot import as they are: a string (Swift makes it a String;
// fs_version returns static storage) and a product of three terms.
static const int fs_header_max_message_bytes = FS_MAX_MESSAGE_BYTES;
static inline const char *_Nonnull fs_header_version(void) { return FS_VERSION; }

// Each name is its macro spelled by the preprocessor, so no name can differ
// from its code; a code missing here answers FS_ERR_UNKNOWN, which
// bindings/python/tests/test_status_codes.py checks against the header.
static inline const char *_Nonnull fs_header_status_name(fs_status status) {
#define FS_NAME(code) case code: return #code;
    switch (status) {
    FS_NAME(FS_OK)
    FS_NAME(FS_ERR_ARG)
    FS_NAME(FS_ERR_JSON)
    FS_NAME(FS_ERR_SCHEMA)
    FS_NAME(FS_ERR_NOT_FOUND)
    FS_NAME(FS_ERR_CONFLICT)
    FS_NAME(FS_ERR_IO)
    FS_NAME(FS_ERR_FULL)
    FS_NAME(FS_ERR_CORRUPT)
    FS_NAME(FS_ERR_BUSY)
    FS_NAME(FS_ERR_UPGRADE_REQUIRED)
    FS_NAME(FS_ERR_CLOSED)
    FS_NAME(FS_ERR_INTERNAL)
    FS_NAME(FS_ERR_TOO_BIG)
    FS_NAME(FS_ERR_MISUSE)
    FS_NAME(FS_ERR_AUTH)
    default: return "FS_ERR_UNKNOWN";
    }
#undef FS_NAME
}
