// A device's request (docs/PROTOCOL.md "Request").

extension Wire {
    /// A request as the hub reads it. Members a newer device sends and this
    /// hub does not know are ignored.
    struct Request: Equatable {
        var proto: Int64 = Wire.version
        var device = ""
        var batch = ""
        var schemaVersion: Int64 = 1
        var cursor: Int64 = 0
        var limit: Int64 = 1000
        var pull = true
        var scope: JSON?
        var entries: [Entry] = []
        var audit: [AuditRow] = []
        var fetch: [Ref] = []
        /// A device that found its hub restored from an earlier copy says so
        /// (HubRestore.swift): what it sends again, and what it lost.
        var recovery: Recovery?
        /// The highest seq the device knows the hub acknowledged: a hub that
        /// does not hold it was restored from an earlier copy.
        var acked: Int64 = 0

        init(device: String, batch: String) {
            self.device = device
            self.batch = batch
        }

        init(_ json: JSON) throws(FieldSyncError) {
            guard let r = json.object else { throw .arg("request must be a JSON object, got \(json.kind)") }
            let m = Members("request")
            proto = try m.requiredInt(r["protocol"], "protocol", 1...Int64.max)
            guard let device = try m.text(r["device_id"], "device_id", maxBytes: 64), isDeviceId(device) else {
                throw .arg("request: \"device_id\" is missing or invalid")
            }
            self.device = device
            batch = try m.requiredText(r["batch"], "batch")
            // A newer protocol is answered "protocol_unsupported", whatever
            // its other members look like: this hub cannot know their rules.
            if proto > Wire.version { return }
            schemaVersion = try m.requiredInt(r["schema_version"], "schema_version", 1...Int64.max)
            cursor = try m.int(r["cursor"], "cursor", 0...Wire.maxSeq) ?? 0
            // A device may ask for more than a page holds: it gets a page.
            limit = min(try m.int(r["limit"], "limit", 1...Int64.max) ?? 1000, Wire.maxPullLimit)
            pull = try m.bool(r["pull"], "pull") ?? true
            scope = r["scope"]
            var entries: [Entry] = []
            for (i, e) in try m.array(r["entries"], "entries").enumerated() { entries.append(try Entry(e, index: i)) }
            // Protocol 2: a row travelling with its entry leaves out what the
            // entry says, and a row following its predecessor in the request
            // that row's hash.
            let compact = proto > Wire.full
            self.entries = entries
            var bySeq: [Int64: Entry]?
            if compact {
                var map: [Int64: Entry] = [:]
                for e in entries { map[e.seq] = e }
                bySeq = map
            }
            var audit: [AuditRow] = []
            for (i, row) in try m.array(r["audit"], "audit").enumerated() {
                audit.append(try Wire.auditRow(row, device: device, index: i, entries: bySeq,
                                               previousHash: compact ? audit.last?.hash : nil))
            }
            self.audit = audit
            let refs = try m.array(r["fetch"], "fetch")
            if refs.count > Wire.maxFetch { throw .tooBig("request: at most \(Wire.maxFetch) records per fetch") }
            for (i, ref) in refs.enumerated() {
                let f = Members("request: fetch", i)
                guard let o = ref.object else { throw .arg("request: fetch[\(i)] must be {\"type\", \"id\"}, got \(ref.kind)") }
                fetch.append(Ref(type: try f.requiredText(o["type"], "type"), id: try f.requiredText(o["id"], "id")))
            }
            if let o = try m.object(r["recovery"], "recovery") { recovery = try Recovery(o) }
            acked = try m.int(r["acked"], "acked", 0...Wire.maxSeq) ?? 0
        }

        /// As it travels: compact from protocol 2 on (rows without what their
        /// entry or the row before them says).
        var bytes: [UInt8] {
            var entryText = ByteWriter(capacity: 1024), auditText = ByteWriter(capacity: 1024)
            var bySeq: [Int64: Entry] = [:]
            for (i, e) in entries.enumerated() {
                if i > 0 { entryText.append(UInt8(ascii: ",")) }
                e.write(to: &entryText)
                bySeq[e.seq] = e
            }
            for (i, row) in audit.enumerated() {
                if i > 0 { auditText.append(UInt8(ascii: ",")) }
                var compact = false
                if proto > Wire.full, let e = bySeq[row.auditId], let hlc = e.hlc {
                    let keys = AuditLog.keysText(row.outboxKeys)
                    compact = keys.withUnsafeBufferPointer { stored in
                        Wire.rowRepeats(Wire.entryOfRow(key: e.key, type: e.type, id: e.id, hlc: hlc, actor: e.actor),
                                        actor: row.actor, type: row.type, id: row.id, hlc: row.hlc, outboxKeys: stored)
                    }
                }
                let chained = proto > Wire.full && i > 0 && equalUTF8(audit[i - 1].hash, row.prevHash)
                row.write(compact: compact, chained: chained, to: &auditText)
            }
            var out = ByteWriter(capacity: entryText.count + auditText.count + 256)
            Request.write(proto: proto, device: device, batch: batch, schemaVersion: schemaVersion, cursor: cursor, pull: pull,
                          limit: limit, scope: scope, entries: entryText, audit: auditText, fetch: fetch,
                          recovery: recovery?.json, acked: acked, to: &out)
            return out.array
        }

        /// The one writer of a request, keys in canonical order. `entries`
        /// and `audit` are their elements as written, comma-separated.
        static func write(proto: Int64, device: String, batch: String, schemaVersion: Int64, cursor: Int64, pull: Bool,
                          limit: Int64?, scope: JSON?, entries: borrowing ByteWriter, audit: borrowing ByteWriter, fetch: [Ref],
                          auth: Credentials? = nil, recovery: JSON? = nil, acked: Int64 = 0, to out: inout ByteWriter) {
            out.append("{")
            if acked > 0 { out.append("\"acked\":"); JSON.writeInt(acked, to: &out); out.append(",") }
            out.append("\"audit\":[")
            audit.withBytes { out.append($0) }
            out.append("]")
            if let auth { out.append(",\"auth\":"); auth.write(to: &out) }
            out.append(",\"batch\":"); JSON.writeString(batch, to: &out)
            out.append(",\"cursor\":"); JSON.writeInt(cursor, to: &out)
            out.append(",\"device_id\":"); JSON.writeString(device, to: &out)
            out.append(",\"entries\":[")
            entries.withBytes { out.append($0) }
            out.append("]")
            if !fetch.isEmpty { out.append(",\"fetch\":"); JSON.array(fetch.map(\.json)).write(to: &out) }
            if let limit { out.append(",\"limit\":"); JSON.writeInt(limit, to: &out) }
            out.append(",\"protocol\":"); JSON.writeInt(proto, to: &out)
            if pull { out.append(",\"pull\":true") } else { out.append(",\"pull\":false") }
            if let recovery { out.append(",\"recovery\":"); recovery.write(to: &out) }
            out.append(",\"schema_version\":"); JSON.writeInt(schemaVersion, to: &out)
            if let scope, scope.object?.isEmpty != true, !scope.isNull { out.append(",\"scope\":"); scope.write(to: &out) }
            out.append(UInt8(ascii: "}"))
        }
    }
}
