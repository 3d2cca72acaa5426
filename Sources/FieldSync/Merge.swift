// The merge rules, one implementation per policy, used by the hub to fold an
// incoming change into a record and by a device to replay its pending changes
// on top of server state (rebase). docs/MERGE.md states the rules in prose.

package enum Resolution: String, Sendable {
    case clean      // no concurrent modification
    case won        // lww: this write beat a concurrent one
    case lost       // lww: a concurrent newer write (or delete) beat this one
    case merged     // counter or set: both writes kept
    case rejected   // server: compare-and-set failed
    case resolved   // custom: the host's resolver merged the values
}

package struct MergeReport: Sendable {
    package var fields: [(field: String, resolution: Resolution)] = []
    /// Set when the whole change is refused (server compare-and-set).
    package var rejection: (reason: String, detail: JSON)? = nil
    /// Counter fields whose increment was left out because it would overflow
    /// (a device replaying its pending changes only, see `replaying`).
    package var overflowed: [String] = []
}

enum Merge {
    /// Hub-only facts about the change being merged.
    struct HubContext {
        /// Server sequence number this change will carry if applied.
        let seq: Int64
        /// The hub cursor the device had pulled up to when it acted: the
        /// server state it had observed.
        let observed: Int64
        /// Server versions the device based its `server` and `custom` writes on.
        let base: JSONObject
        /// For `custom` fields: the server values those writes were based on.
        var baseValues: JSONObject = [:]
        /// Who made the change, for the resolver.
        var actor: String = ""
        /// Answers a concurrent `custom` write: the merged value, or why not.
        var resolve: (FieldSpec, JSON) -> Result<JSON, FieldSyncError> = { field, _ in
            .failure(.notFound("no resolver registered under '\(field.resolver ?? "")'"))
        }
    }

    /// Folds `change`, written at `stamp`, into `state`. On the device
    /// (`hub == nil`) writes are applied optimistically; the hub also checks
    /// compare-and-set, records versions and keeps set add-tags. Without
    /// `stamping`, field stamps are not recorded: for a state whose fields
    /// are all that is kept (the device's view row). With `replaying` (a
    /// device rebuilding a state from changes the hub judges, docs/MERGE.md)
    /// an increment that would overflow its counter is left out and reported
    /// instead of failing the whole replay: one record's counter never
    /// blocks a receive.
    static func merge(_ change: Change, stamp: Stamp, into state: inout RecordState, spec: TypeSpec,
                      id recordId: String = "", hub: HubContext? = nil, stamping: Bool = true,
                      replaying: Bool = false) throws(FieldSyncError) -> MergeReport {
        var report = MergeReport()
        let specName = spec.name
        func concurrent(_ field: String) -> Bool {
            guard let hub, let version = state.versions[field] else { return false }
            return version > hub.observed && state.stamps[field]?.device != stamp.device
        }
        func touched(_ field: String) {
            if stamping { state.stamps[field] = max(state.stamps[field] ?? stamp, stamp) }
            if let hub { state.versions[field] = hub.seq }
        }

        if change.delete {
            if state.deleted, let at = state.deletedAt, at >= stamp { return report }
            state.deleted = true
            state.deletedAt = max(state.deletedAt ?? stamp, stamp)
            state.fields = [:]
            state.tags = [:]
            state.stamps = [:]
            if let hub { for f in spec.fields { state.versions[f.name] = hub.seq } }
            return report
        }

        // Compare-and-set first: a refused server write refuses the whole
        // action, so nothing else of it may have been applied.
        if let hub {
            for field in change.set.keys.sorted() where spec.field(field)?.merge == .server {
                let base = hub.base[field]?.int
                if base != state.versions[field] {
                    report.rejection = ("conflict", .object([
                        "field": .string(field), "value": state.fields[field] ?? .null,
                        "version": state.versions[field].map(JSON.int) ?? .null,
                    ]))
                    report.fields = [(field, .rejected)]
                    return report
                }
            }
        }

        // A write older than the record's delete loses to it, field by field.
        if state.deleted {
            if let at = state.deletedAt, stamp < at {
                report.fields = change.fields.sorted().map { ($0, .lost) }
                return report
            }
            state.deleted = false
        }

        for (field, value) in change.set {   // a JSONObject: in code point order already
            guard let spec = spec.field(field) else { continue }
            if spec.merge == .lww || (spec.merge == .custom && hub == nil) {
                let written = state.stamps[field], deletedAt = state.deletedAt
                if let written, stamp < written {
                    report.fields.append((field, .lost))
                    continue
                }
                if let deletedAt, stamp < deletedAt {
                    report.fields.append((field, .lost))
                    continue
                }
            }
            // A custom write that met a change it had not seen goes to the
            // host's resolver; a failing resolver refuses the whole action.
            if spec.merge == .custom, let hub, state.versions[field] != hub.base[field]?.int {
                let conflict = JSON.object([
                    "type": .string(specName), "id": .string(recordId), "field": .string(field),
                    "base": hub.baseValues[field] ?? .null, "server": state.fields[field] ?? .null, "incoming": value,
                    "incoming_actor": .string(hub.actor), "incoming_device": .string(stamp.device),
                ])
                switch hub.resolve(spec, conflict) {
                case .success(let merged):
                    do {
                        state.fields[field] = try spec.checked(merged, in: specName)
                    } catch {
                        report.rejection = ("resolver_invalid", .object(["field": .string(field), "message": .string(error.message)]))
                        report.fields = [(field, .rejected)]
                        return report
                    }
                    report.fields.append((field, .resolved))
                    touched(field)
                case .failure(let error):
                    let reason = error.status == FieldSyncError.notFound("").status ? "resolver_missing" : "resolver_failed"
                    report.rejection = (reason, .object(["field": .string(field), "message": .string(error.message)]))
                    // A refused action wrote nothing: only the refusal is counted.
                    report.fields = [(field, .rejected)]
                    return report
                }
                continue
            }
            report.fields.append((field, concurrent(field) ? .won : .clean))
            state.fields[field] = value
            touched(field)
        }
        for (field, delta) in change.inc {
            do {
                state.fields[field] = try add(delta, to: state.fields[field] ?? .null, field: spec.name, field)
            } catch where replaying {
                report.overflowed.append(field)
                continue
            }
            report.fields.append((field, concurrent(field) ? .merged : .clean))
            touched(field)
        }
        for field in change.setFields {
            let removed = change.remove[field] ?? [], added = change.add[field] ?? []
            report.fields.append((field, concurrent(field) ? .merged : .clean))
            if let hub {
                // Observed-remove: drop the adds the writer had seen (applied
                // at or before its cursor, or its own); concurrent adds stay.
                var tags = state.tags[field] ?? [:]
                for element in removed.compactMap(JSONElement.init) {
                    tags[element]?.removeAll { $0.seq <= hub.observed || $0.device == stamp.device }
                }
                for element in added.compactMap(JSONElement.init) {
                    // One tag per device and element is enough: a remove drops
                    // all of its own device's tags, and another device's remove
                    // drops an older tag only if it also saw the newer one.
                    tags[element, default: []].removeAll { $0.device == stamp.device }
                    tags[element, default: []].append(AddTag(seq: hub.seq, device: stamp.device))
                }
                tags = tags.filter { !$0.value.isEmpty }
                state.tags[field] = tags
                state.fields[field] = .array(tags.keys.sorted().map(\.json))
            } else {
                // Removals first: an element both removed and added stays.
                var elements = state.fields[field]?.array ?? []
                if !removed.isEmpty { elements.removeAll { removed.contains($0) } }
                state.fields[field] = .array(FieldSpec.normalizedSet(elements + added))
            }
            touched(field)
        }
        return report
    }

    /// Counter arithmetic: integers must not overflow, floats must stay finite.
    static func add(_ delta: JSON, to current: JSON, field type: String, _ field: String) throws(FieldSyncError) -> JSON {
        switch (current, delta) {
        case (.null, .int(let d)): return .int(d)
        case (.int(let c), .int(let d)):
            let (sum, overflow) = c.addingReportingOverflow(d)
            if overflow { throw .arg("counter '\(type).\(field)' would overflow a 64-bit integer") }
            return .int(sum)
        default:
            let sum = (current.number ?? 0) + (delta.number ?? 0)
            if !sum.isFinite { throw .arg("counter '\(type).\(field)' would leave the range of a double") }
            return .double(sum)
        }
    }
}
