// An operator action as the host submits it (docs/ARCHITECTURE.md#apply), checked against the
// schema before anything is written.

package struct Action: Sendable {
    package let name: String
    package let actor: String
    package let type: String
    package let id: String
    package let change: Change
    package let input: JSON
}

extension Action {
    static let keys = ["action", "actor", "type", "id", "set", "inc", "add", "remove", "delete", "input"]

    package init(json: JSON, schema: Schema) throws(FieldSyncError) {
        guard let root = json.object else { throw .arg("an action must be a JSON object, got \(json.kind)") }
        // One pass over the members: comparing a key with short literals is
        // cheaper than a binary search per known key.
        var name, actor, typeMember, id, set, inc, add, remove, delete, input: JSON?
        for (key, value) in root {
            switch key {
            case "action": name = value
            case "actor": actor = value
            case "type": typeMember = value
            case "id": id = value
            case "set": set = value
            case "inc": inc = value
            case "add": add = value
            case "remove": remove = value
            case "delete": delete = value
            case "input": input = value
            default: throw .arg("action: unknown key '\(key)' (allowed: \(Action.keys.sorted().joined(separator: ", ")))")
            }
        }
        self.name = try requiredText(name, "action", in: "action")
        self.actor = try requiredText(actor, "actor", in: "action")
        self.type = try requiredText(typeMember, "type", in: "action")
        self.id = try requiredText(id, "id", in: "action")
        self.input = input ?? .null
        let spec = try schema.type(type)

        var change = Change()
        for (field, value) in try members(set, "set") {
            let f = try writable(spec, field, op: "set")
            switch f.merge {
            case .counter: throw .schema("field '\(type).\(field)' is a counter: change it with \"inc\", not \"set\"")
            case .set: throw .schema("field '\(type).\(field)' is a set: change it with \"add\" and \"remove\", not \"set\"")
            default: break
            }
            if value.isNull && spec.required.contains(field) {
                throw .schema("field '\(type).\(field)' is required and cannot be set to null")
            }
            change.set[field] = try f.checked(value, in: type)
        }
        for (field, delta) in try members(inc, "inc") {
            let f = try writable(spec, field, op: "inc")
            guard f.merge == .counter else {
                throw .schema("field '\(type).\(field)' is not a counter (merge \(f.merge.rawValue)): \"inc\" is for counter fields")
            }
            switch (f.type, delta) {
            case (.int, .int), (.float, .int), (.float, .double): change.inc[field] = delta
            default: throw .schema("\"inc\" of '\(type).\(field)' must be \(f.type == .int ? "an integer" : "a number"); got \(delta.kind)")
            }
        }
        for (op, ops) in [("add", add), ("remove", remove)] {
            for (field, elements) in try members(ops, op) {
                let f = try writable(spec, field, op: op)
                guard f.merge == .set else { throw .schema("field '\(type).\(field)' is not a set: \"\(op)\" is for set fields") }
                guard let items = elements.array else {
                    throw .schema("\"\(op)\" of '\(type).\(field)' must be an array of elements; got \(elements.kind)")
                }
                let normalized = try FieldSpec.setElements(items, field: "\(type).\(field)")
                if op == "add" { change.add[field] = normalized } else { change.remove[field] = normalized }
            }
        }
        if let d = delete {
            guard let flag = d.bool else { throw .arg("action: \"delete\" must be true or false") }
            if flag && !change.isEmpty { throw .arg("action: \"delete\" cannot be combined with set, inc, add or remove") }
            change.delete = flag
        }
        if change.isEmpty { throw .arg("action changes nothing: give set, inc, add, remove or delete") }
        self.change = change
    }
}

private func writable(_ spec: TypeSpec, _ field: String, op: String) throws(FieldSyncError) -> FieldSpec {
    guard let f = spec.field(field) else {
        throw .schema("unknown field '\(spec.name).\(field)' in \"\(op)\"; declared: \(spec.fields.map(\.name).joined(separator: ", "))")
    }
    if !f.deviceWrites { throw .schema("field '\(spec.name).\(field)' is server-owned (\"device_writes\": false)") }
    return f
}

private func members(_ value: JSON?, _ key: String) throws(FieldSyncError) -> JSONObject {
    guard let value, !value.isNull else { return [:] }
    guard let object = value.object else { throw .arg("action: \"\(key)\" must be an object of field: value, got \(value.kind)") }
    return object
}

/// A non-empty string member no longer than FS_MAX_ID_BYTES.
func requiredText(_ root: JSONObject, _ key: String, in context: String) throws(FieldSyncError) -> String {
    try requiredText(root[key], key, in: context)
}

func requiredText(_ value: JSON?, _ key: String, in context: String) throws(FieldSyncError) -> String {
    guard let value else { throw .arg("\(context): \"\(key)\" is missing") }
    guard let text = value.string, !text.isEmpty else { throw .arg("\(context): \"\(key)\" must be a non-empty string, got \(value.kind)") }
    try checkLength(text, what: "\(context): \"\(key)\"")
    return text
}

func checkLength(_ text: String, what: @autoclosure () -> String) throws(FieldSyncError) {
    if text.utf8.count > Limits.maxIDBytes {
        throw .tooBig("\(what()) is \(text.utf8.count) bytes; the limit is \(Limits.maxIDBytes) (FS_MAX_ID_BYTES)")
    }
}
