/* sha256.h — a small SHA-256 for checking the audit hash chain. */
#ifndef FS_TEST_SHA256_H
#define FS_TEST_SHA256_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Writes the lowercase hex digest (64 chars + NUL) of data[0..len) to hex. */
void sha256_hex(const void *data, size_t len, char hex[65]);

#ifdef __cplusplus
}
#endif

#endif
