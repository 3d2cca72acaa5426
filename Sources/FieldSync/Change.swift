// A change: the field operations one action makes to one record. It is what an
// outbox entry carries to the hub, and what rebase replays on server state.

package struct Change: Equatable, Sendable {
    package var set: JSONObject = [:]
    package var inc: JSONObject = [:]
    package var add: [String: [JSON]] = [:]
    package var remove: [String: [JSON]] = [:]
    package var delete = false

    package var isEmpty: Bool { self.set.isEmpty && inc.isEmpty && add.isEmpty && remove.isEmpty && !delete }

    /// The outbox encoding: only the operations present.
    package var json: JSON {
        var o: JSONObject = [:]
        if !self.set.isEmpty { o["set"] = .object(self.set) }
        if !inc.isEmpty { o["inc"] = .object(inc) }
        if !add.isEmpty { o["add"] = .object(JSONObject(add, JSON.array)) }
        if !remove.isEmpty { o["remove"] = .object(JSONObject(remove, JSON.array)) }
        if delete { o["delete"] = .bool(true) }
        return .object(o)
    }

    /// Decodes the outbox encoding (written by `json`).
    package init(json: JSON) {
        set = json["set"]?.object ?? [:]
        inc = json["inc"]?.object ?? [:]
        add = (json["add"]?.object ?? [:]).compactMapValues { $0.array ?? [] }
        remove = (json["remove"]?.object ?? [:]).compactMapValues { $0.array ?? [] }
        delete = json["delete"]?.bool ?? false
    }

    package init() {}

    /// The set fields the change adds to or removes from.
    var setFields: [String] {
        if remove.isEmpty { return Array(add.keys) }
        if add.isEmpty { return Array(remove.keys) }
        return Array(Set(add.keys).union(remove.keys))
    }

    /// Every field the change touches.
    var fields: Set<String> {
        Set(self.set.keys).union(inc.keys).union(add.keys).union(remove.keys)
    }
}

extension Change {
    /// The operations of a change as they arrive: `set`, `inc`, `add`,
    /// `remove`, `delete`, each absent or as given.
    typealias Ops = (set: JSON?, inc: JSON?, add: JSON?, remove: JSON?, delete: JSON?)

    /// The one check of a change against its type, for an action a host
    /// applies and for an entry the hub receives (which trusts nothing the
    /// device says): known, device-writable fields, each operation fitting
    /// the field's merge and type, `delete` alone. `context` names what is
    /// refused ("action", "ops").
    init(checking ops: Ops, spec: TypeSpec, in context: String) throws(FieldSyncError) {
        let type = spec.name
        for (field, value) in try members(ops.set, "set", in: context) {
            let f = try writable(spec, field, op: "set")
            switch f.merge {
            case .counter: throw .schema("field '\(type).\(field)' is a counter: change it with \"inc\", not \"set\"")
            case .set: throw .schema("field '\(type).\(field)' is a set: change it with \"add\" and \"remove\", not \"set\"")
            default: break
            }
            if value.isNull && spec.required.contains(field) {
                throw .schema("field '\(type).\(field)' is required and cannot be set to null")
            }
            self.set[field] = try f.checked(value, in: type)
        }
        for (field, delta) in try members(ops.inc, "inc", in: context) {
            let f = try writable(spec, field, op: "inc")
            guard f.merge == .counter else {
                throw .schema("field '\(type).\(field)' is not a counter (merge \(f.merge.rawValue)): \"inc\" is for counter fields")
            }
            switch (f.type, delta) {
            case (.int, .int), (.float, .int), (.float, .double): inc[field] = delta
            default: throw .schema("\"inc\" of '\(type).\(field)' must be \(f.type == .int ? "an integer" : "a number"); got \(delta.kind)")
            }
        }
        for (op, elements) in [("add", ops.add), ("remove", ops.remove)] {
            for (field, elements) in try members(elements, op, in: context) {
                let f = try writable(spec, field, op: op)
                guard f.merge == .set else { throw .schema("field '\(type).\(field)' is not a set: \"\(op)\" is for set fields") }
                guard let items = elements.array else {
                    throw .schema("\"\(op)\" of '\(type).\(field)' must be an array of elements; got \(elements.kind)")
                }
                let normalized = try FieldSpec.setElements(items, field: "\(type).\(field)")
                if op == "add" { add[field] = normalized } else { remove[field] = normalized }
            }
        }
        if let d = ops.delete {
            guard let flag = d.bool else { throw .arg("\(context): \"delete\" must be true or false") }
            if flag && !isEmpty { throw .arg("\(context): \"delete\" cannot be combined with set, inc, add or remove") }
            delete = flag
        }
        if isEmpty { throw .arg("\(context) changes nothing: give set, inc, add, remove or delete") }
    }

    /// An entry's `ops` object as the hub receives it, checked as an action's are.
    init(checkingOps ops: JSONObject, spec: TypeSpec) throws(FieldSyncError) {
        var set, inc, add, remove, delete: JSON?
        for (key, value) in ops {
            switch key {
            case "set": set = value
            case "inc": inc = value
            case "add": add = value
            case "remove": remove = value
            case "delete": delete = value
            default: throw .arg("ops: unknown operation '\(key)' (allowed: add, delete, inc, remove, set)")
            }
        }
        try self.init(checking: (set, inc, add, remove, delete), spec: spec, in: "ops")
    }
}

private func writable(_ spec: TypeSpec, _ field: String, op: String) throws(FieldSyncError) -> FieldSpec {
    guard let f = spec.field(field) else {
        throw .schema("unknown field '\(spec.name).\(field)' in \"\(op)\"; declared: \(spec.fields.map(\.name).joined(separator: ", "))")
    }
    if !f.deviceWrites { throw .schema("field '\(spec.name).\(field)' is server-owned (\"device_writes\": false)") }
    return f
}

private func members(_ value: JSON?, _ key: String, in context: String) throws(FieldSyncError) -> JSONObject {
    guard let value, !value.isNull else { return [:] }
    guard let object = value.object else { throw .arg("\(context): \"\(key)\" must be an object of field: value, got \(value.kind)") }
    return object
}
