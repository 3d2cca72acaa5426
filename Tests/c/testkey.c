/* testkey.c — see testkey.h. */
#include "testkey.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"

struct test_key {
    EVP_PKEY *pkey;
    char public_hex[65];
};

static void to_hex(const uint8_t *bytes, size_t n, char *out) {
    static const char digits[] = "0123456789abcdef";
    size_t i;
    for (i = 0; i < n; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * n] = '\0';
}

static int from_hex(const char *hex, uint8_t *out, size_t n) {
    size_t i;
    if (hex == NULL || strlen(hex) != 2 * n) return -1;
    for (i = 0; i < 2 * n; i++) {
        char c = hex[i];
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (v < 0) return -1;
        if (i % 2 == 0) out[i / 2] = (uint8_t)(v << 4);
        else out[i / 2] = (uint8_t)(out[i / 2] | v);
    }
    return 0;
}

test_key *test_key_new_at(const char *file, int line) {
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL);
    EVP_PKEY *pkey = NULL;
    uint8_t pub[32];
    size_t n = sizeof pub;
    test_key *k;
    if (ctx == NULL || EVP_PKEY_keygen_init(ctx) != 1 || EVP_PKEY_keygen(ctx, &pkey) != 1 ||
        EVP_PKEY_get_raw_public_key(pkey, pub, &n) != 1 || n != 32) {
        EVP_PKEY_CTX_free(ctx);
        EVP_PKEY_free(pkey);
        fs_test_fail(file, line, "OpenSSL could not make an Ed25519 key");
        return NULL;
    }
    EVP_PKEY_CTX_free(ctx);
    k = (test_key *)calloc(1, sizeof *k);
    k->pkey = pkey;
    to_hex(pub, 32, k->public_hex);
    return k;
}

void test_key_free(test_key *k) {
    if (k == NULL) return;
    EVP_PKEY_free(k->pkey);
    free(k);
}

const char *test_key_public(const test_key *k) { return k->public_hex; }

int test_key_sign(const test_key *k, const void *msg, size_t len, uint8_t sig[64]) {
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    size_t n = 64;
    int ok = md != NULL && EVP_DigestSignInit(md, NULL, NULL, NULL, k->pkey) == 1 &&
             EVP_DigestSign(md, sig, &n, (const unsigned char *)msg, len) == 1 && n == 64;
    EVP_MD_CTX_free(md);
    return ok ? 0 : -1;
}

int ed25519_verifies(const char *public_hex, const void *msg, size_t len, const char *sig_hex) {
    uint8_t pub[32], sig[64];
    EVP_PKEY *pkey;
    EVP_MD_CTX *md;
    int ok;
    if (from_hex(public_hex, pub, 32) != 0 || from_hex(sig_hex, sig, 64) != 0) return 0;
    pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, 32);
    md = EVP_MD_CTX_new();
    ok = pkey != NULL && md != NULL && EVP_DigestVerifyInit(md, NULL, NULL, NULL, pkey) == 1 &&
         EVP_DigestVerify(md, sig, 64, (const unsigned char *)msg, len) == 1;
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(pkey);
    return ok;
}

fs_status test_key_signer(void *ctx, const uint8_t *message, size_t length, uint8_t signature[64]) {
    return test_key_sign((const test_key *)ctx, message, length, signature) == 0 ? FS_OK : FS_ERR_ARG;
}

test_key *own_device_key_at(const char *file, int line, fs_store *s, fs_hub *h, const char *extra) {
    test_key *k = test_key_new_at(file, line);
    fs_status st;
    if (k == NULL) return NULL;
    st = fs_store_set_signer(s, k->public_hex, test_key_signer, k);
    if (st != FS_OK) {
        fs_test_fail(file, line, "fs_store_set_signer returned %s: \"%s\"", fs_status_name(st), fs_last_error());
        test_key_free(k);
        return NULL;
    }
    if (enroll_at(file, line, s, h, extra) != 0) {
        test_key_free(k);
        return NULL;
    }
    return k;
}

int enroll_key_at(const char *file, int line, fs_hub *h, const char *device, const test_key *k) {
    char *enrollment = strf("{\"device_id\":\"%s\",\"public_key\":\"%s\"}", device, k->public_hex);
    char *result = NULL;
    fs_status st = fs_hub_enroll(h, enrollment, &result);
    free(enrollment);
    fs_free(result);
    if (st != FS_OK) {
        fs_test_fail(file, line, "fs_hub_enroll(%s) returned %s: \"%s\"", device, fs_status_name(st), fs_last_error());
        return -1;
    }
    return 0;
}

/* What a signed text's signature covers (docs/PROTOCOL.md "Signatures"):
 * "fieldsync signed message\n" and the SHA-256, in hex, of the signed bytes. */
static int sign_text(const test_key *k, const char *bytes, size_t n, uint8_t sig[64]) {
    unsigned char digest[32];
    unsigned int dn = 0;
    char message[25 + 65];
    if (EVP_Digest(bytes, n, digest, &dn, EVP_sha256(), NULL) != 1 || dn != 32) return -1;
    memcpy(message, "fieldsync signed message\n", 25);
    to_hex(digest, 32, message + 25);
    return test_key_sign(k, message, 25 + 64, sig);
}

char *resigned(const test_key *k, char *text) {
    json_t *v = json_loads(text, 0, NULL);
    char *body, *out;
    size_t n;
    uint8_t sig[64];
    char sig_hex[129];
    if (!json_is_object(v)) {
        json_decref(v);
        return text;
    }
    json_object_del(v, "signature");
    body = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(v);
    n = strlen(body);
    if (n < 2 || body[n - 1] != '}' || sign_text(k, body, n - 1, sig) != 0) {
        free(body);
        return text;
    }
    to_hex(sig, 64, sig_hex);
    body[n - 1] = '\0';
    out = strf("%s,\"signature\":\"%s\"}", body, sig_hex);
    free(body);
    free(text);
    return out;
}
