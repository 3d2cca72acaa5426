// Ed25519 (RFC 8032) from libcrypto: the keys of devices and hubs, and the
// signatures on requests, responses and audit chain heads (docs/SECURITY.md).
// Nothing here is hand-written cryptography: keys, signing and verifying are
// OpenSSL's EVP calls; this file only owns the handles.
import CCrypto

package enum Ed25519 {
    static let publicKeyBytes = 32
    static let signatureBytes = 64
    static let seedBytes = 32

    /// `count` bytes from OpenSSL's CSPRNG (private keys, store instance ids).
    static func randomBytes(_ count: Int) throws(FieldSyncError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        let ok = bytes.withUnsafeMutableBufferPointer { RAND_bytes($0.baseAddress, Int32(truncatingIfNeeded: $0.count)) == 1 }
        guard ok else { throw .internal("libcrypto could not produce random bytes (RAND_bytes failed)") }
        return bytes
    }

    /// Whether `signature` is `publicKey`'s signature of `message`. Anything
    /// malformed (a key that is not a curve point, a wrong length) is `false`.
    static func verify(publicKey: [UInt8], signature: [UInt8], message: UnsafeRawBufferPointer) -> Bool {
        guard publicKey.count == publicKeyBytes, signature.count == signatureBytes,
              let key = publicKey.withUnsafeBufferPointer({ EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nil, $0.baseAddress, $0.count) })
        else { return false }
        defer { EVP_PKEY_free(key) }
        guard let ctx = EVP_MD_CTX_new() else { return false }
        defer { EVP_MD_CTX_free(ctx) }
        guard EVP_DigestVerifyInit(ctx, nil, nil, nil, key) == 1 else { return false }
        return signature.withUnsafeBufferPointer { sig in
            EVP_DigestVerify(ctx, sig.baseAddress, sig.count, message.baseAddress?.assumingMemoryBound(to: UInt8.self), message.count) == 1
        }
    }

    static func verify(publicKey: [UInt8], signature: [UInt8], message: [UInt8]) -> Bool {
        message.withUnsafeBytes { verify(publicKey: publicKey, signature: signature, message: $0) }
    }

    /// Whether `publicKey` is a point of small order (libsodium's list, either
    /// sign bit): OpenSSL verifies signatures by such a key that anyone can
    /// make without a private key, so trusting one lets anyone sign as it.
    package static func isWeak(publicKey: [UInt8]) -> Bool {
        guard publicKey.count == publicKeyBytes else { return true }
        return smallOrder.contains { bad in
            (0..<31).allSatisfy { publicKey[$0] == bad[$0] } && publicKey[31] & 0x7F == bad[31]
        }
    }

    private static let smallOrder: [[UInt8]] = [
        [UInt8](repeating: 0, count: 32),
        [0x01] + [UInt8](repeating: 0, count: 31),
        [0x26, 0xE8, 0x95, 0x8F, 0xC2, 0xB2, 0x27, 0xB0, 0x45, 0xC3, 0xF4, 0x89, 0xF2, 0xEF, 0x98, 0xF0,
         0xD5, 0xDF, 0xAC, 0x05, 0xD3, 0xC6, 0x33, 0x39, 0xB1, 0x38, 0x02, 0x88, 0x6D, 0x53, 0xFC, 0x05],
        [0xC7, 0x17, 0x6A, 0x70, 0x3D, 0x4D, 0xD8, 0x4F, 0xBA, 0x3C, 0x0B, 0x76, 0x0D, 0x10, 0x67, 0x0F,
         0x2A, 0x20, 0x53, 0xFA, 0x2C, 0x39, 0xCC, 0xC6, 0x4E, 0xC7, 0xFD, 0x77, 0x92, 0xAC, 0x03, 0x7A],
        [0xEC] + [UInt8](repeating: 0xFF, count: 30) + [0x7F],
        [0xED] + [UInt8](repeating: 0xFF, count: 30) + [0x7F],
        [0xEE] + [UInt8](repeating: 0xFF, count: 30) + [0x7F],
    ]
}

/// A private key the library holds (a store's or a hub's, kept in its file as
/// the 32-byte seed of RFC 8032).
final class SigningKey: @unchecked Sendable {
    private let key: OpaquePointer
    let seed: [UInt8]
    let publicKey: [UInt8]

    init(seed: [UInt8]) throws(FieldSyncError) {
        guard seed.count == Ed25519.seedBytes,
              let key = seed.withUnsafeBufferPointer({ EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nil, $0.baseAddress, $0.count) })
        else { throw .corrupt("the stored signing key is not a 32-byte Ed25519 seed") }
        var publicKey = [UInt8](repeating: 0, count: Ed25519.publicKeyBytes)
        var length = publicKey.count
        guard publicKey.withUnsafeMutableBufferPointer({ EVP_PKEY_get_raw_public_key(key, $0.baseAddress, &length) }) == 1,
              length == Ed25519.publicKeyBytes else {
            EVP_PKEY_free(key)
            throw .internal("libcrypto could not derive an Ed25519 public key")
        }
        self.key = key
        self.seed = seed
        self.publicKey = publicKey
    }

    /// The key as a file keeps it: its seed in hex (fs_meta "signing_key").
    convenience init(stored hex: String) throws(FieldSyncError) {
        guard let seed = Hex.decode(hex, count: Ed25519.seedBytes) else { throw .corrupt("fs_meta.signing_key is not a 32-byte hex seed") }
        try self.init(seed: seed)
    }

    static func generate() throws(FieldSyncError) -> SigningKey { try SigningKey(seed: Ed25519.randomBytes(Ed25519.seedBytes)) }

    deinit { EVP_PKEY_free(key) }

    func sign(_ message: UnsafeRawBufferPointer) throws(FieldSyncError) -> [UInt8] {
        guard let ctx = EVP_MD_CTX_new() else { throw .internal("out of memory signing") }
        defer { EVP_MD_CTX_free(ctx) }
        var signature = [UInt8](repeating: 0, count: Ed25519.signatureBytes)
        var length = signature.count
        let ok = EVP_DigestSignInit(ctx, nil, nil, nil, key) == 1 && signature.withUnsafeMutableBufferPointer { sig in
            EVP_DigestSign(ctx, sig.baseAddress, &length, message.baseAddress?.assumingMemoryBound(to: UInt8.self), message.count) == 1
        }
        guard ok, length == Ed25519.signatureBytes else { throw .internal("libcrypto could not make an Ed25519 signature") }
        return signature
    }
}

/// What signs a store's requests: the key in its file, or the host's signing
/// callback (a key in a secure element never enters the library). The
/// callback's answer is verified before it is used: a host bug must not send
/// requests the hub will refuse without saying why here first.
package struct Signer {
    package let publicKey: [UInt8]
    let external: Bool
    private let body: (UnsafeRawBufferPointer) throws(FieldSyncError) -> [UInt8]

    init(key: SigningKey) {
        publicKey = key.publicKey
        external = false
        body = { (message) throws(FieldSyncError) in try key.sign(message) }
    }

    package init(publicKey: [UInt8], sign: @escaping (UnsafeRawBufferPointer) throws(FieldSyncError) -> [UInt8]) {
        self.publicKey = publicKey
        external = true
        body = sign
    }

    func sign(_ message: UnsafeRawBufferPointer) throws(FieldSyncError) -> [UInt8] {
        let signature = try body(message)
        if external && !Ed25519.verify(publicKey: publicKey, signature: signature, message: message) {
            throw .arg("the signing callback returned a signature that does not verify with its public key")
        }
        return signature
    }

    func sign(_ message: [UInt8]) throws(FieldSyncError) -> [UInt8] {
        try message.withUnsafeBytes { m in Result { () throws(FieldSyncError) -> [UInt8] in try sign(m) } }.get()
    }
}

/// Lowercase hex, as keys and signatures travel and are stored.
package enum Hex {
    package static func encode(_ bytes: [UInt8]) -> String {
        String(unsafeUninitializedCapacity: bytes.count * 2) { text in
            let digits: StaticString = "0123456789abcdef"
            for (i, b) in bytes.enumerated() {
                text[2 &* i] = digits.utf8Start[Int(b >> 4)]
                text[2 &* i &+ 1] = digits.utf8Start[Int(b & 0x0F)]
            }
            return bytes.count * 2
        }
    }

    /// The bytes of exactly `count` bytes' worth of hex digits (either case), or nil.
    package static func decode(_ text: String, count: Int) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(count)
        var high: UInt8?
        for c in text.utf8 {
            let v: UInt8
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): v = c &- UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): v = c &- UInt8(ascii: "a") &+ 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): v = c &- UInt8(ascii: "A") &+ 10
            default: return nil
            }
            if let h = high { out.append(h << 4 | v); high = nil } else { high = v }
            if out.count > count { return nil }
        }
        return high == nil && out.count == count ? out : nil
    }
}
