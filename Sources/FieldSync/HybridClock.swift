// The hybrid logical clock (docs/AUDIT.md): stamps = physical_ms << 16 | logical.
// Strictly increasing per device whatever the wall clock does, and it absorbs
// stamps received from elsewhere so causally later writes get later stamps.
// Stamps from elsewhere are believed only up to a maximum skew ahead of the
// local wall clock, so one forged stamp cannot win every later write or
// wrap the clock.

package struct HybridClock: Sendable, Equatable {
    static let logicalBits: Int64 = 16
    static let logicalMask: Int64 = (1 << logicalBits) - 1
    /// Wall times past this (year ~6429) would overflow the stamp.
    static let maxPhysical: Int64 = (Int64.max >> logicalBits) - 1
    /// The greatest stamp a node ever holds: the logical part may count a
    /// full 2^16 past the greatest wall time before it would wrap.
    static let maxStamp: Int64 = (maxPhysical << logicalBits) | logicalMask

    /// How far ahead of the local wall clock a stamp from elsewhere may be
    /// (the `max_clock_skew_ms` option of stores and hubs): 24 h, well above
    /// the ±6 h field devices show.
    package static let defaultMaxSkewMs: Int64 = 24 * 3_600_000
    /// The option's upper bound (10 years): keeps `wall + skew` far from overflow.
    package static let maxSkewLimitMs: Int64 = 10 * 366 * 24 * 3_600_000

    /// The `max_clock_skew_ms` option of stores and hubs, checked where it is read.
    static func skewOption(_ options: JSONObject) throws(FieldSyncError) -> Int64 {
        var ms = defaultMaxSkewMs
        try integerOption(options, "max_clock_skew_ms", 0...maxSkewLimitMs, into: &ms, "10 years")
        return ms
    }

    /// The greatest stamp issued or observed.
    package private(set) var last: Int64

    package init(last: Int64 = 0) { self.last = min(max(0, last), HybridClock.maxStamp) }

    package static func physical(_ stamp: Int64) -> Int64 { stamp >> logicalBits }

    /// A wall time from a host clock, brought into the range stamps can hold:
    /// a clock callback may return anything (docs/ABI.md), and every time
    /// computed from it is then safe from overflow.
    package static func clampWall(_ wallMs: Int64) -> Int64 { min(max(wallMs, 0), maxPhysical) }

    /// Whether a stamp received from elsewhere may be believed at local wall
    /// time `wallMs`: not negative, and its wall part at most `maxSkewMs` ahead.
    package static func isPlausible(_ stamp: Int64, wallMs: Int64, maxSkewMs: Int64) -> Bool {
        // Safe from overflow: clampWall <= 2^47 and maxSkewMs <= maxSkewLimitMs.
        stamp >= 0 && stamp <= maxStamp
            && physical(stamp) <= clampWall(wallMs) + min(max(maxSkewMs, 0), maxSkewLimitMs)
    }

    /// A new stamp for a local event at wall time `wallMs`.
    package mutating func tick(wallMs: Int64) throws(FieldSyncError) -> Int64 {
        let wall = HybridClock.clampWall(wallMs) << HybridClock.logicalBits
        // When the wall clock is behind (or equal), count up from the last stamp;
        // a logical overflow carries into the physical part, which keeps order.
        if wall > last {
            last = wall
        } else {
            guard last < HybridClock.maxStamp else {
                throw .conflict("the hybrid clock is at its greatest stamp; the wall clock (\(wallMs) ms) must move on first")
            }
            last += 1   // safe: last < maxStamp
        }
        return last
    }

    /// Absorbs a stamp received from another node, if it is plausible at wall
    /// time `wallMs` (a stamp beyond the skew is not adopted).
    package mutating func observe(_ stamp: Int64, wallMs: Int64, maxSkewMs: Int64) {
        if stamp > last && HybridClock.isPlausible(stamp, wallMs: wallMs, maxSkewMs: maxSkewMs) { last = stamp }
    }
}
