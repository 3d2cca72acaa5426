// SHA-256 (FIPS 180-4) for the audit hash chain and the hub's entry digests,
// from libcrypto (OpenSSL 3): no hand-written cryptography in the library.
import CCrypto

enum SHA256 {
    /// Fetched once (Swift initialises a global once, thread-safely): an
    /// implicit fetch on every call, as EVP_sha256() does, doubled the cost
    /// of hashing a 300-byte row (1.0 µs against 0.46 µs on this machine).
    nonisolated(unsafe) private static let sha256: OpaquePointer? = EVP_MD_fetch(nil, "SHA256", nil)

    static func hex(_ message: [UInt8]) throws(FieldSyncError) -> String {
        try message.withUnsafeBufferPointer { (buffer) throws(FieldSyncError) -> String in try hex(buffer) }
    }

    /// Lowercase hex digest of `bytes`.
    static func hex(_ bytes: UnsafeBufferPointer<UInt8>) throws(FieldSyncError) -> String {
        // On the stack: this runs for every action and every entry a hub sees.
        let done = withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 32) { digest -> String? in
            var length: UInt32 = 0
            // A NULL pointer with a count of 0 is what EVP_Digest takes for no bytes.
            guard EVP_Digest(bytes.baseAddress, bytes.count, digest.baseAddress, &length, sha256, nil) == 1,
                  length == 32 else { return nil }
            return String(unsafeUninitializedCapacity: 64) { text in
                let digits: StaticString = "0123456789abcdef"
                for i in 0..<32 {
                    text[2 &* i] = digits.utf8Start[Int(digest[i] >> 4)]          // safe: i < 32
                    text[2 &* i &+ 1] = digits.utf8Start[Int(digest[i] & 0x0F)]
                }
                return 64
            }
        }
        guard let done else {
            throw .internal("libcrypto could not compute a SHA-256 (is its default provider available?)")
        }
        return done
    }
}
