// Stale offline clients (docs/SCHEMA.md): a v1 device keeps working while the hub
// moves to v3 and then requires v4; nothing it queued is lost.
@testable import FieldSync
import Testing

let schemaV1 = """
{"version":1,"types":{"task":{"fields":{"status":{"type":"string"},"qty":{"type":"int","merge":"counter"},
 "tags":{"type":"set"},"note":{"type":"string"},"legacy":{"type":"string"}}}}}
"""
let chain = """
[{"from":1,"to":2,"rename":{"task.qty":"task.picked"},"add":{"task.priority":"normal"}},
 {"from":2,"to":3,"remove":["task.legacy"],"merge":{"task.note":"server"}}]
"""
let fieldsV3 = """
"fields":{"status":{"type":"string"},"picked":{"type":"int","merge":"counter"},"tags":{"type":"set"},
 "note":{"type":"string","merge":"server"},"priority":{"type":"string"}}
"""
let schemaV3 = #"{"version":3,"types":{"task":{\#(fieldsV3)}},"migrations":\#(chain)}"#
let schemaV4 = #"{"version":4,"min_client_version":4,"types":{"task":{\#(fieldsV3)}},"migrations":\#(chain)}"#

@Suite struct MigrationTests {
    func sync(_ store: Store, _ hub: Hub) throws {
        try store.connectivity(up: true)
        while let request = try store.prepare().request { _ = try store.receive(hub.handle(request)) }
    }

    func act(_ store: Store, _ ops: String) throws {
        _ = try store.apply(JSON.parse(#"{"action":"x","actor":"op-1","type":"task","id":"T-1",\#(ops)}"#))
    }

    @Test func anOldDeviceSyncsThroughRenamesAddsRemovesAndPolicyChanges() throws {
        let dir = String(tempPath("x").dropLast(2))
        let options = #"{"durability":"normal","device_id":"d1"}"#
        var hub = try Hub(path: dir + "/hub.db", schemaJSON: schemaV1, optionsJSON: nil)
        let device = try Store(path: dir + "/d1.db", schemaJSON: schemaV1, optionsJSON: options)
        try act(device, #""set":{"status":"a","note":"n1","legacy":"l1"},"inc":{"qty":2},"add":{"tags":["x"]}"#)
        try sync(device, hub)

        // Offline at v1 while the hub moves to v3.
        try act(device, #""inc":{"qty":3}"#)
        try act(device, #""set":{"status":"b"},"add":{"tags":["y"]}"#)
        try act(device, #""set":{"legacy":"l2"}"#)
        try act(device, #""set":{"note":"n2"}"#)
        hub.close()
        hub = try Hub(path: dir + "/hub.db", schemaJSON: schemaV3, optionsJSON: nil)
        let migrated = try #require(hub.query(JSON.parse(#"{"type":"task"}"#)).array?.first)
        #expect(migrated["picked"] == .int(2) && migrated["priority"] == .string("normal") && migrated["legacy"] == nil)

        try sync(device, hub)
        let rejected = try device.outboxList(JSON.parse(#"{"state":"rejected"}"#)).array ?? []
        #expect(rejected.compactMap { $0["reason"]?.string }.sorted() == ["field_unavailable", "upgrade_required"])
        let atHub = try #require(hub.query(JSON.parse(#"{"type":"task"}"#)).array?.first)
        #expect(atHub["picked"] == .int(5) && atHub["status"] == .string("b") && atHub["tags"] == .array([.string("x"), .string("y")]))
        #expect(atHub["note"] == .string("n1"))
        // Pulled back in the v1 shape: qty, not picked; no priority.
        let local = try device.get(type: "task", id: "T-1")
        #expect(local["qty"] == .int(5) && local["picked"] == nil && local["priority"] == nil)
        for entry in rejected { try device.discard(key: entry["key"]?.string ?? "") }

        // The hub now requires v4: the device is told to update and keeps its work.
        hub.close()
        hub = try Hub(path: dir + "/hub.db", schemaJSON: schemaV4, optionsJSON: nil)
        try act(device, #""inc":{"qty":1}"#)
        let (request, _) = try device.prepare()
        #expect(throws: FieldSyncError.upgradeRequired("the hub requires a newer schema: schema version 1 is below the minimum 4; the outbox is kept")) {
            _ = try device.receive(hub.handle(#require(request)))
        }
        #expect(try device.outboxCount() == 1)
        #expect(try device.stats()["sync_state"] == .string("upgrade_required"))
        let (none, wait) = try device.prepare()
        #expect(none == nil && wait == -1)
        device.close()

        // The app ships v4: the store migrates, the queued increment lands once.
        let upgraded = try Store(path: dir + "/d1.db", schemaJSON: schemaV4, optionsJSON: options)
        #expect(try upgraded.get(type: "task", id: "T-1")["picked"] == .int(6))
        #expect(try upgraded.get(type: "task", id: "T-1")["priority"] == .string("normal"))
        try sync(upgraded, hub)
        try sync(upgraded, hub)
        #expect(try upgraded.outboxCount() == 0)
        let final = try #require(hub.query(JSON.parse(#"{"type":"task"}"#)).array?.first)
        #expect(final["picked"] == .int(6))
        #expect(try upgraded.query(JSON.parse(#"{"type":"task"}"#)).array == hub.query(JSON.parse(#"{"type":"task"}"#)).array)
        let stats = try hub.stats()
        #expect(stats["audit_rows"] == .int(6) && stats["audit_chain_breaks"] == .int(0) && stats["audit_hash_failures"] == .int(0))
        #expect(try AuditRow.chainBreaks(try upgraded.audit(.null)).isEmpty)
        #expect(try upgraded.audit(.null).count == 6)
    }

    @Test func aStoreRefusesAnOlderSchemaAndMigratesAtomically() throws {
        let path = tempPath()
        do {
            let store = try Store(path: path, schemaJSON: schemaV3, optionsJSON: #"{"device_id":"d"}"#)
            store.close()
        }
        #expect(throws: FieldSyncError.self) { _ = try Store(path: path, schemaJSON: schemaV1, optionsJSON: nil) }
        #expect(throws: FieldSyncError.self) { _ = try Schema(json: #"{"version":2,"types":{"t":{"fields":{"a":{"type":"string"}}}},"migrations":[{"from":1,"to":3}]}"#) }
        #expect(throws: FieldSyncError.self) { _ = try Schema(json: #"{"version":3,"types":{"t":{"fields":{"a":{"type":"string"}}}},"migrations":[{"from":1,"to":2,"rename":{"t.a":"u.b"}}]}"#) }
    }
}
