@testable import FieldSync
import Testing

@Suite struct HybridClockTests {
    @Test func stampsStrictlyIncreaseWhateverTheWallClockDoes() {
        var clock = HybridClock()
        var last: Int64 = -1
        var rng = SplitMix(seed: 7)
        var wall: Int64 = 1_700_000_000_000
        for _ in 0..<10_000 {
            // Jumps forward, stands still, and goes back by up to an hour.
            wall += Int64(rng.next() % 7_200_000) - 3_600_000
            let stamp = clock.tick(wallMs: wall)
            #expect(stamp > last)
            last = stamp
        }
    }

    @Test func followsTheWallClockWhenItMovesForward() {
        var clock = HybridClock()
        let a = clock.tick(wallMs: 1000)
        let b = clock.tick(wallMs: 1000)
        let c = clock.tick(wallMs: 2000)
        #expect(HybridClock.physical(a) == 1000 && HybridClock.physical(b) == 1000)
        #expect(b == a + 1)
        #expect(HybridClock.physical(c) == 2000)
    }

    @Test func absorbsLaterRemoteStamps() {
        var clock = HybridClock()
        _ = clock.tick(wallMs: 1000)
        clock.observe(5000 << 16)
        #expect(clock.tick(wallMs: 1000) > 5000 << 16)
    }
}

@Suite struct HashTests {
    @Test func sha256KnownVectors() {
        #expect(SHA256.hex(Array("".utf8)) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        let long = Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)
        #expect(SHA256.hex(long) == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(SHA256.hex([UInt8](repeating: 0x61, count: 1_000_000)) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
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
