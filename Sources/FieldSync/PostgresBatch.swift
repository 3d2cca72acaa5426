// The rows a hub request writes (ledger, records, type tables, audit), one
// statement per table in PostgreSQL, the rows bound as arrays (unnest): each
// statement is a round trip to the server, and a request of 50 entries made
// about 218 of them one row at a time (BENCHMARKS.md "The PostgreSQL hub").

extension HubStorage {
    /// Writes rows a request made: in SQLite one statement each (in-process,
    /// nothing to save); in PostgreSQL one statement for them all, each
    /// column bound as an array.
    func writeRows(_ rows: [[SQLValue]], each: PreparedSQL, batch: PreparedSQL) throws(FieldSyncError) {
        guard let width = rows.first?.count else { return }
        switch db.dialect {
        case .sqlite: for row in rows { try db.run(each, row) }
        case .postgres: try db.run(batch, batchColumns(rows, width))
        }
    }

    static let batchDecisions = PreparedSQL("""
        INSERT INTO fs_hub_applied(device, seq, status, reason, server_seq, received_at, digest)
        SELECT * FROM unnest(CAST(? AS TEXT[]), CAST(? AS BIGINT[]), CAST(? AS TEXT[]), CAST(? AS TEXT[]),
                             CAST(? AS BIGINT[]), CAST(? AS BIGINT[]), CAST(? AS TEXT[]))
        """)
    static let batchAudit = PreparedSQL("""
        INSERT INTO fs_hub_audit(device, audit_id, actor, action, type, id, input, device_time, hlc, outbox_keys,
            prev_hash, hash, server_received_at, hash_ok, link_ok)
        SELECT * FROM unnest(CAST(? AS TEXT[]), CAST(? AS BIGINT[]), CAST(? AS TEXT[]), CAST(? AS TEXT[]), CAST(? AS TEXT[]),
            CAST(? AS TEXT[]), CAST(? AS TEXT[]), CAST(? AS BIGINT[]), CAST(? AS BIGINT[]), CAST(? AS TEXT[]), CAST(? AS TEXT[]),
            CAST(? AS TEXT[]), CAST(? AS BIGINT[]), CAST(? AS BIGINT[]), CAST(? AS BIGINT[]))
        """)
    static let batchRecords = PreparedSQL("""
        INSERT INTO fs_hub_records(type, id, seq, state)
        SELECT * FROM unnest(CAST(? AS TEXT[]), CAST(? AS TEXT[]), CAST(? AS BIGINT[]), CAST(? AS TEXT[]))
        ON CONFLICT(type, id) DO UPDATE SET seq = excluded.seq, state = excluded.state
        """)
}

/// Rows of `width` values as one PostgreSQL array literal per column.
private func batchColumns(_ rows: [[SQLValue]], _ width: Int) -> [SQLValue] {
    (0..<width).map { c in .bytes(pgArray(rows.map { c < $0.count ? $0[c] : .null })) }
}

/// `{"a","b",NULL,1}`: every text element quoted, `"` and `\` escaped.
private func pgArray(_ values: [SQLValue]) -> [UInt8] {
    var out: [UInt8] = [UInt8(ascii: "{")]
    for (i, value) in values.enumerated() {
        if i > 0 { out.append(UInt8(ascii: ",")) }
        switch value {
        case .null: out.append(contentsOf: "NULL".utf8)
        case .int(let v): out.append(contentsOf: String(v).utf8)
        case .double(let v): out.append(contentsOf: pgDouble(v).utf8)
        case .text(let s): quote(s.utf8, into: &out)
        case .bytes(let b): quote(b, into: &out)
        }
    }
    out.append(UInt8(ascii: "}"))
    return out
}

private func quote<S: Sequence>(_ text: S, into out: inout [UInt8]) where S.Element == UInt8 {
    out.append(UInt8(ascii: "\""))
    for c in text {
        if c == UInt8(ascii: "\"") || c == UInt8(ascii: "\\") { out.append(UInt8(ascii: "\\")) }
        out.append(c)
    }
    out.append(UInt8(ascii: "\""))
}
