// Field values: checking a JSON value against its declared type, and moving it
// between JSON and the SQLite column that holds it in the local view.

extension FieldSpec {
    /// The value normalised for storage, or a schema error naming the field.
    func checked(_ value: JSON, in type: String) throws(FieldSyncError) -> JSON {
        if value.isNull { return .null }
        switch (self.type, value) {
        case (.string, .string), (.int, .int), (.float, .double), (.bool, .bool), (.json, _):
            return value
        case (.float, .int(let i)):
            return .double(Double(i))
        case (.set, .array(let items)):
            return .array(try FieldSpec.setElements(items, field: "\(type).\(name)"))
        default:
            throw .schema("field '\(type).\(name)' is \(self.type.rawValue); got \(value.kind)")
        }
    }

    /// Set elements are strings or integers; a set is kept deduplicated and
    /// sorted (integers first, then strings by code point) so equal sets
    /// encode to equal text on every replica.
    static func setElements(_ items: [JSON], field: String) throws(FieldSyncError) -> [JSON] {
        for item in items {
            switch item {
            case .string, .int: continue
            default: throw .schema("set field '\(field)' holds strings or integers; got \(item.kind)")
            }
        }
        return normalizedSet(items)
    }

    static func normalizedSet(_ items: [JSON]) -> [JSON] {
        if isNormalizedSet(items) { return items }
        var ints: Set<Int64> = []
        var strings: Set<ExactString> = []
        for item in items {
            if let i = item.int { ints.insert(i) } else if let s = item.string { strings.insert(ExactString(s)) }
        }
        return ints.sorted().map(JSON.int) + strings.sorted().map { JSON.string($0.value) }
    }

    /// Whether `items` is already in set order without repeats (integers
    /// ascending, then strings by code point): the common case is skipped cheaply.
    static func isNormalizedSet(_ items: [JSON]) -> Bool {
        var previous: JSON?
        for item in items {
            switch (previous, item) {
            case (nil, .int), (nil, .string): break
            case (.int(let a)?, .int(let b)): if a >= b { return false }
            case (.int?, .string): break
            case (.string(let a)?, .string(let b)): if compareUTF8(a, b) >= 0 { return false }
            default: return false
            }
            previous = item
        }
        return true
    }

    func sqlValue(_ value: JSON) -> SQLValue {
        switch value {
        case .null: .null
        case .string(let s) where type != .json: .text(s)
        case .int(let i) where type != .json && type != .float: .int(i)
        case .int(let i) where type == .float: .double(Double(i))
        case .double(let d) where type != .json: .double(d)
        case .bool(let b) where type != .json: .int(b ? 1 : 0)
        default: .bytes(value.bytes)
        }
    }

    func jsonValue(_ row: some SQLRow, _ column: Int32) -> JSON {
        if row.isNull(column) { return .null }
        switch type {
        case .string: return .string(row.text(column))
        case .int: return .int(row.int(column))
        case .float: return .double(row.double(column))
        case .bool: return .bool(row.int(column) != 0)
        case .json, .set:
            // Written by us as JSON text, but the view is the host's to
            // write too: junk it wrote comes back as a string rather than a
            // failure (the engine's own tables are strict: storedJSON).
            return (try? row.storedJSON(column, "")) ?? .string(row.text(column))
        }
    }

    var sqlType: String {
        switch type {
        case .string, .json, .set: "TEXT"
        case .int, .bool: "INTEGER"
        case .float: "REAL"
        }
    }
}

extension TypeSpec {
    /// A record as the ABI shows it: type, id and every declared field.
    func recordJSON(id: String, fields: JSONObject, meta: JSONObject? = nil) -> JSON {
        var members: [JSONObject.Element] = []
        members.reserveCapacity(self.fields.count + 3)
        // `fields` is in the same order as the spec's fields: one walk over
        // both instead of a search per field.
        let values = fields.members
        var next = 0
        for slot in recordSlots {
            switch slot {
            case .meta: if let meta { members.append(("_fs", .object(meta))) }
            case .id: members.append(("id", .string(id)))
            case .type: members.append(("type", .string(name)))
            case .field(let i):
                let field = self.fields[i].name
                var value = JSON.null
                while next < values.count {
                    let c = compareUTF8(values[next].key, field)
                    if c > 0 { break }
                    next += 1
                    if c == 0 { value = values[next - 1].value; break }
                }
                members.append((field, value))
            }
        }
        return .object(JSONObject(sortedMembers: members))
    }
}
