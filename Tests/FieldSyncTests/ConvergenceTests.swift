// Property-based convergence: random concurrent histories over three devices
// and random sync interleavings, every merge policy in one schema, checked
// against a small reference model of the rules in docs/MERGE.md.
@testable import FieldSync
import Testing

let policySchema = """
{"version":1,"types":{"task":{"fields":{
  "status":{"type":"string","merge":"lww"},"picked":{"type":"int","merge":"counter"},
  "tags":{"type":"set"},"on_hand":{"type":"int","merge":"server"},
  "lines":{"type":"json","merge":"custom","resolver":"max_lines"}}}}}
"""

/// The reference model: what the hub must hold after the same history.
struct Model {
    enum Base: Equatable { case generation(Int), after(Int) }
    enum Op {
        case inc(String, Int64)
        case lww(String, String, Stamp)
        case add(String, String, tag: Int)
        case remove(String, String, observed: Set<Int>)
        case server(String, Int64, Base, seq: Int)
        case custom(String, Int64, Base, seq: Int)
    }
    struct Guarded { var generation = 0; var value: Int64? = nil; var writer: (device: Int, seq: Int)? = nil }
    struct Device {
        var pending: [Op] = []
        var generations: [String: (server: Int, custom: Int)] = [:]
        var tags: [String: [String: Set<Int>]] = [:]
    }

    var picked: [String: Int64] = [:]
    var status: [String: (Stamp, String)] = [:]
    var tags: [String: [String: Set<Int>]] = [:]
    var onHand: [String: Guarded] = [:]
    var lines: [String: Guarded] = [:]
    var devices: [Device]
    var rejected = 0
    var nextTag = 0

    init(devices: Int) { self.devices = Array(repeating: Device(), count: devices) }

    static func holds(_ base: Base, _ g: Guarded, device: Int) -> Bool {
        switch base {
        case .generation(let n): return n == g.generation
        case .after(let seq): return g.writer.map { $0.device == device && $0.seq == seq } ?? false
        }
    }

    /// The device pushes everything pending, then pulls the hub's whole state.
    mutating func exchange(_ d: Int) {
        for op in devices[d].pending {
            switch op {
            case .inc(let r, let delta): picked[r, default: 0] += delta
            case .lww(let r, let value, let stamp):
                if status[r].map({ $0.0 < stamp }) ?? true { status[r] = (stamp, value) }
            case .add(let r, let element, let tag): tags[r, default: [:]][element, default: []].insert(tag)
            case .remove(let r, let element, let observed): tags[r]?[element]?.subtract(observed)
            case .server(let r, let value, let base, let seq):
                if Model.holds(base, onHand[r, default: Guarded()], device: d) {
                    onHand[r, default: Guarded()].generation += 1
                    onHand[r]?.value = value
                    onHand[r]?.writer = (d, seq)
                } else {
                    rejected += 1
                }
            case .custom(let r, let value, let base, let seq):
                var g = lines[r, default: Guarded()]
                // Concurrent: the resolver (max) decides; otherwise the write applies.
                g.value = Model.holds(base, g, device: d) ? value : max(g.value ?? value, value)
                g.generation += 1
                g.writer = (d, seq)
                lines[r] = g
            }
        }
        devices[d].pending = []
        for r in Set(onHand.keys).union(lines.keys) {
            devices[d].generations[r] = (onHand[r]?.generation ?? 0, lines[r]?.generation ?? 0)
        }
        devices[d].tags = tags
    }

    mutating func base(_ d: Int, _ r: String, server: Bool) -> Base {
        for op in devices[d].pending.reversed() {
            if server, case .server(let r2, _, _, let seq) = op, r2 == r { return .after(seq) }
            if !server, case .custom(let r2, _, _, let seq) = op, r2 == r { return .after(seq) }
        }
        let g = devices[d].generations[r]
        return .generation(server ? g?.server ?? 0 : g?.custom ?? 0)
    }

    func expected(_ r: String) -> [String: JSON] {
        let live = (tags[r] ?? [:]).filter { !$0.value.isEmpty }.keys
        var fields: [String: JSON] = [:]
        fields["picked"] = picked[r].map(JSON.int)
        fields["status"] = status[r].map { .string($0.1) }
        if tags[r] != nil { fields["tags"] = .array(FieldSpec.normalizedSet(live.map(JSON.string))) }
        fields["on_hand"] = onHand[r]?.value.map(JSON.int)
        fields["lines"] = lines[r]?.value.map(JSON.int)
        return fields
    }
}

@Suite struct ConvergenceTests {
    func history(seed: UInt64, steps: Int) throws -> [String] {
        var rng = SplitMix(seed: seed)
        let dir = String(tempPath("x").dropLast(2))
        let hub = try Hub(path: dir + "/hub.db", schemaJSON: policySchema, optionsJSON: #"{"durability":"normal"}"#)
        hub.resolvers["max_lines"] = { conflict in
            guard let server = conflict["server"]?.int, let incoming = conflict["incoming"]?.int else {
                return .success(conflict["incoming"] ?? .null)
            }
            return .success(.int(max(server, incoming)))
        }
        let names = ["dev-a", "dev-b", "dev-c"]
        let devices = try names.map { name in
            try Store(path: "\(dir)/\(name).db", schemaJSON: policySchema,
                      optionsJSON: #"{"durability":"normal","device_id":"\#(name)","pull_interval_ms":0,"pull_limit":100000}"#)
        }
        var model = Model(devices: names.count)
        var seqs = [0, 0, 0]
        let records = ["R1", "R2", "R3"]
        let elements = ["x", "y", "z"]

        func sync(_ d: Int) throws {
            try devices[d].connectivity(up: true)
            while let request = try devices[d].prepare().request {
                _ = try devices[d].receive(hub.handle(request))
            }
            // Rejected entries have been reported; the operator discards them.
            for entry in try devices[d].outboxList(JSON.parse(#"{"state":"rejected"}"#)).array ?? [] {
                try devices[d].discard(key: entry["key"]?.string ?? "")
            }
            model.exchange(d)
        }

        for _ in 0..<steps {
            let d = Int(rng.next() % 3), r = records[Int(rng.next() % 3)], roll = rng.next() % 10
            if roll < 3 { try sync(d); continue }
            seqs[d] += 1
            let action: String
            switch rng.next() % 6 {
            case 0:
                let delta = Int64(rng.next() % 4) + 1
                action = #""inc":{"picked":\#(delta)}"#
                model.devices[d].pending.append(.inc(r, delta))
            case 1:
                let value = "s\(rng.next() % 100)"
                action = #""set":{"status":"\#(value)"}"#
                let result = try devices[d].apply(JSON.parse(#"{"action":"a","actor":"op","type":"task","id":"\#(r)",\#(action)}"#))
                model.devices[d].pending.append(.lww(r, value, Stamp(hlc: result["hlc"]?.int ?? 0, device: names[d])))
                continue
            case 2:
                let e = elements[Int(rng.next() % 3)]
                action = #""add":{"tags":["\#(e)"]}"#
                model.nextTag += 1
                model.devices[d].pending.append(.add(r, e, tag: model.nextTag))
                model.devices[d].tags[r, default: [:]][e, default: []].insert(model.nextTag)
            case 3:
                let e = elements[Int(rng.next() % 3)]
                action = #""remove":{"tags":["\#(e)"]}"#
                let observed = model.devices[d].tags[r]?[e] ?? []
                model.devices[d].pending.append(.remove(r, e, observed: observed))
                model.devices[d].tags[r]?[e] = []
            case 4:
                let value = Int64(rng.next() % 50)
                action = #""set":{"on_hand":\#(value)}"#
                model.devices[d].pending.append(.server(r, value, model.base(d, r, server: true), seq: seqs[d]))
            default:
                let value = Int64(rng.next() % 50)
                action = #""set":{"lines":\#(value)}"#
                model.devices[d].pending.append(.custom(r, value, model.base(d, r, server: false), seq: seqs[d]))
            }
            _ = try devices[d].apply(JSON.parse(#"{"action":"a","actor":"op","type":"task","id":"\#(r)",\#(action)}"#))
        }
        for _ in 0..<2 { for d in 0..<3 { try sync(d) } }

        var problems: [String] = []
        let hubRows = try hub.query(JSON.parse(#"{"type":"task"}"#)).array ?? []
        for row in hubRows {
            let r = row["id"]?.string ?? ""
            for (field, value) in model.expected(r) where row[field] != value {
                problems.append("\(r).\(field): hub \(row[field]?.text ?? "nil"), model \(value.text)")
            }
        }
        for (d, device) in devices.enumerated() where try device.query(JSON.parse(#"{"type":"task"}"#)).array != hubRows {
            problems.append("\(names[d]) differs from the hub")
        }
        let rejected = try hub.stats()["entries_rejected"]?.int ?? -1
        if rejected != Int64(model.rejected) { problems.append("hub rejected \(rejected) writes, model \(model.rejected)") }
        return problems
    }

    /// 200 generated histories in CI.
    @Test func everyPolicyConvergesToTheModel() throws {
        var failures: [String] = []
        for seed in 1...200 as ClosedRange<UInt64> {
            let problems = try history(seed: seed, steps: 40)
            if !problems.isEmpty { failures.append("seed \(seed): \(problems.prefix(3))") }
        }
        #expect(failures.isEmpty, "\(failures.count) histories failed: \(failures.prefix(5))")
    }

    /// Record states are stored as text written straight from the state;
    /// it must be exactly the canonical JSON of the state's values (the
    /// shadow a device gets on pull), and read back to the same state.
    @Test func storedStateTextIsTheStateWrittenOut() throws {
        let spec = try Schema(json: taskSchema).type("task")
        var state = RecordState()
        var change = Change()
        change.set["status"] = .string("open \u{e9}")
        change.set["site"] = .string("WH-3")
        change.inc["picked"] = .int(3)
        change.add["tags"] = [.string("e\u{301}"), .string("\u{e9}"), .int(7)]
        _ = try Merge.merge(change, stamp: Stamp(hlc: 42, device: "dev-b"), into: &state, spec: spec,
                            hub: Merge.HubContext(seq: 9, observed: 0, base: [:]))
        state.deletedAt = Stamp(hlc: 40, device: "dev-a")
        #expect(!state.tags.isEmpty && !state.stamps.isEmpty && !state.versions.isEmpty)
        #expect(state.text(tags: false) == state.shadowJSON.bytes)
        let stored = try JSON.parse(String(decoding: state.text(tags: true), as: UTF8.self))
        #expect(stored.bytes == state.text(tags: true))
        #expect(RecordState(json: stored) == state)
    }
}
