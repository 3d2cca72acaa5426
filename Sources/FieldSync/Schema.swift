// The application schema (docs/SCHEMA.md): record types, their fields, each field's
// value type and merge policy. Validated completely before anything uses it.

package enum FieldType: String, Sendable {
    case string, int, float, bool, json, set
}

package enum MergePolicy: String, Sendable {
    case lww, counter, set, server, custom
}

package struct FieldSpec: Sendable, Equatable {
    package let name: String
    package let type: FieldType
    package let merge: MergePolicy
    package let resolver: String?
    package let deviceWrites: Bool
}

package struct Retention: Sendable, Equatable {
    package let keepDays: Int64?
    package let archiveWhen: [String: [JSON]]
}

/// A class, not a struct: every action passes its type's spec around, and a
/// struct copy retained each of its members.
package final class TypeSpec: Sendable, Equatable {
    package let name: String
    /// Sorted by name: the column order of the type's table.
    package let fields: [FieldSpec]
    package let required: Set<String>
    package let retention: Retention?
    let byName: [String: FieldSpec]
    /// The members of a record as the ABI shows it (recordJSON), in
    /// canonical key order: worked out once, not sorted per record.
    let recordSlots: [RecordSlot]

    enum RecordSlot { case meta, id, type, field(Int) }

    init(name: String, fields: [FieldSpec], required: Set<String>, retention: Retention?, byName: [String: FieldSpec]) {
        self.name = name
        self.fields = fields
        self.required = required
        self.retention = retention
        self.byName = byName
        // Field names cannot be id, type or start with "_" (FieldSpec.init).
        let keyed: [(String, RecordSlot)] = [("_fs", .meta), ("id", .id), ("type", .type)] + fields.indices.map { (fields[$0].name, .field($0)) }
        recordSlots = keyed.sorted { codePointOrder($0.0, $1.0) }.map(\.1)
    }

    package static func == (a: TypeSpec, b: TypeSpec) -> Bool {
        a === b || (a.name == b.name && a.fields == b.fields && a.required == b.required && a.retention == b.retention)
    }

    /// The field named exactly `name`, byte for byte: a name that is only
    /// canonically equivalent ("\u{212A}" for "K") is unknown, as keys are
    /// everywhere else (Swift's == and hashing would match it).
    package func field(_ name: String) -> FieldSpec? {
        // Comparing a short key with a few names costs less than hashing it.
        let found = fields.count <= 16 ? fields.first { $0.name == name } : byName[name]
        guard let found, compareUTF8(found.name, name) == 0 else { return nil }
        return found
    }
}

package struct Schema: Sendable, Equatable {
    package let version: Int64
    package let types: [String: TypeSpec]
    package let minClientVersion: Int64
    /// Kept as given: a schema whose chain differs is a change (differences(from:)).
    package let migrations: [JSON]
    /// The migrations, parsed: the chain old clients' shapes are mapped through.
    package let migrationSteps: [MigrationStep]
    /// The schema as parsed, re-encoded canonically: what the store keeps.
    package let canonical: String

    package func type(_ name: String) throws(FieldSyncError) -> TypeSpec {
        // Byte for byte, as field names (a Dictionary matches canonical equivalents).
        guard let spec = types[name], compareUTF8(spec.name, name) == 0 else {
            throw .schema("unknown type '\(name)'; the schema declares: \(types.keys.sorted().joined(separator: ", "))")
        }
        return spec
    }
}

extension Schema {
    package init(json text: String) throws(FieldSyncError) {
        try self.init(json: JSON.parse(text, what: "schema"))
    }

    package init(json: JSON) throws(FieldSyncError) {
        guard let root = json.object else { throw .schema("schema must be a JSON object, got \(json.kind)") }
        try checkKeys(root, allowed: ["version", "types", "migrations", "min_client_version"], in: "schema")
        guard let version = root["version"]?.int, version >= 1 else {
            throw .schema("schema: \"version\" must be an integer >= 1")
        }
        guard let typesJSON = root["types"]?.object, !typesJSON.isEmpty else {
            throw .schema("schema: \"types\" must be a non-empty object of record types")
        }
        var types: [String: TypeSpec] = [:]
        for (name, body) in typesJSON {
            types[name] = try TypeSpec(name: name, json: body)
        }
        var minClient: Int64 = 1
        if let m = root["min_client_version"], !m.isNull {
            guard let v = m.int, v >= 1, v <= version else {
                throw .schema("schema: \"min_client_version\" must be an integer between 1 and version (\(version))")
            }
            minClient = v
        }
        var migrations: [JSON] = []
        if let m = root["migrations"], !m.isNull {
            guard let list = m.array else { throw .schema("schema: \"migrations\" must be an array") }
            migrations = list
        }
        self.version = version
        self.types = types
        self.minClientVersion = minClient
        self.migrations = migrations
        var steps: [MigrationStep] = []
        for (i, m) in migrations.enumerated() {
            let step = try MigrationStep(json: m, index: i)
            if step.to > version { throw .schema("migrations[\(i)] goes to version \(step.to), beyond the schema's version \(version)") }
            if let overlap = steps.first(where: { $0.from < step.to && step.from < $0.to }) {
                throw .schema("migrations[\(i)] (\(step.from)->\(step.to)) overlaps \(overlap.from)->\(overlap.to)")
            }
            steps.append(step)
        }
        self.migrationSteps = steps
        self.canonical = json.text
    }
}

extension TypeSpec {
    convenience init(name: String, json: JSON) throws(FieldSyncError) {
        try checkIdentifier(name, what: "type name")
        if name.hasPrefix("fs_") || name.hasPrefix("sqlite_") {
            throw .schema("type '\(name)': names starting with fs_ or sqlite_ are reserved")
        }
        guard let body = json.object else { throw .schema("type '\(name)' must be an object") }
        try checkKeys(body, allowed: ["fields", "required", "retention"], in: "type '\(name)'")
        guard let fieldsJSON = body["fields"]?.object, !fieldsJSON.isEmpty else {
            throw .schema("type '\(name)': \"fields\" must be a non-empty object")
        }
        var fields: [FieldSpec] = []
        for (fieldName, fieldBody) in fieldsJSON {
            fields.append(try FieldSpec(type: name, name: fieldName, json: fieldBody))
        }
        fields.sort { codePointOrder($0.name, $1.name) }
        var byName: [String: FieldSpec] = [:]
        for f in fields { byName[f.name] = f }

        var required: Set<String> = []
        if let r = body["required"], !r.isNull {
            guard let list = r.array else { throw .schema("type '\(name)': \"required\" must be an array of field names") }
            for item in list {
                guard let f = item.string, byName[f] != nil else {
                    throw .schema("type '\(name)': required field \(item.text) is not declared in \"fields\"")
                }
                required.insert(f)
            }
        }
        var retention: Retention?
        if let r = body["retention"], !r.isNull {
            retention = try Retention(type: name, json: r, fields: byName)
        }
        self.init(name: name, fields: fields, required: required, retention: retention, byName: byName)
    }
}

extension FieldSpec {
    init(type: String, name: String, json: JSON) throws(FieldSyncError) {
        let path = "\(type).\(name)"
        try checkIdentifier(name, what: "field name '\(path)'")
        if name == "id" || name == "type" || name.hasPrefix("_") {
            throw .schema("field '\(path)': the names id, type and those starting with _ are reserved")
        }
        guard let body = json.object else { throw .schema("field '\(path)' must be an object like {\"type\": \"string\"}") }
        try checkKeys(body, allowed: ["type", "merge", "resolver", "device_writes"], in: "field '\(path)'")
        guard let typeName = body["type"]?.string, let fieldType = FieldType(rawValue: typeName) else {
            throw .schema("field '\(path)': \"type\" must be one of string, int, float, bool, json, set")
        }
        var merge: MergePolicy = fieldType == .set ? .set : .lww
        if let m = body["merge"] {
            guard let s = m.string, let policy = MergePolicy(rawValue: s) else {
                throw .schema("field '\(path)': \"merge\" must be one of lww, counter, set, server, custom")
            }
            merge = policy
        }
        switch (fieldType, merge) {
        case (.int, .counter), (.float, .counter), (.set, .set): break
        case (_, .counter): throw .schema("field '\(path)': merge counter needs type int or float")
        case (.set, _): throw .schema("field '\(path)': a set field must use merge set")
        case (_, .set): throw .schema("field '\(path)': merge set needs type set")
        default: break
        }
        var resolver: String?
        if let r = body["resolver"] {
            guard merge == .custom else { throw .schema("field '\(path)': \"resolver\" is only for merge custom") }
            guard let s = r.string, !s.isEmpty, s.utf8.count <= Limits.maxIDBytes else {
                throw .schema("field '\(path)': \"resolver\" must be a non-empty string")
            }
            resolver = s
        } else if merge == .custom {
            throw .schema("field '\(path)': merge custom needs a \"resolver\" name")
        }
        var deviceWrites = true
        if let d = body["device_writes"] {
            guard let b = d.bool else { throw .schema("field '\(path)': \"device_writes\" must be true or false") }
            deviceWrites = b
        }
        self.init(name: name, type: fieldType, merge: merge, resolver: resolver, deviceWrites: deviceWrites)
    }
}

extension Retention {
    init(type: String, json: JSON, fields: [String: FieldSpec]) throws(FieldSyncError) {
        guard let body = json.object else { throw .schema("type '\(type)': \"retention\" must be an object") }
        try checkKeys(body, allowed: ["keep_days", "archive_when"], in: "type '\(type)' retention")
        var keepDays: Int64?
        if let k = body["keep_days"], !k.isNull {
            guard let days = k.int, days > 0, days <= HygieneSettings.maxDays else {
                throw .schema("type '\(type)': \"keep_days\" must be an integer from 1 to \(HygieneSettings.maxDays) (100 years); omit it to keep records forever")
            }
            keepDays = days
        }
        var archiveWhen: [String: [JSON]] = [:]
        if let a = body["archive_when"], !a.isNull {
            guard let conditions = a.object else {
                throw .schema("type '\(type)': \"archive_when\" must map fields to lists of values")
            }
            for (field, values) in conditions {
                guard fields[field] != nil else { throw .schema("type '\(type)': archive_when names unknown field '\(field)'") }
                guard let list = values.array else {
                    throw .schema("type '\(type)': archive_when.\(field) must be an array of values")
                }
                archiveWhen[field] = list
            }
        }
        self.init(keepDays: keepDays, archiveWhen: archiveWhen)
    }
}

/// Type and field names reach SQL as identifiers, so they are held to
/// [A-Za-z_][A-Za-z0-9_]* (at most 64 bytes) before anything else sees them.
func checkIdentifier(_ name: String, what: String) throws(FieldSyncError) {
    let bytes = Array(name.utf8)
    guard let first = bytes.first, bytes.count <= 64 else {
        throw .schema("\(what) must be 1 to 64 characters of [A-Za-z0-9_]")
    }
    func isLetter(_ b: UInt8) -> Bool { (b >= 65 && b <= 90) || (b >= 97 && b <= 122) || b == 95 }
    guard isLetter(first), bytes.allSatisfy({ isLetter($0) || ($0 >= 48 && $0 <= 57) }) else {
        throw .schema("\(what) '\(name)' is not an identifier ([A-Za-z_][A-Za-z0-9_]*)")
    }
}

func checkKeys(_ object: JSONObject, allowed: Set<String>, in context: String,
               code: (String) -> FieldSyncError = FieldSyncError.schema) throws(FieldSyncError) {
    for key in object.keys where !allowed.contains(key) {
        throw code("\(context): unknown key '\(key)' (allowed: \(allowed.sorted().joined(separator: ", ")))")
    }
}

extension Schema {
    /// What changed from `old` to this schema, naming types and fields.
    package func differences(from old: Schema) -> [String] {
        var out: [String] = []
        for name in old.types.keys.sorted() where types[name] == nil { out.append("type '\(name)' removed") }
        for name in types.keys.sorted() {
            guard let t = types[name] else { continue }
            guard let o = old.types[name] else { out.append("type '\(name)' added"); continue }
            for f in o.fields where t.field(f.name) == nil { out.append("field '\(name).\(f.name)' removed") }
            for f in t.fields {
                guard let before = o.field(f.name) else { out.append("field '\(name).\(f.name)' added"); continue }
                if before.type != f.type { out.append("field '\(name).\(f.name)' type \(before.type.rawValue) -> \(f.type.rawValue)") }
                if before.merge != f.merge { out.append("field '\(name).\(f.name)' merge \(before.merge.rawValue) -> \(f.merge.rawValue)") }
                if before.resolver != f.resolver || before.deviceWrites != f.deviceWrites {
                    out.append("field '\(name).\(f.name)' resolver or device_writes changed")
                }
            }
            if t.required != o.required { out.append("required fields of '\(name)' changed") }
            if t.retention != o.retention { out.append("retention of '\(name)' changed") }
        }
        if minClientVersion != old.minClientVersion { out.append("min_client_version \(old.minClientVersion) -> \(minClientVersion)") }
        if migrations != old.migrations { out.append("migrations changed") }
        return out
    }
}

extension Schema {
    /// The schema a store or hub file holds (fs_meta "schema"): one that does
    /// not read back is damage to the file, not a schema error of the caller.
    static func stored(_ text: String) throws(FieldSyncError) -> Schema {
        do { return try Schema(json: text) } catch { throw .corrupt("fs_meta.schema cannot be read: \(error.message)") }
    }

    static func describeChanges(from storedText: String, to schema: Schema) -> String {
        guard let stored = try? Schema(json: storedText) else { return "the stored schema cannot be read" }
        let changes = schema.differences(from: stored)
        return changes.isEmpty ? "only formatting differs" : changes.joined(separator: "; ")
    }
}

extension Schema {
    /// A pull scope (`{"type": {"field": value}}`) checked against the
    /// schema, in today's field names: what a store checks at open and the
    /// hub with every request, so a scope the hub would refuse never opens.
    /// A filter is an equality on a string, int, float or bool field (a
    /// value of the field's type, or null for "not set"); set and json
    /// fields are refused, as equality on a whole set or document is not a
    /// filter anyone means.
    package func checkedScope(_ json: JSON?, clientVersion: Int64, in context: String) throws(FieldSyncError) -> [String: JSONObject] {
        guard let json, !json.isNull else { return [:] }
        guard let o = json.object else { throw .arg("\(context): \"scope\" must map types to field filters, got \(json.kind)") }
        var scope: [String: JSONObject] = [:]
        for (type, filter) in o {
            let spec = try self.type(type)
            guard let f = filter.object else { throw .arg("\(context): scope of '\(type)' must be an object of field: value, got \(filter.kind)") }
            var checked: JSONObject = [:]
            for (field, value) in f {
                guard case .success(let name) = upcast(field: field, type: type, from: clientVersion), let spec = spec.field(name) else {
                    throw .schema("\(context): scope names unknown field '\(type).\(field)'")
                }
                if spec.type == .set || spec.type == .json {
                    throw .schema("\(context): scope filters on '\(type).\(field)', a \(spec.type.rawValue) field; scopes filter string, int, float and bool fields")
                }
                checked[name] = try spec.checked(value, in: type)
            }
            scope[type] = checked
        }
        return scope
    }
}
