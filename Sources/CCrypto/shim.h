// libcrypto (OpenSSL 3) as Swift sees it: digests through the EVP interface.
#include <openssl/evp.h>
