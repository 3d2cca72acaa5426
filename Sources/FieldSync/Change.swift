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
