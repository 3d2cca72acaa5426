// Record states as last committed, kept across transactions: the records a
// device or the hub keeps changing are not read and parsed again for every
// batch (reading and parsing a state cost as much as merging into it). The
// hub keeps its records' states, a device its confirmed (shadow) states.
//
// A kept state is valid while no other connection commits (PRAGMA
// data_version, checked at the start of each transaction that reads them)
// and is dropped when its transaction rolls back. A writer that does not
// keep what it writes forgets the key.

struct StateCache {
    typealias Entry = (state: RecordState, version: Int64)
    static let limit = 4096

    private var settled: [ExactString: Entry] = [:]
    /// Written in the open transaction: kept only if it commits.
    private var written: [ExactString: Entry] = [:]
    private var dataVersion: Int64?

    subscript(key: ExactString) -> Entry? { written[key] ?? settled[key] }

    /// Everything kept, for checks.
    var entries: [(key: ExactString, value: Entry)] { Array(settled.merging(written) { _, new in new }) }

    /// A state as read from the file, kept while there is room.
    mutating func read(_ key: ExactString, _ entry: Entry) {
        if settled.count < StateCache.limit { settled[key] = entry }
    }

    mutating func wrote(_ key: ExactString, _ entry: Entry) { written[key] = entry }

    mutating func forget(_ key: ExactString) {
        settled[key] = nil
        written[key] = nil
    }

    mutating func forgetAll() {
        settled = [:]
        written = [:]
    }

    /// First in each transaction: forgets everything if another connection
    /// has committed since the last one, and says so.
    mutating func begin(_ db: Connection) throws(FieldSyncError) -> Bool {
        let version = try db.scalar("PRAGMA data_version")
        defer { dataVersion = version }
        guard version != dataVersion else { return false }
        forgetAll()
        return true
    }

    /// After each transaction: what it wrote is kept if it committed; if
    /// not, nothing kept can be trusted.
    mutating func end(committed: Bool) {
        if committed {
            if settled.count + written.count > StateCache.limit { settled = [:] }
            settled.merge(written) { _, new in new }
            written = [:]
        } else {
            forgetAll()
        }
    }
}
