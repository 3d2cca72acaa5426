// Storage hygiene: windows, evict-on-archive, fetch on demand with a TTL, and
// audit eviction that keeps the chain verifiable from its anchor.
@testable import FieldSync
import Testing

let retentionSchema = """
{"version":1,"types":{"task":{"fields":{"status":{"type":"string"},"picked":{"type":"int","merge":"counter"},
 "on_hand":{"type":"int","merge":"server"}},
 "retention":{"keep_days":60,"archive_when":{"status":["done","cancelled"]}}}}}
"""

@Suite struct HygieneTests {
    let day: Int64 = 86_400_000

    struct World {
        let hub: Hub
        let device: Store, other: Store
        let clock = TestClock()

        init(options: String = "") throws {
            let dir = String(tempPath("x").dropLast(2))
            hub = try Hub(path: dir + "/hub.db", schemaJSON: retentionSchema, optionsJSON: #"{"durability":"normal"}"#)
            device = try Store(path: dir + "/d.db", schemaJSON: retentionSchema,
                               optionsJSON: #"{"durability":"normal","device_id":"d","fetch_ttl_ms":60000\#(options)}"#)
            other = try Store(path: dir + "/o.db", schemaJSON: retentionSchema, optionsJSON: #"{"durability":"normal","device_id":"o"}"#)
            for s in [device, other] { s.wallClock = { [clock] in clock.now } }
            hub.wallClock = { [clock] in clock.now }
        }

        func act(_ s: Store, _ id: String, _ ops: String) throws {
            _ = try s.apply(JSON.parse(#"{"action":"x","actor":"op","type":"task","id":"\#(id)",\#(ops)}"#))
        }

        func sync(_ s: Store) throws {
            try s.connectivity(up: true)
            while let request = try s.prepare().request { _ = try s.receive(hub.handle(request)) }
        }

        func ids(_ s: Store) throws -> [String] {
            try s.query(JSON.parse(#"{"type":"task"}"#)).array?.compactMap { $0["id"]?.string } ?? []
        }
    }

    @Test func evictsArchivedAndOldRecordsButNeverUnacknowledgedOnes() throws {
        let w = try World()
        try w.act(w.device, "old", #""set":{"status":"open"}"#)
        try w.act(w.device, "done", #""set":{"status":"open"}"#)
        try w.act(w.device, "recent", #""set":{"status":"open"}"#)
        try w.sync(w.device)
        w.clock.now += 30 * day
        try w.act(w.device, "done", #""set":{"status":"done"}"#)
        try w.act(w.device, "recent", #""inc":{"picked":1}"#)
        try w.sync(w.device)
        try w.act(w.device, "pending", #""set":{"status":"done"}"#)      // archived but not acknowledged
        // A rejected entry keeps its record too.
        try w.act(w.other, "rejected", #""set":{"status":"open","on_hand":1}"#)
        try w.sync(w.other)
        try w.act(w.device, "rejected", #""set":{"status":"open","on_hand":2}"#)
        try w.sync(w.device)
        #expect(try w.device.outboxList(JSON.parse(#"{"state":"rejected"}"#)).array?.count == 1)
        try w.act(w.device, "pending", #""set":{"status":"done"}"#)

        w.clock.now += 31 * day          // "old" is now 61 days unchanged, "recent" 31
        let report = try w.device.hygiene()
        #expect(report["records_evicted"] == .int(2))
        #expect(try w.ids(w.device) == ["pending", "recent", "rejected"])
        #expect(throws: FieldSyncError.self) { _ = try w.device.get(type: "task", id: "old") }
        do {
            _ = try w.device.get(type: "task", id: "done")
        } catch {
            #expect(error.message.contains("fetch"))
        }
        // Nothing unacknowledged was lost: the outbox still drains to the hub.
        try w.sync(w.device)
        #expect(try w.hub.query(JSON.parse(#"{"type":"task","where":{"id":"pending"}}"#)).array?.first?["status"] == .string("done"))
    }

    @Test func fetchedRecordsAreCachedThenExpireUnlessTheOperatorChangesThem() throws {
        let w = try World()
        try w.act(w.other, "A", #""set":{"status":"open"}"#)
        try w.act(w.other, "B", #""set":{"status":"open"}"#)
        try w.sync(w.other)
        try w.act(w.device, "mine", #""set":{"status":"open"}"#)
        try w.sync(w.device)
        w.clock.now += 61 * day
        _ = try w.device.hygiene()
        #expect(try w.ids(w.device).isEmpty)

        let request = try w.device.fetchRequest(JSON.parse(#"[{"type":"task","id":"A"},{"type":"task","id":"B"},{"type":"task","id":"nope"}]"#))
        let response = try w.hub.handle(request)
        #expect(response["missing"]?.array?.count == 1)
        let summary = try w.device.receive(response)
        #expect(summary["fetched"] == .int(2))
        #expect(try w.device.get(type: "task", id: "A")["status"] == .string("open"))
        #expect(try w.device.stats()["records_cached"] == .int(2))

        try w.act(w.device, "B", #""inc":{"picked":1}"#)   // the operator works on B
        try w.sync(w.device)
        w.clock.now += 61_000
        let report = try w.device.hygiene()
        #expect(report["fetched_expired"] == .int(1))
        #expect(try w.ids(w.device) == ["B"])
    }

    @Test func auditEvictionKeepsTheChainVerifiableFromItsAnchor() throws {
        let w = try World(options: #","audit_keep_days":30"#)
        for i in 0..<20 {
            w.clock.now += day
            try w.act(w.device, "T\(i % 4)", #""inc":{"picked":1}"#)
            if i % 5 == 4 { try w.sync(w.device) }
        }
        try w.act(w.device, "T0", #""inc":{"picked":1}"#)       // not yet sent
        w.clock.now += 25 * day
        let report = try w.device.hygiene()
        let rows = try w.device.audit(.null)
        let anchor = try w.device.auditAnchor()
        #expect(report["audit_rows_evicted"]?.int ?? 0 > 0)
        #expect(rows.first?.auditId == anchor.seq + 1)
        #expect(try AuditRow.chainBreaks(rows, anchor: anchor.hash).isEmpty)
        #expect(rows.contains { $0.outcome == "pending" })
        // The chain goes on from the anchor across a reopen, and the hub's copy is whole.
        try w.act(w.device, "T1", #""inc":{"picked":1}"#)
        try w.sync(w.device)
        #expect(try AuditRow.chainBreaks(try w.device.audit(.null), anchor: anchor.hash).isEmpty)
        #expect(try w.hub.stats()["audit_rows"] == .int(22))
        #expect(try w.hub.stats()["audit_chain_breaks"] == .int(0))
    }
}
