@testable import FieldSync
import Testing

@Suite struct StoreTests {
    @Test func applyWritesViewOutboxAndAuditTogether() throws {
        let store = try openStore()
        let result = try store.apply(action(#"""
            {"action":"create","actor":"op-1","type":"task","id":"T-1",
             "set":{"status":"open","site":"WH-3"},"inc":{"picked":2},"add":{"tags":["b","a"]},"input":{"scan":"X"}}
            """#))
        #expect(result["outbox_key"] == .string("dev-a-1"))
        #expect(result["record"]?["picked"] == .int(2))
        #expect(result["record"]?["tags"] == .array([.string("a"), .string("b")]))
        #expect(try rows(store, "task") == 1)
        #expect(try rows(store, "fs_outbox") == 1)
        #expect(try rows(store, "fs_audit") == 1)
        let audit = try store.audit(.null)
        #expect(audit.count == 1)
        #expect(audit[0].input == .object(["scan": .string("X")]))
        #expect(audit[0].outboxKeys == ["dev-a-1"])
    }

    @Test func refusedActionsWriteNothing() throws {
        let store = try openStore()
        _ = try store.apply(action(#"{"action":"c","actor":"a","type":"task","id":"T-1","set":{"status":"open"}}"#))
        let bad = [
            #"{"action":"c","actor":"a","type":"nope","id":"T-1","set":{"status":"x"}}"#,
            #"{"action":"c","actor":"a","type":"task","id":"T-1","set":{"nope":"x"}}"#,
            #"{"action":"c","actor":"a","type":"task","id":"T-1","set":{"status":3}}"#,
            #"{"action":"c","actor":"a","type":"task","id":"T-2","set":{"site":"x"}}"#,
            #"{"action":"c","actor":"a","type":"task","id":"T-1","inc":{"status":1}}"#,
            #"{"action":"c","actor":"a","type":"task","id":"T-1","set":{"picked":1}}"#,
            #"{"action":"c","actor":"a","type":"task","id":"T-1","set":{"locked":1}}"#,
            #"{"action":"c","actor":"a","type":"task","id":"T-1","set":{"status":null}}"#,
            #"{"action":"c","actor":"a","type":"task","id":"T-1"}"#,
            #"{"action":"c","actor":"a","type":"task","id":"T-9","delete":true}"#,
            #"{"action":"c","actor":"a","type":"task","id":"T-1","delete":true,"set":{"site":"x"}}"#,
            #"{"actor":"a","type":"task","id":"T-1","set":{"site":"x"}}"#,
            #"{"action":"c","actor":"a","type":"task","id":"T-1","inc":{"picked":9223372036854775807}}"#,
        ]
        // The overflow case needs a non-zero counter first.
        _ = try store.apply(action(#"{"action":"c","actor":"a","type":"task","id":"T-1","inc":{"picked":1}}"#))
        let before = (try rows(store, "fs_outbox"), try rows(store, "fs_audit"), try store.get(type: "task", id: "T-1"))
        for text in bad {
            #expect(throws: FieldSyncError.self, "\(text)") { _ = try store.apply(action(text)) }
        }
        #expect(try rows(store, "fs_outbox") == before.0)
        #expect(try rows(store, "fs_audit") == before.1)
        #expect(try store.get(type: "task", id: "T-1") == before.2)
        #expect(throws: FieldSyncError.notFound("no record task/T-2 on this device")) { _ = try store.get(type: "task", id: "T-2") }
    }

    @Test func auditChainVerifiesAndSurvivesReopen() throws {
        let path = tempPath()
        let clock = TestClock()
        do {
            let store = try openStore(path, clock: clock)
            for i in 0..<50 {
                clock.now += i % 3 == 0 ? -5000 : 10   // the wall clock also goes backwards
                _ = try store.apply(action(#"{"action":"a","actor":"op","type":"task","id":"T-\#(i % 5)","set":{"status":"s\#(i)"}}"#))
            }
            store.close()
        }
        let store = try openStore(path, clock: clock)
        _ = try store.apply(action(#"{"action":"a","actor":"op","type":"task","id":"T-0","set":{"status":"again"}}"#))
        let audit = try store.audit(.null)
        #expect(audit.count == 51)
        #expect(try AuditRow.chainBreaks(audit).isEmpty)
        #expect(zip(audit, audit.dropFirst()).allSatisfy { $0.hlc < $1.hlc && $0.auditId + 1 == $1.auditId })
        #expect(audit.map(\.deviceTime).contains(clock.now))
    }

    /// Sync finds the entries in flight through a partial index; a store
    /// made before it gets it when opened.
    @Test func aStoreMadeBeforeTheInflightIndexGetsItWhenOpened() throws {
        let path = tempPath("old.db")
        let old = try openStore(path)
        try old.db.exec("DROP INDEX fs_outbox_inflight")
        old.close()
        let store = try openStore(path)
        #expect(try store.db.scalar("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'fs_outbox_inflight'") == 1)
    }

    @Test func editedAuditRowBreaksTheChain() throws {
        let store = try openStore()
        for i in 0..<5 {
            _ = try store.apply(action(#"{"action":"a","actor":"op","type":"task","id":"T-\#(i)","set":{"status":"x"}}"#))
        }
        try store.db.run("UPDATE fs_audit SET actor = 'mallory' WHERE audit_id = 3")
        #expect(try AuditRow.chainBreaks(try store.audit(.null)) == [3])
    }

    @Test func setsCountersAndDeletes() throws {
        let store = try openStore()
        _ = try store.apply(action(#"{"action":"a","actor":"op","type":"task","id":"T-1","set":{"status":"x"},"add":{"tags":["a","b",3]}}"#))
        _ = try store.apply(action(#"{"action":"a","actor":"op","type":"task","id":"T-1","remove":{"tags":["a"]},"add":{"tags":["c"]},"inc":{"picked":-2}}"#))
        let record = try store.get(type: "task", id: "T-1")
        #expect(record["tags"] == .array([.int(3), .string("b"), .string("c")]))
        #expect(record["picked"] == .int(-2))
        #expect(record["_fs"]?["pending"] == .int(2))
        let deleted = try store.apply(action(#"{"action":"d","actor":"op","type":"task","id":"T-1","delete":true}"#))
        #expect(deleted["record"]?["_fs"]?["deleted"] == .bool(true))
        #expect(throws: FieldSyncError.self) { _ = try store.get(type: "task", id: "T-1") }
        #expect(try store.outboxCount() == 3)
    }

    @Test func queryFiltersOrdersAndLimits() throws {
        let store = try openStore()
        for i in 0..<10 {
            _ = try store.apply(action(#"{"action":"a","actor":"op","type":"task","id":"T-\#(i)","set":{"status":"\#(i % 2 == 0 ? "open" : "done")","weight":\#(Double(i) / 2)},"inc":{"picked":\#(i)}}"#))
        }
        let open = try store.query(action(#"{"type":"task","where":{"status":"open","picked":{">=":4}},"order_by":"picked","desc":true}"#))
        #expect(open.array?.compactMap { $0["id"]?.string } == ["T-8", "T-6", "T-4"])
        let limited = try store.query(action(#"{"type":"task","where":{"weight":{"<":2}},"limit":2}"#))
        #expect(limited.array?.count == 2)
        #expect(throws: FieldSyncError.self) { _ = try store.query(action(#"{"type":"task","where":{"tags":"a"}}"#)) }
        #expect(throws: FieldSyncError.self) { _ = try store.query(action(#"{"type":"task","where":{"picked":"x"}}"#)) }
    }

    @Test func reopenKeepsDeviceIdAndRefusesAnotherSchema() throws {
        let path = tempPath()
        let generated: String
        do {
            let store = try openStore(path, options: nil)
            generated = store.deviceId
            store.close()
        }
        #expect(generated.hasPrefix("dev-"))
        #expect(try openStore(path, options: nil).deviceId == generated)
        #expect(throws: FieldSyncError.self) { _ = try openStore(path, options: #"{"device_id":"other"}"#) }
        let changed = taskSchema.replacing(#""site":{"type":"string","merge":"lww"}"#, with: #""site":{"type":"int"}"#, maxReplacements: 1)
        #expect(throws: FieldSyncError.self) { _ = try openStore(path, schema: changed, options: nil) }
    }

    @Test func discardRebuildsTheRecordWithoutTheEntry() throws {
        let store = try openStore()
        _ = try store.apply(action(#"{"action":"a","actor":"op","type":"task","id":"T-1","set":{"status":"x"},"inc":{"picked":1}}"#))
        _ = try store.apply(action(#"{"action":"a","actor":"op","type":"task","id":"T-1","inc":{"picked":5}}"#))
        #expect(throws: FieldSyncError.self) { try store.discard(key: "dev-a-2") }   // pending
        try store.db.run("UPDATE fs_outbox SET state = 'rejected', reason = 'test' WHERE seq = 2")
        try store.discard(key: "dev-a-2")
        #expect(try store.get(type: "task", id: "T-1")["picked"] == .int(1))
        #expect(try store.audit(.null).last?.outcome == "discarded")
        #expect(throws: FieldSyncError.self) { try store.discard(key: "dev-a-2") }
    }

    /// Field names are matched byte for byte, like every key: "\u{212A}ind"
    /// (KELVIN SIGN) is canonically equivalent to "Kind", and Swift's String
    /// comparison says they are equal; the action must be refused, not have
    /// its value stored under a key the view never reads.
    @Test func aFieldNameOnlyEquivalentToADeclaredOneIsUnknown() throws {
        let schema = #"{"version":1,"types":{"t":{"fields":{"Kind":{"type":"string"}}},"Kt":{"fields":{"a":{"type":"string"}}}}}"#
        let store = try openStore(schema: schema)
        #expect(throws: FieldSyncError.self) {
            _ = try store.apply(action(#"{"action":"a","actor":"op","type":"t","id":"1","set":{"\#u{212A}ind":"x"}}"#))
        }
        #expect(throws: FieldSyncError.self) {
            _ = try store.apply(action(#"{"action":"a","actor":"op","type":"\#u{212A}t","id":"1","set":{"a":"x"}}"#))
        }
        #expect(try rows(store, "fs_outbox") == 0 && rows(store, "fs_audit") == 0)
        _ = try store.apply(action(#"{"action":"a","actor":"op","type":"t","id":"1","set":{"Kind":"x"}}"#))
        #expect(try store.get(type: "t", id: "1")["Kind"] == .string("x"))
    }
}
