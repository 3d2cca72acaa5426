// A seeded simulation of devices working offline against the hub through a
// faulty transport: dropped requests, responses lost after the hub applied
// them, duplicated and late (reordered) deliveries, and devices restarted
// between prepare and receive. After healing, invariants 1–4 of docs/ARCHITECTURE.md must hold.
@testable import FieldSync
import Glibc

let simSchema = """
{"version":1,"types":{"task":{"fields":{
  "status":{"type":"string"},"site":{"type":"string"},
  "picked":{"type":"int","merge":"counter"},"tags":{"type":"set"}}}}}
"""

struct SimulationReport {
    var actions = 0
    var exchanges = 0
    var faults: [String: Int] = [:]
}

final class Simulation {
    let seed: UInt64
    var rng: SplitMix
    let dir: String
    let hub: Hub
    var devices: [Store] = []
    let names: [String]
    var clocks: [TestClock] = []
    let hubClock = TestClock()
    /// Sum of every increment a device committed, per record.
    var expectedPicked: [String: Int64] = [:]
    var report = SimulationReport()
    /// A response held back to be delivered late, after newer ones.
    var late: [(device: Int, response: [UInt8])] = []
    var keptStateErrors: [String] = []
    /// Exchanges whose request or response was not in the device's protocol.
    var protocolErrors: [String] = []
    let records: [String]
    /// The store option "protocol" per device (nil: the library's own).
    let protocols: [Int64?]

    init(seed: UInt64, devices count: Int = 3, records: Int = 12, skewMs: [Int64] = [], protocols: [Int64?] = []) throws {
        self.seed = seed
        rng = SplitMix(seed: seed)
        dir = String(tempPath("x").dropLast(2))
        hub = try Hub(path: dir + "/hub.db", schemaJSON: simSchema, optionsJSON: #"{"durability":"normal"}"#)
        hub.wallClock = { [hubClock] in hubClock.now }
        names = (0..<count).map { "dev-\($0)" }
        self.records = (0..<records).map { "R-\($0)" }
        self.protocols = (0..<count).map { $0 < protocols.count ? protocols[$0] : nil }
        for i in 0..<count {
            clocks.append(TestClock(1_700_000_000_000 + (i < skewMs.count ? skewMs[i] : 0)))
            let store = try open(i)
            // Enrolled as an operator would (docs/SECURITY.md): every
            // exchange below is signed and verified on both sides.
            let answer = try hub.enroll(.object(["device_id": .string(names[i]), "public_key": .string(store.publicKey),
                                                 "instance": .string(store.instanceId)]))
            try store.pinHub(answer["hub_key"]?.string ?? "")
            devices.append(store)
        }
    }

    func open(_ i: Int) throws -> Store {
        let store = try Store(path: "\(dir)/\(names[i]).db", schemaJSON: simSchema,
                              optionsJSON: #"{"durability":"normal","device_id":"\#(names[i])","batch_size":40,"backoff_base_ms":10,"backoff_cap_ms":200,"max_attempts":1000\#(protocols[i].map { ",\"protocol\":\($0)" } ?? "")}"#)
        store.wallClock = { [clock = clocks[i]] in clock.now }
        return store
    }

    func chance(_ percent: UInt64) -> Bool { rng.next() % 100 < percent }
    func pick<T>(_ items: [T]) -> T { items[Int(rng.next() % UInt64(items.count))] }

    /// One operator action on a random shared record.
    func act(_ i: Int) throws {
        let id = pick(records)
        let text: String
        switch rng.next() % 4 {
        case 0:
            let delta = Int64(rng.next() % 5) + 1
            text = #"{"action":"pick","actor":"op-\#(i)","type":"task","id":"\#(id)","inc":{"picked":\#(delta)}}"#
            _ = try devices[i].apply(JSON.parse(text))
            expectedPicked[id, default: 0] += delta
            report.actions += 1
            return
        case 1: text = #"{"action":"move","actor":"op-\#(i)","type":"task","id":"\#(id)","set":{"site":"WH-\#(rng.next() % 5)","status":"s\#(report.actions)"}}"#
        case 2: text = #"{"action":"tag","actor":"op-\#(i)","type":"task","id":"\#(id)","add":{"tags":["t\#(rng.next() % 6)"]}}"#
        default: text = #"{"action":"untag","actor":"op-\#(i)","type":"task","id":"\#(id)","remove":{"tags":["t\#(rng.next() % 6)"]}}"#
        }
        _ = try devices[i].apply(JSON.parse(text))
        report.actions += 1
    }

    /// One request/response exchange for device i through the faulty
    /// transport (faults off when healed). Returns false when nothing was sent.
    @discardableResult
    func exchange(_ i: Int, faults: Bool) throws -> Bool {
        let (request, _) = try devices[i].prepareText()
        guard let request else { return false }
        report.exchanges += 1
        // Requests and responses cross the transport as the signed texts
        // the C door carries (Hub.handle(text:), Store.receive(text:)).
        if faults && chance(8) { report.faults["request dropped", default: 0] += 1; try devices[i].fail(reason: "dropped"); return true }
        func handle() throws -> [UInt8] {
            try request.withUnsafeBytes { (r) throws(FieldSyncError) -> [UInt8] in try hub.handle(text: r) }
        }
        var responseText = try handle()
        if faults && chance(5) { report.faults["request duplicated", default: 0] += 1; responseText = try handle() }
        let sent = try JSON.parse(String(decoding: request, as: UTF8.self))
        let response = try JSON.parse(String(decoding: responseText, as: UTF8.self))
        if response["error"] != nil { protocolErrors.append("\(names[i]) refused: \(response["error"]?.text ?? "")") }
        // Each device speaks its protocol, and is answered in it.
        let spoken = protocols[i] ?? Wire.version
        if sent["protocol"]?.int != spoken || response["protocol"]?.int != spoken {
            protocolErrors.append("\(names[i]) speaks protocol \(spoken): sent \(sent["protocol"]?.text ?? "-"), answered \(response["protocol"]?.text ?? "-")")
        }
        if faults && chance(8) { report.faults["response lost", default: 0] += 1; try devices[i].fail(reason: "lost"); return true }
        if faults && chance(5) {
            report.faults["device restarted mid-sync", default: 0] += 1
            devices[i].close()
            devices[i] = try open(i)
            return true
        }
        if faults && chance(6) {
            report.faults["response delayed", default: 0] += 1
            late.append((i, responseText))
            try devices[i].fail(reason: "timeout")
            return true
        }
        _ = try receive(i, responseText)
        if faults && !late.isEmpty && chance(30) {
            let (d, old) = late.removeFirst()
            report.faults["late response delivered", default: 0] += 1
            _ = try receive(d, old)
        }
        // The confirmed states a device keeps in memory are the stored ones.
        for record in try devices[i].shadowsDifferingFromStorage() { keptStateErrors.append("\(names[i]) \(record)") }
        return true
    }

    func receive(_ i: Int, _ text: [UInt8]) throws -> JSON {
        try text.withUnsafeBytes { (r) throws(FieldSyncError) -> JSON in try devices[i].receive(text: r) }
    }

    func run(actions: Int) throws {
        while report.actions < actions {
            let i = Int(rng.next() % UInt64(devices.count))
            for c in clocks { c.now += Int64(rng.next() % 50) }
            hubClock.now += 20
            if chance(70) { try act(i) } else { try exchange(i, faults: true) }
        }
        try heal()
    }

    /// Network healed: everyone syncs until nothing is left to send, twice over.
    func heal() throws {
        for (d, old) in late { _ = try receive(d, old) }
        late = []
        for d in devices { try d.connectivity(up: true) }
        for _ in 0..<2 {
            for i in devices.indices {
                try devices[i].connectivity(up: true)
                var rounds = 0
                while try exchange(i, faults: false) {
                    rounds += 1
                    if rounds > 10_000 { throw FieldSyncError.internal("device \(i) never quiesced") }
                    // Entries told to retry wait out their backoff.
                    for c in clocks { c.now += 1000 }
                }
            }
        }
    }

    /// Invariants 1–4 of docs/ARCHITECTURE.md; returns the violations found.
    func violations() throws -> [String] {
        var problems: [String] = []
        if !keptStateErrors.isEmpty { problems.append("kept confirmed states differ from the stored ones: \(keptStateErrors.prefix(5))") }
        if !protocolErrors.isEmpty { problems.append("protocol: \(protocolErrors.prefix(5))") }
        let stats = try hub.stats()
        // 1. No lost action: every action is applied at the hub (none is rejected here).
        var outboxLeft: Int64 = 0
        for d in devices { outboxLeft += try d.outboxCount() }
        if outboxLeft != 0 { problems.append("outbox not drained: \(outboxLeft) left") }
        if stats["entries_applied"]?.int != Int64(report.actions) {
            problems.append("hub applied \(stats["entries_applied"]?.int ?? -1) entries for \(report.actions) actions")
        }
        // 2. Exactly once: counters equal the sum of increments.
        let hubRows = try hub.query(JSON.parse(#"{"type":"task"}"#)).array ?? []
        for row in hubRows {
            let id = row["id"]?.string ?? ""
            let picked = row["picked"]?.int ?? 0
            if picked != expectedPicked[id, default: 0] { problems.append("\(id): hub picked \(picked), increments sum to \(expectedPicked[id, default: 0])") }
        }
        // 3. Convergence: every device's view equals the hub's.
        for (i, d) in devices.enumerated() {
            let rows = try d.query(JSON.parse(#"{"type":"task"}"#)).array ?? []
            if rows != hubRows { problems.append("\(names[i]) diverges from the hub: \(rows.count) rows vs \(hubRows.count)") }
        }
        // 4. Audit: one row per action at the hub, chains intact, both times kept.
        if stats["audit_rows"]?.int != Int64(report.actions) { problems.append("hub has \(stats["audit_rows"]?.int ?? -1) audit rows for \(report.actions) actions") }
        for key in ["audit_hash_failures", "audit_chain_breaks", "audit_gaps"] where stats[key]?.int != 0 {
            problems.append("\(key) = \(stats[key]?.int ?? -1)")
        }
        let hubAudit = try hub.auditQuery(.null).array ?? []
        for (i, d) in devices.enumerated() {
            let local = try d.audit(.null)
            if try !AuditRow.chainBreaks(local).isEmpty { problems.append("\(names[i]) local chain broken") }
            if local.contains(where: { $0.outcome != "applied" || $0.serverReceivedAt == nil }) {
                problems.append("\(names[i]) has audit rows not marked applied with server time")
            }
            let remote = hubAudit.filter { $0["device_id"]?.string == names[i] }
            for (l, h) in zip(local, remote) where h["device_time"]?.int != l.deviceTime || h["hlc"]?.int != l.hlc || h["hash"]?.string != l.hash {
                problems.append("\(names[i]) audit \(l.auditId) changed in transit")
            }
        }
        return problems
    }
}
