// The one error type of the engine. Each case maps to one fs_status code of
// include/fieldsync.h; the boundary turns it into that code and a message.

package enum FieldSyncError: Error, Equatable, Sendable {
    case arg(String)
    case json(String)
    case schema(String)
    case notFound(String)
    case conflict(String)
    case io(String)
    case full(String)
    case corrupt(String)
    case busy(String)
    case upgradeRequired(String)
    case closed(String)
    case `internal`(String)
    case tooBig(String)
    /// The library was called in a way it cannot serve (re-entry from a callback), as SQLITE_MISUSE.
    case misuse(String)

    /// The fs_status code of the header.
    package var status: Int32 {
        switch self {
        case .arg: 1
        case .json: 2
        case .schema: 3
        case .notFound: 4
        case .conflict: 5
        case .io: 6
        case .full: 7
        case .corrupt: 8
        case .busy: 9
        case .upgradeRequired: 10
        case .closed: 11
        case .internal: 12
        case .tooBig: 13
        case .misuse: 14
        }
    }

    package var message: String {
        switch self {
        case .arg(let m), .json(let m), .schema(let m), .notFound(let m), .conflict(let m),
             .io(let m), .full(let m), .corrupt(let m), .busy(let m), .upgradeRequired(let m),
             .closed(let m), .internal(let m), .tooBig(let m), .misuse(let m):
            m
        }
    }
}

/// Limits documented in the header (FS_MAX_JSON_BYTES, FS_MAX_ID_BYTES,
/// FS_MAX_DEPTH, FS_MAX_MESSAGE_DEPTH).
package enum Limits {
    package static let maxJSONBytes = 1024 * 1024
    package static let maxIDBytes = 256
    /// Nesting of any JSON text the host hands in (arguments, a resolver's
    /// answer). Parsing, writing, equality and deinit of a value recurse once
    /// per level (~160 bytes of stack each, measured through a full sync
    /// round trip); at this depth every call fits a 64 KiB thread stack with
    /// room to spare (docs/ABI.md).
    package static let maxDepth = 128
    /// The deepest wrapping of an argument's value in a message or stored
    /// text: a record state in a response,
    /// `{"changes":[{"state":{"fields":{"f": value}}}]}`; an action's json
    /// field in a request, `{"entries":[{"ops":{"set":{"f": value}}}]}`, is
    /// as deep. Whatever an argument nests, sync can carry.
    package static let envelopeDepth = 5
    /// Nesting of sync requests, responses and stored texts.
    package static let maxMessageDepth = maxDepth + envelopeDepth
    /// Sync requests and responses carry whole batches (FS_MAX_MESSAGE_BYTES).
    package static let maxRequestBytes = 64 * 1024 * 1024
    package static let maxResponseBytes = 64 * 1024 * 1024
}
