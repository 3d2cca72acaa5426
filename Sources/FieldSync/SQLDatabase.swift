// The database a hub keeps its state in (HubStorage.swift): a SQLite file
// (Connection, SQLite.swift) or a PostgreSQL database shared by several hub
// processes (PGConnection, PostgreSQL.swift). The hub's SQL is written once
// where both dialects read it the same way; where they differ, HubStorage
// says both (`dialect`).

enum SQLDialect {
    case sqlite
    case postgres
}

/// A result row, whichever database answered. Columns count from 0.
protocol SQLRow {
    func isNull(_ column: Int32) -> Bool
    func int(_ column: Int32) -> Int64
    func double(_ column: Int32) -> Double
    /// The column's text, valid until the next row; nil when NULL.
    func bytes(_ column: Int32) -> UnsafeBufferPointer<UInt8>?
}

extension SQLRow {
    func text(_ column: Int32) -> String { bytes(column).map { String(decoding: $0, as: UTF8.self) } ?? "" }
    func optionalText(_ column: Int32) -> String? { isNull(column) ? nil : text(column) }
    func optionalInt(_ column: Int32) -> Int64? { isNull(column) ? nil : int(column) }

    /// JSON text the engine stored, parsed from the database's buffer without
    /// a String in between. Text that does not read back as JSON is damage
    /// to the database: FS_ERR_CORRUPT naming `place` (table, column and
    /// key), never an empty value that would silently lose what was stored.
    func storedJSON(_ column: Int32, _ place: @autoclosure () -> String) throws(FieldSyncError) -> JSON {
        guard let text = bytes(column), let base = text.baseAddress else { throw .corrupt("\(place()) is NULL, not JSON") }
        do {
            return try JSON.parse(bytes: base, count: text.count, what: "stored JSON", limit: Int.max, depth: Limits.maxMessageDepth)
        } catch {
            throw .corrupt("\(place()) cannot be read: \(error.message)")
        }
    }

    /// A stored JSON object (a record state, an entry's ops): anything else is damage.
    func storedObject(_ column: Int32, _ place: @autoclosure () -> String) throws(FieldSyncError) -> JSON {
        let value = try storedJSON(column, place())
        guard value.object != nil else { throw .corrupt("\(place()) is \(value.kind), not a JSON object") }
        return value
    }
}

/// What the hub asks of its database. `?` marks a bound value in both dialects.
protocol SQLDatabase: AnyObject {
    var dialect: SQLDialect { get }
    func exec(_ sql: String) throws(FieldSyncError)
    func run(_ sql: PreparedSQL, _ values: [SQLValue]) throws(FieldSyncError)
    func run(_ sql: String, _ values: [SQLValue]) throws(FieldSyncError)
    /// Calls `row` for each result row; return false from it to stop early.
    func select(_ sql: PreparedSQL, _ values: [SQLValue], row: (any SQLRow) throws(FieldSyncError) -> Bool) throws(FieldSyncError)
    func select(_ sql: String, _ values: [SQLValue], row: (any SQLRow) throws(FieldSyncError) -> Bool) throws(FieldSyncError)
    /// As select, for SQL built from one caller's filter: not kept prepared.
    func selectOnce(_ sql: String, _ values: [SQLValue], row: (any SQLRow) throws(FieldSyncError) -> Bool) throws(FieldSyncError)
    /// Rows the last write changed.
    var changes: Int64 { get }
    /// BEGIN ... COMMIT; ROLLBACK on any error, so a failed call leaves nothing behind.
    func transaction<R>(_ body: () throws(FieldSyncError) -> R) throws(FieldSyncError) -> R
    func close()
}

extension SQLDatabase {
    func run(_ sql: String) throws(FieldSyncError) { try run(sql, []) }
    func run(_ sql: PreparedSQL) throws(FieldSyncError) { try run(sql, []) }
    func select(_ sql: String, row: (any SQLRow) throws(FieldSyncError) -> Bool) throws(FieldSyncError) { try select(sql, [], row: row) }
    func select(_ sql: PreparedSQL, row: (any SQLRow) throws(FieldSyncError) -> Bool) throws(FieldSyncError) { try select(sql, [], row: row) }

    /// The first column of the first row, as an integer (nil when no row or NULL).
    func scalar(_ sql: String, _ values: [SQLValue] = []) throws(FieldSyncError) -> Int64? {
        var result: Int64?
        try select(sql, values) { row in
            result = row.optionalInt(0)
            return false
        }
        return result
    }
}

extension Statement: SQLRow {}

extension Connection: SQLDatabase {
    var dialect: SQLDialect { .sqlite }

    func select(_ sql: PreparedSQL, _ values: [SQLValue], row: (any SQLRow) throws(FieldSyncError) -> Bool) throws(FieldSyncError) {
        try query(sql, values) { (r) throws(FieldSyncError) -> Bool in try row(r) }
    }

    func select(_ sql: String, _ values: [SQLValue], row: (any SQLRow) throws(FieldSyncError) -> Bool) throws(FieldSyncError) {
        try query(sql, values) { (r) throws(FieldSyncError) -> Bool in try row(r) }
    }

    func selectOnce(_ sql: String, _ values: [SQLValue], row: (any SQLRow) throws(FieldSyncError) -> Bool) throws(FieldSyncError) {
        try queryOnce(sql, values) { (r) throws(FieldSyncError) -> Bool in try row(r) }
    }
}

extension SQLDialect {
    /// A CREATE statement written for SQLite, in this dialect. PostgreSQL
    /// gets 64-bit integers, text compared byte by byte (as SQLite compares
    /// it, so orders and keys agree), no rowid clause, JSON in fs_meta's
    /// untyped value, and a numbered refusal log.
    func ddl(_ sql: String) -> String {
        guard self == .postgres else { return sql }
        // A bare type name (a column's, for a cast) stays without collation.
        switch sql {
        case "TEXT": return "TEXT"
        case "INTEGER": return "BIGINT"
        case "REAL": return "DOUBLE PRECISION"
        default: break
        }
        return sql.replacing(" WITHOUT ROWID", with: "")
            .replacing("NOT NULL, value)", with: "NOT NULL, value JSONB)")
            .replacing("fs_auth_log(at ", with: "fs_auth_log(rowid BIGSERIAL PRIMARY KEY, at ")
            .replacing(" TEXT", with: " TEXT COLLATE \"C\"")
            .replacing(" INTEGER", with: " BIGINT")
            .replacing(" REAL", with: " DOUBLE PRECISION")
    }
}
