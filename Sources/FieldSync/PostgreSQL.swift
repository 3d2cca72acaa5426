// A hub's PostgreSQL database (issue 17; docs/OPERATIONS.md "PostgreSQL hub"):
// libpq, loaded with dlopen the first time a hub asks for it, so the library
// still loads on a device that has no libpq. Values travel as text; integers
// and doubles are typed so that PostgreSQL compares them as numbers.
import Glibc

/// libpq's entry points, resolved once per process.
private struct LibPQ: @unchecked Sendable {
    typealias Conn = OpaquePointer
    typealias Result = OpaquePointer
    let connectdb: @convention(c) (UnsafePointer<CChar>) -> Conn?
    let status: @convention(c) (Conn) -> Int32
    let errorMessage: @convention(c) (Conn) -> UnsafePointer<CChar>?
    let finish: @convention(c) (Conn) -> Void
    let reset: @convention(c) (Conn) -> Void
    let exec: @convention(c) (Conn, UnsafePointer<CChar>) -> Result?
    let prepare: @convention(c) (Conn, UnsafePointer<CChar>, UnsafePointer<CChar>, Int32, UnsafePointer<UInt32>?) -> Result?
    let execPrepared: @convention(c) (Conn, UnsafePointer<CChar>, Int32, UnsafePointer<UnsafePointer<CChar>?>?,
                                      UnsafePointer<Int32>?, UnsafePointer<Int32>?, Int32) -> Result?
    let execParams: @convention(c) (Conn, UnsafePointer<CChar>, Int32, UnsafePointer<UInt32>?, UnsafePointer<UnsafePointer<CChar>?>?,
                                    UnsafePointer<Int32>?, UnsafePointer<Int32>?, Int32) -> Result?
    let resultStatus: @convention(c) (Result) -> Int32
    let resultErrorMessage: @convention(c) (Result) -> UnsafePointer<CChar>?
    let resultErrorField: @convention(c) (Result, Int32) -> UnsafePointer<CChar>?
    let ntuples: @convention(c) (Result) -> Int32
    let getvalue: @convention(c) (Result, Int32, Int32) -> UnsafePointer<CChar>?
    let getlength: @convention(c) (Result, Int32, Int32) -> Int32
    let getisnull: @convention(c) (Result, Int32, Int32) -> Int32
    let cmdTuples: @convention(c) (Result) -> UnsafePointer<CChar>?
    let clear: @convention(c) (Result) -> Void

    /// libpq.so.5, or why it cannot be used.
    static let shared: Swift.Result<LibPQ, FieldSyncError> = load()

    private static func load() -> Swift.Result<LibPQ, FieldSyncError> {
        guard let handle = dlopen("libpq.so.5", RTLD_NOW | RTLD_LOCAL) else {
            let why = dlerror().map { String(cString: $0) } ?? "not found"
            return .failure(.io("a PostgreSQL hub needs libpq (Debian: libpq5): \(why)"))
        }
        func symbol<T>(_ name: String, as: T.Type) throws(FieldSyncError) -> T {
            guard let p = dlsym(handle, name) else { throw .io("libpq.so.5 has no \(name)") }
            return unsafeBitCast(p, to: T.self)
        }
        do throws(FieldSyncError) {
            return .success(LibPQ(
                connectdb: try symbol("PQconnectdb", as: (@convention(c) (UnsafePointer<CChar>) -> Conn?).self),
                status: try symbol("PQstatus", as: (@convention(c) (Conn) -> Int32).self),
                errorMessage: try symbol("PQerrorMessage", as: (@convention(c) (Conn) -> UnsafePointer<CChar>?).self),
                finish: try symbol("PQfinish", as: (@convention(c) (Conn) -> Void).self),
                reset: try symbol("PQreset", as: (@convention(c) (Conn) -> Void).self),
                exec: try symbol("PQexec", as: (@convention(c) (Conn, UnsafePointer<CChar>) -> Result?).self),
                prepare: try symbol("PQprepare", as: (@convention(c) (Conn, UnsafePointer<CChar>, UnsafePointer<CChar>, Int32,
                                                                        UnsafePointer<UInt32>?) -> Result?).self),
                execPrepared: try symbol("PQexecPrepared", as: (@convention(c) (Conn, UnsafePointer<CChar>, Int32,
                    UnsafePointer<UnsafePointer<CChar>?>?, UnsafePointer<Int32>?, UnsafePointer<Int32>?, Int32) -> Result?).self),
                execParams: try symbol("PQexecParams", as: (@convention(c) (Conn, UnsafePointer<CChar>, Int32, UnsafePointer<UInt32>?,
                    UnsafePointer<UnsafePointer<CChar>?>?, UnsafePointer<Int32>?, UnsafePointer<Int32>?, Int32) -> Result?).self),
                resultStatus: try symbol("PQresultStatus", as: (@convention(c) (Result) -> Int32).self),
                resultErrorMessage: try symbol("PQresultErrorMessage", as: (@convention(c) (Result) -> UnsafePointer<CChar>?).self),
                resultErrorField: try symbol("PQresultErrorField", as: (@convention(c) (Result, Int32) -> UnsafePointer<CChar>?).self),
                ntuples: try symbol("PQntuples", as: (@convention(c) (Result) -> Int32).self),
                getvalue: try symbol("PQgetvalue", as: (@convention(c) (Result, Int32, Int32) -> UnsafePointer<CChar>?).self),
                getlength: try symbol("PQgetlength", as: (@convention(c) (Result, Int32, Int32) -> Int32).self),
                getisnull: try symbol("PQgetisnull", as: (@convention(c) (Result, Int32, Int32) -> Int32).self),
                cmdTuples: try symbol("PQcmdTuples", as: (@convention(c) (Result) -> UnsafePointer<CChar>?).self),
                clear: try symbol("PQclear", as: (@convention(c) (Result) -> Void).self)))
        } catch {
            return .failure(error)
        }
    }
}

/// A row of a PostgreSQL result (text format).
struct PGRow: SQLRow {
    fileprivate let pq: LibPQ
    fileprivate let result: OpaquePointer
    fileprivate let row: Int32

    func isNull(_ column: Int32) -> Bool { pq.getisnull(result, row, column) != 0 }

    func bytes(_ column: Int32) -> UnsafeBufferPointer<UInt8>? {
        guard !isNull(column), let p = pq.getvalue(result, row, column) else { return nil }
        let n = Int(pq.getlength(result, row, column))
        return p.withMemoryRebound(to: UInt8.self, capacity: n) { UnsafeBufferPointer(start: $0, count: n) }
    }

    /// Integers come as decimal text; a column that is not one reads as 0,
    /// as SQLite reads text in an integer's place.
    func int(_ column: Int32) -> Int64 {
        guard let text = bytes(column), !text.isEmpty else { return 0 }
        var value: Int64 = 0
        var negative = false
        for (i, c) in text.enumerated() {
            if i == 0 && c == UInt8(ascii: "-") { negative = true; continue }
            guard c >= 48 && c <= 57 else { return 0 }
            let (times, o1) = value.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times.addingReportingOverflow(Int64(c - 48))
            if o1 || o2 { return negative && sum == Int64.min ? Int64.min : 0 }
            value = sum
        }
        return negative ? -value : value
    }

    func double(_ column: Int32) -> Double {
        guard !isNull(column), let p = pq.getvalue(result, row, column) else { return 0 }
        return strtod(p, nil)
    }
}

final class PGConnection: SQLDatabase {
    private let pq: LibPQ
    private var conn: OpaquePointer?
    /// Statements prepared on this connection, by SQL text and the types of
    /// their values; names are p1, p2, ... A connection reset forgets them.
    private var prepared: [String: String] = [:]
    private(set) var changes: Int64 = 0
    /// Set when the connection was lost and made again: the database may be
    /// another copy now (restored), which the hub checks (HubStorage.identity).
    var reconnected = false
    /// Whether the last error means "do the request again": another
    /// transaction got in the way (a serialization failure, a deadlock, a
    /// unique key taken meanwhile). A lock waited for longer than the lock
    /// timeout is FS_ERR_BUSY too, but not retried: the holder is stuck.
    private(set) var lastErrorRetryable = false
    private static let retryable: Set<String> = ["40001", "40P01", "23505"]
    private let lockTimeoutMs: Int64
    var dialect: SQLDialect { .postgres }

    /// `lockTimeoutMs`: how long a request waits for another's lock (the
    /// hub's busy_timeout_ms; PostgreSQL's lock_timeout).
    init(dsn: String, lockTimeoutMs: Int64) throws(FieldSyncError) {
        self.lockTimeoutMs = lockTimeoutMs
        pq = try LibPQ.shared.get()
        if dsn.utf8.contains(0) { throw .arg("options: \"dsn\" cannot contain U+0000") }
        guard let conn = pq.connectdb(dsn) else { throw .internal("libpq: out of memory connecting") }
        guard pq.status(conn) == 0 else {
            let message = pq.errorMessage(conn).map { String(cString: $0) } ?? "unknown error"
            pq.finish(conn)
            throw .io("cannot connect to PostgreSQL: \(message.trimmingSuffix())")
        }
        self.conn = conn
        try configure()
    }

    private func configure() throws(FieldSyncError) {
        // Notices ("already exists, skipping") are not the host's to see.
        // lock_timeout 0 would wait for ever; busy_timeout_ms 0 means "don't wait".
        try exec("SET client_min_messages TO warning; SET lock_timeout = \(max(lockTimeoutMs, 1))")
    }

    deinit { close() }

    func close() {
        if let conn { pq.finish(conn) }
        conn = nil
        prepared = [:]
    }

    private func connection() throws(FieldSyncError) -> OpaquePointer {
        guard let conn else { throw .closed("the hub's PostgreSQL connection is closed") }
        if pq.status(conn) != 0 {
            pq.reset(conn)
            prepared = [:]
            guard pq.status(conn) == 0 else {
                throw .io("the PostgreSQL connection was lost and cannot be made again: \(errorText(conn))")
            }
            reconnected = true
            try configure()
        }
        return conn
    }

    private func errorText(_ conn: OpaquePointer) -> String {
        (pq.errorMessage(conn).map { String(cString: $0) } ?? "unknown error").trimmingSuffix()
    }

    /// Checks a result and returns it, or clears it and throws.
    private func checked(_ result: OpaquePointer?, _ doing: String) throws(FieldSyncError) -> OpaquePointer {
        guard let result else { throw .io("\(doing): \(conn.map(errorText) ?? "no connection")") }
        let status = pq.resultStatus(result)
        if status == 1 || status == 2 { return result }   // PGRES_COMMAND_OK, PGRES_TUPLES_OK
        let state = pq.resultErrorField(result, 67).map { String(cString: $0) } ?? ""   // PG_DIAG_SQLSTATE
        let message = (pq.resultErrorMessage(result).map { String(cString: $0) } ?? "").trimmingSuffix()
        pq.clear(result)
        let text = "\(doing): \(message)"
        lastErrorRetryable = PGConnection.retryable.contains(state)
        if lastErrorRetryable || state == "55P03" { throw .busy(text) }
        // No SQLSTATE: libpq's own failure, the connection lost mid-call.
        if state.isEmpty, let conn, pq.status(conn) != 0 { throw .io(text) }
        switch state.prefix(2) {
        case "53": throw state == "53100" ? .full(text) : .io(text)   // insufficient resources: disk full, memory, connections
        case "08", "57": throw .io(text)                              // connection lost, server shutting down
        case "XX": throw .corrupt(text)
        default: throw .internal(text)
        }
    }

    func exec(_ sql: String) throws(FieldSyncError) {
        let conn = try connection()
        pq.clear(try checked(pq.exec(conn, sql), "SQL failed"))
    }

    func run(_ sql: PreparedSQL, _ values: [SQLValue]) throws(FieldSyncError) { try execute(sql.sql, values, keep: true) { _ in true } }
    func run(_ sql: String, _ values: [SQLValue]) throws(FieldSyncError) { try execute(sql, values, keep: true) { _ in true } }

    func select(_ sql: PreparedSQL, _ values: [SQLValue], row: (any SQLRow) throws(FieldSyncError) -> Bool) throws(FieldSyncError) {
        try execute(sql.sql, values, keep: true, row: row)
    }

    func select(_ sql: String, _ values: [SQLValue], row: (any SQLRow) throws(FieldSyncError) -> Bool) throws(FieldSyncError) {
        try execute(sql, values, keep: true, row: row)
    }

    func selectOnce(_ sql: String, _ values: [SQLValue], row: (any SQLRow) throws(FieldSyncError) -> Bool) throws(FieldSyncError) {
        try execute(sql, values, keep: false, row: row)
    }


    func transaction<R>(_ body: () throws(FieldSyncError) -> R) throws(FieldSyncError) -> R {
        try exec("BEGIN")
        do {
            let result = try body()
            try exec("COMMIT")
            return result
        } catch {
            if let conn, pq.status(conn) == 0, let r = pq.exec(conn, "ROLLBACK") { pq.clear(r) }
            throw error
        }
    }

    /// Binds `values` as text (integers typed int8, doubles float8) and runs
    /// the statement, prepared once per connection when `keep`.
    private func execute(_ sql: String, _ values: [SQLValue], keep: Bool,
                         row: (any SQLRow) throws(FieldSyncError) -> Bool) throws(FieldSyncError) {
        let conn = try connection()
        var types: [UInt32] = []
        var texts: [[CChar]?] = []
        types.reserveCapacity(values.count)
        texts.reserveCapacity(values.count)
        for value in values {
            switch value {
            case .null: types.append(0); texts.append(nil)
            case .int(let v): types.append(20); texts.append(Array(String(v).utf8CString))
            case .double(let v): types.append(701); texts.append(Array(pgDouble(v).utf8CString))
            case .text(let s):
                // PostgreSQL text cannot hold U+0000, and stopping there would
                // store another value. (Messages never carry it: jansson refuses
                // \u0000, so this guards the engine's own text.)
                if s.utf8.contains(0) { throw .arg("a PostgreSQL hub cannot store text containing U+0000") }
                types.append(0); texts.append(Array(s.utf8CString))
            case .bytes(let b):
                if b.contains(0) { throw .arg("a PostgreSQL hub cannot store text containing U+0000") }
                types.append(0); texts.append(b.map { CChar(bitPattern: $0) } + [0])
            }
        }
        let result: OpaquePointer = try withCStrings(texts) { (pointers) throws(FieldSyncError) -> OpaquePointer in
            guard keep else {
                return try checked(pq.execParams(conn, pgPlaceholders(sql), Int32(values.count), types, pointers, nil, nil, 0), "SQL failed")
            }
            let key = sql + "\u{1}" + types.map { String($0) }.joined(separator: ",")
            let name: String
            if let known = prepared[key] {
                name = known
            } else {
                name = "p\(prepared.count + 1)"
                pq.clear(try checked(pq.prepare(conn, name, pgPlaceholders(sql), Int32(values.count), types), "cannot prepare statement"))
                prepared[key] = name
            }
            return try checked(pq.execPrepared(conn, name, Int32(values.count), pointers, nil, nil, 0), "SQL failed")
        }
        defer { pq.clear(result) }
        changes = pq.cmdTuples(result).map { Int64(String(cString: $0)) ?? 0 } ?? 0
        let n = pq.ntuples(result)
        var i: Int32 = 0
        while i < n {
            if try !row(PGRow(pq: pq, result: result, row: i)) { return }
            i += 1
        }
    }
}

/// Calls `body` with C string pointers to `texts` (nil stays NULL), valid during the call.
private func withCStrings<R>(_ texts: [[CChar]?], _ body: ([UnsafePointer<CChar>?]) throws(FieldSyncError) -> R) throws(FieldSyncError) -> R {
    var pointers: [UnsafePointer<CChar>?] = []
    pointers.reserveCapacity(texts.count)
    var owned: [UnsafeMutablePointer<CChar>] = []
    defer { owned.forEach { $0.deallocate() } }
    for text in texts {
        guard let text else { pointers.append(nil); continue }
        let p = UnsafeMutablePointer<CChar>.allocate(capacity: text.count)
        p.initialize(from: text, count: text.count)
        owned.append(p)
        pointers.append(UnsafePointer(p))
    }
    return try body(pointers)
}

/// A double as PostgreSQL's float8 input reads it (Swift prints inf and nan
/// as PostgreSQL spells them too).
func pgDouble(_ v: Double) -> String { v.isNaN ? "NaN" : v.isInfinite ? (v < 0 ? "-Infinity" : "Infinity") : "\(v)" }

/// `?` marks become `$1`, `$2`, ... outside quoted text and identifiers.
func pgPlaceholders(_ sql: String) -> String {
    var out = ""
    out.reserveCapacity(sql.utf8.count + 16)
    var n = 0
    var quote: Character?
    for c in sql {
        if let q = quote {
            if c == q { quote = nil }
            out.append(c)
        } else if c == "'" || c == "\"" {
            quote = c
            out.append(c)
        } else if c == "?" {
            n += 1
            out += "$\(n)"
        } else {
            out.append(c)
        }
    }
    return out
}

private extension String {
    /// libpq's messages end in a newline.
    func trimmingSuffix() -> String {
        var s = Substring(self)
        while let last = s.last, last == "\n" || last == " " { s = s.dropLast() }
        return String(s)
    }
}
