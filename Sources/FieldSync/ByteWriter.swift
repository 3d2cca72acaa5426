// The buffer every JSON text the engine writes goes into. A growing [UInt8]
// pays a uniqueness check and a capacity check per appended byte, which made
// writing JSON cost ~50 instructions a byte on the apply path; this is a plain
// malloc'd buffer, and a finished text is handed to C callers as it is, to be
// released with fs_free.
import Glibc

package struct ByteWriter: ~Copyable {
    private var base: UnsafeMutablePointer<UInt8>?
    package private(set) var count = 0
    private var capacity: Int
    /// Set when memory ran out: further writes are dropped and whoever takes
    /// the text reports it, instead of trapping inside the host process.
    package private(set) var failed = false

    package init(capacity: Int = 256) {
        self.capacity = max(capacity, 16)
        base = malloc(self.capacity)?.assumingMemoryBound(to: UInt8.self)
        failed = base == nil
    }

    deinit { free(base) }

    /// Room for `n` more bytes, or nil (and `failed`) if memory ran out.
    @inline(__always)
    private mutating func reserve(_ n: Int) -> UnsafeMutablePointer<UInt8>? {
        if capacity - count >= n, let base { return base + count }
        return grow(n)
    }

    private mutating func grow(_ n: Int) -> UnsafeMutablePointer<UInt8>? {
        if failed { return nil }
        var newCapacity = capacity
        while newCapacity - count < n {
            let (doubled, overflow) = newCapacity.multipliedReportingOverflow(by: 2)
            if overflow { failed = true; return nil }
            newCapacity = doubled
        }
        guard let grown = realloc(base, newCapacity) else { failed = true; return nil }
        base = grown.assumingMemoryBound(to: UInt8.self)
        capacity = newCapacity
        return base.map { $0 + count }
    }

    @inline(__always)
    package mutating func append(_ byte: UInt8) {
        guard let p = reserve(1) else { return }
        p.pointee = byte
        count &+= 1
    }

    /// Lets `body` write up to `n` bytes in place; it returns how many it
    /// wrote, or nil to write none (and then the caller takes another way).
    @inline(__always)
    package mutating func append(reserving n: Int, _ body: (UnsafeMutablePointer<UInt8>) -> Int?) -> Bool {
        guard let p = reserve(n), let written = body(p) else { return false }
        count &+= written
        return true
    }

    @inline(__always)
    package mutating func append(_ bytes: UnsafeBufferPointer<UInt8>) {
        guard let source = bytes.baseAddress, bytes.count > 0, let p = reserve(bytes.count) else { return }
        p.update(from: source, count: bytes.count)
        count &+= bytes.count
    }

    package mutating func append(_ s: StaticString) {
        append(UnsafeBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }

    package mutating func append(_ bytes: [UInt8]) {
        bytes.withUnsafeBufferPointer { append($0) }
    }

    package mutating func append(contentsOf s: String) {
        var s = s
        s.withUTF8 { append($0) }
    }

    package func withBytes<R, E: Error>(_ body: (UnsafeBufferPointer<UInt8>) throws(E) -> R) throws(E) -> R {
        try body(UnsafeBufferPointer(start: base, count: count))
    }

    package var array: [UInt8] { withBytes { Array($0) } }
    package var string: String { withBytes { String(decoding: $0, as: UTF8.self) } }

    /// The text, NUL-terminated, in malloc'd memory that now belongs to the
    /// caller (fs_free); nil if memory ran out while writing it.
    package consuming func takeCString() -> UnsafeMutablePointer<CChar>? {
        append(0)
        guard !failed, let p = base else { return nil }
        base = nil
        return UnsafeMutableRawPointer(p).assumingMemoryBound(to: CChar.self)
    }
}
