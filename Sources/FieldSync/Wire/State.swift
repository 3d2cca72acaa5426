// A record's server state as it travels (docs/PROTOCOL.md "Response":
// rejections, fetched records, pulled changes).

extension RecordState {
    /// As it travels: everything but the hub's add-tags of sets.
    var shadowJSON: JSON {
        var o: JSONObject = [
            "deleted": .bool(deleted), "fields": .object(fields), "stamps": .object(JSONObject(stamps, \.json)),
            "versions": .object(JSONObject(versions, JSON.int)),
        ]
        if let deletedAt { o["deleted_at"] = deletedAt.json }
        return .object(o)
    }
}

extension Wire {
    /// A record state as a device reads it from a response, every member
    /// checked: field versions are hub sequences (0 ... 2^53-1), stamps
    /// `[hlc, device]` pairs (any hlc: a device never adopts one beyond its
    /// skew bound, docs/AUDIT.md), `deleted` a boolean. Field values are
    /// checked against the schema where they are merged.
    static func state(_ o: JSONObject, _ m: Members) throws(FieldSyncError) -> RecordState {
        var state = RecordState()
        for (name, value) in o {
            switch name {
            case "fields": state.fields = try m.object(value, "fields") ?? [:]
            case "stamps":
                for (field, stamp) in try m.object(value, "stamps") ?? [:] {
                    state.stamps[field] = try Wire.stamp(stamp, "stamps.\(field)", m)
                }
            case "versions":
                for (field, version) in try m.object(value, "versions") ?? [:] {
                    state.versions[field] = try m.requiredInt(version, "versions.\(field)", 0...Wire.maxSeq)
                }
            case "deleted": state.deleted = try m.bool(value, "deleted") ?? false
            case "deleted_at": state.deletedAt = value.isNull ? nil : try Wire.stamp(value, "deleted_at", m)
            default: break
            }
        }
        return state
    }

    private static func stamp(_ value: JSON, _ name: @autoclosure () -> String, _ m: Members) throws(FieldSyncError) -> Stamp {
        guard let pair = value.array, pair.count == 2 else {
            throw .arg("\(m.context): \"\(name())\" must be a stamp [hlc, device], got \(value.kind)")
        }
        return Stamp(hlc: try m.requiredInt(pair[0], name(), Int64.min...Int64.max), device: try m.requiredText(pair[1], name()))
    }
}
