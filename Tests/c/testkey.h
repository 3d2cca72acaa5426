/*
 * testkey.h — Ed25519 keys the tests own (OpenSSL), to act as a device whose
 * key the test holds: a compromised enrolled device that signs whatever it
 * likes, a host signer, or a verifier of what the library signed.
 */
#ifndef FS_TEST_TESTKEY_H
#define FS_TEST_TESTKEY_H

#include <stddef.h>
#include <stdint.h>

#include "fieldsync.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct test_key test_key;

/* A new key pair; NULL and a failure if OpenSSL cannot make one. */
test_key *test_key_new_at(const char *file, int line);
#define test_key_new() test_key_new_at(__FILE__, __LINE__)
void test_key_free(test_key *k);
/* The public key, 64 hex digits (lives as long as the key). */
const char *test_key_public(const test_key *k);
/* 0 when `sig` is the signature of the bytes. */
int test_key_sign(const test_key *k, const void *msg, size_t len, uint8_t sig[64]);
/* 1 when `sig_hex` (128 hex digits) is the signature of the bytes by
 * `public_hex` (64 hex digits), 0 otherwise. */
int ed25519_verifies(const char *public_hex, const void *msg, size_t len, const char *sig_hex);

/* An fs_sign_fn signing with the test_key in ctx. */
fs_status test_key_signer(void *ctx, const uint8_t *message, size_t length, uint8_t signature[64]);

/* Makes `s` sign with a new key the test owns (fs_store_set_signer) and
 * enrolls it at `h` (fixture enroll, `extra` members): the store is now an
 * enrolled device whose key the test holds, as an attacker who compromised a
 * device does. Returns the key (test_key_free it after closing the store),
 * or NULL and a failure. */
test_key *own_device_key_at(const char *file, int line, fs_store *s, fs_hub *h, const char *extra);
#define own_device_key(s, h, extra) own_device_key_at(__FILE__, __LINE__, (s), (h), (extra))

/* Enrolls `device` at `h` with `k`'s public key (no instance: bound to the
 * first that syncs). Returns 0, or -1 and a failure. */
int enroll_key_at(const char *file, int line, fs_hub *h, const char *device, const test_key *k);
#define enroll_key(h, device, k) enroll_key_at(__FILE__, __LINE__, (h), (device), (k))

/* `text` (malloc()ed, taken) signed again by `k` as a request the way the
 * library signs: a JSON object has its "signature" member dropped, is
 * dumped compact, and ends with `,"signature":"<128 hex>"}` over every byte
 * before it. Text that is not a JSON object is returned as it is (the
 * decoder must refuse it before any signature matters). free() the result. */
char *resigned(const test_key *k, char *text);

/* HANDLE_REFUSED_FREE of `request` re-signed by `k`: the hub's decoder must
 * refuse it even from an enrolled device whose key signed it. */
#define HANDLE_REFUSED_SIGNED(h, k, request, expected) \
    HANDLE_REFUSED_FREE((h), resigned((k), (request)), (expected))

#ifdef __cplusplus
}
#endif

#endif /* FS_TEST_TESTKEY_H */
