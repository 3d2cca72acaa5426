// The local view: one plain table per record type (column `id` plus a column
// per field), readable by the host with SQL. Holds server-confirmed state with
// this device's pending changes applied.

/// A class: the store hands its views around per action, and a struct copy
/// retained the spec and every prepared statement.
final class LocalView {
    let spec: TypeSpec
    private let columns: String
    private let selectOne: PreparedSQL
    let upsert: PreparedSQL
    let deleteOne: PreparedSQL

    init(spec: TypeSpec) {
        self.spec = spec
        let table = quoted(spec.name)
        columns = spec.fields.map { quoted($0.name) }.joined(separator: ", ")
        selectOne = PreparedSQL("SELECT \(columns) FROM \(table) WHERE id = ?")
        let marks = Array(repeating: "?", count: spec.fields.count + 1).joined(separator: ",")
        let assignments = spec.fields.map { "\(quoted($0.name)) = excluded.\(quoted($0.name))" }.joined(separator: ", ")
        // Updated in place when the row exists (REPLACE would delete and
        // insert it again).
        upsert = PreparedSQL("INSERT INTO \(table)(id, \(columns)) VALUES(\(marks)) ON CONFLICT(id) DO UPDATE SET \(assignments)")
        deleteOne = PreparedSQL("DELETE FROM \(table) WHERE id = ?")
    }

    var ddl: String {
        let cols = spec.fields.map { "\(quoted($0.name)) \($0.sqlType)" }.joined(separator: ", ")
        return "CREATE TABLE \(quoted(spec.name))(id TEXT PRIMARY KEY NOT NULL, \(cols)) WITHOUT ROWID"
    }

    func ddl(_ dialect: SQLDialect) -> String { dialect.ddl(ddl) }

    func load(_ id: String, db: some SQLDatabase) throws(FieldSyncError) -> JSONObject? {
        var fields: JSONObject?
        try db.select(selectOne, [.text(id)]) { row in
            fields = self.fields(row, from: 0)
            return false
        }
        return fields
    }

    func save(_ id: String, _ fields: JSONObject, db: some SQLDatabase) throws(FieldSyncError) {
        try db.run(upsert, row(id, fields))
    }

    /// The row of a record: its id, then each declared field's value.
    func row(_ id: String, _ fields: JSONObject) -> [SQLValue] {
        var values: [SQLValue] = []
        values.reserveCapacity(spec.fields.count + 1)
        values.append(.text(id))
        // Both are sorted by name: one walk instead of a search per field.
        let members = fields.members
        var next = 0
        for f in spec.fields {
            var value = JSON.null
            while next < members.count {
                let c = compareUTF8(members[next].key, f.name)
                if c > 0 { break }
                next += 1
                if c == 0 { value = members[next - 1].value; break }
            }
            values.append(f.sqlValue(value))
        }
        return values
    }

    /// PostgreSQL: many rows in one statement, each column bound as an array.
    private(set) lazy var batchUpsert: PreparedSQL = {
        let arrays = (["TEXT"] + spec.fields.map { SQLDialect.postgres.ddl($0.sqlType) }).map { "CAST(? AS \($0)[])" }
        let assignments = spec.fields.map { "\(quoted($0.name)) = excluded.\(quoted($0.name))" }.joined(separator: ", ")
        return PreparedSQL("""
            INSERT INTO \(quoted(spec.name))(id, \(columns)) SELECT * FROM unnest(\(arrays.joined(separator: ", ")))
            ON CONFLICT(id) DO UPDATE SET \(assignments)
            """)
    }()
    private(set) lazy var batchDelete = PreparedSQL("DELETE FROM \(quoted(spec.name)) WHERE id = ANY(CAST(? AS TEXT[]))")

    func delete(_ id: String, db: some SQLDatabase) throws(FieldSyncError) {
        try db.run(deleteOne, [.text(id)])
    }

    func fields(_ row: some SQLRow, from offset: Int32) -> JSONObject {
        // The spec's fields are sorted and unique by name, as an object's members.
        var members: [JSONObject.Element] = []
        members.reserveCapacity(spec.fields.count)
        for (i, f) in spec.fields.enumerated() { members.append((f.name, f.jsonValue(row, offset + Int32(i)))) }
        return JSONObject(sortedMembers: members)
    }

    func count(db: some SQLDatabase) throws(FieldSyncError) -> Int64 {
        try db.scalar("SELECT count(*) FROM \(quoted(spec.name))") ?? 0
    }

    // MARK: Query (header fs_store_query)

    static let operators: [String: String] = ["=": "=", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="]

    func query(_ q: JSONObject, db: some SQLDatabase) throws(FieldSyncError) -> JSON {
        var clauses: [String] = []
        var values: [SQLValue] = []
        if let w = q["where"], !w.isNull {
            guard let conditions = w.object else { throw .arg("query: \"where\" must be an object of field: condition") }
            for (name, condition) in conditions {
                let column = try filterable(name)
                let pairs: [(String, JSON)]
                if case .object(let ops) = condition {
                    pairs = ops.map { ($0.key, $0.value) }
                    if pairs.isEmpty { throw .arg("query: condition on '\(name)' has no operator") }
                } else {
                    pairs = [("=", condition)]
                }
                for (op, value) in pairs {
                    guard let sqlOp = LocalView.operators[op] else {
                        throw .arg("query: unknown operator '\(op)' on '\(name)' (use =, !=, <, <=, >, >=)")
                    }
                    if value.isNull {
                        guard op == "=" || op == "!=" else { throw .arg("query: '\(op)' cannot compare '\(name)' with null") }
                        clauses.append("\(column) IS \(op == "=" ? "" : "NOT ")NULL")
                        continue
                    }
                    clauses.append("\(column) \(sqlOp) ?")
                    values.append(try filterValue(name, value))
                }
            }
        }
        var sql = "SELECT id, \(columns) FROM \(quoted(spec.name))"
        if !clauses.isEmpty { sql += " WHERE " + clauses.joined(separator: " AND ") }
        var orderColumn = "id"
        if let o = q["order_by"], !o.isNull {
            guard let name = o.string else { throw .arg("query: \"order_by\" must be a field name") }
            orderColumn = try filterable(name)
        }
        // id breaks ties so that equal keys come back in a stable order.
        let (order, limit) = try orderAndLimit(q, column: orderColumn, tieBreak: orderColumn == "id" ? nil : "id", context: "query")
        var rows: [JSON] = []
        try db.selectOnce(sql + order, values + [limit]) { row in
            rows.append(spec.recordJSON(id: row.text(0), fields: fields(row, from: 1)))
            return true
        }
        return .array(rows)
    }

    private func filterable(_ name: String) throws(FieldSyncError) -> String {
        if name == "id" { return "id" }
        guard let f = spec.field(name) else {
            throw .schema("query: unknown field '\(spec.name).\(name)'; declared: \(spec.fields.map(\.name).joined(separator: ", "))")
        }
        if f.type == .set || f.type == .json {
            throw .schema("query: field '\(spec.name).\(name)' is \(f.type.rawValue); only string, int, float and bool fields can be filtered or ordered")
        }
        return quoted(name)
    }

    private func filterValue(_ name: String, _ value: JSON) throws(FieldSyncError) -> SQLValue {
        let type = name == "id" ? FieldType.string : (spec.field(name)?.type ?? .string)
        switch (type, value) {
        case (.string, .string(let s)): return .text(s)
        case (.int, .int(let i)): return .int(i)
        case (.int, .double(let d)), (.float, .double(let d)): return .double(d)
        case (.float, .int(let i)): return .double(Double(i))
        case (.bool, .bool(let b)): return .int(b ? 1 : 0)
        default: throw .schema("query: '\(spec.name).\(name)' is \(type.rawValue); cannot compare it with \(value.kind)")
        }
    }
}
