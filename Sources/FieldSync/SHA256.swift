// SHA-256 (FIPS 180-4) for the audit hash chain. Implemented here because the
// library may depend on nothing but libc and SQLite. It hashes one
// audit row per action, so the compression loop works on raw buffers.

enum SHA256 {
    private static let k: [UInt32] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ]

    static func hex(_ message: [UInt8]) -> String { message.withUnsafeBufferPointer { hex($0) } }

    /// Lowercase hex digest of `message`.
    static func hex(_ bytes: UnsafeBufferPointer<UInt8>) -> String {
        var h: (UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32) =
            (0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19)
        do {
            k.withUnsafeBufferPointer { k in
                withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 64) { w in
                    withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 128) { tail in
                        guard let kk = k.baseAddress, let ww = w.baseAddress, let tt = tail.baseAddress else { return }
                        // Whole blocks straight from the message; the rest and
                        // the padding (0x80, zeros, bit length) from `tail`.
                        let whole = bytes.count / 64 * 64
                        if let base = bytes.baseAddress {
                            var offset = 0
                            while offset < whole {
                                compress(base + offset, &h, kk, ww)
                                offset += 64
                            }
                        }
                        let rest = bytes.count - whole
                        let tailCount = rest < 56 ? 64 : 128
                        tail.initialize(repeating: 0)
                        for i in 0..<rest { tt[i] = bytes[whole + i] }
                        tt[rest] = 0x80
                        let bitLength = UInt64(bytes.count) &* 8
                        for i in 0..<8 { tt[tailCount - 1 - i] = UInt8(truncatingIfNeeded: bitLength &>> UInt64(i * 8)) }
                        compress(tt, &h, kk, ww)
                        if tailCount == 128 { compress(tt + 64, &h, kk, ww) }
                    }
                }
            }
        }
        let digits: StaticString = "0123456789abcdef"
        return String(unsafeUninitializedCapacity: 64) { out in
            guard out.count >= 64 else { return 0 }
            // A homogeneous tuple is laid out like an array of its elements.
            withUnsafeBytes(of: h) { words in
                for j in 0..<8 {
                    let word = words.load(fromByteOffset: j &* 4, as: UInt32.self)
                    for d in 0..<8 {
                        out[j &* 8 &+ d] = digits.utf8Start[Int((word &>> UInt32(28 &- 4 &* d)) & 15)]
                    }
                }
            }
            return 64
        }
    }

    /// One 64-byte block into the state `h`; `w` is scratch for the schedule.
    @inline(__always)
    private static func compress(_ p: UnsafePointer<UInt8>, _ h: inout (UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32),
                                 _ k: UnsafePointer<UInt32>, _ w: UnsafeMutablePointer<UInt32>) {
        for i in 0..<16 {
            w[i] = UInt32(p[i &* 4]) << 24 | UInt32(p[i &* 4 &+ 1]) << 16 | UInt32(p[i &* 4 &+ 2]) << 8 | UInt32(p[i &* 4 &+ 3])
        }
        for i in 16..<64 {
            let x = w[i &- 15], y = w[i &- 2]
            let s0 = rotr(x ^ rotr(x, 11), 7) ^ (x &>> 3)
            let s1 = rotr(y ^ rotr(y, 2), 17) ^ (y &>> 10)
            w[i] = w[i &- 16] &+ s0 &+ w[i &- 7] &+ s1
        }
        var a = h.0, b = h.1, c = h.2, d = h.3, e = h.4, f = h.5, g = h.6, hh = h.7
        // Eight rounds per step with the roles rotated instead of moving
        // eight variables each round.
        var i = 0
        while i < 64 {
            round(a, b, c, &d, e, f, g, &hh, k[i] &+ w[i])
            round(hh, a, b, &c, d, e, f, &g, k[i &+ 1] &+ w[i &+ 1])
            round(g, hh, a, &b, c, d, e, &f, k[i &+ 2] &+ w[i &+ 2])
            round(f, g, hh, &a, b, c, d, &e, k[i &+ 3] &+ w[i &+ 3])
            round(e, f, g, &hh, a, b, c, &d, k[i &+ 4] &+ w[i &+ 4])
            round(d, e, f, &g, hh, a, b, &c, k[i &+ 5] &+ w[i &+ 5])
            round(c, d, e, &f, g, hh, a, &b, k[i &+ 6] &+ w[i &+ 6])
            round(b, c, d, &e, f, g, hh, &a, k[i &+ 7] &+ w[i &+ 7])
            i &+= 8
        }
        h.0 = h.0 &+ a; h.1 = h.1 &+ b; h.2 = h.2 &+ c; h.3 = h.3 &+ d
        h.4 = h.4 &+ e; h.5 = h.5 &+ f; h.6 = h.6 &+ g; h.7 = h.7 &+ hh
    }

    @inline(__always)
    private static func round(_ a: UInt32, _ b: UInt32, _ c: UInt32, _ d: inout UInt32,
                              _ e: UInt32, _ f: UInt32, _ g: UInt32, _ h: inout UInt32, _ kw: UInt32) {
        // Ch and Maj in their three- and four-operation forms.
        // Σ in the nested form rotr(x ^ rotr(x ^ rotr(x, ·), ·), ·): one copy
        // of x instead of three without BMI2's rorx.
        let t1 = h &+ rotr(e ^ rotr(e ^ rotr(e, 14), 5), 6) &+ (g ^ (e & (f ^ g))) &+ kw
        let t2 = rotr(a ^ rotr(a ^ rotr(a, 9), 11), 2) &+ ((a & b) | (c & (a | b)))
        d = d &+ t1
        h = t1 &+ t2
    }

    // Masking shifts: the plain ones check for over-wide shifts on every call.
    @inline(__always) private static func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { (x &>> n) | (x &<< (32 &- n)) }
}
