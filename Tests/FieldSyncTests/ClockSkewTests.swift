// A device whose wall clock is hours off must not win over a write that
// causally follows its own: the HLC absorbs the stamps a device pulls.
@testable import FieldSync
import Testing

@Suite struct ClockSkewTests {
    @Test(arguments: [6 * 3_600_000, -6 * 3_600_000] as [Int64])
    func aWriteMadeAfterSeeingAnotherWinsWhateverTheClocks(skewMs: Int64) throws {
        let world = try DeleteTests.World()
        world.clockA.now = 1_700_000_000_000 + skewMs      // A's clock is 6 h off
        world.clockB.now = 1_700_000_000_000
        try world.act(world.a, #""set":{"status":"from-a"}"#)
        try world.sync(world.a)
        try world.sync(world.b)                            // B sees A's write...
        world.clockB.now += 1
        try world.act(world.b, #""set":{"status":"from-b"}"#)  // ...then writes after it
        try world.sync(world.b)
        try world.sync(world.a)
        let rows = try world.hub.query(JSON.parse(#"{"type":"task"}"#)).array ?? []
        #expect(rows.first?["status"] == .string("from-b"))
        #expect(try world.a.get(type: "task", id: "R")["status"] == .string("from-b"))
        // And A, writing after it has seen B's write, wins in turn.
        world.clockA.now += 1
        try world.act(world.a, #""set":{"status":"from-a-again"}"#)
        try world.sync(world.a)
        try world.sync(world.b)
        #expect(try world.b.get(type: "task", id: "R")["status"] == .string("from-a-again"))
    }

    @Test func concurrentWritesFromASkewedDeviceResolveByStampAndConverge() throws {
        let world = try DeleteTests.World()
        world.clockA.now = 1_700_000_000_000 + 6 * 3_600_000
        world.clockB.now = 1_700_000_000_000
        try world.act(world.a, #""set":{"status":"a"}"#)
        try world.act(world.b, #""set":{"status":"b"}"#)
        for s in [world.a, world.b, world.a] { try world.sync(s) }
        // Truly concurrent: the greater stamp wins (A's, 6 h ahead) on every replica.
        let hubStatus = try world.hub.query(JSON.parse(#"{"type":"task"}"#)).array?.first?["status"]
        #expect(hubStatus == .string("a"))
        #expect(try world.b.get(type: "task", id: "R")["status"] == hubStatus)
        #expect(try world.hub.stats()["conflicts.task.status.lost"] == .int(1))
    }
}
