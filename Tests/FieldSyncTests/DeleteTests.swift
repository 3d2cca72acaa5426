// How a record delete meets a concurrent update, policy by policy (docs/MERGE.md).
@testable import FieldSync
import Testing

@Suite struct DeleteTests {
    struct World {
        let hub: Hub
        let a: Store, b: Store
        let clockA = TestClock(), clockB = TestClock()

        init() throws {
            let dir = String(tempPath("x").dropLast(2))
            hub = try Hub(path: dir + "/hub.db", schemaJSON: policySchema, optionsJSON: #"{"durability":"normal"}"#)
            hub.resolvers["max_lines"] = { conflict in .success(conflict["incoming"] ?? .null) }
            a = try Store(path: dir + "/a.db", schemaJSON: policySchema, optionsJSON: #"{"durability":"normal","device_id":"dev-a"}"#)
            b = try Store(path: dir + "/b.db", schemaJSON: policySchema, optionsJSON: #"{"durability":"normal","device_id":"dev-b"}"#)
            a.wallClock = { [clockA] in clockA.now }
            b.wallClock = { [clockB] in clockB.now }
        }

        func sync(_ s: Store) throws {
            try s.connectivity(up: true)
            while let request = try s.prepare().request { _ = try s.receive(hub.handle(request)) }
        }

        func act(_ s: Store, _ ops: String) throws {
            _ = try s.apply(JSON.parse(#"{"action":"x","actor":"op","type":"task","id":"R",\#(ops)}"#))
        }

        /// A creates R and both devices see it; then A deletes it at A's time and
        /// B, offline, makes `update` at B's time (ms offset from A's).
        func race(update: String, bOffsetMs: Int64) throws -> JSON? {
            try act(a, #""set":{"status":"new","on_hand":5,"lines":1},"inc":{"picked":2},"add":{"tags":["t"]}"#)
            try sync(a)
            try sync(b)
            clockA.now += 60_000
            clockB.now = clockA.now + bOffsetMs
            try act(a, #""delete":true"#)
            try act(b, update)
            try sync(a)
            try sync(b)
            try sync(a)
            let rows = try hub.query(JSON.parse(#"{"type":"task"}"#)).array ?? []
            #expect(try a.query(JSON.parse(#"{"type":"task"}"#)).array == rows)
            #expect(try b.query(JSON.parse(#"{"type":"task"}"#)).array == rows)
            return rows.first
        }
    }

    @Test(arguments: [
        #""set":{"status":"late"}"#, #""inc":{"picked":1}"#, #""add":{"tags":["u"]}"#,
        #""remove":{"tags":["t"]}"#, #""set":{"lines":9}"#,
    ])
    func anUpdateOlderThanTheDeleteLoses(update: String) throws {
        let world = try World()
        #expect(try world.race(update: update, bOffsetMs: -30_000) == nil)
    }

    @Test func anLwwUpdateNewerThanTheDeleteResurrectsOnlyItsFields() throws {
        let record = try #require(try World().race(update: #""set":{"status":"late"}"#, bOffsetMs: 30_000))
        #expect(record["status"] == .string("late"))
        #expect(record["picked"] == .null && record["tags"] == .null && record["on_hand"] == .null)
    }

    @Test func aCounterIncrementNewerThanTheDeleteStartsFromZero() throws {
        let record = try #require(try World().race(update: #""inc":{"picked":3}"#, bOffsetMs: 30_000))
        #expect(record["picked"] == .int(3))
    }

    @Test func aSetAddNewerThanTheDeleteStartsFromEmpty() throws {
        let record = try #require(try World().race(update: #""add":{"tags":["u"]}"#, bOffsetMs: 30_000))
        #expect(record["tags"] == .array([.string("u")]))
    }

    @Test func aServerWriteBasedOnTheDeletedRecordIsRejected() throws {
        let world = try World()
        #expect(try world.race(update: #""set":{"on_hand":7}"#, bOffsetMs: 30_000) == nil)
        let rejected = try world.b.outboxList(JSON.parse(#"{"state":"rejected"}"#)).array ?? []
        #expect(rejected.count == 1 && rejected.first?["reason"] == .string("conflict"))
    }
}
