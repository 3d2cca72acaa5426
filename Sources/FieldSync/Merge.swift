// Applying a change to a record's fields, policy by policy. The device uses it
// for its local view and to rebase pending changes on server state.

enum Merge {
    /// Applies `change` to `fields`. Returns false when the change deletes the record.
    static func apply(_ change: Change, to fields: inout [String: JSON], spec: TypeSpec) throws(FieldSyncError) -> Bool {
        if change.delete { return false }
        for (name, value) in change.set { fields[name] = value }
        for (name, delta) in change.inc {
            fields[name] = try add(delta, to: fields[name] ?? .null, field: "\(spec.name).\(name)")
        }
        // Within one change, removals go first: an element both removed and
        // added ends up present, the same rule as concurrent add/remove.
        for name in change.fields where change.add[name] != nil || change.remove[name] != nil {
            var elements = fields[name]?.array ?? []
            if let removed = change.remove[name] {
                elements.removeAll { removed.contains($0) }
            }
            if let added = change.add[name] { elements += added }
            fields[name] = .array(FieldSpec.normalizedSet(elements))
        }
        return true
    }

    /// Counter arithmetic: integers must not overflow, floats must stay finite.
    static func add(_ delta: JSON, to current: JSON, field: String) throws(FieldSyncError) -> JSON {
        switch (current, delta) {
        case (.null, .int(let d)): return .int(d)
        case (.int(let c), .int(let d)):
            let (sum, overflow) = c.addingReportingOverflow(d)
            if overflow { throw .arg("counter '\(field)' would overflow a 64-bit integer") }
            return .int(sum)
        default:
            let sum = (current.number ?? 0) + (delta.number ?? 0)
            if !sum.isFinite { throw .arg("counter '\(field)' would leave the range of a double") }
            return .double(sum)
        }
    }
}
