@testable import FieldSync
import Testing

@Suite struct HybridClockTests {
    @Test func stampsStrictlyIncreaseWhateverTheWallClockDoes() throws {
        var clock = HybridClock()
        var last: Int64 = -1
        var rng = SplitMix(seed: 7)
        var wall: Int64 = 1_700_000_000_000
        for _ in 0..<10_000 {
            // Jumps forward, stands still, and goes back by up to an hour.
            wall += Int64(rng.next() % 7_200_000) - 3_600_000
            let stamp = try clock.tick(wallMs: wall)
            #expect(stamp > last)
            last = stamp
        }
    }

    @Test func followsTheWallClockWhenItMovesForward() throws {
        var clock = HybridClock()
        let a = try clock.tick(wallMs: 1000)
        let b = try clock.tick(wallMs: 1000)
        let c = try clock.tick(wallMs: 2000)
        #expect(HybridClock.physical(a) == 1000 && HybridClock.physical(b) == 1000)
        #expect(b == a + 1)
        #expect(HybridClock.physical(c) == 2000)
    }

    @Test func neverWrapsAtTheExtremesOfTheWallClock() throws {
        var clock = HybridClock()
        var last: Int64 = -1
        for wall in [Int64.max, Int64.min, 0, -1, Int64.max, 1_700_000_000_000] {
            for _ in 0..<3 {
                let stamp = try clock.tick(wallMs: wall)
                #expect(stamp > last && stamp > 0)
                last = stamp
            }
        }
        // At the greatest stamp the clock refuses instead of wrapping.
        var full = HybridClock(last: Int64.max)
        #expect(full.last == HybridClock.maxStamp)
        #expect(throws: FieldSyncError.self) { try full.tick(wallMs: Int64.max) }
        #expect(full.last == HybridClock.maxStamp)
    }

    @Test func adoptsNoStampBeyondTheSkewBound() throws {
        var clock = HybridClock()
        let now: Int64 = 1_700_000_000_000
        _ = try clock.tick(wallMs: now)
        let before = clock.last
        for poison in [Int64.max, (now + HybridClock.defaultMaxSkewMs + 1) << 16, -5] {
            clock.observe(poison, wallMs: now, maxSkewMs: HybridClock.defaultMaxSkewMs)
            #expect(clock.last == before)
        }
        let ahead = (now + 3_600_000) << 16
        clock.observe(ahead, wallMs: now, maxSkewMs: HybridClock.defaultMaxSkewMs)
        #expect(clock.last == ahead)
    }

    @Test func absorbsLaterRemoteStamps() throws {
        var clock = HybridClock()
        _ = try clock.tick(wallMs: 1000)
        clock.observe(5000 << 16, wallMs: 1000, maxSkewMs: HybridClock.defaultMaxSkewMs)
        #expect(try clock.tick(wallMs: 1000) > 5000 << 16)
    }
}

@Suite struct HashTests {
    @Test func sha256KnownVectors() throws {
        #expect(try SHA256.hex(Array("".utf8)) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(try SHA256.hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        let long = Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)
        #expect(try SHA256.hex(long) == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(try SHA256.hex([UInt8](repeating: 0x61, count: 1_000_000)) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    /// Lengths around the block and padding boundaries (55/56 bytes decide
    /// whether the length fits in the last block), against Python's hashlib.
    @Test func sha256PaddingBoundaries() throws {
        let expected: [(Int, String)] = [
            (55, "e7313d333c272e639f790978283f9eb392e843d0f29b7016828bb1daa4aac70b"),
            (56, "4324d65f3c103567f5589c710bc08f8523f929a9272e3af36fc968e52abc6c27"),
            (57, "35df609437dcfea3279283ab79fd554e2bf78f8f7ae2de532d8ee300b09e8f73"),
            (63, "81c80242132f230c3bd41b3e63bbcff16107339549214a99614ff26664625055"),
            (64, "39e3d7b6b5d075d37d053ad89b24b41bef4f3c29760c84447cab3f3be1882241"),
            (65, "aacca6ff74fdbb296d165a45cecfa04e5127bc008770fbbdd48006f2d2fae95e"),
            (111, "67d9492e628fd376e0b2efec8ca2b99b123e202cf620deb270728df979b2f73e"),
            (119, "9ce7368e4daf32341631b492e80359dc9f594b48453cd0dd5bf0b19279cc177e"),
            (120, "7836b787757e95e58b3ca5aec90b1b004e8deba1e50e9675af9cabf1a13a04b5"),
            (127, "a8d23e75d936f303d248888d9b165ee543f4cbafcad3c9dd2a79bd84faa11d07"),
            (128, "d2742f1f4ac6bb7ca2b239ee18402ba8b3f9f8e652d2a72973c2b9ba11c08cf6"),
            (129, "307f8fc2c1622b92762e818d39a185d4d667ad49a4b07ceae1f4afa008a93ec4"),
        ]
        for (n, digest) in expected {
            let message = (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
            #expect(try SHA256.hex(message) == digest, "length \(n)")
        }
    }

    @Test func canonicalJSONSortsKeysAndEscapesLikePython() throws {
        let value = try JSON.parse(#"{"b":[1,2.5,true,null],"a":"é\n\u0001\"","c":{"z":1,"y":1e-05}}"#)
        #expect(value.text == #"{"a":"é\n\u0001\"","b":[1,2.5,true,null],"c":{"y":1e-05,"z":1}}"#)
    }
}

/// A small deterministic generator for tests (no Foundation, no global state).
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E3779B97F4A7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58476D1CE4E5B9
        z = (z ^ (z >> 27)) &* 0x94D049BB133111EB
        return z ^ (z >> 31)
    }
}
