// Schema versions (docs/SCHEMA.md "Changing the schema"): the migration chain, mapping field names
// between versions (upcasting old clients' writes, downcasting pulled records
// to the shape an old client knows), and migrating a database's tables.

/// A field of a type, as migrations name it: "task.qty".
package struct FieldRef: Hashable, Sendable {
    package let type: String
    package let field: String

    init(_ text: String, in context: String) throws(FieldSyncError) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 2 else { throw .schema("\(context): '\(text)' must be \"type.field\"") }
        try checkIdentifier(parts[0], what: "\(context): type name")
        try checkIdentifier(parts[1], what: "\(context): field name")
        type = parts[0]
        field = parts[1]
    }

    init(type: String, field: String) { self.type = type; self.field = field }
}

/// One step of the chain: what changed from version `from` to `to`.
package struct MigrationStep: Equatable, Sendable {
    let from: Int64
    let to: Int64
    var renames: [FieldRef: String] = [:]
    var added: [FieldRef: JSON] = [:]
    var removed: Set<FieldRef> = []
    /// Fields whose merge policy changed: an old client's write to them means
    /// something else now, so it is refused with upgrade_required.
    var policyChanged: Set<FieldRef> = []

    init(json: JSON, index: Int) throws(FieldSyncError) {
        let context = "migrations[\(index)]"
        guard let o = json.object else { throw .schema("\(context) must be an object") }
        try checkKeys(o, allowed: ["from", "to", "rename", "add", "remove", "merge"], in: context)
        guard let from = o["from"]?.int, let to = o["to"]?.int, from >= 1, to > from else {
            throw .schema("\(context): \"from\" and \"to\" must be versions with from < to")
        }
        self.from = from
        self.to = to
        for (old, new) in o["rename"]?.object ?? [:] {
            let source = try FieldRef(old, in: context)
            guard let target = new.string else { throw .schema("\(context): rename of '\(old)' must name the new field") }
            let ref = try FieldRef(target.contains(".") ? target : "\(source.type).\(target)", in: context)
            guard ref.type == source.type else { throw .schema("\(context): '\(old)' can only be renamed within its type") }
            renames[source] = ref.field
        }
        for (field, value) in o["add"]?.object ?? [:] { added[try FieldRef(field, in: context)] = value }
        for item in o["remove"]?.array ?? [] {
            guard let text = item.string else { throw .schema("\(context): \"remove\" lists \"type.field\" names") }
            removed.insert(try FieldRef(text, in: context))
        }
        for (field, _) in o["merge"]?.object ?? [:] { policyChanged.insert(try FieldRef(field, in: context)) }
    }
}

/// Why one field of an old client's write cannot be taken.
package struct Refusal: Error {
    let reason: String     // "field_unavailable" or "upgrade_required"
    let message: String
}

extension Schema {
    /// Steps that lie between `version` and this schema's version, oldest first.
    func steps(after version: Int64) -> [MigrationStep] {
        migrationSteps.filter { $0.from >= version && $0.to <= self.version }.sorted { $0.from < $1.from }
    }

    /// The current name of a field that version `version` called `field`.
    /// For a write (`write`), a field whose merge policy changed since is
    /// refused too: the old client meant something else by it.
    func upcast(field: String, type: String, from version: Int64, write: Bool = true) -> Result<String, Refusal> {
        var name = field
        for step in steps(after: version) {
            let ref = FieldRef(type: type, field: name)
            if step.removed.contains(ref) {
                return .failure(Refusal(reason: "field_unavailable", message: "\(type).\(name) was removed in schema version \(step.to)"))
            }
            if write && step.policyChanged.contains(ref) {
                return .failure(Refusal(reason: "upgrade_required", message: "the merge policy of \(type).\(name) changed in schema version \(step.to)"))
            }
            if let renamed = step.renames[ref] { name = renamed }
        }
        guard types[type]?.field(name) != nil else {
            return .failure(Refusal(reason: "field_unavailable", message: "\(type).\(field) does not exist in schema version \(self.version)"))
        }
        return .success(name)
    }

    /// The name version `version` knows a current field by, or nil when that
    /// version does not have it.
    func downcast(field: String, type: String, to version: Int64) -> String? {
        var name = field
        for step in steps(after: version).reversed() {
            let ref = FieldRef(type: type, field: name)
            if step.added[ref] != nil { return nil }
            if let old = step.renames.first(where: { $0.key.type == type && $0.value == name })?.key.field { name = old }
        }
        return name
    }

    /// An old client's change in current field names, or why one of its
    /// fields cannot be taken.
    func upcast(_ change: Change, type: String, from version: Int64) -> Result<Change, Refusal> {
        if version >= self.version || types[type] == nil { return .success(change) }
        var out = Change()
        out.delete = change.delete
        func map<M: FieldMap>(_ ops: M, _ into: inout M) -> Refusal? {
            for (field, value) in ops {
                switch upcast(field: field, type: type, from: version) {
                case .success(let name): into[name] = value
                case .failure(let refusal): return refusal
                }
            }
            return nil
        }
        if let r = map(change.set, &out.set) ?? map(change.inc, &out.inc) ?? map(change.add, &out.add) ?? map(change.remove, &out.remove) {
            return .failure(r)
        }
        return .success(out)
    }

    /// Record state in the shape version `version` knows.
    func downcast(_ state: RecordState, type: String, to version: Int64) -> RecordState {
        if version >= self.version { return state }
        var out = state
        func rename<M: FieldMap>(_ dict: M) -> M {
            var mapped = M()
            for (field, value) in dict { if let name = downcast(field: field, type: type, to: version) { mapped[name] = value } }
            return mapped
        }
        out.fields = rename(state.fields)
        out.stamps = rename(state.stamps)
        out.versions = rename(state.versions)
        out.tags = rename(state.tags)
        return out
    }

    /// Default values of the fields of `type` added after `version`.
    func defaultsAdded(type: String, after version: Int64) -> JSONObject {
        var defaults: JSONObject = [:]
        for step in steps(after: version) {
            for (ref, value) in step.added where ref.type == type && !value.isNull {
                if let spec = types[type]?.field(ref.field), let checked = try? spec.checked(value, in: type) {
                    defaults[ref.field] = checked
                }
            }
        }
        return defaults
    }

    /// Moves a stored record state from `old`'s field names to this schema's:
    /// renamed fields keep their values, removed ones go, added ones take
    /// their default.
    func migrate(_ state: RecordState, type: String, from old: Schema) -> RecordState {
        var out = state
        func rename<M: FieldMap>(_ dict: M) -> M {
            var mapped = M()
            for (field, value) in dict {
                if case .success(let name) = upcast(field: field, type: type, from: old.version, write: false) { mapped[name] = value }
            }
            return mapped
        }
        out.fields = rename(state.fields)
        out.stamps = rename(state.stamps)
        out.versions = rename(state.versions)
        out.tags = rename(state.tags)
        if !state.deleted {
            for step in steps(after: old.version) {
                for (ref, value) in step.added where ref.type == type && out.fields[ref.field] == nil && !value.isNull {
                    if let spec = types[type]?.field(ref.field), let checked = try? spec.checked(value, in: type) {
                        out.fields[ref.field] = checked
                    }
                }
            }
        }
        return out
    }
}

extension Schema {
    /// Drops the plain tables of the types this schema removed and recreates,
    /// empty, those of every type whose fields changed since `old`; returns
    /// the types recreated, which the caller refills from the migrated record
    /// states. Runs inside the caller's transaction: a crash leaves the old
    /// version whole.
    func migrateTables(db: some SQLDatabase, from old: Schema, views: [String: LocalView]) throws(FieldSyncError) -> Set<String> {
        var rebuilt: Set<String> = []
        for name in old.types.keys.sorted() where types[name] == nil {
            try db.exec("DROP TABLE IF EXISTS \(quoted(name))")
        }
        for name in types.keys.sorted() {
            guard let view = views[name] else { continue }
            if let before = old.types[name], before.fields == types[name]?.fields { continue }
            try db.exec("DROP TABLE IF EXISTS \(quoted(name))")
            try db.exec(view.ddl(db.dialect))
            rebuilt.insert(name)
        }
        return rebuilt
    }
}
