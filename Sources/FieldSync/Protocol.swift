// The wire protocol between a device and the hub (docs/PROTOCOL.md): its
// shapes, and the one place where a message's members are read and
// range-checked. Hub and Sync compute only on what these decoders return.
// The device's request is written in Sync.swift, beside the outbox and
// audit queries whose columns it reads.

enum Wire {
    /// The protocol version this library speaks. A hub answers any version
    /// from 1 up to this one; a device refuses responses it cannot read.
    static let version: Int64 = 1

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

    static func batchId(device: String, number: Int64) -> String { "\(device)-b\(number)" }

    static func batchNumber(_ batch: String, device: String) -> Int64? {
        let prefix = device + "-b"
        guard batch.hasPrefix(prefix), let n = Int64(batch.dropFirst(prefix.count)), n > 0 else { return nil }
        return n
    }

    /// Reads the members of one object of a message, each checked where it
    /// is read: an integer outside its range, a string too long or a member
    /// of the wrong kind is FS_ERR_ARG naming the member.
    struct Members {
        let context: String

        func int(_ value: JSON?, _ name: String, _ range: ClosedRange<Int64>) throws(FieldSyncError) -> Int64? {
            guard let value, !value.isNull else { return nil }
            guard let n = value.int, range.contains(n) else {
                let got = value.int.map { "\($0)" } ?? value.kind
                throw .arg("\(context): \"\(name)\" must be an integer in \(range.lowerBound)...\(range.upperBound), got \(got)")
            }
            return n
        }

        func requiredInt(_ value: JSON?, _ name: String, _ range: ClosedRange<Int64>) throws(FieldSyncError) -> Int64 {
            guard let n = try int(value, name, range) else { throw .arg("\(context): \"\(name)\" is missing") }
            return n
        }

        func text(_ value: JSON?, _ name: String, maxBytes: Int = Limits.maxIDBytes) throws(FieldSyncError) -> String? {
            guard let value, !value.isNull else { return nil }
            guard let s = value.string else { throw .arg("\(context): \"\(name)\" must be a string, got \(value.kind)") }
            if s.utf8.count > maxBytes { throw .arg("\(context): \"\(name)\" is \(s.utf8.count) bytes; at most \(maxBytes)") }
            return s
        }

        func requiredText(_ value: JSON?, _ name: String, maxBytes: Int = Limits.maxIDBytes) throws(FieldSyncError) -> String {
            guard let s = try text(value, name, maxBytes: maxBytes) else { throw .arg("\(context): \"\(name)\" is missing") }
            return s
        }

        func object(_ value: JSON?, _ name: String) throws(FieldSyncError) -> JSONObject? {
            guard let value, !value.isNull else { return nil }
            guard let o = value.object else { throw .arg("\(context): \"\(name)\" must be an object, got \(value.kind)") }
            return o
        }

        func bool(_ value: JSON?, _ name: String) throws(FieldSyncError) -> Bool? {
            guard let value, !value.isNull else { return nil }
            guard let b = value.bool else { throw .arg("\(context): \"\(name)\" must be true or false, got \(value.kind)") }
            return b
        }

        func array(_ value: JSON?, _ name: String) throws(FieldSyncError) -> [JSON] {
            guard let value, !value.isNull else { return [] }
            guard let a = value.array else { throw .arg("\(context): \"\(name)\" must be an array, got \(value.kind)") }
            return a
        }
    }

    /// A request as the hub reads it. Members a newer device sends and this
    /// hub does not know are ignored.
    struct Request {
        var proto: Int64 = 0
        var device = ""
        var batch = ""
        var schemaVersion: Int64 = 0
        var cursor: Int64 = 0
        var limit: Int64 = 1000
        var pull = true
        var scope: JSON?
        var entries: [Entry] = []
        var audit: [AuditRow] = []
        var fetch: [(type: String, id: String)] = []

        init(_ json: JSON) throws(FieldSyncError) {
            guard let r = json.object else { throw .arg("request must be a JSON object, got \(json.kind)") }
            let m = Members(context: "request")
            proto = try m.requiredInt(r["protocol"], "protocol", 1...Int64.max)
            guard let device = try m.text(r["device_id"], "device_id", maxBytes: 64), isDeviceId(device) else {
                throw .arg("request: \"device_id\" is missing or invalid")
            }
            self.device = device
            batch = try m.requiredText(r["batch"], "batch")
            schemaVersion = try m.requiredInt(r["schema_version"], "schema_version", 1...Int64.max)
            cursor = try m.int(r["cursor"], "cursor", 0...Wire.maxSeq) ?? 0
            // A device may ask for more than a page holds: it gets a page.
            limit = min(try m.int(r["limit"], "limit", 1...Int64.max) ?? 1000, Wire.maxPullLimit)
            pull = try m.bool(r["pull"], "pull") ?? true
            scope = r["scope"]
            var entries: [Entry] = []
            for (i, e) in try m.array(r["entries"], "entries").enumerated() { entries.append(try Entry(e, index: i)) }
            self.entries = entries
            var audit: [AuditRow] = []
            for (i, row) in try m.array(r["audit"], "audit").enumerated() { audit.append(try Wire.auditRow(row, device: device, index: i)) }
            self.audit = audit
            let refs = try m.array(r["fetch"], "fetch")
            if refs.count > 1000 { throw .tooBig("request: at most 1000 records per fetch") }
            for (i, ref) in refs.enumerated() {
                let f = Members(context: "request: fetch[\(i)]")
                guard let o = ref.object else { throw .arg("request: fetch[\(i)] must be {\"type\", \"id\"}, got \(ref.kind)") }
                fetch.append((try f.requiredText(o["type"], "type"), try f.requiredText(o["id"], "id")))
            }
        }
    }

    /// An outbox entry as the hub reads it, in one pass over its members
    /// (a binary search per member read cost more). Members a newer device
    /// sends and this hub does not know are ignored. `hlc` is any integer:
    /// a stamp outside what the hub believes is refused per entry
    /// ("clock_skew"), not with the whole request.
    struct Entry {
        var key = ""
        var seq: Int64 = 0
        var type = ""
        var id = ""
        var actor = ""
        var hlc: Int64?
        var schemaVersion: Int64?
        var shadowSeq: Int64?
        var cursor: Int64 = 0
        var ops: JSON = .object([:])
        var base: JSONObject = [:]
        var baseValues: JSONObject = [:]

        init(_ json: JSON, index: Int) throws(FieldSyncError) {
            guard let o = json.object else { throw .arg("request: entries[\(index)] must be an object, got \(json.kind)") }
            let m = Members(context: "request: entries[\(index)]")
            var key, type, id: String?
            var seq: Int64?
            for (name, value) in o {
                switch name {
                case "key": key = try m.text(value, "key")
                case "seq": seq = try m.int(value, "seq", 1...Wire.maxSeq)
                case "type": type = try m.text(value, "type")
                case "id": id = try m.text(value, "id")
                case "actor": actor = try m.text(value, "actor") ?? ""
                case "hlc": hlc = try m.int(value, "hlc", Int64.min...Int64.max)
                case "schema_version": schemaVersion = try m.int(value, "schema_version", 1...Int64.max)
                case "shadow_seq": shadowSeq = try m.int(value, "shadow_seq", 0...Int64.max)
                case "cursor": cursor = try m.int(value, "cursor", 0...Int64.max) ?? 0
                case "ops": ops = .object(try m.object(value, "ops") ?? [:])
                case "base": base = try m.object(value, "base") ?? [:]
                case "base_values": baseValues = try m.object(value, "base_values") ?? [:]
                default: break
                }
            }
            guard let key, let seq else {
                throw .arg("request: every entry needs \"key\" = \"<device_id>-<seq>\" of the sending device and \"seq\"")
            }
            guard let type, let id else { throw .arg("request: entries[\(index)] needs \"type\" and \"id\"") }
            self.key = key
            self.seq = seq
            self.type = type
            self.id = id
        }

        /// What a legitimate resend carries unchanged (not `cursor` nor
        /// `shadow_seq`, which move between sends), as a SHA-256: the hub
        /// keeps it with its decision and refuses a key reused for other content.
        func digest() throws(FieldSyncError) -> String {
            let content: JSONObject = [
                "base": .object(base), "base_values": .object(baseValues), "hlc": hlc.map(JSON.int) ?? .null,
                "id": .string(id), "ops": ops, "schema_version": schemaVersion.map(JSON.int) ?? .null, "type": .string(type),
            ]
            return try SHA256.hex(JSON.object(content).bytes)
        }
    }

    /// An audit row as the hub reads it, in one pass over its members.
    /// `device_time` and `hlc` may be any integer: the hub stores them and
    /// checks the row's hash over them, and never computes with them.
    static func auditRow(_ json: JSON, device: String, index: Int) throws(FieldSyncError) -> AuditRow {
        guard let o = json.object else { throw .arg("request: audit[\(index)] must be an object, got \(json.kind)") }
        let m = Members(context: "request: audit[\(index)]")
        var auditId, deviceTime, hlc: Int64?
        var actor, action, type, id, prevHash, hash: String?
        var keys: [JSON]?
        var input = JSON.null
        for (name, value) in o {
            switch name {
            case "audit_id": auditId = try m.int(value, "audit_id", 1...Wire.maxSeq)
            case "device_time": deviceTime = try m.int(value, "device_time", Int64.min...Int64.max)
            case "hlc": hlc = try m.int(value, "hlc", Int64.min...Int64.max)
            case "actor": actor = try m.text(value, "actor")
            case "action": action = try m.text(value, "action")
            case "type": type = try m.text(value, "type")
            case "id": id = try m.text(value, "id")
            case "prev_hash": prevHash = try m.text(value, "prev_hash")
            case "hash": hash = try m.text(value, "hash")
            case "outbox_keys": keys = value.array
            case "input": input = value
            default: break
            }
        }
        func int(_ v: Int64?, _ k: String) throws(FieldSyncError) -> Int64 {
            guard let v else { throw .arg("request: audit[\(index)]: \"\(k)\" must be an integer") }
            return v
        }
        func text(_ v: String?, _ k: String) throws(FieldSyncError) -> String {
            guard let v else { throw .arg("request: audit[\(index)]: \"\(k)\" must be a string") }
            return v
        }
        guard let keys else { throw .arg("request: audit[\(index)]: \"outbox_keys\" must be an array") }
        if keys.count > maxOutboxKeys { throw .arg("request: audit[\(index)]: \"outbox_keys\" holds \(keys.count) keys; at most \(maxOutboxKeys)") }
        var outboxKeys: [String] = []
        for key in keys { outboxKeys.append(try m.requiredText(key, "outbox_keys")) }
        return AuditRow(auditId: try int(auditId, "audit_id"), deviceId: device, actor: try text(actor, "actor"),
                        action: try text(action, "action"), type: try text(type, "type"), id: try text(id, "id"), input: input,
                        deviceTime: try int(deviceTime, "device_time"), hlc: try int(hlc, "hlc"), outboxKeys: outboxKeys,
                        prevHash: try text(prevHash, "prev_hash"), hash: try text(hash, "hash"))
    }

    /// One entry's result as a device reads it, in one pass over its members.
    struct Result {
        var key = ""
        var status = ""
        var outcome: String?
        var reason: String?
        var serverSeq: Int64?
        var recordSeq: Int64?
        var resolutions: JSONObject = [:]
        var state: JSON?

        init(_ json: JSON, index: Int) throws(FieldSyncError) {
            guard let o = json.object else { throw .arg("response: results[\(index)] must be an object, got \(json.kind)") }
            let m = Members(context: "response: results[\(index)]")
            var key, status: String?
            for (name, value) in o {
                switch name {
                case "key": key = try m.text(value, "key")
                case "status": status = try m.text(value, "status")
                case "outcome": outcome = try m.text(value, "outcome")
                case "reason": reason = value.string
                case "server_seq": serverSeq = try m.int(value, "server_seq", 1...Wire.maxSeq)
                case "record_seq": recordSeq = try m.int(value, "record_seq", 0...Wire.maxSeq)
                case "resolutions": resolutions = try m.object(value, "resolutions") ?? [:]
                case "state": state = try m.object(value, "state").map(JSON.object)
                default: break
                }
            }
            guard let key, let status else { throw .arg("response: each result needs \"key\" and \"status\"") }
            self.key = key
            self.status = status
        }
    }

    /// The members of a response a device reads, checked before it changes
    /// anything. `changes` and `fetched` stay JSON records whose `type`,
    /// `id`, `seq` and `state` are checked here.
    struct Response {
        var results: [Result] = []
        var changes: [JSON] = []
        var fetched: [JSON] = []
        var own: [ExactString: (seq: Int64, prior: Int64)] = [:]
        var receivedAt: [Int64: Int64] = [:]
        var auditRefused: [(auditId: Int64, reason: String)] = []
        var cursor: Int64?
        var more = false

        init(_ r: JSONObject) throws(FieldSyncError) {
            let m = Members(context: "response")
            for (i, item) in try m.array(r["results"], "results").enumerated() { results.append(try Result(item, index: i)) }
            changes = try Response.records(m.array(r["changes"], "changes"), "changes")
            fetched = try Response.records(m.array(r["fetched"], "fetched"), "fetched")
            // Records the hub did not send back because this device can rebuild
            // them: the state it held at `prior`, plus its acknowledged entries.
            for (i, item) in try m.array(r["own"], "own").enumerated() {
                let o = Members(context: "response: own[\(i)]")
                guard let type = try o.text(item["type"], "type"), let id = try o.text(item["id"], "id"),
                      let seq = try o.int(item["seq"], "seq", 1...Wire.maxSeq),
                      let prior = try o.int(item["prior"], "prior", 0...(seq - 1)) else {   // safe: seq >= 1
                    throw .arg("response: each \"own\" record needs \"type\", \"id\", \"seq\" and \"prior\"")
                }
                own[ExactString(type, id)] = (seq, prior)
            }
            for (i, ack) in try m.array(r["audit_acks"], "audit_acks").enumerated() {
                let a = Members(context: "response: audit_acks[\(i)]")
                let id = try a.requiredInt(ack["audit_id"], "audit_id", 1...Wire.maxSeq)
                receivedAt[id] = try a.requiredInt(ack["server_received_at"], "server_received_at", 0...HybridClock.maxPhysical)
            }
            for (i, item) in try m.array(r["audit_refused"], "audit_refused").enumerated() {
                let a = Members(context: "response: audit_refused[\(i)]")
                auditRefused.append((try a.requiredInt(item["audit_id"], "audit_id", 1...Wire.maxSeq),
                                     try a.text(item["reason"], "reason") ?? "refused"))
            }
            cursor = try m.int(r["cursor"], "cursor", 0...Wire.maxSeq)
            more = try m.bool(r["more"], "more") ?? false
        }

        private static func records(_ list: [JSON], _ name: String) throws(FieldSyncError) -> [JSON] {
            for (i, record) in list.enumerated() {
                let m = Members(context: "response: \(name)[\(i)]")
                guard try m.text(record["type"], "type") != nil, try m.text(record["id"], "id") != nil,
                      try m.int(record["seq"], "seq", 1...Wire.maxSeq) != nil, try m.object(record["state"], "state") != nil else {
                    throw .arg("response: each change needs \"type\", \"id\", \"seq\" and \"state\"")
                }
            }
            return list
        }
    }

    static func error(_ code: String, _ message: String, device: String, batch: String, serverTime: Int64) -> JSON {
        .object([
            "protocol": .int(version), "device_id": .string(device), "batch": .string(batch),
            "server_time": .int(serverTime), "error": .object(["code": .string(code), "message": .string(message)]),
        ])
    }
}
