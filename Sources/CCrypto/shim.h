// libcrypto (OpenSSL 3) as Swift sees it: digests and Ed25519 signatures
// through the EVP interface, random bytes for keys and store identities.
#include <openssl/evp.h>
#include <openssl/rand.h>
