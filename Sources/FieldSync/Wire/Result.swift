// One entry's result in a response (docs/PROTOCOL.md "Response").

extension Wire {
    /// One entry's result as the hub writes it and a device reads it, in
    /// one pass over its members.
    struct Result: Equatable {
        var key = ""
        var status = ""
        var outcome: String?
        var reason: String?
        var serverSeq: Int64?
        var recordSeq: Int64?
        var resolutions: JSONObject = [:]
        /// The record's state with a rejection (the view returns to it at once).
        var state: RecordState?
        /// For the host (what failed, with which values); a device does not read it.
        var detail: JSON?

        init(key: String, status: String) {
            self.key = key
            self.status = status
        }

        init(_ json: JSON, index: Int) throws(FieldSyncError) {
            guard let o = json.object else { throw .arg("response: results[\(index)] must be an object, got \(json.kind)") }
            let m = Members("response: results", index)
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
                case "state":
                    if let o = try m.object(value, "state") { state = try Wire.state(o, Members("response: results", index, ": state")) }
                case "detail": detail = value.isNull ? nil : value
                default: break
                }
            }
            guard let key, let status else { throw .arg("response: each result needs \"key\" and \"status\"") }
            self.key = key
            self.status = status
        }

        var json: JSON {
            var o: JSONObject = ["key": .string(key), "status": .string(status)]
            if let outcome { o["outcome"] = .string(outcome) }
            if let reason { o["reason"] = .string(reason) }
            if let serverSeq { o["server_seq"] = .int(serverSeq) }
            if let recordSeq { o["record_seq"] = .int(recordSeq) }
            if !resolutions.isEmpty { o["resolutions"] = .object(resolutions) }
            if let state { o["state"] = state.shadowJSON }
            if let detail { o["detail"] = detail }
            return .object(o)
        }
    }
}
