// The hub's response (docs/PROTOCOL.md "Response").

extension Wire {
    /// A record's server state as it travels (changes, fetched).
    struct Record: Equatable {
        var type: String
        var id: String
        var seq: Int64
        var state: RecordState

        var json: JSON { .object(["id": .string(id), "seq": .int(seq), "state": state.shadowJSON, "type": .string(type)]) }
    }

    /// A record this request changed that the device rebuilds itself: the
    /// state it held at `prior`, plus its acknowledged entries, is the hub's at `seq`.
    struct Own: Equatable {
        var type: String
        var id: String
        var seq: Int64
        var prior: Int64
    }

    /// A response as the hub writes it and a device reads it: every member
    /// checked before the device changes anything.
    struct Response: Equatable {
        var proto: Int64 = Wire.version
        var device = ""
        /// Nil when the member is missing or not a string.
        var batch: String?
        var serverTime: Int64?
        /// A request refused whole: nothing else is read.
        var error: (code: String, message: String)?
        var results: [Result] = []
        var auditAcks: [(auditId: Int64, at: Int64)] = []
        var auditRefused: [(auditId: Int64, reason: String)] = []
        var own: [Own] = []
        var fetched: [Record]?
        var missing: [Ref]?
        var deferred: [Ref] = []
        var changes: [Record]?
        var cursor: Int64?
        var more: Bool?
        /// Protocol 2: the highest seq and audit row the hub holds for the
        /// device (a store restored from an older copy learns it is behind).
        var holds: Holds?
        /// The hub itself: which copy of its history answers, and how far
        /// that history goes (HubRestore.swift: a device learns the hub was
        /// restored from an earlier copy).
        var hub: HubInfo?

        struct Holds: Equatable {
            var seq: Int64
            var auditId: Int64
            var auditHash: String?
        }

        struct HubInfo: Equatable {
            /// 1 for a new hub; a copy written by fs_hub_backup is one more.
            var generation: Int64
            /// The hub's high-water change sequence.
            var seq: Int64
            /// Whether the hub authenticated this request: only then may
            /// `holds` renumber a store's entries (Restore.swift).
            var authenticated: Bool
        }

        init(proto: Int64, device: String, batch: String, serverTime: Int64) {
            self.proto = proto
            self.device = device
            self.batch = batch
            self.serverTime = serverTime
        }

        static func error(_ code: String, _ message: String, proto: Int64, device: String, batch: String,
                          serverTime: Int64) -> Response {
            var r = Response(proto: proto, device: device, batch: batch, serverTime: serverTime)
            r.error = (code, message)
            return r
        }

        init(_ json: JSON) throws(FieldSyncError) {
            guard let r = json.object else { throw .arg("response must be a JSON object, got \(json.kind)") }
            guard let proto = r["protocol"]?.int, proto >= 1 else { throw .arg("response: \"protocol\" is missing") }
            if proto > Wire.version { throw .arg("response uses protocol \(proto); this library reads up to \(Wire.version)") }
            self.proto = proto
            guard let device = r["device_id"]?.string else { throw .arg("response: \"device_id\" is missing") }
            self.device = device
            batch = r["batch"]?.string
            let m = Members("response")
            if let error = r["error"], !error.isNull {
                serverTime = r["server_time"]?.int
                self.error = (error["code"]?.string ?? "error", error["message"]?.string ?? "the hub refused the request")
                return
            }
            serverTime = try m.int(r["server_time"], "server_time", Int64.min...Int64.max)
            for (i, item) in try m.array(r["results"], "results").enumerated() { results.append(try Result(item, index: i)) }
            if r["changes"] != nil { changes = try Response.records(m.array(r["changes"], "changes"), "response: changes") }
            if r["fetched"] != nil { fetched = try Response.records(m.array(r["fetched"], "fetched"), "response: fetched") }
            if r["missing"] != nil { missing = try Response.refs(m.array(r["missing"], "missing"), "response: missing") }
            deferred = try Response.refs(m.array(r["deferred"], "deferred"), "response: deferred")
            for (i, item) in try m.array(r["own"], "own").enumerated() {
                let o = Members("response: own", i)
                guard let type = try o.text(item["type"], "type"), let id = try o.text(item["id"], "id"),
                      let seq = try o.int(item["seq"], "seq", 1...Wire.maxSeq),
                      let prior = try o.int(item["prior"], "prior", 0...(seq - 1)) else {   // safe: seq >= 1
                    throw .arg("response: each \"own\" record needs \"type\", \"id\", \"seq\" and \"prior\"")
                }
                own.append(Own(type: type, id: id, seq: seq, prior: prior))
            }
            var ackable = Wire.maxAckedRows
            for (i, ack) in try m.array(r["audit_acks"], "audit_acks").enumerated() {
                let a = Members("response: audit_acks", i)
                let first = try a.requiredInt(ack["audit_id"], "audit_id", 1...Wire.maxSeq)
                let at = try a.requiredInt(ack["server_received_at"], "server_received_at", 0...HybridClock.maxPhysical)
                var last = first
                if proto >= 2, let through = try a.int(ack["through"], "through", first...Wire.maxSeq) { last = through }
                let rows = last - first + 1  // safe: 1 <= first <= last <= maxSeq
                if rows > ackable { throw .arg("response: audit_acks name more than \(Wire.maxAckedRows) rows") }
                ackable -= rows
                for id in first...last { auditAcks.append((id, at)) }
            }
            for (i, item) in try m.array(r["audit_refused"], "audit_refused").enumerated() {
                let a = Members("response: audit_refused", i)
                auditRefused.append((try a.requiredInt(item["audit_id"], "audit_id", 1...Wire.maxSeq),
                                     try a.text(item["reason"], "reason") ?? "refused"))
            }
            cursor = try m.int(r["cursor"], "cursor", 0...Wire.maxSeq)
            more = try m.bool(r["more"], "more")
            if let h = try m.object(r["holds"], "holds") {
                let hm = Members("response: holds")
                holds = Holds(seq: try hm.int(h["seq"], "seq", 0...Wire.maxSeq) ?? 0,
                              auditId: try hm.int(h["audit_id"], "audit_id", 0...Wire.maxSeq) ?? 0,
                              auditHash: try hm.text(h["audit_hash"], "audit_hash"))
            }
            if let h = try m.object(r["hub"], "hub") {
                let hm = Members("response: hub")
                hub = HubInfo(generation: try hm.requiredInt(h["generation"], "generation", 1...Wire.maxSeq),
                              seq: try hm.requiredInt(h["seq"], "seq", 0...Wire.maxSeq),
                              authenticated: try hm.bool(h["authenticated"], "authenticated") ?? false)
            }
        }

        private static func records(_ list: [JSON], _ name: String) throws(FieldSyncError) -> [Record] {
            var out: [Record] = []
            out.reserveCapacity(list.count)
            for (i, record) in list.enumerated() {
                let m = Members(name, i)
                guard let type = try m.text(record["type"], "type"), let id = try m.text(record["id"], "id"),
                      let seq = try m.int(record["seq"], "seq", 1...Wire.maxSeq), let state = try m.object(record["state"], "state") else {
                    throw .arg("response: each change needs \"type\", \"id\", \"seq\" and \"state\"")
                }
                out.append(Record(type: type, id: id, seq: seq, state: try Wire.state(state, Members(name, i, ": state"))))
            }
            return out
        }

        private static func refs(_ list: [JSON], _ name: String) throws(FieldSyncError) -> [Ref] {
            var out: [Ref] = []
            for (i, ref) in list.enumerated() {
                let m = Members(name, i)
                out.append(Ref(type: try m.requiredText(ref["type"], "type"), id: try m.requiredText(ref["id"], "id")))
            }
            return out
        }

        var json: JSON {
            var o: JSONObject = ["batch": batch.map(JSON.string) ?? .null, "device_id": .string(device), "protocol": .int(proto)]
            if let serverTime { o["server_time"] = .int(serverTime) }
            if let error {
                o["error"] = .object(["code": .string(error.code), "message": .string(error.message)])
                return .object(o)
            }
            o["audit_acks"] = .array(proto >= 2 ? Response.runs(auditAcks) : auditAcks.map {
                .object(["audit_id": .int($0.auditId), "server_received_at": .int($0.at)])
            })
            o["results"] = .array(results.map(\.json))
            if !auditRefused.isEmpty {
                o["audit_refused"] = .array(auditRefused.map { .object(["audit_id": .int($0.auditId), "reason": .string($0.reason)]) })
            }
            if !own.isEmpty {
                o["own"] = .array(own.map { .object(["id": .string($0.id), "prior": .int($0.prior), "seq": .int($0.seq), "type": .string($0.type)]) })
            }
            if let fetched { o["fetched"] = .array(fetched.map(\.json)) }
            if let missing { o["missing"] = .array(missing.map(\.json)) }
            if !deferred.isEmpty { o["deferred"] = .array(deferred.map(\.json)) }
            if let changes { o["changes"] = .array(changes.map(\.json)) }
            if let cursor { o["cursor"] = .int(cursor) }
            if let more { o["more"] = .bool(more) }
            if let holds {
                var h: JSONObject = ["audit_id": .int(holds.auditId), "seq": .int(holds.seq)]
                if let hash = holds.auditHash { h["audit_hash"] = .string(hash) }
                o["holds"] = .object(h)
            }
            if let hub {
                o["hub"] = .object(["authenticated": .bool(hub.authenticated), "generation": .int(hub.generation), "seq": .int(hub.seq)])
            }
            return .object(o)
        }

        /// Protocol 2's acknowledgements: consecutive rows received at one
        /// time as one object, `through` the last of them (about a third of a
        /// response's bytes were one object per row).
        private static func runs(_ acks: [(auditId: Int64, at: Int64)]) -> [JSON] {
            var runs: [(first: Int64, last: Int64, at: Int64)] = []
            for ack in acks {
                if let run = runs.last, ack.at == run.at, ack.auditId == run.last + 1 {  // safe: ids <= maxSeq
                    runs[runs.count - 1].last = ack.auditId
                } else {
                    runs.append((ack.auditId, ack.auditId, ack.at))
                }
            }
            return runs.map { run in
                var o: JSONObject = ["audit_id": .int(run.first), "server_received_at": .int(run.at)]
                if run.last > run.first { o["through"] = .int(run.last) }
                return .object(o)
            }
        }

        static func == (a: Response, b: Response) -> Bool {
            a.proto == b.proto && a.device == b.device && a.batch == b.batch && a.serverTime == b.serverTime
                && a.error?.code == b.error?.code && a.error?.message == b.error?.message && a.results == b.results
                && a.auditAcks.elementsEqual(b.auditAcks) { $0 == $1 } && a.auditRefused.elementsEqual(b.auditRefused) { $0 == $1 }
                && a.own == b.own && a.fetched == b.fetched && a.missing == b.missing && a.deferred == b.deferred
                && a.changes == b.changes && a.cursor == b.cursor && a.more == b.more && a.holds == b.holds && a.hub == b.hub
        }
    }
}
