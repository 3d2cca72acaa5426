// The one error type of the engine. Each case maps to one fs_status code of
// include/fieldsync.h; the boundary turns it into that code and a message.
internal import CFieldSyncABI

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
    /// A refused credential or a response that does not verify (docs/SECURITY.md).
    case auth(String)

    /// The fs_status code of the header.
    package var status: Int32 {
        switch self {
        case .arg: FS_ERR_ARG
        case .json: FS_ERR_JSON
        case .schema: FS_ERR_SCHEMA
        case .notFound: FS_ERR_NOT_FOUND
        case .conflict: FS_ERR_CONFLICT
        case .io: FS_ERR_IO
        case .full: FS_ERR_FULL
        case .corrupt: FS_ERR_CORRUPT
        case .busy: FS_ERR_BUSY
        case .upgradeRequired: FS_ERR_UPGRADE_REQUIRED
        case .closed: FS_ERR_CLOSED
        case .internal: FS_ERR_INTERNAL
        case .tooBig: FS_ERR_TOO_BIG
        case .misuse: FS_ERR_MISUSE
        case .auth: FS_ERR_AUTH
        }
    }

    package var message: String {
        switch self {
        case .arg(let m), .json(let m), .schema(let m), .notFound(let m), .conflict(let m),
             .io(let m), .full(let m), .corrupt(let m), .busy(let m), .upgradeRequired(let m),
             .closed(let m), .internal(let m), .tooBig(let m), .misuse(let m), .auth(let m):
            m
        }
    }
}

/// The limits of the header (FS_MAX_JSON_BYTES, FS_MAX_ID_BYTES,
/// FS_MAX_DEPTH, FS_MAX_MESSAGE_DEPTH, FS_MAX_MESSAGE_BYTES).
package enum Limits {
    package static let maxJSONBytes = Int(FS_MAX_JSON_BYTES)
    package static let maxIDBytes = Int(FS_MAX_ID_BYTES)
    /// Nesting of any JSON text the host hands in (arguments, a resolver's
    /// answer). Parsing, writing, equality and deinit of a value recurse once
    /// per level (~160 bytes of stack each, measured through a full sync
    /// round trip); at this depth every call fits a 64 KiB thread stack with
    /// room to spare (docs/ABI.md).
    package static let maxDepth = Int(FS_MAX_DEPTH)
    /// Nesting of sync requests, responses and stored texts: maxDepth plus
    /// the deepest wrapping of an argument's value in a message or stored
    /// text, a record state in a response,
    /// `{"changes":[{"state":{"fields":{"f": value}}}]}` (an action's json
    /// field in a request, `{"entries":[{"ops":{"set":{"f": value}}}]}`, is
    /// as deep). Whatever an argument nests, sync can carry.
    package static let maxMessageDepth = Int(FS_MAX_MESSAGE_DEPTH)
    /// Sync requests and responses carry whole batches.
    package static let maxRequestBytes = Int(fs_header_max_message_bytes)
    package static let maxResponseBytes = Int(fs_header_max_message_bytes)
}
