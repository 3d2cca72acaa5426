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
        change = try Change(checking: (set, inc, add, remove, delete), spec: spec, in: "action")
    }
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
