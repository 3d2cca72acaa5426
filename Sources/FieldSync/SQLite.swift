// The SQLite connection: RAII for handles and statements, statements cached
// per connection (a bounded number: nothing grows with the inputs a host
// sends), transactions as closures that roll back on any error.
import CSQLite
import Glibc

enum SQLValue {
    case null
    case int(Int64)
    case double(Double)
    case text(String)
    /// Text already in UTF-8 bytes (JSON the engine wrote): bound without
    /// making a String of it first.
    case bytes([UInt8])

    /// UTF-8 bytes of a text value; 0 for the others.
    var textCount: Int {
        switch self {
        case .text(let s): s.utf8.count
        case .bytes(let b): b.count
        default: 0
        }
    }
}

final class Statement {
    let handle: OpaquePointer

    init(handle: OpaquePointer) { self.handle = handle }
    deinit { sqlite3_finalize(handle) }

    /// Binds `values` and runs `body` (the steps) while they are bound. Text
    /// is copied once into one buffer and bound without SQLite copying it
    /// again; the bindings are cleared before the buffer goes away.
    func withBindings<R>(_ values: [SQLValue], _ body: () throws(FieldSyncError) -> R) throws(FieldSyncError) -> R {
        var arena = ByteWriter(capacity: values.reduce(0) { $0 + $1.textCount })
        for value in values {
            switch value {
            case .text(let s): arena.append(contentsOf: s)
            case .bytes(let b): arena.append(b)
            default: break
            }
        }
        if arena.failed { throw .internal("out of memory binding \(values.count) values") }
        return try arena.withBytes { (buf) throws(FieldSyncError) -> R in
            // Cleared while the arena the texts point into still exists.
            defer { sqlite3_clear_bindings(handle) }
            var offset = 0
            for (i, value) in values.enumerated() {
                let index = Int32(i + 1)
                switch value {
                case .null: sqlite3_bind_null(handle, index)
                case .int(let v): sqlite3_bind_int64(handle, index, v)
                case .double(let v): sqlite3_bind_double(handle, index, v)
                case .text, .bytes:
                    let n = value.textCount
                    if let base = buf.baseAddress, n > 0 {
                        (base + offset).withMemoryRebound(to: CChar.self, capacity: n) {
                            _ = sqlite3_bind_text64(handle, index, $0, sqlite3_uint64(n), nil, UInt8(SQLITE_UTF8))
                        }
                    } else {
                        sqlite3_bind_text(handle, index, "", 0, fs_sqlite_transient())
                    }
                    offset += n
                }
            }
            return try body()
        }
    }

    func isNull(_ column: Int32) -> Bool { sqlite3_column_type(handle, column) == SQLITE_NULL }
    func int(_ column: Int32) -> Int64 { sqlite3_column_int64(handle, column) }
    func double(_ column: Int32) -> Double { sqlite3_column_double(handle, column) }
    /// A column's text in SQLite's buffer (valid until the next step); nil when NULL.
    func bytes(_ column: Int32) -> UnsafeBufferPointer<UInt8>? {
        guard let p = sqlite3_column_text(handle, column) else { return nil }
        return UnsafeBufferPointer(start: p, count: Int(sqlite3_column_bytes(handle, column)))
    }
    /// Copies JSON text the engine stored into `out` as it is. A column that
    /// is NULL, empty or does not start as expected (`opening`: "{" or "[")
    /// gives `orElse` instead, as reading it back as JSON would have.
    func writeJSON(_ column: Int32, opening: UInt8?, orElse: StaticString, to out: inout ByteWriter) {
        if let text = bytes(column), let first = text.first, opening == nil || first == opening {
            out.append(text)
        } else {
            out.append(orElse)
        }
    }

}

/// SQL text with an identity: statements on hot paths are found by it rather
/// than by hashing their text on every call.
final class PreparedSQL: Sendable {
    let sql: String
    init(_ sql: String) { self.sql = sql }
}

final class Connection {
    private(set) var db: OpaquePointer?
    /// Statements by SQL text, each with the tick of its last use. SQL text
    /// never carries a value (values are bound), so the texts are the
    /// engine's own and few; the bound is a backstop that keeps memory flat
    /// whatever a schema or a caller does.
    private var statements: [String: (statement: Statement, used: UInt64)] = [:]
    private var ticks: UInt64 = 0
    static let maxCachedStatements = 128
    private var prepared: [ObjectIdentifier: Statement] = [:]
    private static let begin = PreparedSQL("BEGIN IMMEDIATE")
    private static let commit = PreparedSQL("COMMIT")

    init(path: String, busyTimeoutMs: Int32) throws(FieldSyncError) {
        var handle: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE
        let rc = sqlite3_open_v2(path, &handle, flags, nil)
        guard rc == SQLITE_OK, let handle else {
            let message = handle.flatMap { sqlite3_errmsg($0) }.map { String(cString: $0) } ?? "out of memory"
            sqlite3_close_v2(handle)
            throw Connection.error(rc, "cannot open \(path): \(message)")
        }
        db = handle
        sqlite3_busy_timeout(handle, busyTimeoutMs)
    }

    deinit { close() }

    func close() {
        statements.removeAll()
        prepared.removeAll()
        if let db { sqlite3_close_v2(db) }
        db = nil
    }

    static func error(_ rc: Int32, _ message: String) -> FieldSyncError {
        switch rc & 0xff {
        case SQLITE_FULL: .full(message)
        case SQLITE_BUSY, SQLITE_LOCKED: .busy(message)
        case SQLITE_CORRUPT, SQLITE_NOTADB: .corrupt(message)
        case SQLITE_IOERR, SQLITE_CANTOPEN, SQLITE_READONLY, SQLITE_PERM: .io(message)
        default: .internal(message)
        }
    }

    func failure(_ rc: Int32, _ doing: String) -> FieldSyncError {
        let message = db.flatMap { sqlite3_errmsg($0) }.map { String(cString: $0) } ?? "no connection"
        return Connection.error(rc, "\(doing): \(message)")
    }

    func exec(_ sql: String) throws(FieldSyncError) {
        let rc = sqlite3_exec(db, sql, nil, nil, nil)
        if rc != SQLITE_OK { throw failure(rc, "SQL failed") }
    }

    /// A prepared statement, cached by its SQL text, reset and unbound. When
    /// the cache is full the least recently used statement is finalized.
    func prepare(_ sql: String) throws(FieldSyncError) -> Statement {
        ticks &+= 1   // a use count: 2^64 uses cannot happen
        if let cached = statements[sql] {
            statements[sql] = (cached.statement, ticks)
            sqlite3_reset(cached.statement.handle)
            return cached.statement
        }
        let statement = try prepareUncached(sql, persistent: true)
        if statements.count >= Connection.maxCachedStatements,
           let oldest = statements.min(by: { $0.value.used < $1.value.used })?.key {
            statements[oldest] = nil
        }
        statements[sql] = (statement, ticks)
        return statement
    }

    /// A statement for SQL built from a caller's filter (its shape varies
    /// with the filter): prepared for this call and finalized after it, so
    /// many shapes never fill the cache.
    private func prepareUncached(_ sql: String, persistent: Bool) throws(FieldSyncError) -> Statement {
        var handle: OpaquePointer?
        let flags = persistent ? UInt32(SQLITE_PREPARE_PERSISTENT) : 0
        let rc = sqlite3_prepare_v3(db, sql, -1, flags, &handle, nil)
        guard rc == SQLITE_OK, let handle else { throw failure(rc, "cannot prepare statement") }
        return Statement(handle: handle)
    }

    /// Runs a query whose SQL was built for one caller's filter, without
    /// caching its statement (see `prepareUncached`).
    func queryOnce(_ sql: String, _ values: [SQLValue], row: (Statement) throws(FieldSyncError) -> Bool) throws(FieldSyncError) {
        try query(statement: prepareUncached(sql, persistent: false), values, row: row)
    }

    func prepare(_ sql: PreparedSQL) throws(FieldSyncError) -> Statement {
        let key = ObjectIdentifier(sql)
        if let cached = prepared[key] {
            sqlite3_reset(cached.handle)
            return cached
        }
        var handle: OpaquePointer?
        let rc = sqlite3_prepare_v3(db, sql.sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &handle, nil)
        guard rc == SQLITE_OK, let handle else { throw failure(rc, "cannot prepare statement") }
        let statement = Statement(handle: handle)
        prepared[key] = statement
        return statement
    }

    func run(_ sql: PreparedSQL, _ values: [SQLValue] = []) throws(FieldSyncError) {
        try run(statement: prepare(sql), values)
    }

    func query(_ sql: PreparedSQL, _ values: [SQLValue] = [], row: (Statement) throws(FieldSyncError) -> Bool) throws(FieldSyncError) {
        try query(statement: prepare(sql), values, row: row)
    }

    /// Runs a statement that returns no rows.
    func run(_ sql: String, _ values: [SQLValue] = []) throws(FieldSyncError) {
        try run(statement: prepare(sql), values)
    }

    private func run(statement: Statement, _ values: [SQLValue]) throws(FieldSyncError) {
        let rc = try statement.withBindings(values) { () throws(FieldSyncError) -> Int32 in
            let rc = sqlite3_step(statement.handle)
            sqlite3_reset(statement.handle)
            return rc
        }
        if rc != SQLITE_DONE && rc != SQLITE_ROW { throw failure(rc, "write failed") }
    }

    /// Calls `row` for each result row; return false from it to stop early.
    func query(_ sql: String, _ values: [SQLValue] = [], row: (Statement) throws(FieldSyncError) -> Bool) throws(FieldSyncError) {
        try query(statement: prepare(sql), values, row: row)
    }

    private func query(statement: Statement, _ values: [SQLValue], row: (Statement) throws(FieldSyncError) -> Bool) throws(FieldSyncError) {
        try statement.withBindings(values) { () throws(FieldSyncError) in
            defer { sqlite3_reset(statement.handle) }
            while true {
                let rc = sqlite3_step(statement.handle)
                if rc == SQLITE_DONE { return }
                if rc != SQLITE_ROW { throw failure(rc, "read failed") }
                if try !row(statement) { return }
            }
        }
    }

    func scalar(_ sql: PreparedSQL, _ values: [SQLValue] = []) throws(FieldSyncError) -> Int64? {
        var result: Int64?
        try query(sql, values) { row in
            result = row.optionalInt(0)
            return false
        }
        return result
    }

    /// The first column of the first row, as an integer (nil when no row or NULL).
    func scalar(_ sql: String, _ values: [SQLValue] = []) throws(FieldSyncError) -> Int64? {
        var result: Int64?
        try query(sql, values) { row in
            result = row.optionalInt(0)
            return false
        }
        return result
    }

    var changes: Int64 { sqlite3_changes64(db) }

    /// After a write failed for want of space: copies the WAL into the
    /// database and truncates it, giving the WAL's space back (its pages are
    /// then in the database, most of them over pages that were there or
    /// free). Returns whether that worked, i.e. whether a retry may succeed.
    func reclaimWAL() -> Bool {
        sqlite3_wal_checkpoint_v2(db, nil, SQLITE_CHECKPOINT_TRUNCATE, nil, nil) == SQLITE_OK
    }

    /// BEGIN IMMEDIATE ... COMMIT; ROLLBACK on any error, so a failed call
    /// leaves nothing behind.
    func transaction<R>(_ body: () throws(FieldSyncError) -> R) throws(FieldSyncError) -> R {
        try run(Connection.begin)
        do {
            let result = try body()
            try run(Connection.commit)
            return result
        } catch {
            sqlite3_exec(db, "ROLLBACK", nil, nil, nil)
            throw error
        }
    }
}

extension Connection {
    /// Opens a fieldsync database file: WAL journal, the durability asked for
    /// ("full" by default) and the busy timeout. Shared by stores and hubs.
    static func openDatabase(path: String, options: JSONObject) throws(FieldSyncError) -> Connection {
        if path.isEmpty { throw .arg("path is empty") }
        var durability = "full"
        if let d = options["durability"] {
            guard let s = d.string, s == "full" || s == "normal" else { throw .arg("options: \"durability\" must be \"full\" or \"normal\"") }
            durability = s
        }
        // sqlite3_busy_timeout takes an int: about 24.8 days at most.
        var busyTimeout: Int64 = 5000
        try integerOption(options, "busy_timeout_ms", 0...Int64(Int32.max), into: &busyTimeout, "about 24.8 days")
        let db = try Connection(path: path, busyTimeoutMs: Int32(busyTimeout))   // safe: checked above
        // A new file gets incremental auto-vacuum so hygiene can hand pages
        // back; it must be chosen before anything (even the WAL switch) writes.
        if try db.scalar("PRAGMA page_count") == 0 { try db.exec("PRAGMA auto_vacuum=INCREMENTAL") }
        var walMode = ""
        try db.query("PRAGMA journal_mode=WAL") { row in
            walMode = row.text(0)
            return false
        }
        if walMode.lowercased() != "wal" { throw .io("\(path): cannot use WAL journal mode (got '\(walMode)')") }
        try db.exec("PRAGMA synchronous=\(durability == "full" ? "FULL" : "NORMAL")")
        // 8 MiB of page cache (SQLite's default is 2): large stores and hubs
        // stay fast, and memory stays far below the 64 MiB budget.
        try db.exec("PRAGMA cache_size=-8192")
        return db
    }
}

/// Double-quotes an identifier for SQL. Names are validated identifiers
/// before they get here; quoting also keeps keywords such as "order" usable.
func quoted(_ name: String) -> String { "\"" + name + "\"" }
