// The wire protocol between a device and the hub (docs/PROTOCOL.md). Every
// message is decoded in one file of this folder, with every member
// range-checked where it is read, and encoded in the same file: a new wire
// field is a change to one file here plus PROTOCOL.md. Hub and Sync compute
// only on what these decoders return and hand these encoders what to send.

enum Wire {
    /// The protocol version this library speaks. A hub answers any version
    /// from 1 up to this one, in the version it was asked in; a device
    /// refuses responses it cannot read.
    static let version: Int64 = 2
    /// The protocol whose audit rows repeat their entry's members (docs/PROTOCOL.md
    /// "Versions"): still served, and still spoken by a device told to.
    static let full: Int64 = 1

    /// The greatest entry seq, audit id and hub change sequence (cursor,
    /// server_seq) a message may carry: 2^53 - 1,
    /// which every JSON reader holds exactly, and which a device applying
    /// an action a microsecond would reach in 285 years. Keeps `id + 1`
    /// and the hub's per-device sums far from overflow.
    static let maxSeq: Int64 = (1 << 53) - 1
    /// Most outbox keys one audit row may name (an action writes one record).
    static let maxOutboxKeys = 1000
    /// Records per page the hub sends at most, whatever `limit` asks.
    static let maxPullLimit: Int64 = 10_000
    /// Records one fetch may name.
    static let maxFetch = 1000
    /// Audit rows one response may acknowledge: a request carries at most
    /// twice the greatest `batch_size` (100,000) of them, its entries' rows
    /// and as many older unacknowledged ones, and a hub acknowledges only
    /// those. Bounds what the runs of protocol 2 make of a short text.
    static let maxAckedRows: Int64 = 200_000

    static func batchId(device: String, number: Int64) -> String { "\(device)-b\(number)" }

    static func batchNumber(_ batch: String, device: String) -> Int64? {
        let prefix = device + "-b"
        guard batch.hasPrefix(prefix), let n = Int64(batch.dropFirst(prefix.count)), n > 0 else { return nil }
        return n
    }

    /// A record named by type and id (fetch, missing, deferred).
    struct Ref: Equatable {
        var type: String
        var id: String

        var json: JSON { .object(["id": .string(id), "type": .string(type)]) }
    }

    /// A JSON member as it goes out: a value written by the engine's writer,
    /// or canonical text the engine stored, copied as it is (the device's
    /// requests are written straight from its rows, without parsing them).
    enum Raw {
        case value(JSON)
        /// A stored column; NULL, empty or text not starting with `opening`
        /// gives `orElse`, as reading it back as JSON would have.
        case column(Statement, Int32, opening: UInt8?, orElse: StaticString)

        func write(to out: inout ByteWriter) {
            switch self {
            case .value(let json): json.write(to: &out)
            case .column(let row, let column, let opening, let orElse): row.writeJSON(column, opening: opening, orElse: orElse, to: &out)
            }
        }

        /// Whether it is absent or `{}` (an empty map is not sent).
        var isEmptyObject: Bool {
            switch self {
            case .value(let json): return json.isNull || json.object?.isEmpty == true
            case .column(let row, let column, _, _): return (row.bytes(column)?.count ?? 0) <= 2
            }
        }
    }
}
