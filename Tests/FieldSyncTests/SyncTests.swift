@testable import FieldSync
import Glibc
import Testing

@Suite struct SyncTests {
    /// The CI set of seeds: 3 devices, 2,000 actions each run, every fault.
    @Test(arguments: [1, 2, 3, 4, 5] as [UInt64])
    func invariantsHoldUnderFaults(seed: UInt64) throws {
        let sim = try Simulation(seed: seed)
        try sim.run(actions: 2000)
        let problems = try sim.violations()
        #expect(problems.isEmpty, "seed \(seed): \(problems.prefix(5)) faults: \(sim.report.faults)")
        #expect(sim.report.faults.count >= 5, "seed \(seed) exercised only \(sim.report.faults)")
    }

    /// A fleet upgrading: devices still on protocol 1 (the store option)
    /// beside one on protocol 2, through every fault: nothing lost, each
    /// device answered in the protocol it spoke.
    @Test(arguments: [11, 12] as [UInt64])
    func protocolOneDevicesSyncWithTheNewHubUnderFaults(seed: UInt64) throws {
        let sim = try Simulation(seed: seed, protocols: [1, nil, 1])
        try sim.run(actions: 1500)
        let problems = try sim.violations()
        #expect(problems.isEmpty, "seed \(seed): \(problems.prefix(5)) faults: \(sim.report.faults)")
        #expect(sim.report.faults.count >= 5, "seed \(seed) exercised only \(sim.report.faults)")
    }

    /// One device six hours ahead, one six hours behind.
    @Test func convergesWithSkewedClocks() throws {
        let hour: Int64 = 3_600_000
        let sim = try Simulation(seed: 99, skewMs: [6 * hour, -6 * hour, 0])
        try sim.run(actions: 600)
        #expect(try sim.violations().isEmpty)
    }

    /// `make soak`: FIELDSYNC_SOAK_SEEDS=N runs seeds 1000..<1000+N; without
    /// the variable the run reports it skipped.
    @Test(.enabled(if: getenv("FIELDSYNC_SOAK_SEEDS") != nil, "set FIELDSYNC_SOAK_SEEDS=N (make soak) to run it"))
    func soak() throws {
        let text = String(cString: try #require(getenv("FIELDSYNC_SOAK_SEEDS")))
        let n = try #require(UInt64(text).flatMap { $0 > 0 ? $0 : nil },
                             "FIELDSYNC_SOAK_SEEDS must be a positive number of seeds, not '\(text)'")
        var actions = 0
        var failed: [UInt64] = []
        for seed in 1000..<(1000 + n) {
            let sim = try Simulation(seed: seed)
            try sim.run(actions: 2000)
            actions += sim.report.actions
            if !(try sim.violations()).isEmpty { failed.append(seed) }
        }
        print("soak: \(n - UInt64(failed.count)) of \(n) seeds passed, \(actions) actions; failed seeds: \(failed)")
        #expect(failed.isEmpty)
    }

    /// A remove made before the device saw another device's re-add, and sent
    /// after the device fetched that re-add: add-wins keeps the element at the
    /// hub, so the hub must send the record back rather than answer "own"
    /// (which would let the device rebuild it without the element).
    @Test func aRemoveSentAfterFetchingAConcurrentReAddKeepsTheElementEverywhere() throws {
        let hub = try Hub(path: tempPath("hub.db"), schemaJSON: taskSchema, optionsJSON: #"{"durability":"normal"}"#)
        let a = try openStore(tempPath("a.db"), options: #"{"durability":"normal","device_id":"dev-a"}"#)
        let b = try openStore(tempPath("b.db"), options: #"{"durability":"normal","device_id":"dev-b"}"#)
        _ = try b.apply(action(#"{"action":"a","actor":"op","type":"task","id":"R","set":{"status":"open"},"add":{"tags":["x"]}}"#))
        try syncUntilIdle(b, hub)
        try syncUntilIdle(a, hub)
        _ = try a.apply(action(#"{"action":"a","actor":"op","type":"task","id":"R","remove":{"tags":["x"]}}"#))
        _ = try b.apply(action(#"{"action":"a","actor":"op","type":"task","id":"R","add":{"tags":["x"]}}"#))
        try syncUntilIdle(b, hub)
        // The device learns the re-add by fetching the record, not by a pull
        // that would also carry its pending remove.
        let fetch = try a.fetchRequest(action(#"[{"type":"task","id":"R"}]"#))
        _ = try a.receive(hub.handle(fetch))
        try syncUntilIdle(a, hub)
        try syncUntilIdle(b, hub)
        let atHub = try hub.query(action(#"{"type":"task"}"#)).array?.first?["tags"]
        #expect(atHub == .array([.string("x")]))
        #expect(try a.get(type: "task", id: "R")["tags"] == atHub)
        #expect(try b.get(type: "task", id: "R")["tags"] == atHub)
    }

    /// The same for a custom field: the hub resolves the device's write
    /// against the change it had not seen (the device would only compare
    /// stamps), so it must send the resolved record back, not answer "own".
    @Test func aCustomWriteSentAfterFetchingAConcurrentWriteTakesTheResolvedValueEverywhere() throws {
        let hub = try Hub(path: tempPath("hub.db"), schemaJSON: taskSchema, optionsJSON: #"{"durability":"normal"}"#)
        hub.resolvers["order_lines"] = { conflict in
            .success(.array([conflict["server"] ?? .null, conflict["incoming"] ?? .null]))
        }
        let a = try openStore(tempPath("a.db"), options: #"{"durability":"normal","device_id":"dev-a"}"#)
        let b = try openStore(tempPath("b.db"), options: #"{"durability":"normal","device_id":"dev-b"}"#)
        _ = try b.apply(action(#"{"action":"a","actor":"op","type":"task","id":"R","set":{"status":"open","lines":"first"}}"#))
        try syncUntilIdle(b, hub)
        try syncUntilIdle(a, hub)
        _ = try a.apply(action(#"{"action":"a","actor":"op","type":"task","id":"R","set":{"lines":"from-a"}}"#))
        _ = try b.apply(action(#"{"action":"a","actor":"op","type":"task","id":"R","set":{"lines":"from-b"}}"#))
        try syncUntilIdle(b, hub)
        let fetch = try a.fetchRequest(action(#"[{"type":"task","id":"R"}]"#))
        _ = try a.receive(hub.handle(fetch))
        try syncUntilIdle(a, hub)
        try syncUntilIdle(b, hub)
        let atHub = try hub.query(action(#"{"type":"task"}"#)).array?.first?["lines"]
        #expect(atHub == .array([.string("from-b"), .string("from-a")]))
        #expect(try a.get(type: "task", id: "R")["lines"] == atHub)
        #expect(try b.get(type: "task", id: "R")["lines"] == atHub)
    }

    /// The answer to a batch is lost after the hub applied it; the device
    /// restarts with a smaller batch, and its first resend pulls the record
    /// with all of that batch in it while later entries of the batch are
    /// still pending. Their "duplicate" answers must not add them to the held
    /// state a second time.
    @Test func acknowledgementsOfChangesAPullAlreadyBroughtAreNotCountedTwice() throws {
        let hub = try Hub(path: tempPath("hub.db"), schemaJSON: taskSchema, optionsJSON: #"{"durability":"normal"}"#)
        let path = tempPath("a.db")
        var a = try openStore(path, options: #"{"durability":"normal","device_id":"dev-a","batch_size":4}"#)
        _ = try a.apply(action(#"{"action":"a","actor":"op","type":"task","id":"R","set":{"status":"open"},"inc":{"picked":1}}"#))
        for _ in 0..<3 { _ = try a.apply(action(#"{"action":"a","actor":"op","type":"task","id":"R","inc":{"picked":1}}"#)) }
        _ = try hub.handle(#require(a.prepare().request))   // applied; the answer never arrives
        a.close()
        a = try openStore(path, options: #"{"durability":"normal","device_id":"dev-a","batch_size":1}"#)
        for _ in 0..<10 {
            guard let request = try a.prepare().request else { break }
            _ = try a.receive(hub.handle(request))
        }
        #expect(try a.outboxCount() == 0)
        let atHub = try hub.query(action(#"{"type":"task"}"#)).array?.first?["picked"]
        #expect(atHub == .int(4))
        #expect(try a.get(type: "task", id: "R")["picked"] == atHub)
        #expect(try a.shadow(type: "task", id: "R")?.fields["picked"] == atHub)
    }

    /// The hub keeps record states across requests. Two hub handles on one
    /// file (two server processes) must each see what the other committed:
    /// without the data_version check, `first` would merge onto the counter
    /// it kept from before `second`'s request and lose its increments.
    @Test func twoHubHandlesOnOneFileSeeEachOthersWrites() throws {
        let hubPath = tempPath("hub.db")
        let first = try Hub(path: hubPath, schemaJSON: taskSchema, optionsJSON: #"{"durability":"normal"}"#)
        let second = try Hub(path: hubPath, schemaJSON: taskSchema, optionsJSON: #"{"durability":"normal"}"#)
        let a = try openStore(tempPath("a.db"), options: #"{"durability":"normal","device_id":"dev-a"}"#)
        let b = try openStore(tempPath("b.db"), options: #"{"durability":"normal","device_id":"dev-b"}"#)
        _ = try a.apply(action(#"{"action":"a","actor":"op","type":"task","id":"R","set":{"status":"open"},"inc":{"picked":1}}"#))
        try syncUntilIdle(a, first)
        try syncUntilIdle(b, second)   // b pulls R
        for _ in 0..<3 { _ = try b.apply(action(#"{"action":"b","actor":"op","type":"task","id":"R","inc":{"picked":10}}"#)) }
        try syncUntilIdle(b, second)
        _ = try a.apply(action(#"{"action":"a","actor":"op","type":"task","id":"R","inc":{"picked":1}}"#))
        try syncUntilIdle(a, first)
        for hub in [first, second] {
            #expect(try hub.query(action(#"{"type":"task"}"#)).array?.first?["picked"] == .int(32))
        }
        try syncUntilIdle(b, second)
        #expect(try a.get(type: "task", id: "R")["picked"] == .int(32))
        #expect(try b.get(type: "task", id: "R")["picked"] == .int(32))
    }

    /// A hub and a device whose record R was synced once (picked 1) and then
    /// incremented by 5 offline; the request holds that change.
    private func syncedOnceThenIncremented() throws -> (Hub, Store, JSON) {
        let hub = try Hub(path: tempPath("hub.db"), schemaJSON: taskSchema, optionsJSON: #"{"durability":"normal"}"#)
        let a = try openStore(tempPath("a.db"), options: #"{"durability":"normal","device_id":"dev-a"}"#)
        _ = try a.apply(action(#"{"action":"a","actor":"op","type":"task","id":"R","set":{"status":"open"},"inc":{"picked":1}}"#))
        try syncUntilIdle(a, hub)
        _ = try a.apply(action(#"{"action":"a","actor":"op","type":"task","id":"R","inc":{"picked":5}}"#))
        return (hub, a, try #require(a.prepare().request))
    }

    /// A request that fails after the hub wrote its record states rolls back;
    /// the states it had kept for the next request must go with it.
    @Test func aRolledBackRequestLeavesNoKeptState() throws {
        let (hub, a, request) = try syncedOnceThenIncremented()
        // Storing the audit rows fails (as on a full disk), after the
        // entries were applied and their record states written.
        try hub.storage.db.exec("CREATE TRIGGER full BEFORE INSERT ON fs_hub_audit BEGIN SELECT RAISE(ABORT, 'disk full'); END")
        #expect(throws: FieldSyncError.self) { _ = try hub.handle(request) }
        try hub.storage.db.exec("DROP TRIGGER full")
        #expect(try hub.query(action(#"{"type":"task"}"#)).array?.first?["picked"] == .int(1))
        try syncUntilIdle(a, hub)
        #expect(try hub.query(action(#"{"type":"task"}"#)).array?.first?["picked"] == .int(6))
        #expect(try a.get(type: "task", id: "R")["picked"] == .int(6))
    }

    /// The device keeps the confirmed states its receives wrote; a receive
    /// that fails after writing them must not leave them kept.
    @Test func aRolledBackReceiveLeavesNoKeptState() throws {
        let (hub, a, request) = try syncedOnceThenIncremented()
        let response = try hub.handle(request)
        // The last write of the receive (its cursor) fails, as on a full
        // disk: after the acknowledged change was folded into the confirmed state.
        try a.db.exec("CREATE TRIGGER full BEFORE INSERT ON fs_meta WHEN NEW.key = 'cursor' BEGIN SELECT RAISE(ABORT, 'disk full'); END")
        #expect(throws: FieldSyncError.self) { _ = try a.receive(response) }
        try a.db.exec("DROP TRIGGER full")
        #expect(try a.shadowsDifferingFromStorage().isEmpty)
        try syncUntilIdle(a, hub)
        #expect(try a.shadowsDifferingFromStorage().isEmpty)
        #expect(try a.get(type: "task", id: "R")["picked"] == .int(6))
        #expect(try hub.query(action(#"{"type":"task"}"#)).array?.first?["picked"] == .int(6))
    }

    /// The request is written from the stored texts as they are; a stored
    /// text that is not what the engine writes (a host editing fs_outbox)
    /// still gives a valid request, with the entry's ops empty as reading
    /// them back would have made them.
    @Test func aDamagedStoredEntryStillGivesAValidRequest() throws {
        let a = try openStore(tempPath("a.db"), options: #"{"durability":"normal","device_id":"dev-a"}"#)
        _ = try a.apply(action(#"{"action":"a","actor":"op","type":"task","id":"R","set":{"status":"open"}}"#))
        try a.db.exec("UPDATE fs_outbox SET ops = 'junk', base = '', base_values = '{}'")
        try a.db.exec("UPDATE fs_audit SET input = '', outbox_keys = 'x'")
        let request = try #require(a.prepare().request)
        let entry = try #require(request["entries"]?.array?.first)
        #expect(entry["ops"] == .object([:]) && entry["base"] == .object([:]) && entry["base_values"] == nil)
        let row = try #require(request["audit"]?.array?.first)
        #expect(row["input"] == .null && row["outbox_keys"] == .array([]))
    }

    @Test func resumeAfterConnectivityIsImmediate() throws {
        let sim = try Simulation(seed: 7)
        let device = sim.devices[0]
        _ = try device.apply(JSON.parse(#"{"action":"a","actor":"op","type":"task","id":"T","set":{"site":"x"}}"#))
        for _ in 0..<6 {
            let (request, _) = try device.prepare()
            if request != nil { try device.fail(reason: "offline") }
        }
        let (none, wait) = try device.prepare()
        #expect(none == nil && wait > 0 && wait <= 200)
        try device.connectivity(up: true)
        let (request, immediate) = try device.prepare()
        #expect(request != nil && immediate == 0)
    }

    @Test func receiveRefusesResponsesNotMeantForThisStore() throws {
        let sim = try Simulation(seed: 8)
        let device = sim.devices[0]
        _ = try device.apply(JSON.parse(#"{"action":"a","actor":"op","type":"task","id":"T","inc":{"picked":1}}"#))
        let (request, _) = try device.prepare()
        let response = try sim.hub.handle(#require(request))
        let other = try sim.hub.handle(JSON.parse(#"{"protocol":1,"device_id":"dev-1","batch":"dev-1-b1","schema_version":1}"#))
        let before = try device.outboxList(.null)
        #expect(throws: FieldSyncError.self) { _ = try device.receive(other) }
        var forged = response.object ?? [:]
        forged["batch"] = .string("dev-0-b99")
        #expect(throws: FieldSyncError.self) { _ = try device.receive(.object(forged)) }
        #expect(throws: FieldSyncError.self) { _ = try device.receive(.string("garbage")) }
        #expect(try device.outboxList(.null) == before)
        _ = try device.receive(response)
        #expect(try device.outboxCount() == 0)
    }

    @Test func retriesBackOffThenGetStuckButAreNeverDeleted() throws {
        let sim = try Simulation(seed: 9)
        let device = try Store(path: sim.dir + "/stuck.db", schemaJSON: simSchema,
                               optionsJSON: #"{"device_id":"dev-s","max_attempts":3,"backoff_base_ms":10,"backoff_cap_ms":50}"#)
        let clock = TestClock()
        device.wallClock = { clock.now }
        _ = try device.apply(JSON.parse(#"{"action":"a","actor":"op","type":"task","id":"T","inc":{"picked":1}}"#))
        _ = try device.apply(JSON.parse(#"{"action":"a","actor":"op","type":"task","id":"U","inc":{"picked":1}}"#))
        for _ in 0..<3 {
            clock.now += 1000
            let (request, _) = try device.prepare()
            let r = try #require(request)
            let key = r["entries"]?.array?.first { $0["id"] == .string("T") }?["key"]?.string ?? ""
            let otherKey = r["entries"]?.array?.first { $0["id"] == .string("U") }?["key"]
            // The hub is told to retry T; U is applied and not held back by T.
            var results: [JSON] = [.object(["key": .string(key), "status": .string("retry"), "reason": .string("busy")])]
            if let otherKey { results.append(.object(["key": otherKey, "status": .string("applied")])) }
            _ = try device.receive(.object(["protocol": .int(1), "device_id": .string("dev-s"), "batch": r["batch"] ?? .null, "results": .array(results)]))
        }
        let entries = try device.outboxList(.null).array ?? []
        #expect(entries.count == 1)
        #expect(entries.first?["state"] == .string("stuck"))
        #expect(try device.stats()["outbox_stuck"] == .int(1))
    }
}
