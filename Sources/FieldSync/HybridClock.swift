// The hybrid logical clock (docs/AUDIT.md): stamps = physical_ms << 16 | logical.
// Strictly increasing per device whatever the wall clock does, and it absorbs
// stamps received from elsewhere so causally later writes get later stamps.

package struct HybridClock: Sendable, Equatable {
    static let logicalBits: Int64 = 16
    static let logicalMask: Int64 = (1 << logicalBits) - 1
    /// Wall times past this (year ~6429) would overflow the stamp.
    static let maxPhysical: Int64 = (Int64.max >> logicalBits) - 1

    /// The greatest stamp issued or observed.
    package private(set) var last: Int64

    package init(last: Int64 = 0) { self.last = max(0, last) }

    package static func physical(_ stamp: Int64) -> Int64 { stamp >> logicalBits }

    /// A new stamp for a local event at wall time `wallMs`.
    package mutating func tick(wallMs: Int64) -> Int64 {
        let wall = min(max(wallMs, 0), HybridClock.maxPhysical) << HybridClock.logicalBits
        // When the wall clock is behind (or equal), count up from the last stamp;
        // a logical overflow carries into the physical part, which keeps order.
        last = wall > last ? wall : last &+ 1
        return last
    }

    /// Absorbs a stamp received from another node.
    package mutating func observe(_ stamp: Int64) {
        if stamp > last && stamp >= 0 { last = stamp }
    }
}
